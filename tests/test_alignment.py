"""Alignment reproduces CIAGAN's preprocessing (REFERENCE §3) and its inverse is exact."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from ciagan_core.alignment import (
    CROP_HEIGHT,
    CROP_WIDTH,
    align_face,
    crop_window,
    extract_window,
    network_mask,
    render_landmark_image,
    render_mask_image,
    to_network,
)
from ciagan_core.blend import warp_to_frame
from ciagan_core.detection import create_detector
from ciagan_core.landmarks import create_landmarker


@pytest.fixture(scope="module")
def sample_landmarks(shared_dir: Path) -> list[tuple[Path, np.ndarray]]:
    """dlib landmarks detected on every ciagan_sample/clr crop (as the authors made them)."""
    detector, landmarker = create_detector("dlib"), create_landmarker("dlib")
    found = []
    for path in sorted((shared_dir / "data" / "ciagan_sample" / "clr").glob("*/*.jpg")):
        image = cv2.imread(str(path))
        boxes = detector.detect(image)
        assert boxes, f"no face in {path}"
        found.append((path, landmarker.landmarks(image, boxes[:1])[0]))
    return found


def _published(path: Path, kind: str, mode: str) -> np.ndarray:
    return np.asarray(Image.open(str(path).replace("/clr/", f"/{kind}/")).convert(mode))


def test_rendered_masks_match_the_published_masks(sample_landmarks):
    ious = []
    for path, points in sample_landmarks:
        ours = render_mask_image(points) < 128
        theirs = _published(path, "msk", "L") < 128
        ious.append((ours & theirs).sum() / (ours | theirs).sum())
    assert len(ious) == 150
    assert np.mean(ious) >= 0.90


def test_landmark_drawings_overlap_the_published_drawings(sample_landmarks):
    near = np.ones((5, 5), np.uint8)  # within 2 px: JPEG and re-detection jitter
    precision, recall = [], []
    for path, points in sample_landmarks:
        drawing = render_landmark_image(points)
        ours = (drawing[..., 2] == 255) & (drawing[..., 0] == 0)
        ref = _published(path, "lndm", "RGB").astype(int)
        theirs = ref[..., 2] - ref[..., 0] > 80
        precision.append(
            (ours & cv2.dilate(theirs.astype(np.uint8), near).astype(bool)).sum() / ours.sum()
        )
        recall.append(
            (theirs & cv2.dilate(ours.astype(np.uint8), near).astype(bool)).sum() / theirs.sum()
        )
    assert np.mean(precision) >= 0.9
    assert np.mean(recall) >= 0.9


def test_landmark_drawing_is_sparse_blue_on_white():
    points = np.stack([np.linspace(20, 160, 68), np.linspace(30, 200, 68)], 1)
    drawing = render_landmark_image(points)
    assert drawing.shape == (CROP_HEIGHT, CROP_WIDTH, 3)
    colours = {tuple(c) for c in drawing.reshape(-1, 3)}
    assert colours == {(255, 255, 255), (0, 0, 255)}


def test_network_resize_chain_reproduces_the_fixture_inputs(shared_dir, parity_fixture):
    meta = json.loads((shared_dir / "fixtures" / "official_generator_parity.json").read_text())
    root = shared_dir / "data" / "ciagan_sample"
    for i, sample in enumerate(meta["samples"]):
        face = np.asarray(Image.open(root / "clr" / sample).convert("RGB"))
        lndm = np.asarray(Image.open(root / "lndm" / sample).convert("RGB"))
        msk = np.asarray(Image.open(root / "msk" / sample).convert("L"))
        np.testing.assert_array_equal(
            to_network(face).transpose(2, 0, 1), parity_fixture["face"][i]
        )
        np.testing.assert_array_equal(
            to_network(lndm).transpose(2, 0, 1), parity_fixture["landmark_image"][i]
        )
        np.testing.assert_array_equal(network_mask(msk), parity_fixture["mask"][i])


def test_crop_window_follows_the_inner_eye_corners():
    points = np.zeros((68, 2))
    points[39], points[42] = (100, 120), (131, 124)  # d = 31
    window = crop_window(points)
    assert (window.cx, window.cy) == (115, 122)
    assert window.half_height == 155 and window.half_width == int(155 / 218 * 178)


def test_crop_window_rejects_degenerate_eyes():
    points = np.zeros((68, 2))
    points[39], points[42] = (100, 100), (99, 100)
    assert crop_window(points) is None


def test_extract_window_replicates_edges_like_padding():
    frame = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    padded = np.pad(frame, ((30, 30), (30, 30), (0, 0)), mode="edge")
    for x0, y0, w, h in [(-10, -5, 30, 20), (40, 30, 25, 25), (-20, -20, 90, 80), (60, 50, 5, 5)]:
        expected = padded[y0 + 30 : y0 + 30 + h, x0 + 30 : x0 + 30 + w]
        np.testing.assert_array_equal(extract_window(frame, x0, y0, w, h), expected)


def _map_back_error(frame: np.ndarray, aligned, shift: tuple[float, float]) -> float:
    rgb = (aligned.face.transpose(1, 2, 0) * 255).astype(np.float32)
    x0, y0, x1, y1 = (int(v) for v in aligned.window.net_coverage())
    roi = (
        max(x0 + 2, 0),
        max(y0 + 2, 0),
        min(x1 - 2, frame.shape[1]),
        min(y1 - 2, frame.shape[0]),
    )
    affine = aligned.window.net_to_frame()
    affine[:, 2] += shift
    back = warp_to_frame(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), affine, roi)
    return float(np.abs(back - frame[roi[1] : roi[3], roi[0] : roi[2]].astype(np.float32)).mean())


def test_network_pixels_map_back_onto_the_same_frame_pixels(shared_dir, celeba_rows):
    from conftest import celeba_image, sample_rows

    detector, landmarker = create_detector("centerface"), create_landmarker("dlib")
    shifts = [(0.0, 0.0), (0.5, 0.0), (-0.5, 0.0), (0.0, 0.5), (0.0, -0.5)]
    errors = []
    for row in sample_rows(celeba_rows, 8):
        frame = celeba_image(shared_dir, row)
        box = max(detector.detect(frame), key=lambda b: b.width)
        aligned = align_face(frame, landmarker.landmarks(frame, [box])[0])
        errors.append([_map_back_error(frame, aligned, s) for s in shifts])
    mean = np.mean(errors, axis=0)
    # Only resampling blur remains (about 2.6 grey levels); the exact map beats any half-pixel
    # shift of it, so both resizes' pixel-centre conventions are accounted for.
    assert mean[0] < 4.0
    assert (mean[0] < mean[1:]).all(), mean


def test_dlib_landmarks_on_bgr_frames_equal_those_on_rgb(shared_dir, celeba_rows):
    """The landmarker skips the colour conversion: dlib averages the channels either way."""
    import dlib

    from ciagan_core.landmarks.dlib68 import calibrated_box, default_predictor_path

    predictor = dlib.shape_predictor(str(default_predictor_path()))
    landmarker = create_landmarker("dlib")
    detector = create_detector("centerface")
    for row in celeba_rows[::500]:
        frame = cv2.imread(str(shared_dir / "data" / "celeba_faces" / "images" / row["file"]))
        boxes = detector.detect(frame)
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        for box, points in zip(boxes, landmarker.landmarks(frame, boxes), strict=True):
            shape = predictor(rgb, dlib.rectangle(*calibrated_box(box)))
            expected = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
            assert np.array_equal(points, expected)
