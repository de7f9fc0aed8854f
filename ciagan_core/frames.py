"""Input frames of every common layout in, the same layout out.

The pipeline works on BGR uint8. Gray, BGRA and 16-bit frames are converted for processing and
converted back so that the caller gets its own format.

16-bit frames often hold 10- or 12-bit data (mono16 cameras, 16-bit PNGs), so they are not
reduced to their high byte, which would leave a 10-bit image nearly black and its faces
undetected. They are scaled by their own white point, the 99.9th percentile of their values, so
faces are detected at any bit depth. A few bright pixels far above the rest (a burned-in
timestamp at full scale, hot pixels) would push that white point up and the faces back into
the dark, so when the bulk of the data (its 80th percentile) lies far below it, detection also
runs on a second rendering scaled to the bulk's bit depth. Every pixel of a replaced region is
written back from the anonymized 8-bit image, scaled to the white point; every other pixel is
the input's own value, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ciagan_core.blend import Matte
from ciagan_core.errors import InputError

MAX_SIDE = 16384
#: Image file suffixes read as frames (.jfif and .jpe are JPEG files under other names).
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".tif", ".tiff", ".webp"}
#: The white point of a 16-bit frame ignores this share of its brightest values (hot pixels).
WHITE_PERCENTILE = 99.9
#: The bulk of a 16-bit frame's values, whose bit depth a second detection view uses.
BULK_PERCENTILE = 80.0
_WHITE_SAMPLES = 1 << 18


@dataclass
class WorkingFrame:
    """A private BGR uint8 copy of an input frame, the replaced pixels, and the way back."""

    #: Private: faces are aligned from it, then blended into it.
    bgr: np.ndarray
    #: The input with its channel axis normalised (H x W or H x W x C).
    original: np.ndarray
    input_shape: tuple[int, ...]
    #: 16-bit frames: the input value that maps to 8-bit 255 (None for uint8 frames).
    white: float | None
    #: Pixels inside a replaced region (matte > 0).
    touched: np.ndarray
    #: Further 8-bit BGR renderings that detection must also search (16-bit frames whose
    #: bulk lies far below their white point).
    detection_views: list[np.ndarray] = field(default_factory=list)

    def mark(self, matte: Matte) -> None:
        """Record that ``matte``'s region was replaced."""
        self.touched[matte.slices] |= matte.alpha > 0

    def restore(self) -> np.ndarray:
        """The anonymized frame in the input's own layout and pixel type."""
        result, original = self.bgr, self.original
        back8 = cv2.cvtColor(result, cv2.COLOR_BGR2GRAY) if original.ndim == 2 else result
        if self.white is None:
            if original.ndim == 3 and original.shape[2] == 4:
                back8 = np.dstack([result, original[:, :, 3]])
            return back8.reshape(self.input_shape)
        out = original.copy()
        touched = self.touched
        values = np.rint(back8[touched].astype(np.float64) * (self.white / 255.0))
        values = np.clip(values, 0, np.iinfo(original.dtype).max).astype(original.dtype)
        if original.ndim == 2:
            out[touched] = values
        else:
            out[touched, :3] = values  # the alpha channel stays as it was
        return out.reshape(self.input_shape)


def white_points(frame: np.ndarray) -> tuple[float, float | None]:
    """The 16-bit value that becomes 8-bit 255 (the 99.9th percentile, at least 255), and a
    second one for detection when the bulk of the values (80th percentile) needs 4x fewer
    bits (the full scale of that bulk's bit depth), else None."""
    colour = frame if frame.ndim == 2 else frame[:, :, :3]
    step = max(1, int(np.sqrt(colour.size / _WHITE_SAMPLES)))
    sample = colour[::step, ::step]
    white, bulk = np.percentile(sample, [WHITE_PERCENTILE, BULK_PERCENTILE])
    white = float(max(white, 255.0))
    bulk_white = float(max(2 ** int(np.ceil(np.log2(bulk + 1))) - 1, 255))
    return white, (bulk_white if white >= 4 * bulk_white else None)


def _scaled(frame: np.ndarray, white: float) -> np.ndarray:
    """The colour channels of a 16-bit frame in 8 bits, ``white`` becoming 255."""
    colour = frame if frame.ndim == 2 else frame[:, :, :3]
    return cv2.convertScaleAbs(np.ascontiguousarray(colour), alpha=255.0 / white)


def _as_bgr(eight: np.ndarray) -> np.ndarray:
    """A new BGR uint8 array from a gray, BGR or BGRA one (private: the pipeline draws in it)."""
    if eight.ndim == 2:
        return cv2.cvtColor(np.ascontiguousarray(eight), cv2.COLOR_GRAY2BGR)
    return np.array(eight[:, :, :3], order="C", copy=True)


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
    white, views = None, []
    if frame.dtype == np.uint8:
        bgr = _as_bgr(frame)
    elif frame.dtype == np.uint16:
        white, bulk_white = white_points(frame)
        bgr = _as_bgr(_scaled(frame, white))
        if bulk_white is not None:
            views.append(_as_bgr(_scaled(frame, bulk_white)))
    else:
        raise InputError(f"unsupported pixel type {frame.dtype}: expected uint8 or uint16")
    touched = np.zeros(frame.shape[:2], dtype=bool)
    return WorkingFrame(bgr, frame, input_shape, white, touched, views)
