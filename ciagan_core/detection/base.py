"""The detector interface and its settings."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ciagan_core.errors import ConfigError
from ciagan_core.faces import FaceBox

PRECISIONS = ("int8", "fp32")
#: The largest smallest-face setting accepted. Untouched faces 24 px wide are still identified
#: 89% of the time (benchmarks/results/privacy_cpu.md), so a larger minimum would let
#: identifiable faces through.
MAX_MIN_FACE = 24.0


@dataclass(frozen=True)
class DetectorSettings:
    """Settings common to every detector backend.

    ``score_threshold`` is in the backend's own units (CenterFace: probability; dlib HOG: SVM
    margin, 0 is dlib's default); ``None`` takes the backend's recall-oriented default.
    """

    score_threshold: float | None = None
    #: Boxes narrower than this (frame pixels) are dropped.
    min_face_size: float = 8.0
    #: CenterFace: frames whose long side exceeds this are scaled down for detection (0 = never,
    #: the default), but never so far that a face of ``min_face_size`` becomes undetectable.
    max_input_side: int = 0
    #: dlib HOG: image upsampling passes (each finds faces half as large, 4x slower).
    upsample: int = 1
    #: CenterFace: "int8" (quantized here on first use, same recall, 1.4-1.7x faster on CPU;
    #: falls back to fp32 if it cannot be built) or "fp32" (the published model as is).
    precision: str = "int8"
    #: Where the int8 CenterFace is cached (None: $CIAGAN_CACHE_DIR or ~/.cache/ciagan).
    cache_dir: str | None = None

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"unknown detector precision {self.precision!r}; "
                f"choose one of {', '.join(PRECISIONS)}"
            )
        # A bad value here would silently stop detection, and faces would pass untouched.
        if not 0 <= self.min_face_size <= MAX_MIN_FACE:  # also refuses NaN
            raise ConfigError(
                f"min_face_size must be in 0..{MAX_MIN_FACE:g} px, got {self.min_face_size}"
            )
        if self.score_threshold is not None and not math.isfinite(self.score_threshold):
            raise ConfigError(f"score_threshold must be a number, got {self.score_threshold}")
        if self.max_input_side < 0:
            raise ConfigError(f"max_input_side must be >= 0, got {self.max_input_side}")
        if not 0 <= self.upsample <= 3:
            raise ConfigError(f"upsample must be in 0..3, got {self.upsample}")


class Detector(Protocol):
    """Finds faces in a BGR uint8 frame [H, W, 3]."""

    name: str

    def detect(self, frame_bgr: np.ndarray) -> list[FaceBox]: ...


def keep_large_enough(boxes: list[FaceBox], min_face_size: float) -> list[FaceBox]:
    """Drop boxes narrower than ``min_face_size`` pixels."""
    return [b for b in boxes if min(b.width, b.height) >= min_face_size]
