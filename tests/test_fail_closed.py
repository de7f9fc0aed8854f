"""The fail-open paths a review found (issue 9), each reproduced on real images: deep frames,
large frames, cut-off faces, generator outputs of the wrong shape, and what the CLI writes."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, celeba_image, hog_box, sample_rows, write_video
from test_pipeline import touched_area

from ciagan_core.cli import anonymize as anonymize_cli
from ciagan_core.cli import main
from ciagan_core.detection import create_detector
from ciagan_core.faces import box_iou
from ciagan_core.pipeline import Anonymizer, AnonymizerConfig

ASTRONAUT = ROOT / "examples" / "astronaut.png"


@pytest.fixture(scope="module")
def detector():
    return create_detector("centerface")


@pytest.fixture(scope="module")
def blur(detector):
    return Anonymizer(AnonymizerConfig(method="blur"), detector=detector)


@pytest.fixture(scope="module")
def gray_photo(shared_dir, celeba_rows) -> np.ndarray:
    return cv2.cvtColor(celeba_image(shared_dir, celeba_rows[7]), cv2.COLOR_BGR2GRAY)


# -- 1. 10- and 12-bit data in 16-bit frames ---------------------------------------------------


@pytest.mark.parametrize("bits", [10, 12])
def test_deep_gray_frames_are_detected_and_every_replaced_pixel_is_written(blur, gray_photo, bits):
    deep = gray_photo.astype(np.uint16) << (bits - 8)
    result = blur.process(deep)
    assert result.faces, f"no face found in a {bits}-bit frame"
    region = np.zeros(deep.shape, bool)
    for face in result.faces:
        x0, y0, x1, y1 = face.box.as_array().round().astype(int)
        region[y0:y1, x0:x1] = True
    unchanged = (result.image == deep)[region].mean()
    assert unchanged < 0.1, f"{unchanged:.0%} of the face box kept its original 16-bit value"
    outside = ~touched_area(result.faces, deep.shape)
    np.testing.assert_array_equal(result.image[outside], deep[outside])
    assert result.image.max() <= (1 << bits) - 1  # still the same bit depth


def test_a_10_bit_png_is_anonymized_by_the_cli(gray_photo, tmp_path):
    source = tmp_path / "mono10.png"
    assert cv2.imwrite(str(source), gray_photo.astype(np.uint16) * 4)
    out = tmp_path / "out.png"
    assert main(["anonymize", str(source), "-o", str(out), "--no-progress"]) == 0
    written = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert written.dtype == np.uint16 and written.shape == gray_photo.shape
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["faces"] >= 1
    assert (written != gray_photo.astype(np.uint16) * 4).mean() > 0.02


# -- 2. Large frames keep small faces ----------------------------------------------------------


def _face_tile(shared_dir, row, size: int) -> np.ndarray:
    """The photo's face with some context, scaled so the face box is ``size`` px wide."""
    image = celeba_image(shared_dir, row)
    x0, y0, x1, y1 = hog_box(row)
    side = (x1 - x0) * 1.6
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    crop = image[
        max(0, int(cy - side / 2)) : int(cy + side / 2),
        max(0, int(cx - side / 2)) : int(cx + side / 2),
    ]
    factor = size / (x1 - x0)
    return cv2.resize(crop, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)


def _scene(shared_dir, rows, width, height, size, places) -> tuple[np.ndarray, list]:
    """A textured gray frame with a real face pasted at each place (centre x, y)."""
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(90, 160, (height, width, 3), dtype=np.uint8), (9, 9), 3)
    centres = []
    for row, (cx, cy) in zip(rows, places, strict=False):
        tile = _face_tile(shared_dir, row, size)
        h, w = tile.shape[:2]
        x0, y0 = int(cx - w / 2), int(cy - h / 2)
        frame[y0 : y0 + h, x0 : x0 + w] = tile
        centres.append((cx, cy))
    return frame, centres


