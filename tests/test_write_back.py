"""How a replaced region is written into a frame (``blend.composite``) and back into the
input's own layout and pixel type (``frames.WorkingFrame.restore``), checked value by value on
real photos: every replaced pixel carries the new image, every other pixel the input's own
value, bit for bit."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from ros_node import face_scene

from ciagan_core.blend import Matte, composite
from ciagan_core.frames import to_working

ROI = (60, 40, 300, 220)  # x0, y0, x1, y1


@pytest.fixture(scope="module")
def scene(shared_dir) -> np.ndarray:
    return face_scene()[0]


def _new_face(scene: np.ndarray) -> np.ndarray:
    """What a method puts in the region: the scene's own pixels blurred (any other image)."""
    x0, y0, x1, y1 = ROI
    return cv2.GaussianBlur(scene[y0:y1, x0:x1], (31, 31), 0)


def _ramp_matte() -> Matte:
    """Alpha 0 in the left quarter, 1 in the right quarter, a ramp between, and 0 on the top
    and bottom rows."""
    x0, y0, x1, y1 = ROI
    h, w = y1 - y0, x1 - x0
    ramp = np.clip((np.arange(w, dtype=np.float32) - w / 4) / (w / 2), 0, 1)
    alpha = np.repeat(ramp[None], h, axis=0)
    alpha[:3], alpha[-3:] = 0, 0
    return Matte(ROI, alpha)


def _expected(frame: np.ndarray, matte: Matte, new: np.ndarray) -> np.ndarray:
    region = frame[matte.slices].astype(np.float64)
    alpha = matte.alpha.astype(np.float64)
    alpha = alpha[..., None] if region.ndim == 3 else alpha
    mixed = alpha * np.asarray(new, np.float64) + (1 - alpha) * region
    out = frame.copy()
    out[matte.slices] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    return out


@pytest.mark.parametrize(
    "kind", ["bgr", "gray", "float", "float out of range", "reversed", "gray reversed"]
)
def test_composite_blends_by_alpha_and_leaves_alpha_0_bit_for_bit(scene, kind):
    gray = kind.startswith("gray")
    frame = cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY) if gray else scene.copy()
    new = _new_face(scene)
    if gray:
        new = cv2.cvtColor(new, cv2.COLOR_BGR2GRAY)
    if kind == "float":
        new = new.astype(np.float32) + 0.4  # rounds back to the same bytes
    if kind == "float out of range":
        new = new.astype(np.float32) * 1.6 - 60  # below 0 and above 255: clipped
    if kind.endswith("reversed"):  # a view OpenCV cannot wrap: numpy's path, the same result
        frame = frame[:, ::-1].copy()[:, ::-1]
    matte = _ramp_matte()
    before = frame.copy()
    expected = _expected(before, matte, np.clip(np.rint(new), 0, 255))
    composite(frame, matte, new)
    untouched = np.ones(frame.shape[:2], bool)
    untouched[matte.slices] = matte.alpha == 0
    assert (frame[untouched] == before[untouched]).all()  # alpha 0 and outside: the input's
    full = np.zeros(frame.shape[:2], bool)
    full[matte.slices] = matte.alpha == 1
    assert (frame[full] == expected[full]).all()  # alpha 1: the new image exactly
    off = np.abs(frame.astype(int) - expected.astype(int))
    assert off.max() <= 1  # the ramp: the blend, to OpenCV's rounding


def _deep(scene: np.ndarray, layout: str) -> np.ndarray:
    """A 16-bit frame holding 10-bit data (x4), in ``layout``; alpha a gradient."""
    bgr = scene.astype(np.uint16) * 4
    if layout == "gray16":
        return cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 4
    if layout == "gray16 HxWx1":
        return (cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 4)[..., None]
    if layout == "bgra16":
        alpha = np.linspace(0, 65535, scene.shape[1], dtype=np.uint16)
        return np.dstack([bgr, np.repeat(alpha[None], scene.shape[0], axis=0)])
    return bgr


