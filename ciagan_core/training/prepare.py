"""``ciagan prepare``: labelled face photos -> a compact training set, aligned the pipeline's way.

Each usable photo gives one CelebA-framed 178x218 crop (JPEG) and its 68 landmarks in crop
pixels, found with the pipeline's own detector, landmarker, reliability checks and alignment
(``alignment.aligned_crop``). Landmark drawings and masks are not stored: training renders them
from the landmarks when it makes batches, with the same functions inference uses. Photos
without a usable face are listed with the reason, never fatal. Whole identities are held out
for evaluation by the fixed identity split that ``ciagan eval --split`` uses.

Layout of the output folder::

    crops/<identity>/<photo stem>.jpg   178 x 218, JPEG
    landmarks.npy                       float32 [N, 68, 2], crop pixels, in index.csv order
    index.csv                           crop, identity, split (train | eval), source photo
    rejected.csv                        source photo, reason
    prepared.json                       counts, detector, landmarker, settings, version
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ciagan_core import __version__
from ciagan_core.alignment import aligned_crop, landmark_problem
from ciagan_core.detection.base import Detector
from ciagan_core.errors import InputError
from ciagan_core.evaluation.dataset import LabelledFace, holdout_identity
from ciagan_core.evaluation.protocol import read_photo
from ciagan_core.faces import FaceBox, box_iou
from ciagan_core.landmarks.base import Landmarker

SPLITS = ("holdout", "none")


@dataclass(frozen=True)
class PrepareSettings:
    """How photos become training crops."""

    #: "holdout": identities of the fixed "holdout" half are marked eval (train on the rest);
    #: "none": every identity is for training.
    split: str = "holdout"
    #: 75 keeps the shared set (4,330 crops) at about 29 MiB of JPEG, so it travels to a GPU
    #: machine; its crops differ from quality 85's by 37 dB PSNR, before the resize to 144 px.
    jpeg_quality: int = 75
    min_eye_distance: float = 6.0


def _face_of(boxes: list[FaceBox], labelled: tuple | None) -> FaceBox | None:
    """The detection of the labelled face (IoU >= 0.3), or the largest one without a label."""
    if not boxes:
        return None
    if labelled is None:
        return max(boxes, key=lambda b: b.width * b.height)
    ious = box_iou(np.array(labelled), np.stack([b.as_array() for b in boxes]))[0]
    best = int(np.argmax(ious))
    return boxes[best] if ious[best] >= 0.3 else None


def prepare_faces(
    faces: Sequence[LabelledFace],
    out: Path,
    detector: Detector,
    landmarker: Landmarker,
    settings: PrepareSettings = PrepareSettings(),
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Build the training set in ``out`` (written to a temporary folder, renamed when done);
    returns the summary also saved as ``prepared.json``."""
    if settings.split not in SPLITS:
        raise InputError(f"unknown split {settings.split!r}; choose one of {', '.join(SPLITS)}")
    if out.exists():
        raise InputError(f"{out} exists; choose a new folder")
    progress = progress or (lambda n: None)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        rows, points, rejected = [], [], []
        for face in faces:
            progress(1)
            reason, item = _prepare_one(face, detector, landmarker, settings)
            if item is None:
                rejected.append((str(face.path), reason))
                continue
            crop, landmarks = item
            name = Path("crops") / face.identity / f"{face.path.stem}.jpg"
            if (tmp / name).exists():
                name = name.with_name(f"{face.path.stem}_{len(rows)}.jpg")
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            ok, data = cv2.imencode(
                ".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality]
            )
            if not ok:
                raise InputError(f"{face.path}: cannot encode the crop")
            (tmp / name).write_bytes(data.tobytes())
            split = (
                "eval"
                if settings.split == "holdout" and holdout_identity(face.identity)
                else ("train")
            )
            rows.append((name.as_posix(), face.identity, split, str(face.path)))
            points.append(landmarks.astype(np.float32))
        if not rows:
            raise InputError("no photo had a usable face; nothing to train on")
        np.save(tmp / "landmarks.npy", np.stack(points))
        _write_csv(tmp / "index.csv", ("crop", "identity", "split", "source"), rows)
        _write_csv(tmp / "rejected.csv", ("source", "reason"), rejected)
        identities = {
            split: sorted({r[1] for r in rows if r[2] == split}) for split in ("train", "eval")
        }
        summary = {
            "version": __version__,
            "photos": len(faces),
            "crops": len(rows),
            "rejected": len(rejected),
            "identities": {k: len(v) for k, v in identities.items()},
            "eval_identities": identities["eval"],
            "detector": getattr(detector, "name", "?"),
            "detector_precision": getattr(detector, "precision", None),
            "landmarker": getattr(landmarker, "name", "?"),
            "settings": {"split": settings.split, "jpeg_quality": settings.jpeg_quality},
            "crop_size": [178, 218],
        }
        (tmp / "prepared.json").write_text(json.dumps(summary, indent=2) + "\n")
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def _prepare_one(face: LabelledFace, detector, landmarker, settings):
    try:
        image = read_photo(face.path)
    except InputError:
        return "cannot decode image", None
    box = _face_of(detector.detect(image), face.box)
    if box is None:
        return "no face found" + (" at the labelled box" if face.box else ""), None
    [landmarks] = landmarker.landmarks(image, [box])
    problem = landmark_problem(
        landmarks,
        box.as_array(),
        box.keypoints,
        settings.min_eye_distance,
        frame_size=(image.shape[1], image.shape[0]),
    )
    if problem:
        return problem, None
    aligned = aligned_crop(image, landmarks)
    if aligned is None:
        return "degenerate eye corners", None
    _, crop, points = aligned
    return "", (crop, points)


def _write_csv(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(text.getvalue())


def load_prepared(folder: Path) -> tuple[list[dict[str, str]], np.ndarray]:
    """The index rows and landmarks of a prepared set (for training and tests)."""
    index = folder / "index.csv"
    if not index.is_file() or not (folder / "landmarks.npy").is_file():
        raise InputError(f"{folder}: not a prepared training set (run ciagan prepare)")
    try:
        with index.open(newline="", encoding="utf-8-sig") as handle:  # a BOM is fine
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{index}: unreadable ({exc})") from None
    missing = {"crop", "identity", "split"} - set(rows[0] if rows else {})
    if not rows or missing:
        raise InputError(
            f"{index}: no rows, or columns missing ({', '.join(sorted(missing))}); "
            "run ciagan prepare again"
        )
    try:
        points = np.load(folder / "landmarks.npy", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder}/landmarks.npy: unreadable ({exc})") from None
    if points.shape != (len(rows), 68, 2) or points.dtype.kind != "f":
        raise InputError(
            f"{folder}: landmarks.npy ({points.dtype} {list(points.shape)}) does not match "
            f"index.csv ({len(rows)} rows of 68 points)"
        )
    if not np.isfinite(points).all():
        raise InputError(f"{folder}/landmarks.npy: holds NaN or infinite points")
    return rows, points