@pytest.mark.parametrize(
    ("width", "height", "size", "count"),
    [(3840, 2160, 40, 6), (8000, 4000, 100, 6), (10240, 200, 40, 8)],
    ids=["4k-40px", "8000x4000-100px", "strip-10240x200"],
)
def test_small_faces_in_large_frames_are_found(
    blur, shared_dir, celeba_rows, width, height, size, count
):
    rows = sample_rows(celeba_rows, count)
    xs = np.linspace(size * 2, width - size * 2, count)
    ys = (
        np.linspace(size * 1.5, height - size * 1.5, count) if height > 4 * size else [100] * count
    )
    frame, centres = _scene(shared_dir, rows, width, height, size, list(zip(xs, ys, strict=True)))
    result = blur.process(frame)
    for cx, cy in centres:
        hit = [
            f for f in result.faces if f.box.x0 <= cx <= f.box.x1 and f.box.y0 <= cy <= f.box.y1
        ]
        assert hit, f"the {size} px face at ({cx:.0f}, {cy:.0f}) was not found"
        patch = (slice(int(cy) - size // 4, int(cy) + size // 4), slice(int(cx) - 4, int(cx) + 4))
        kept = (result.image[patch] == frame[patch]).all(axis=-1).mean()
        assert kept <= 0.05, f"face found but {kept:.0%} of its centre unchanged"


def test_a_large_face_across_tiles_is_found_in_a_tiled_frame(blur, shared_dir, celeba_rows):
    # 600 px: wider than the tiles' overlap, across the first tile's edge at x = 2048.
    frame, [(cx, _)] = _scene(shared_dir, celeba_rows[3:4], 8000, 4000, 600, [(2048, 1500)])
    result = blur.process(frame)
    assert any(f.box.x0 <= cx <= f.box.x1 and f.box.width > 400 for f in result.faces)


def test_downscaling_never_drops_below_what_min_face_promises(shared_dir, celeba_rows):
    from ciagan_core.detection.base import DetectorSettings

    rows = sample_rows(celeba_rows, 6)
    places = [(400 + 600 * i, 1000) for i in range(6)]
    frame, centres = _scene(shared_dir, rows, 3840, 2160, 40, places)
    settings = DetectorSettings(max_input_side=1280, min_face_size=8.0)
    boxes = create_detector("centerface", settings).detect(frame)
    found = sum(
        any(b.x0 <= cx <= b.x1 and b.y0 <= cy <= b.y1 for b in boxes) for cx, cy in centres
    )
    assert found == 6


# -- 3. Faces cut off at the top of the frame -------------------------------------------------


def _eye_patches(keypoints: np.ndarray, eye_distance: float) -> list[tuple[slice, slice]]:
    r = max(2, int(0.2 * eye_distance))
    return [
        (slice(max(0, int(y) - r), int(y) + r + 1), slice(max(0, int(x) - r), int(x) + r + 1))
        for x, y in keypoints[:2]
    ]


def _eyes_unchanged(before, after, keypoints) -> float:
    """The largest share of unchanged pixels in either eye's patch."""
    distance = float(np.linalg.norm(keypoints[1] - keypoints[0]))
    shares = []
    for patch in _eye_patches(keypoints, distance):
        a, b = before[patch].astype(int), after[patch].astype(int)
        if a.size:
            shares.append(float((np.abs(a - b).max(axis=-1) <= 2).mean()))
    return max(shares)


@pytest.mark.parametrize("method", ["blur-mask", "ciagan"])
def test_the_eyes_of_a_face_cut_off_at_the_top_are_covered(detector, model_file, method):
    photo = cv2.imread(str(ASTRONAUT))
    [full] = [b for b in detector.detect(photo) if b.width > 50]
    cut = np.ascontiguousarray(photo[86:])
    eyes = full.keypoints - (0, 86)
    assert (eyes[:2, 1] > 0).all()  # the eyes are in the cut frame
    config = (
        AnonymizerConfig(method="blur", region="mask")
        if method == "blur-mask"
        else AnonymizerConfig(method="ciagan", model=str(model_file))
    )
    result = Anonymizer(config, detector=detector).process(cut)
    assert _eyes_unchanged(cut, result.image, eyes) < 0.2


def test_cut_off_celeba_faces_keep_no_eye_unchanged(detector, shared_dir, celeba_rows):
    anonymizer = Anonymizer(AnonymizerConfig(method="blur", region="mask"), detector=detector)
    checked = 0
    for row in sample_rows(celeba_rows, 60):
        image = celeba_image(shared_dir, row)
        boxes = [b for b in detector.detect(image) if box_iou(hog_box(row), b.as_array()) > 0.3]
        if not boxes:
            continue
        top = int(row["box_y0"]) + (int(row["box_y1"]) - int(row["box_y0"])) // 4
        eyes = boxes[0].keypoints - (0, top)
        if (eyes[:2, 1] < 2).any():
            continue  # the eyes themselves are cut off
        cut = np.ascontiguousarray(image[top:])
        result = anonymizer.process(cut)
        assert _eyes_unchanged(cut, result.image, eyes) < 0.3, row["file"]
        checked += 1
    assert checked >= 25


def test_whole_faces_away_from_the_edges_keep_the_landmark_region(
    detector, shared_dir, celeba_rows
):
    anonymizer = Anonymizer(AnonymizerConfig(method="blur", region="mask"), detector=detector)
    faces = []
    for row in sample_rows(celeba_rows, 40):
        image = celeba_image(shared_dir, row)
        height, width = image.shape[:2]
        for face in anonymizer.process(image).faces:
            x0, y0, x1, y1 = face.box.as_array()
            mx, my = 0.2 * (x1 - x0), 0.2 * (y1 - y0)
            if x0 >= mx and y0 >= my and x1 <= width - mx and y1 <= height - my:
                faces.append(face)  # not near an edge: no reason to suspect a cut-off face
    assert len(faces) >= 30
    cut_off = [f for f in faces if "cut off" in f.fallback_reason]
    assert len(cut_off) <= 0.05 * len(faces)


# -- 6. A generator output of the wrong shape -------------------------------------------------


class _WrongShapeEngine:
    """A real engine whose output is cut short or shrunk (a mis-built engine, a bad export)."""

    def __init__(self, inner, damage):
        self.inner, self.damage = inner, damage
        self.name, self.max_batch = inner.name, inner.max_batch
        self.num_identities = inner.num_identities

    def run(self, inputs, identities):
        return self.damage(self.inner.run(inputs, identities))


@pytest.mark.parametrize(
    "damage",
    [
        lambda out: out[:-1],
        lambda out: out[:, :, ::2, ::2],
        lambda out: out.astype(np.int32),
        lambda out: np.where(np.arange(out.shape[-1]) % 7 == 0, np.nan, out).astype(out.dtype),
        lambda out: out * np.inf,
    ],
    ids=["one-face-short", "64px", "integers", "some-nan", "infinite"],
)
def test_a_generator_output_of_the_wrong_shape_falls_back(
    model_file, detector, shared_dir, celeba_rows, damage
):
    from ciagan_core.engines import create_engine

    config = AnonymizerConfig(method="ciagan", model=str(model_file))
    engine = _WrongShapeEngine(create_engine("onnxruntime", str(model_file)), damage)
    anonymizer = Anonymizer(config, detector=detector, engine=engine)
    frames = [celeba_image(shared_dir, row) for row in sample_rows(celeba_rows, 3)]
    for frame, result in zip(frames, anonymizer.process_batch(frames), strict=True):
        assert result.faces
        for face in result.faces:
            assert face.method == "pixelate"
            assert face.fallback_reason
            x0, y0, x1, y1 = (int(v) for v in np.rint(face.box.scaled(0.5).as_array()))
            centre = (slice(max(y0, 0), y1), slice(max(x0, 0), x1))
            kept = (result.image[centre] == frame[centre]).all(axis=-1).mean()
            assert kept <= 0.05, f"{kept:.0%} of the face's centre unchanged"


# -- 4, 5, 7. What the CLI writes --------------------------------------------------------------


def _copy_photo(shared_dir, row, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(
        (shared_dir / "data" / "celeba_faces" / "images" / row["file"]).read_bytes()
    )
    return target


def test_same_named_files_keep_their_folders_instead_of_overwriting(
    shared_dir, celeba_rows, tmp_path
):
    a = _copy_photo(shared_dir, celeba_rows[0], tmp_path / "in" / "a" / "face.jpg")
    b = _copy_photo(shared_dir, celeba_rows[40], tmp_path / "in" / "b" / "face.jpg")
    out = tmp_path / "out"
    assert main(["anonymize", str(a), str(b), "-o", str(out), "--no-progress"]) == 0
    assert (out / "a" / "face.jpg").is_file() and (out / "b" / "face.jpg").is_file()
    assert (out / "a" / "face.jpg").read_bytes() != (out / "b" / "face.jpg").read_bytes()


def test_two_videos_that_map_to_one_output_are_refused_before_writing(
    shared_dir, celeba_rows, tmp_path, capsys
):
    folder = tmp_path / "in"
    folder.mkdir()
    write_video(shared_dir, celeba_rows, folder / "clip.mkv", fourcc="MJPG")
    write_video(shared_dir, celeba_rows, folder / "clip.mp4", fourcc="mp4v")
    out = tmp_path / "out"
    assert main(["anonymize", str(folder), "-o", str(out), "--no-progress"]) == 1
    assert "would both be written to" in capsys.readouterr().err
    assert not out.exists()


def test_an_output_folder_equal_to_the_input_folder_touches_no_original(
    shared_dir, celeba_rows, tmp_path, capsys
):
    folder = tmp_path / "in"
    folder.mkdir()
    write_video(shared_dir, celeba_rows, folder / "clip.mkv")
    write_video(shared_dir, celeba_rows, folder / "clip.mp4", fourcc="mp4v")
    _copy_photo(shared_dir, celeba_rows[0], folder / "face.jpg")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert main(["anonymize", str(folder), "-o", str(folder), "--no-progress"]) == 1
    assert "error" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_an_interrupted_video_leaves_no_output_and_an_interrupted_summary(
    shared_dir, celeba_rows, tmp_path, monkeypatch
):
    source = write_video(shared_dir, celeba_rows, tmp_path / "clip.avi", frames=40)
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text('{"files": 99}')  # from an earlier run
    calls = {"n": 0}
    real = Anonymizer.process_batch

    def interrupted(self, frames):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, frames)

    monkeypatch.setattr(Anonymizer, "process_batch", interrupted)
    assert main(["anonymize", str(source), "-o", str(out), "--no-progress"]) == 130
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]  # no partial video
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["files"] == 0 and summary["frames"] == 8


def test_a_video_goes_on_after_a_corrupt_region(shared_dir, celeba_rows, tmp_path):
    source = write_video(shared_dir, celeba_rows, tmp_path / "clip.avi", frames=300)
    data = bytearray(source.read_bytes())
    start, end = int(len(data) * 0.45), int(len(data) * 0.55)
    data[start:end] = np.random.default_rng(0).integers(0, 256, end - start, np.uint8).tobytes()
    source.write_bytes(bytes(data))
    out = tmp_path / "out"
    main(["anonymize", str(source), "-o", str(out), "--no-progress"])
    summary = json.loads((out / "summary.json").read_text())
    unreadable = summary["unreadable_frames"].get(str(source), [])
    assert summary["frames"] + len(unreadable) == 300
    assert summary["frames"] >= 250  # decoding goes on after the damaged frames
    written = cv2.VideoCapture(str(out / "clip.avi"))
    assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == summary["frames"]
    written.release()


def test_video_summary_reports_the_hold_frames_used(shared_dir, celeba_rows, tmp_path):
    source = write_video(shared_dir, celeba_rows, tmp_path / "clip.avi", frames=6)
    out = tmp_path / "out"
    args = ["anonymize", str(source), "-o", str(out), "--hold-frames", "5", "--no-progress"]
    assert main(args) == 0
    assert json.loads((out / "summary.json").read_text())["config"]["hold_frames"] == 5


def test_symlinked_folders_and_jfif_files_are_processed_and_others_listed(
    shared_dir, celeba_rows, tmp_path
):
    real = tmp_path / "elsewhere"
    _copy_photo(shared_dir, celeba_rows[0], real / "face.jfif")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "linked").symlink_to(real, target_is_directory=True)
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert main(["anonymize", str(folder), "-o", str(out), "--no-progress"]) == 0
    assert (out / "linked" / "face.jfif").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"] == 1 and summary["skipped"] == [str(folder / "notes.txt")]


