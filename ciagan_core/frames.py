"""Input frames of every common layout in, the same layout out.

The pipeline works on BGR uint8. Gray, BGRA and 16-bit frames are converted for processing and
converted back so that the caller gets its own format, with untouched pixels bit-identical.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from ciagan_core.errors import InputError

MAX_SIDE = 16384


@dataclass
class WorkingFrame:
    """A private BGR uint8 copy of an input frame and the way back to the input's layout."""

    bgr: np.ndarray
    restore: Callable[[np.ndarray], np.ndarray]


def to_working(frame: object) -> WorkingFrame:
    """Validate ``frame`` and give its BGR uint8 working copy; InputError names the problem."""
    if not isinstance(frame, np.ndarray):
        raise InputError(f"a frame must be a numpy array, got {type(frame).__name__}")
    if frame.size == 0:
        raise InputError(f"empty frame (shape {frame.shape})")
    input_shape = frame.shape
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (3, 4)):
        raise InputError(
            f"unsupported frame shape {frame.shape}: expected HxW, HxWx1, HxWx3 (BGR) or HxWx4"
        )
    if max(frame.shape[:2]) > MAX_SIDE:
        raise InputError(f"frame of {frame.shape[1]}x{frame.shape[0]} exceeds {MAX_SIDE} px")
    if frame.dtype == np.uint8:
        eight = frame
    elif frame.dtype == np.uint16:
        eight = (frame >> 8).astype(np.uint8)
    else:
        raise InputError(f"unsupported pixel type {frame.dtype}: expected uint8 or uint16")
    if eight.ndim == 2:
        bgr = cv2.cvtColor(np.ascontiguousarray(eight), cv2.COLOR_GRAY2BGR)
    elif eight.shape[2] == 4:
        bgr = np.ascontiguousarray(eight[:, :, :3])
    else:
        bgr = np.array(eight, order="C", copy=True)  # private: the pipeline draws into it
    original = frame

    def restore(result: np.ndarray) -> np.ndarray:
        if original.ndim == 2:
            back8 = cv2.cvtColor(result, cv2.COLOR_BGR2GRAY)
        elif original.shape[2] == 4:
            back8 = np.dstack([result, eight[:, :, 3]])
        else:
            back8 = result
        if original.dtype == np.uint8:
            return back8.reshape(input_shape)
        changed = back8 != eight
        out = original.copy()
        out[changed] = back8[changed].astype(np.uint16) * 257
        return out.reshape(input_shape)

    return WorkingFrame(bgr, restore)
