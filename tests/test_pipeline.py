"""The anonymization pipeline on real photos: every face changed, nothing else touched."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import celeba_image, hog_box, sample_rows

from ciagan_core.detection import create_detector
from ciagan_core.engines import create_engine
from ciagan_core.errors import ConfigError, InputError
from ciagan_core.faces import FaceResult, box_iou
from ciagan_core.identity import IdentityConfig
from ciagan_core.pipeline import Anonymizer, AnonymizerConfig


def touched_area(faces: list[FaceResult], shape: tuple[int, ...]) -> np.ndarray:
    """Where the pipeline may change pixels: each region grown by twice its feather."""
    area = np.zeros(shape[:2], np.uint8)
    for face in faces:
        region = np.zeros(shape[:2], np.uint8)
        cv2.fillPoly(region, [np.round(face.polygon).astype(np.int32)], 1)
        size = 2 * (2 * face.feather_px + 1) + 1  # + 1 px: sub-pixel vs integer rasterisation
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
        area |= cv2.dilate(region, kernel)
    return area.astype(bool)


def inside(face: FaceResult, shape: tuple[int, ...]) -> np.ndarray:
    region = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(region, [np.round(face.polygon).astype(np.int32)], 1)
    return cv2.erode(region, np.ones((3, 3), np.uint8)).astype(bool)


@pytest.fixture(scope="module")
def detector():
    return create_detector("centerface")


@pytest.fixture(scope="module")
def ciagan(model_file, detector):
    config = AnonymizerConfig(
        method="ciagan", model=str(model_file), identity=IdentityConfig(policy="random", seed=1)
    )
    return Anonymizer(config, detector=detector)


@pytest.mark.parametrize("method", ["blur", "pixelate", "solid", "ciagan"])
def test_every_face_is_changed_inside_its_mask_and_the_background_is_bit_identical(
    method, shared_dir, celeba_rows, model_file, detector
):
    config = AnonymizerConfig(method=method, model=str(model_file) if method == "ciagan" else None)
    anonymizer = Anonymizer(config, detector=detector)
    for row in sample_rows(celeba_rows, 12):
        frame = celeba_image(shared_dir, row)
        result = anonymizer.process(frame)
        boxes = np.stack([f.box.as_array() for f in result.faces])
        assert box_iou(hog_box(row), boxes).max() > 0.3, f"face of {row['file']} not found"
        for face in result.faces:
            changed = np.abs(result.image.astype(int) - frame.astype(int)).max(axis=2)
            assert changed[inside(face, frame.shape)].mean() > 3, (row["file"], face)
        outside = ~touched_area(result.faces, frame.shape)
        np.testing.assert_array_equal(result.image[outside], frame[outside])


def test_faces_with_trusted_landmarks_are_generated_not_fallen_back(
    ciagan, shared_dir, celeba_rows
):
    results = [ciagan.process(celeba_image(shared_dir, r)) for r in sample_rows(celeba_rows, 10)]
    faces = [f for r in results for f in r.faces if f.box.score > 0.8]
    generated = [f for f in faces if f.method == "ciagan" and not f.fallback_reason]
    assert len(generated) >= 0.8 * len(faces)
    assert all(f.identity is not None and f.region == "mask" for f in generated)


def test_a_frame_without_faces_comes_back_unchanged(ciagan, no_face_image):
    result = ciagan.process(no_face_image)
    assert result.faces == []
    np.testing.assert_array_equal(result.image, no_face_image)
    assert result.image is not no_face_image


def test_identity_policy_is_deterministic_under_a_seed(
    model_file, detector, shared_dir, celeba_rows
):
    frames = [celeba_image(shared_dir, r) for r in sample_rows(celeba_rows, 3)]

    def run(seed: int):
        config = AnonymizerConfig(
            method="ciagan",
            model=str(model_file),
            identity=IdentityConfig(policy="random", seed=seed),
        )
        results = Anonymizer(config, detector=detector).process_batch(frames)
        return [f.identity for r in results for f in r.faces], [r.image for r in results]

    ids_a, images_a = run(3)
    ids_b, images_b = run(3)
    ids_c, _ = run(4)
    assert ids_a == ids_b
    for a, b in zip(images_a, images_b, strict=True):
        np.testing.assert_array_equal(a, b)
    assert ids_a != ids_c


def _moving_face(shared_dir, row, background, steps: int) -> list[np.ndarray]:
    face = celeba_image(shared_dir, row)
    canvas = cv2.resize(background, (640, 480))
    frames = []
    for i in range(steps):
        frame = canvas.copy()
        x, y = 40 + 25 * i, 60 + 6 * i
        frame[y : y + face.shape[0], x : x + face.shape[1]] = face
        frames.append(frame)
    return frames


@pytest.mark.parametrize("policy", ["per_track", "random"])
def test_per_track_keeps_the_identity_of_a_moving_face(
    policy, model_file, detector, shared_dir, celeba_rows, no_face_image
):
    frames = _moving_face(shared_dir, sample_rows(celeba_rows, 7)[6], no_face_image, 6)
    config = AnonymizerConfig(
        method="ciagan", model=str(model_file), identity=IdentityConfig(policy=policy, seed=11)
    )
    anonymizer = Anonymizer(config, detector=detector)
    faces = [anonymizer.process(f).faces for f in frames]
    assert all(len(f) == 1 for f in faces)
    assert len({f[0].track_id for f in faces}) == 1
    identities = {f[0].identity for f in faces}
    assert len(identities) == (1 if policy == "per_track" else len(frames))


def test_batched_frames_equal_frames_processed_one_by_one(
    model_file, detector, shared_dir, celeba_rows
):
    frames = [celeba_image(shared_dir, r) for r in sample_rows(celeba_rows, 4)[1:]]
    config = AnonymizerConfig(
        method="ciagan",
        model=str(model_file),
        identity=IdentityConfig(policy="fixed", identity=17),
    )
    batched = Anonymizer(config, detector=detector).process_batch(frames)
    single = Anonymizer(config, detector=detector)
    for frame, result in zip(frames, batched, strict=True):
        expected = single.process(frame).image
        assert np.abs(result.image.astype(int) - expected.astype(int)).max() <= 1


def test_a_tiny_face_gets_the_fallback_on_its_box(ciagan, shared_dir, celeba_rows, no_face_image):
    row = sample_rows(celeba_rows, 9)[8]
    factor = 20 / (hog_box(row)[2] - hog_box(row)[0])  # a 20 px face: eyes 4-5 px apart
    face = cv2.resize(
        celeba_image(shared_dir, row), None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA
    )
    frame = cv2.resize(no_face_image, (320, 240))
    frame[50 : 50 + face.shape[0], 60 : 60 + face.shape[1]] = face
    result = ciagan.process(frame)
    assert result.faces, "the small face should still be detected"
    for found in result.faces:
        assert found.fallback_reason and found.method == "pixelate" and found.region == "box"
        x0, y0, x1, y1 = (round(v) for v in found.box.as_array())
        assert (
            np.abs(result.image[y0:y1, x0:x1].astype(int) - frame[y0:y1, x0:x1].astype(int)).mean()
            > 3
        )


class _BrokenEngine:
    """An engine whose device fails (a real failure mode: CUDA errors, lost TensorRT context)."""

    name = "broken"
    max_batch = 8

    def __init__(self, num_identities: int):
        self.num_identities = num_identities

    def run(self, inputs, identities):
        raise RuntimeError("device lost")


def test_generator_failure_still_anonymizes_every_face(
    model_file, detector, shared_dir, celeba_rows
):
    config = AnonymizerConfig(method="ciagan", model=str(model_file))
    anonymizer = Anonymizer(config, detector=detector, engine=_BrokenEngine(1200))
    frame = celeba_image(shared_dir, celeba_rows[0])
    result = anonymizer.process(frame)
    assert result.faces
    for face in result.faces:
        assert "generator error: device lost" in face.fallback_reason
        assert face.method == "pixelate"
        assert (
            np.abs(result.image.astype(int) - frame.astype(int))[inside(face, frame.shape)].mean()
            > 3
        )


class _BrokenLandmarker:
    name = "broken"

    def landmarks(self, frame, boxes):
        raise RuntimeError("predictor crashed")


def test_landmarker_failure_still_anonymizes_every_face(detector, shared_dir, celeba_rows):
    anonymizer = Anonymizer(
        AnonymizerConfig(method="blur"), detector=detector, landmarker=_BrokenLandmarker()
    )
    frame = celeba_image(shared_dir, celeba_rows[1])
    result = anonymizer.process(frame)
    assert result.faces and all(f.region == "box" for f in result.faces)
    assert all("predictor crashed" in f.fallback_reason for f in result.faces)


class _FlakyDetector:
    """CenterFace that misses every face on chosen frames (as real detectors do on blur)."""

    name = "flaky"

    def __init__(self, inner, blind_frames: set[int]):
        self.inner, self.blind, self.count = inner, blind_frames, 0

    def detect(self, frame):
        self.count += 1
        return [] if self.count in self.blind else self.inner.detect(frame)


def test_a_missed_detection_stays_covered_for_hold_frames(
    detector, shared_dir, celeba_rows, no_face_image
):
    frames = _moving_face(shared_dir, celeba_rows[2], no_face_image, 6)
    flaky = _FlakyDetector(detector, blind_frames={3, 4, 6})
    anonymizer = Anonymizer(AnonymizerConfig(method="blur", hold_frames=2), detector=flaky)
    results = [anonymizer.process(f) for f in frames]
    for i in (2, 3):  # frames 3 and 4: held on the last box
        (held,) = results[i].faces
        assert held.fallback_reason.startswith("held")
        x0, y0, x1, y1 = (int(v) for v in held.box.as_array())
        assert (
            np.abs(
                results[i].image[y0:y1, x0:x1].astype(int) - frames[i][y0:y1, x0:x1].astype(int)
            ).mean()
            > 3
        )
    assert results[5].faces and results[5].faces[0].fallback_reason.startswith("held")
    unheld = Anonymizer(
        AnonymizerConfig(method="blur", hold_frames=0),
        detector=_FlakyDetector(detector, blind_frames={3}),
    )
    assert [len(unheld.process(f).faces) for f in frames[:3]] == [1, 1, 0]


def test_an_identity_outside_the_model_is_refused_at_configuration(model_file, detector):
    config = AnonymizerConfig(
        method="ciagan",
        model=str(model_file),
        identity=IdentityConfig(policy="fixed", identity=4000),
    )
    with pytest.raises(
        ConfigError, match="1200 identities but the identity settings select id 4000"
    ):
        Anonymizer(config, detector=detector)


def test_ciagan_needs_a_model():
    with pytest.raises(ConfigError, match="needs a generator model file"):
        AnonymizerConfig(method="ciagan").validate()


def test_an_engine_refuses_out_of_range_identities(model_file):
    engine = create_engine("torch", model_file)
    with pytest.raises(ConfigError, match=r"identity 1200 is outside the model's range 0\.\.1199"):
        engine.run(np.zeros((1, 6, 128, 128), np.float32), np.array([1200]))


# -- bad input ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blur(detector):
    return Anonymizer(AnonymizerConfig(method="blur"), detector=detector)


@pytest.fixture(scope="module")
def photo(shared_dir, celeba_rows):
    return celeba_image(shared_dir, celeba_rows[3])


def _assert_face_changed(original: np.ndarray, result) -> None:
    assert result.faces
    assert result.image.shape == original.shape and result.image.dtype == original.dtype
    assert np.abs(result.image.astype(int) - original.astype(int)).max() > 0


def test_gray_frames_work_and_stay_gray(blur, photo):
    gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    _assert_face_changed(gray, blur.process(gray))
    _assert_face_changed(gray[..., None], blur.process(gray[..., None]))


def test_bgra_frames_keep_their_alpha(blur, photo):
    bgra = cv2.cvtColor(photo, cv2.COLOR_BGR2BGRA)
    bgra[..., 3] = 77
    result = blur.process(bgra)
    _assert_face_changed(bgra, result)
    assert (result.image[..., 3] == 77).all()


def test_16_bit_frames_work_and_untouched_pixels_are_exact(blur, photo):
    deep = photo.astype(np.uint16) * 257 + 3
    result = blur.process(deep)
    _assert_face_changed(deep, result)
    outside = ~touched_area(result.faces, deep.shape)
    np.testing.assert_array_equal(result.image[outside], deep[outside])


def test_non_contiguous_frames_work(blur, photo):
    strided = np.ascontiguousarray(photo[:, ::-1])[:, ::-1]  # a reversed view
    assert not strided.flags.c_contiguous
    _assert_face_changed(strided, blur.process(strided))
    gray = np.ascontiguousarray(cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)[:, ::-1])[:, ::-1]
    _assert_face_changed(gray, blur.process(gray))


@pytest.mark.parametrize("layout", ["bgr", "gray", "bgra", "uint16"])
def test_the_callers_frame_is_never_modified(blur, photo, layout):
    frame = {
        "bgr": photo,
        "gray": cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY),
        "bgra": cv2.cvtColor(photo, cv2.COLOR_BGR2BGRA),
        "uint16": photo.astype(np.uint16) * 257,
    }[layout].copy()
    before = frame.copy()
    result = blur.process(frame)
    assert result.faces
    np.testing.assert_array_equal(frame, before)


def test_tiny_frames_pass_through_with_no_faces(blur):
    tiny = np.full((3, 5, 3), 200, np.uint8)
    result = blur.process(tiny)
    assert result.faces == [] and np.array_equal(result.image, tiny)


def test_very_large_frames_work(blur, photo):
    large = cv2.resize(photo, None, fx=12, fy=12)  # ~3000-3500 px sides
    _assert_face_changed(large, blur.process(large))


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((0, 10, 3), np.uint8), "empty frame"),
        (np.zeros((10, 10, 5), np.uint8), "unsupported frame shape"),
        (np.zeros((10, 10, 3), np.float32), "unsupported pixel type float32"),
        (np.zeros((4, 4, 4, 3), np.uint8), "unsupported frame shape"),
        ([[1, 2], [3, 4]], "must be a numpy array"),
        (np.zeros((20000, 2, 3), np.uint8), "exceeds"),
    ],
)
def test_bad_frames_raise_a_specific_error(blur, frame, message):
    with pytest.raises(InputError, match=message):
        blur.process(frame)


@pytest.mark.parametrize("view", ["contiguous", "reversed", "gray"])
def test_composite_writes_through_any_frame_view(photo, view):
    """The matte's mix lands in the caller's array, and alpha-0 pixels stay exact, whether
    OpenCV can write into the view directly or the slower numpy path has to."""
    from ciagan_core.blend import composite, region_matte

    target = {
        "contiguous": photo.copy(),
        "reversed": photo.copy()[:, ::-1],
        "gray": cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY),
    }[view]
    original = target.copy()
    polygon = np.array([[60, 50], [150, 40], [170, 140], [70, 150]], float)
    matte = region_matte(polygon, target.shape, 4)
    region_shape = (matte.roi[3] - matte.roi[1], matte.roi[2] - matte.roi[0], *target.shape[2:])
    composite(target, matte, np.full(region_shape, 255, np.uint8))
    alpha = matte.alpha if target.ndim == 2 else matte.alpha[..., None]
    region, before = target[matte.slices].astype(float), original[matte.slices].astype(float)
    expected = alpha * 255 + (1 - alpha) * before
    assert np.abs(region - expected).max() <= 1
    untouched = np.ones(target.shape[:2], bool)
    untouched[matte.slices] = matte.alpha == 0
    np.testing.assert_array_equal(target[untouched], original[untouched])
    inside = matte.alpha == 1
    assert inside.sum() > 5000 and (target[matte.slices][inside] == 255).all()
