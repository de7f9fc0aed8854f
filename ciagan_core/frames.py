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
runs on a rendering scaled to those pixels. A face can also straddle two renderings: lit from
above, its upper half far brighter than the dark scene its lower half lies in, it is half
saturated in the bulk's rendering and half black in the white point's, and found in neither.
So when a face's worth of pixels (not isolated, not clipped at the frame's maximum) lies more
than RENDER_DARK x above the bulk, a range no linear rendering shows together with the bulk,
detection also runs on two tone-mapped renderings of the whole range, in which dark and bright
regions are both visible: one in bands, each pixel from the linear rendering of its band (a
sharp light boundary across a face), and a log stretch with local contrast (light that fades
across it). Every pixel of a replaced region is written back from the anonymized 8-bit image,
scaled to the white point; every other pixel is the input's own value, bit for bit.
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
#: The tone-mapped rendering's black: this percentile of the values (dead pixels aside).
TONE_LOW_PERCENTILE = 0.5
#: Its local contrast: CLAHE on tiles of about this many pixels, with this clip limit (a face
#: spans several tiles, so each of its halves gets contrast of its own at any face size).
TONE_TILE_PX = 32
TONE_CLIP = 6.0
#: The banded rendering cuts the range into at most this many bands.
MAX_TONE_BANDS = 6


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
    #: bulk lies far below their white point, whose bright regions it saturates, or whose
    #: range no one linear rendering shows).
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
    white, views, _, _ = _levels(colour)
    return white, views


def _levels(colour: np.ndarray) -> tuple[float, list[float], float, float]:
    """white_points' white and further white points, and the bulk's and the low end's value
    (BULK_PERCENTILE and TONE_LOW_PERCENTILE of a sample of the values)."""
    step = max(1, int(np.sqrt(colour.size / _WHITE_SAMPLES)))
    sample = colour[::step, ::step]
    low, bulk, white = np.percentile(
        sample, [TONE_LOW_PERCENTILE, BULK_PERCENTILE, WHITE_PERCENTILE]
    )
    white = float(max(white, 255.0))
    bulk_white = float(max(2 ** int(np.ceil(np.log2(bulk + 1))) - 1, 255))
    views = [bulk_white] if white >= 4 * bulk_white else []
    return white, views + _bright_whites(colour, [white, *views]), float(bulk), float(low)


def tone_views(colour: np.ndarray, bulk: float, low: float) -> list[np.ndarray]:
    """The tone-mapped renderings a frame needs (BGR uint8), else none.

    A frame needs them when at least MIN_BRIGHT_PIXELS pixels that are not isolated (hot
    pixels are not a face) lie above RENDER_DARK x its bulk (``bulk``), where the white point
    that shows them would leave the bulk darker than 1/RENDER_DARK: a face lit on one half and
    dark on the other is then whole in no linear rendering. Values at the frame's maximum are
    clipped (a saturated sensor, a burned-in timestamp) and show no detail: they do not count.
    The renderings span from ``low`` (at least 1) to the BRIGHT_RANK-th brightest pixel that
    counts (a pixel's brightest channel):

    - banded: the range cut into bands RENDER_DARK x apart from its top down, each pixel shown
      in its band's linear rendering, scaled to that band's own BRIGHT_RANK-th brightest
      pixel. A face half in a lamp's light, half in shadow, with a sharp boundary, shows each
      half at full contrast, as in a photo lit evenly;
    - a log stretch with local contrast (CLAHE on TONE_TILE_PX tiles), gray: light that
      changes gradually across a face, where the banded rendering draws a contour.

    A frame whose maximum is within RENDER_DARK x its bulk costs one pass."""
    floor = max(RENDER_DARK * bulk, 255.0)
    top = colour.max()
    if float(top) <= floor:
        return []
    counted = (colour > floor) & (colour < top)
    if np.count_nonzero(counted) < MIN_BRIGHT_PIXELS:  # values: at least as many as pixels
        return []
    brightness = colour
    if colour.ndim == 3:
        brightness = np.maximum(np.maximum(colour[:, :, 0], colour[:, :, 1]), colour[:, :, 2])
        counted = (brightness > floor) & (brightness < top)
    solid = cv2.erode(counted.view(np.uint8), np.ones((3, 3), np.uint8))
    if cv2.countNonZero(solid) < MIN_BRIGHT_PIXELS:
        return []
    values = brightness[counted]
    white = float(np.partition(values, values.size - BRIGHT_RANK)[values.size - BRIGHT_RANK])
    black = max(low, 1.0)
    return [_banded(colour, brightness, black, white), _log_stretched(brightness, black, white)]


def _banded(colour: np.ndarray, brightness: np.ndarray, black: float, white: float) -> np.ndarray:
    """tone_views' banded rendering."""
    counts = np.bincount(brightness.ravel(), minlength=65536)
    uppers = [int(white)]
    while uppers[-1] / RENDER_DARK > black and len(uppers) < MAX_TONE_BANDS:
        uppers.append(int(uppers[-1] / RENDER_DARK))
    band_of = np.full(65536, len(uppers), np.uint8)  # above ``white``: saturated
    gains = []
    lower = 0
    for band, upper in enumerate(reversed(uppers)):
        from_top = np.cumsum(counts[lower : upper + 1][::-1])
        brightest = upper  # the band's BRIGHT_RANK-th brightest pixel, or its brightest
        if from_top[-1]:
            brightest -= int(np.searchsorted(from_top, min(BRIGHT_RANK, from_top[-1])))
        gains.append(255.0 / max(brightest, 1))
        band_of[lower : upper + 1] = band
        lower = upper + 1
    gains.append(255.0 / white)
    source = np.ascontiguousarray(colour)
    pixel_band = band_of[brightness]
    out = np.zeros(source.shape, np.uint8)
    for band, gain in enumerate(gains):
        inside = (pixel_band == band).view(np.uint8)
        if cv2.countNonZero(inside):
            cv2.copyTo(cv2.convertScaleAbs(source, alpha=gain), inside, out)
    return _as_bgr(out)


def _log_stretched(brightness: np.ndarray, black: float, white: float) -> np.ndarray:
    """tone_views' log-stretched rendering, with local contrast."""
    levels = np.arange(65536, dtype=np.float64)
    curve = np.log(np.maximum(levels, black) / black) / np.log(white / black)
    lut = np.rint(np.clip(curve, 0.0, 1.0) * 255.0).astype(np.uint8)
    stretched = lut[brightness]
    height, width = stretched.shape
    tiles = (max(1, round(width / TONE_TILE_PX)), max(1, round(height / TONE_TILE_PX)))
    return _as_bgr(cv2.createCLAHE(TONE_CLIP, tiles).apply(stretched))


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
        colour = frame if frame.ndim == 2 else frame[:, :, :3]
        white, view_whites, bulk, low = _levels(colour)
        bgr = _as_bgr(_scaled(frame, white))
        views = [_as_bgr(_scaled(frame, w)) for w in view_whites]
        views += tone_views(colour, bulk, low)
    else:
        raise InputError(f"unsupported pixel type {frame.dtype}: expected uint8 or uint16")
    touched = np.zeros(frame.shape[:2], dtype=bool)
    return WorkingFrame(bgr, frame, input_shape, white, touched, views)
