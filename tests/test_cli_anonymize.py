"""``ciagan anonymize`` on real files: images, folders, videos, corrupt input, summary JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import celeba_image, hog_box, sample_rows, write_video

from ciagan_core.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def photos(tmp_path, shared_dir, celeba_rows) -> Path:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for i, row in enumerate(sample_rows(celeba_rows, 3)):
        target = folder / ("sub" if i == 2 else "") / row["file"]
        shutil.copy(shared_dir / "data" / "celeba_faces" / "images" / row["file"], target)
    return folder


#: Re-encoding a JPEG moves pixels by a few levels: within this, a pixel is "still the input".
JPEG_TOLERANCE = 8


def _changed(a: Path, b: Path) -> bool:
    """Whether every face of ``a`` (found by the detector in the input) is anonymized in
    ``b``: at most 30% of its box still equal to the input within JPEG noise. (A JPEG written
    back unanonymized keeps about 95% of its pixels within that tolerance, which "any pixel
    differs" would have passed.)"""
    from ciagan_core.detection import create_detector

    before, after = cv2.imread(str(a)), cv2.imread(str(b))
    faces = create_detector("centerface").detect(before)
    assert faces, f"{a.name}: no face to check"
    for face in faces:
        x0, y0, x1, y1 = (int(v) for v in np.rint(face.as_array()))
        x0, y0 = max(x0, 0), max(y0, 0)
        same = np.abs(before[y0:y1, x0:x1].astype(int) - after[y0:y1, x0:x1].astype(int))
        if (same <= JPEG_TOLERANCE).all(axis=2).mean() > 0.3:
            return False
    return True


def test_a_folder_is_anonymized_with_its_layout_and_a_summary(photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["anonymize", str(photos), "-o", str(out), "--no-progress"]) == 0
    inputs = sorted(p.relative_to(photos) for p in photos.rglob("*.jpg"))
    outputs = sorted(p.relative_to(out) for p in out.rglob("*.jpg"))
    assert inputs == outputs
    for rel in inputs:
        assert _changed(photos / rel, out / rel)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"] == 3 and summary["frames"] == 3 and summary["faces"] >= 3
    assert summary["failed"] == []
    assert set(summary["stage_ms_per_frame"]) == {
        "detect",
        "landmarks",
        "align",
        "generate",
        "blend",
    }
    assert summary["config"]["method"] == "blur"
    assert summary["config"]["region"] == "box" and summary["detector_precision"] == "int8"
    assert summary["stage_ms_total"]["landmarks"] < 1.0  # the box region needs no landmarks


def test_region_and_detector_precision_options(photos, tmp_path):
    out = tmp_path / "out"
    args = ["--region", "mask", "--detector-precision", "fp32", "--no-progress"]
    assert main(["anonymize", str(photos), "-o", str(out), *args]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["region"] == "mask" and summary["detector_precision"] == "fp32"
    assert summary["stage_ms_total"]["landmarks"] > 0
    for rel in sorted(p.relative_to(photos) for p in photos.rglob("*.jpg")):
        assert _changed(photos / rel, out / rel)


def test_corrupt_and_missing_files_are_reported_and_skipped(photos, tmp_path, capsys):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    out = tmp_path / "out"
    code = main(
        ["anonymize", str(photos), str(tmp_path / "absent.png"), "-o", str(out), "--no-progress"]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "broken.jpg" in err and "cannot decode image" in err
    summary = json.loads((out / "summary.json").read_text())
    failed = {Path(f["path"]).name: f["error"] for f in summary["failed"]}
    assert set(failed) == {"broken.jpg", "absent.png"}
    assert summary["files"] == 3  # the good files were still processed
    assert not (out / "broken.jpg").exists()


def test_a_single_file_can_be_written_to_a_file(photos, tmp_path):
    source = next(photos.glob("*.jpg"))
    target = tmp_path / "result.png"
    assert (
        main(
            ["anonymize", str(source), "-o", str(target), "--no-progress", "--method", "pixelate"]
        )
        == 0
    )
    assert _changed(source, target)
    assert json.loads(target.with_suffix(".summary.json").read_text())["frames"] == 1


def test_a_video_is_anonymized_frame_by_frame(
    tmp_path, shared_dir, celeba_rows, model_file, no_face_image
):
    face = celeba_image(shared_dir, celeba_rows[10])
    video = tmp_path / "walk.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (480, 360))
    frames = []
    for i in range(8):
        frame = cv2.resize(no_face_image, (480, 360))
        frame[40 : 40 + face.shape[0], 20 + 15 * i : 20 + 15 * i + face.shape[1]] = face
        frames.append(frame)
        writer.write(frame)
    writer.release()
    out = tmp_path / "out"
    code = main(
        [
            "anonymize",
            str(video),
            "-o",
            str(out),
            "--no-progress",
            "--method",
            "ciagan",
            "--model",
            str(model_file),
            "--identity",
            "per_track",
            "--batch",
            "3",
        ]
    )
    assert code == 0
    capture = cv2.VideoCapture(str(out / "walk.avi"))
    written = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        written.append(frame)
    assert len(written) == len(frames)
    x0, y0, x1, y1 = (int(v) for v in hog_box(celeba_rows[10]))  # the face in the photo
    for i, (before, after) in enumerate(zip(frames, written, strict=True)):
        box = (slice(40 + y0, 40 + y1), slice(20 + 15 * i + x0, 20 + 15 * i + x1))
        kept = (np.abs(before[box].astype(int) - after[box].astype(int)) <= 12).all(axis=2)
        assert kept.mean() < 0.5, f"frame {i}: {kept.mean():.0%} of the face is the input's"
        rest = np.zeros(before.shape[:2], bool)
        rest[:, 20 + 15 * 7 + face.shape[1] + 40 :] = True  # right of the photo's path
        assert np.abs(before.astype(int) - after.astype(int))[rest].mean() < 8  # codec noise
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 8 and summary["faces"] >= 8
    assert summary["stage_ms_total"]["generate"] > 0


def test_ciagan_without_a_model_is_a_one_line_error(photos, tmp_path, capsys):
    code = main(["anonymize", str(photos), "-o", str(tmp_path / "o"), "--method", "ciagan"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "needs a generator model file (--model)" in err[0]


def test_an_out_of_range_identity_is_a_one_line_error(photos, tmp_path, capsys, model_file):
    code = main(
        [
            "anonymize",
            str(photos),
            "-o",
            str(tmp_path / "o"),
            "--method",
            "ciagan",
            "--model",
            str(model_file),
            "--identity",
            "fixed:1200",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "select id 1200" in err


def test_the_readme_demo_runs_on_the_bundled_example(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ciagan_core",
            "anonymize",
            "examples",
            "-o",
            str(out),
            "--no-progress",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert _changed(ROOT / "examples" / "astronaut.png", out / "astronaut.png")


def test_face_alignment_without_weights_explains_how_to_provide_them(tmp_path):
    from ciagan_core.errors import BackendUnavailableError
    from ciagan_core.landmarks import create_landmarker

    with pytest.raises(BackendUnavailableError, match=r"2DFAN4-cd938726ad\.zip") as info:
        create_landmarker("face_alignment", weights_path=tmp_path)
    assert "landmark weights path" in str(info.value)


def test_a_crashing_detector_writes_no_frame_of_that_input(photos, tmp_path, capsys, monkeypatch):
    from ciagan_core.detection.centerface import CenterFaceDetector

    def crash(self, frame):
        raise RuntimeError("onnxruntime session lost")

    monkeypatch.setattr(CenterFaceDetector, "detect", crash)
    out = tmp_path / "out"
    assert main(["anonymize", str(photos), "-o", str(out), "--no-progress"]) == 1
    assert "internal error: onnxruntime session lost" in capsys.readouterr().err
    assert not list(out.rglob("*.jpg"))  # nothing un-anonymized was written
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["failed"]) == 3


def test_sigterm_during_a_video_leaves_no_partial_video_and_says_so(
    tmp_path, shared_dir, celeba_rows, no_face_image
):
    """`timeout`, `docker stop` and systemd end a run with SIGTERM: the video being written is
    removed (no file that looks complete, no .partial), the summary says interrupted, 130."""
    import signal
    import time

    face = celeba_image(shared_dir, celeba_rows[10])
    video = tmp_path / "long.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (480, 360))
    for i in range(300):
        frame = cv2.resize(no_face_image, (480, 360))
        x = 20 + i % 200
        frame[40 : 40 + face.shape[0], x : x + face.shape[1]] = face
        writer.write(frame)
    writer.release()
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "ciagan_core", "anonymize", str(video), "-o", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(out.glob("*partial*")):
            assert process.poll() is None, process.communicate()
            time.sleep(0.1)
        assert list(out.glob("*partial*")), "the video was never started"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["outputs"] == []


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp"])
def test_a_phone_photo_stored_sideways_is_anonymized_upright(tmp_path, shared_dir, suffix):
    """Phones store portraits sideways with an EXIF orientation tag. The face must be found as
    it is shown (upright), and the output, written without EXIF, must show as the input did:
    read as stored, the face was sideways to the detector and came out sideways."""
    pil = pytest.importorskip("PIL.Image")
    upright = cv2.imread(str(shared_dir / "data/celeba_faces/images/001085.jpg"))
    x0, y0, x1, y1 = 103, 61, 198, 156  # faces.csv
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # 90 degrees counter-clockwise
    photo = pil.fromarray(stored[..., ::-1])
    exif = photo.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    source = tmp_path / f"phone{suffix}"
    photo.save(source, exif=exif, quality=95)
    out = tmp_path / "out.jpg"
    assert main(["anonymize", str(source), "-o", str(out), "--no-progress"]) == 0
    result = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert result.shape == upright.shape  # upright, as the input is shown
    shown = cv2.imread(str(source))  # OpenCV's imread applies the orientation
    assert shown.shape == upright.shape
    face = (slice(y0, y1), slice(x0, x1))
    unchanged = (np.abs(result[face].astype(int) - shown[face]).max(axis=-1) <= 8).mean()
    assert unchanged < 0.2, unchanged


def _frame_count(path) -> int:
    """Frames that decode, read one by one (not the container's own count)."""
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def _fourcc(capture) -> str:
    code = int(capture.get(cv2.CAP_PROP_FOURCC))
    return "".join(chr((code >> 8 * i) & 0xFF) for i in range(4))


@pytest.mark.parametrize(
    ("suffix", "fourcc", "read_as"), [(".avi", "MJPG", "MJPG"), (".mp4", "mp4v", "FMP4")]
)
def test_a_video_keeps_its_frame_rate_and_codec_and_appears_complete(
    shared_dir, celeba_rows, tmp_path, monkeypatch, suffix, fourcc, read_as
):
    """The output keeps the input's frame rate, is MJPG in .avi and MPEG-4 in .mp4, and is a
    complete video at the moment it appears under its name; the progress bar counts each
    frame once."""
    import os

    import tqdm

    source = write_video(shared_dir, celeba_rows, tmp_path / f"clip{suffix}", 5, fourcc, 12.0, 3)
    target = tmp_path / "out" / f"clip{suffix}"
    at_rename: dict[str, int] = {}
    replace = os.replace

    def replace_and_count(src, dst):
        if str(dst) == str(target):
            at_rename[str(dst)] = _frame_count(src)
        replace(src, dst)

    steps: list[tuple[int, int]] = []  # (total, update)

    class Progress(tqdm.tqdm):
        def update(self, n=1):
            steps.append((self.total, n))
            return super().update(n)

    monkeypatch.setattr(os, "replace", replace_and_count)
    monkeypatch.setattr(tqdm, "tqdm", Progress)
    assert main(["anonymize", str(source), "-o", str(tmp_path / "out")]) == 0
    assert at_rename == {str(target): 5}
    assert steps == [(5, 1)] * 5
    written = cv2.VideoCapture(str(target))
    assert written.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    assert _fourcc(written).upper() == read_as  # FFmpeg's name for MPEG-4 part 2
    written.release()


def test_a_video_that_states_no_frame_rate_is_written_at_30(
    shared_dir, celeba_rows, tmp_path, monkeypatch
):
    source = write_video(shared_dir, celeba_rows, tmp_path / "clip.avi", 2, fps=12.0, step=3)
    opened = cv2.VideoCapture

    class NoRate:
        """A capture whose container gives no frame rate (0), as some recorders write."""

        def __init__(self, *args):
            self._capture = opened(*args)

        def get(self, prop):
            return 0.0 if prop == cv2.CAP_PROP_FPS else self._capture.get(prop)

        def __getattr__(self, name):
            return getattr(self._capture, name)

    monkeypatch.setattr(cv2, "VideoCapture", NoRate)
    assert main(["anonymize", str(source), "-o", str(tmp_path / "out"), "--no-progress"]) == 0
    monkeypatch.undo()
    written = cv2.VideoCapture(str(tmp_path / "out" / "clip.avi"))
    assert written.get(cv2.CAP_PROP_FPS) == pytest.approx(30.0)
    written.release()


@pytest.mark.parametrize("frames", [0, 1])
def test_a_video_of_no_frames_is_an_error_and_of_one_frame_a_video(
    shared_dir, celeba_rows, tmp_path, frames, capsys
):
    source = write_video(shared_dir, celeba_rows, tmp_path / "clip.avi", frames, fps=12.0, step=3)
    out = tmp_path / "out"
    code = main(["anonymize", str(source), "-o", str(out), "--no-progress"])
    if frames:
        assert code == 0 and _frame_count(out / "clip.avi") == 1
    else:
        assert code != 0 and f"{source}: no decodable frames" in capsys.readouterr().err
        assert not (out / "clip.avi").exists()
        assert not [p for p in out.iterdir() if "partial" in p.name]
