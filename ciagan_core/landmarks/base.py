"""The 68-point landmarker interface."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ciagan_core.faces import FaceBox


class Landmarker(Protocol):
    """Finds the 68 iBUG landmarks of each box in a BGR uint8 frame.

    Returns one [68, 2] float array (frame pixels) per box, or None where it failed.
    """

    name: str

    def landmarks(
        self, frame_bgr: np.ndarray, boxes: list[FaceBox]
    ) -> list[np.ndarray | None]: ...
