"""16-bit frames whose faces straddle two renderings: a face lit from above (800-4000 in 12-bit
data) with its lower half in the dark scene (50-350) is half saturated in the bulk's rendering
and half black in the white point's, and came back bit-identical from the pipeline and from
``ciagan anonymize``. The tone-mapped renderings (a banded one for a sharp light boundary, a
log stretch with local contrast for light that changes gradually) must find it, the write-back
rules must hold, and the common frames must still get one rendering."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import celeba_image, hog_box
from test_pipeline import touched_area
from test_review2_deep_frames import _unchanged, check_cli_anonymizes_16_bit_png

from ciagan_core.detection import create_detector
from ciagan_core.frames import to_working, white_points
from ciagan_core.pipeline import Anonymizer, AnonymizerConfig

#: The faces the review found untouched (rows 0, 15, 20 and 30 of faces.csv; the row number
#: seeds the scene's noise, as in the review).
REVIEWED = {"001085.jpg": 0, "071599.jpg": 15, "108577.jpg": 20, "006155.jpg": 30}


def _scene(shape: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.uniform(0, 1, shape), (9, 9), 3)
    return 50 + 300 * (noise - noise.min()) / np.ptp(noise)


def half_lit_frame(shared_dir, row, seed: int):
    """The photo's face box in a dark 12-bit scene (50-350): its upper half lit (800-4000), its
    lower half as dark as the scene (a lamp from above); the face box as (y, x) slices."""
    gray = cv2.cvtColor(celeba_image(shared_dir, row), cv2.COLOR_BGR2GRAY).astype(np.float64)
    x0, y0, x1, y1 = hog_box(row).astype(int)
    frame = _scene(gray.shape, seed)
    mid = (y0 + y1) // 2
    frame[y0:mid, x0:x1] = 800 + gray[y0:mid, x0:x1] / 255 * 3200
    frame[mid:y1, x0:x1] = 50 + gray[mid:y1, x0:x1] / 255 * 300
    return frame.astype(np.uint16), (slice(y0, y1), slice(x0, x1))


def gradually_lit_frame(shared_dir, row, seed: int):
    """The same, lit from above by a lamp whose light fades across the face: 11x the scene's
    level at its top, 1x at its bottom (a smooth sigmoid, no sharp boundary)."""
    gray = cv2.cvtColor(celeba_image(shared_dir, row), cv2.COLOR_BGR2GRAY).astype(np.float64)
    x0, y0, x1, y1 = hog_box(row).astype(int)
    frame = _scene(gray.shape, seed)
    ys = np.arange(y0, y1)[:, None]
    lit = 1 / (1 + np.exp((ys - (y0 + y1) / 2) / ((y1 - y0) * 0.15)))  # 1 at the top
    frame[y0:y1, x0:x1] = (50 + gray[y0:y1, x0:x1] / 255 * 300) * np.exp(np.log(11) * lit)
    return frame.astype(np.uint16), (slice(y0, y1), slice(x0, x1))


@pytest.fixture(scope="module")
def blur():
    return Anonymizer(AnonymizerConfig(method="blur"), detector=create_detector("centerface"))


@pytest.fixture(scope="module")
def rows(celeba_rows):
    return {row["file"]: row for row in celeba_rows}


def _check_anonymized(blur, frame, region) -> None:
    result = blur.process(frame)
    unchanged = _unchanged(result.image, frame, region)
    assert unchanged < 0.1, f"{unchanged:.0%} of the half-lit face kept its 16-bit input values"
    # The write-back rule holds: outside every replaced region and its feather, bit-identical.
    outside = ~touched_area(result.faces, frame.shape)
    np.testing.assert_array_equal(result.image[outside], frame[outside])


@pytest.mark.parametrize("file", sorted(REVIEWED))
def test_a_face_lit_on_its_upper_half_only_is_anonymized(blur, shared_dir, rows, file):
    frame, region = half_lit_frame(shared_dir, rows[file], REVIEWED[file])
    _check_anonymized(blur, frame, region)


@pytest.mark.parametrize("index", [2, 3, 5])
def test_a_face_in_light_that_fades_across_it_is_anonymized(blur, shared_dir, celeba_rows, index):
    frame, region = gradually_lit_frame(shared_dir, celeba_rows[index], index)
    _check_anonymized(blur, frame, region)


def test_ciagan_anonymize_replaces_a_half_lit_face_in_a_16_bit_png(shared_dir, rows, tmp_path):
    frame, region = half_lit_frame(shared_dir, rows["001085.jpg"], 0)
    check_cli_anonymizes_16_bit_png(frame, region, tmp_path, "half-lit")


def test_a_half_lit_frame_gets_both_tone_mapped_renderings(shared_dir, rows):
    frame, region = half_lit_frame(shared_dir, rows["006155.jpg"], 30)
    work = to_working(frame)
    linear = len(white_points(frame)[1])
    assert len(work.detection_views) == linear + 2
    banded, stretched = work.detection_views[linear:]
    lower = (slice((region[0].start + region[0].stop) // 2, region[0].stop), region[1])
    upper = (slice(region[0].start, lower[0].start), region[1])
    for view in (banded, stretched):  # both halves visible: neither black nor flat white
        for half in (upper, lower):
            assert 40 < view[half].mean() < 230 and view[half].std() > 10


def test_isolated_hot_pixels_and_clipped_regions_add_no_tone_mapped_rendering(
    shared_dir, celeba_rows
):
    """Hot pixels (isolated, at any value) and values clipped at the frame's maximum show no
    face: they must not cost two more detections."""
    gray = cv2.cvtColor(celeba_image(shared_dir, celeba_rows[7]), cv2.COLOR_BGR2GRAY)
    rng = np.random.default_rng(0)
    hot = gray.astype(np.uint16) * 4
    ys, xs = rng.integers(0, hot.shape[0], 400), rng.integers(0, hot.shape[1], 400)
    hot[ys, xs] = rng.integers(9000, 65535, 400)
    assert len(to_working(hot).detection_views) == len(white_points(hot)[1])
    clipped = gray.astype(np.uint16) * 4
    clipped[40:120, 30:150] = 65535  # a lamp clipped at full scale, 1/4 of the frame
    assert len(to_working(clipped).detection_views) == len(white_points(clipped)[1])