@pytest.mark.parametrize("layout", ["bgr16", "gray16", "gray16 HxWx1", "bgra16"])
def test_16_bit_frames_get_the_replaced_pixels_scaled_to_their_white_and_keep_the_rest(
    scene, layout
):
    """Replaced pixels: the 8-bit result times white / 255, rounded; every other pixel (and
    the alpha channel everywhere) the input's own 16-bit value."""
    deep = _deep(scene, layout)
    working = to_working(deep)
    assert working.white is not None
    matte = _ramp_matte()
    new = _new_face(working.bgr)
    new[:, -20:] = 0  # black, where alpha is 1: written as 0
    composite(working.bgr, matte, new)
    working.mark(matte)
    out = working.restore()
    assert out.shape == deep.shape and out.dtype == np.uint16
    black = out.reshape(*deep.shape[:2], -1)[ROI[1] + 10 : ROI[3] - 10, ROI[2] - 20 : ROI[2]]
    assert (black[..., :3] == 0).all()
    flat_in, flat_out = (
        deep.reshape(deep.shape[0], deep.shape[1], -1),
        out.reshape(deep.shape[0], deep.shape[1], -1),
    )
    touched = working.touched
    assert touched.sum() == (matte.alpha > 0).sum()
    assert (flat_out[~touched] == flat_in[~touched]).all()
    eight = working.bgr if flat_in.shape[2] >= 3 else cv2.cvtColor(working.bgr, cv2.COLOR_BGR2GRAY)
    eight = eight.reshape(deep.shape[0], deep.shape[1], -1)
    expected = np.rint(eight[touched].astype(np.float64) * working.white / 255.0)
    assert (flat_out[touched][:, :3] == expected).all()
    if layout == "bgra16":
        assert (flat_out[..., 3] == flat_in[..., 3]).all()


def test_16_bit_values_above_the_type_saturate(scene):
    """A white point near the top of the range: replaced values beyond 65535 saturate there
    (they do not wrap around to dark)."""
    deep = scene.astype(np.uint16) * 257  # full 16-bit range: white point near 65535
    deep[:4, :4] = 65535
    working = to_working(deep)
    working.white = 65535.0 * 1.5  # as if the white point lay above the type's maximum
    matte = Matte(ROI, np.ones((ROI[3] - ROI[1], ROI[2] - ROI[0]), np.float32))
    composite(working.bgr, matte, np.full_like(_new_face(scene), 255))
    working.mark(matte)
    out = working.restore()
    assert (out[matte.slices] == 65535).all()


@pytest.mark.parametrize("layout", ["bgr8", "gray8", "gray8 HxWx1", "bgra8"])
def test_8_bit_frames_come_back_in_their_layout(scene, layout):
    frame = {
        "bgr8": scene,
        "gray8": cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY),
        "gray8 HxWx1": cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY)[..., None],
        "bgra8": np.dstack(
            [scene, np.arange(scene.shape[1], dtype=np.uint8)[None].repeat(480, 0)]
        ),
    }[layout]
    working = to_working(frame)
    matte = _ramp_matte()
    composite(working.bgr, matte, _new_face(scene))
    working.mark(matte)
    out = working.restore()
    assert out.shape == frame.shape and out.dtype == np.uint8
    if layout.startswith("gray"):
        expected = cv2.cvtColor(working.bgr, cv2.COLOR_BGR2GRAY).reshape(frame.shape)
    elif layout == "bgra8":
        expected = np.dstack([working.bgr, frame[..., 3]])
    else:
        expected = working.bgr
    assert (out == expected).all()
    changed = np.zeros(frame.shape[:2], bool)
    changed[matte.slices] = matte.alpha > 0
    flat = frame.reshape(*frame.shape[:2], -1)
    assert (out.reshape(flat.shape)[~changed] == flat[~changed]).all()