def test_nothing_to_process_is_an_error(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")
    assert main(["anonymize", str(folder), "-o", str(tmp_path / "out"), "--no-progress"]) == 1
    assert "nothing to anonymize" in capsys.readouterr().err


def test_an_output_folder_that_cannot_be_created_is_a_one_line_error(
    shared_dir, celeba_rows, tmp_path, capsys
):
    photo = _copy_photo(shared_dir, celeba_rows[0], tmp_path / "face.jpg")
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    assert main(["anonymize", str(photo), "-o", str(blocker / "out"), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot create the output folder" in err[0]


def test_planning_keeps_a_single_folder_layout(tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    files = [folder / "a.jpg", folder / "sub" / "b.png", folder / "c.mov"]
    for f in files:
        f.write_bytes(b"x")
    jobs = anonymize_cli.plan_jobs(files, [folder], tmp_path / "out", single_file=False)
    assert [j.target.relative_to(tmp_path / "out").as_posix() for j in jobs] == [
        "a.jpg",
        "sub/b.png",
        "c.mp4",
    ]


def test_frames_after_a_few_damaged_ones_are_all_kept(shared_dir, celeba_rows, tmp_path, capsys):
    source = write_video(shared_dir, celeba_rows, tmp_path / "clip.avi", frames=30)
    data = bytearray(source.read_bytes())
    starts = [i for i in range(len(data) - 3) if data[i : i + 3] == b"\xff\xd8\xff"]
    for k in (5, 6, 20):  # wipe three frames' JPEG data, leave the container intact
        end = starts[k + 1] - 16
        data[starts[k] : end] = bytes(end - starts[k])
    source.write_bytes(bytes(data))
    out = tmp_path / "out"
    main(["anonymize", str(source), "-o", str(out), "--no-progress"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["unreadable_frames"][str(source)] == [5, 6, 20]
    assert summary["frames"] == 27
    error = capsys.readouterr().err
    assert (
        f"ciagan anonymize: {source}: 3 unreadable frames skipped (listed in the summary)\n"
        in error
    )


def test_a_16_bit_frame_with_a_full_scale_banner_still_has_its_face_found(blur, gray_photo):
    """A burned-in timestamp at 65535 over 10-bit data: the white point goes up, the face dark."""
    deep = gray_photo.astype(np.uint16) * 4
    deep[:12] = 65535
    result = blur.process(deep)
    assert result.faces
    x0, y0, x1, y1 = result.faces[0].box.as_array().round().astype(int)
    assert (result.image[y0:y1, x0:x1] != deep[y0:y1, x0:x1]).mean() > 0.5


@pytest.mark.parametrize(
    "option",
    [
        ["--threshold", "50"],
        ["--threshold", "nan"],
        ["--min-face", "nan"],
        ["--min-face", "5000"],
        ["--min-face", "30"],  # untouched 24 px faces are identifiable
        ["--threshold", "0.9"],  # CenterFace misses faces above 0.7
        ["--detector", "ensemble", "--threshold", "0.5"],  # would be ignored
        ["--batch", "0"],
        ["--hold-frames", "-1"],
    ],
)
def test_settings_that_would_let_faces_through_are_refused(tmp_path, option, capsys):
    source = ROOT / "examples" / "astronaut.png"
    out = tmp_path / "out.png"
    assert main(["anonymize", str(source), "-o", str(out), *option, "--no-progress"]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1 and not out.exists()


def test_the_summary_is_never_written_into_an_input_folder(shared_dir, celeba_rows, tmp_path):
    photo = _copy_photo(shared_dir, celeba_rows[0], tmp_path / "in" / "face.jpg")
    notes = tmp_path / "in" / "notes.txt"
    notes.write_text("mine")
    args = ["anonymize", str(photo.parent), "-o", str(tmp_path / "out"), "--summary", str(notes)]
    assert main([*args, "--no-progress"]) == 1
    assert notes.read_text() == "mine" and not (tmp_path / "out").exists()


def test_an_output_inside_the_input_folder_is_refused(shared_dir, celeba_rows, tmp_path):
    photo = _copy_photo(shared_dir, celeba_rows[0], tmp_path / "in" / "face.jpg")
    out = photo.parent / "anonymized"
    assert main(["anonymize", str(photo.parent), "-o", str(out), "--no-progress"]) == 1
    assert not out.exists()


def test_an_output_name_ending_in_a_slash_is_a_folder(shared_dir, celeba_rows, tmp_path):
    photo = _copy_photo(shared_dir, celeba_rows[0], tmp_path / "face.jpg")
    out = tmp_path / "results.v2"
    assert main(["anonymize", str(photo), "-o", f"{out}/", "--no-progress"]) == 0
    assert (out / "face.jpg").is_file() and (out / "summary.json").is_file()


def test_a_video_cannot_be_written_under_an_image_name(shared_dir, celeba_rows, tmp_path, capsys):
    source = write_video(shared_dir, celeba_rows, tmp_path / "clip.avi", frames=3)
    assert main(["anonymize", str(source), "-o", str(tmp_path / "v.png"), "--no-progress"]) == 1
    assert "cannot write a video as .png" in capsys.readouterr().err


def test_a_fifo_in_an_input_folder_is_skipped_not_opened(shared_dir, celeba_rows, tmp_path):
    import os

    _copy_photo(shared_dir, celeba_rows[0], tmp_path / "in" / "face.jpg")
    os.mkfifo(tmp_path / "in" / "cam.jpg")
    out = tmp_path / "out"
    assert main(["anonymize", str(tmp_path / "in"), "-o", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"] == 1 and "not a regular file" in summary["skipped"][0]


@pytest.fixture(scope="module")
def mask_blur() -> Anonymizer:
    """Blur on the landmark mask: the region that untrustworthy landmarks must not shape."""
    return Anonymizer(AnonymizerConfig(region="mask"))


@pytest.mark.parametrize(
    ("photo", "reason"),
    [
        ("008450.jpg", "strong profile"),
        ("007778.jpg", "strong profile"),
        ("027530.jpg", "strong profile"),
        ("073127.jpg", "landmarks disagree with the detector's keypoints"),
        ("111362.jpg", "landmarks disagree with the detector's keypoints"),
        ("015339.jpg", "landmarks disagree with the detector's keypoints"),
    ],
)
def test_untrustworthy_landmarks_send_the_face_to_the_fallback_on_its_box(
    shared_dir, mask_blur, photo, reason
):
    """Real CelebA photos: a strong profile, and landmarks that disagree with CenterFace's
    five keypoints, are not trusted to shape the replaced region: the face is pixelated on
    its grown box instead, and its centre is covered."""
    frame = cv2.imread(str(shared_dir / "data" / "celeba_faces" / "images" / photo))
    result = mask_blur.process(frame)
    flagged = [f for f in result.faces if f.fallback_reason == reason]
    assert flagged, [f.fallback_reason for f in result.faces]
    for face in flagged:
        assert (face.method, face.region) == ("pixelate", "box")
        x0, y0, x1, y1 = (int(v) for v in np.rint(face.box.scaled(0.5).as_array()))
        centre = (slice(max(y0, 0), y1), slice(max(x0, 0), x1))
        assert (result.image[centre] == frame[centre]).all(axis=-1).mean() <= 0.05


def test_a_generated_face_replaces_every_pixel_of_its_region_in_a_16_bit_frame(
    model_file, detector, shared_dir, celeba_rows
):
    """Method ciagan on 12-bit data: the replaced region is written back at 16 bits, so no
    original value survives inside the face."""
    config = AnonymizerConfig(method="ciagan", model=str(model_file))
    anonymizer = Anonymizer(config, detector=detector)
    generated = 0
    for row in sample_rows(celeba_rows, 4):
        photo = celeba_image(shared_dir, row)
        deep = photo.astype(np.uint16) * 16 + 5  # 12-bit data
        result = anonymizer.process(deep)
        assert result.image.dtype == np.uint16 and result.faces
        for face in result.faces:
            generated += face.method == "ciagan"
            x0, y0, x1, y1 = (int(v) for v in np.rint(face.box.scaled(0.5).as_array()))
            centre = (slice(max(y0, 0), y1), slice(max(x0, 0), x1))
            kept = (result.image[centre] == deep[centre]).all(axis=-1).mean()
            assert kept <= 0.05, f"{kept:.0%} of the face kept its 16-bit input values"
    assert generated >= 2  # most faces generated, not the fallback


def test_each_cut_off_rule_holds_on_its_own(astronaut_face):
    """The three rules against a cut-off face, each tested alone (a face can trip one and not
    the others): the box near the frame's edge; the eyes (keypoints) outside the landmark
    region; without keypoints, the brows too low in the box."""
    from ciagan_core.alignment import landmark_problem

    photo, face, landmarks = astronaut_face
    box, keypoints = face.as_array(), face.keypoints
    height, width = photo.shape[:2]
    assert landmark_problem(landmarks, box, keypoints, frame_size=(width, height)) == ""
    # 1. The frame ends just above the box: only the edge rule can tell.
    near = (width, height)
    shifted = box - (0, box[1] - 3, 0, box[1] - 3)  # the box 3 px below the frame's top
    moved = landmarks - (0, box[1] - 3)
    eyes = keypoints - (0, box[1] - 3)
    assert landmark_problem(moved, shifted, eyes, frame_size=near) == (
        "face cut off by the frame edge"
    )
    assert landmark_problem(moved, shifted, eyes) == ""  # the same face, frame size unknown
    # 2. Landmarks placed too low (as on a face cut at the top) while the keypoints are right.
    eye_distance = np.linalg.norm(keypoints[1] - keypoints[0])
    low = landmarks + np.array([0.0, 0.35 * eye_distance])  # keypoints agree, eyes out
    assert "eyes outside the landmark region" in landmark_problem(low, box, keypoints)
    # 3. No keypoints (dlib's detector): the brows must lie in the box's upper part.
    assert landmark_problem(landmarks, box, None) == ""
    deep = landmarks + np.array([0.0, 0.25 * (box[3] - box[1])])
    assert "eyes outside the landmark region" in landmark_problem(deep, box, None)


def test_a_face_region_must_lie_within_the_generators_crop_to_its_tolerance():
    """The generator replaces only its 128 px crop: a landmark region reaching past it (more
    than 2% of the crop's size) would keep raw pixels there, so the face goes to the
    fallback. Points on the tolerance's edge are inside; a hair beyond it, on any side, not."""
    from ciagan_core.pipeline import _inside

    crop = (10.0, 20.0, 110.0, 220.0)  # tolerance: 2 px across, 4 px down
    edge = np.array([[8.0, 16.0], [112.0, 224.0], [60.0, 120.0]])
    assert _inside(edge, crop)
    for outside in ([7.99, 120.0], [112.01, 120.0], [60.0, 15.99], [60.0, 224.01]):
        assert not _inside(np.array([[60.0, 120.0], outside]), crop), outside
