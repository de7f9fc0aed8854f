"""Input frames of every common layout in, the same layout out.

The pipeline works on BGR uint8. Gray, BGRA and 16-bit frames are converted for processing and
converted back so that the caller gets its own format.

16-bit frames often hold 10- or 12-bit data (mono16 cameras, 16-bit PNGs), so they are not
reduced to their high byte, which would leave a 10-bit image nearly black and its faces
undetected. They are scaled by their own white point, the 99.9th percentile of their values, so
faces are detected at any bit depth. A few bright pixels far above the rest (a burned-in
timestamp at full scale, hot pixels) would push that white point up and the faces back into
the dark, so when the bulk of the data (its 80th percentile) lies far below it, detection also
runs on a second rendering scaled to the bulk's bit depth. The white point also saturates the
brightest values: a small lit face in a dark frame (a face under a lamp, 0.1% of the pixels)
can lie wholly above it and come out flat white. So whenever a face's worth of pixels is
saturated in every rendering by more than twice its white point (or falls between the bulk's
rendering and the white point's, saturated in one and too dark in the other), detection also
runs on a rendering scaled to those pixels. Every pixel of a replaced region is written back
from the anonymized 8-bit image, scaled to the white point; every other pixel is the input's
own value, bit for bit.
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
#: A rendering shows the values from its white point / RENDER_DARK (8-bit 32) up to
#: RENDER_SATURATED x its white point (above it, half or more of a region's range is flat 255).
RENDER_DARK = 8.0
RENDER_SATURATED = 2.0
#: Bright pixels that no rendering shows get their own once there are this many (a face's
#: worth: a 20 px face has 400); fewer (hot pixels) are left saturated.
MIN_BRIGHT_PIXELS = 128
#: That rendering's white point is the value of its BRIGHT_RANK-th brightest pixel: a few hot
#: pixels do not set it, and a lit face loses almost nothing to saturation (its maximum is
#: best, 128 pixels into the face already costs detections).
BRIGHT_RANK = 32
#: At most this many renderings are added for bright regions (each costs a detection).
MAX_BRIGHT_VIEWS = 3


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
    #: bulk lies far below their white point, or whose bright regions it saturates).
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


def white_points(frame: np.ndarray) -> tuple[float, list[float]]:
    """The 16-bit value that becomes 8-bit 255 (the 99.9th percentile, at least 255), and the
    white points of the further renderings detection needs, else none: one for the bulk of the
    values (80th percentile) when it needs 4x fewer bits (the full scale of that bulk's bit
    depth), and one for each group of bright pixels that no rendering shows (below)."""
    colour = frame if frame.ndim == 2 else frame[:, :, :3]
    step = max(1, int(np.sqrt(colour.size / _WHITE_SAMPLES)))
    sample = colour[::step, ::step]
    white, bulk = np.percentile(sample, [WHITE_PERCENTILE, BULK_PERCENTILE])
    white = float(max(white, 255.0))
    bulk_white = float(max(2 ** int(np.ceil(np.log2(bulk + 1))) - 1, 255))
    views = [bulk_white] if white >= 4 * bulk_white else []
    return white, views + _bright_whites(colour, [white, *views])


def _bright_whites(colour: np.ndarray, whites: list[float]) -> list[float]:
    """White points for the bright pixels that the renderings at ``whites`` all lose: above
    RENDER_SATURATED x every white point, or between two renderings (saturated in the lower,
    darker than 1/RENDER_DARK in the upper), once MIN_BRIGHT_PIXELS are. Each new white point
    is the BRIGHT_RANK-th brightest of the pixels still lost (more hot pixels than that above
    a lit face get a rendering of their own, and the face the next one); up to
    MAX_BRIGHT_VIEWS are added.

    The whole frame is searched (a small face escapes a sample); in the common case, a frame
    whose maximum is within RENDER_SATURATED x its lowest white point, that costs one pass."""
    floor = RENDER_SATURATED * min(whites)
    if float(colour.max()) <= floor:
        return []
    channels = 1 if colour.ndim == 2 else colour.shape[2]
    enough, rank = MIN_BRIGHT_PIXELS * channels, BRIGHT_RANK * channels  # values, not pixels
    lost = colour[colour > floor]
    added: list[float] = []
    while len(added) < MAX_BRIGHT_VIEWS:
        for white in [*whites, *added]:
            lost = lost[(lost <= white / RENDER_DARK) | (lost > RENDER_SATURATED * white)]
        if lost.size < enough:
            break
        added.append(float(np.partition(lost, lost.size - rank)[lost.size - rank]))
    return added


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
        white, view_whites = white_points(frame)
        bgr = _as_bgr(_scaled(frame, white))
        views = [_as_bgr(_scaled(frame, w)) for w in view_whites]
    else:
        raise InputError(f"unsupported pixel type {frame.dtype}: expected uint8 or uint16")
    touched = np.zeros(frame.shape[:2], dtype=bool)
    return WorkingFrame(bgr, frame, input_shape, white, touched, views)
