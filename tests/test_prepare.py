"""``ciagan prepare``: training crops and landmarks made exactly as the pipeline aligns faces."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from ciagan_core.alignment import aligned_crop
from ciagan_core.cli import main
from ciagan_core.detection import create_detector
from ciagan_core.landmarks import create_landmarker
from ciagan_core.training.prepare import load_prepared


@pytest.fixture(scope="module")
def prepared(shared_dir, tmp_path_factory):
    """The authors' sample (5 identities x 30 aligned photos), plus a corrupt file and a photo
    without a face, prepared through the CLI."""
    folder = tmp_path_factory.mktemp("people")
    sample = shared_dir / "data" / "ciagan_sample" / "clr"
    for identity in sorted(p.name for p in sample.iterdir()):
        shutil.copytree(sample / identity, folder / identity)
    (folder / "0" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    import skimage.data

    cv2.imwrite(str(folder / "1" / "coffee.jpg"), skimage.data.coffee()[:, :, ::-1])
    out = tmp_path_factory.mktemp("prep") / "set"
    assert main(["prepare", str(folder), "-o", str(out), "--split", "none", "--no-progress"]) == 0
    return folder, out


def test_crops_and_landmarks_are_the_pipelines_alignment(prepared):
    _, out = prepared
    rows, points = load_prepared(out)
    detector, landmarker = create_detector("centerface"), create_landmarker("dlib", None, "cpu")
    for i in range(0, len(rows), 17):
        photo = cv2.imread(rows[i]["source"])
        box = max(detector.detect(photo), key=lambda b: b.width * b.height)
        [landmarks] = landmarker.landmarks(photo, [box])
        _, crop, expected = aligned_crop(photo, landmarks)
        np.testing.assert_allclose(points[i], expected, atol=1e-4)
        stored = cv2.imread(str(out / rows[i]["crop"]))
        assert stored.shape == (218, 178, 3)
        assert np.abs(stored.astype(int) - crop.astype(int)).mean() < 4  # JPEG 75 only


def test_photos_without_a_usable_face_are_listed_not_fatal(prepared):
    _, out = prepared
    rejected = (out / "rejected.csv").read_text()
    assert "broken.jpg,cannot decode image" in rejected
    assert "coffee.jpg,no face found" in rejected
    summary = json.loads((out / "prepared.json").read_text())
    assert summary["crops"] >= 140 and summary["identities"]["train"] == 5
    assert summary["landmarker"] == "dlib" and summary["crops"] + summary["rejected"] == 152


def test_the_holdout_split_keeps_whole_identities_out(shared_dir, celeba_rows, tmp_path):
    import csv

    from ciagan_core.evaluation.dataset import holdout_identity

    rows = celeba_rows[:60]
    table = tmp_path / "faces.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "celeba_identity", "box_x0", "box_y0", "box_x1", "box_y1"])
        for r in rows:
            path = shared_dir / "data" / "celeba_faces" / "images" / r["file"]
            writer.writerow(
                [
                    path,
                    r["celeba_identity"],
                    *(r[k] for k in ("box_x0", "box_y0", "box_x1", "box_y1")),
                ]
            )
    out = tmp_path / "set"
    assert main(["prepare", str(table), "-o", str(out), "--no-progress"]) == 0
    index, _ = load_prepared(out)
    for row in index:
        assert (row["split"] == "eval") == holdout_identity(row["identity"])
    assert {r["split"] for r in index} == {"train", "eval"}


def test_an_existing_output_or_one_identity_is_refused(prepared, shared_dir, tmp_path, capsys):
    folder, out = prepared
    assert main(["prepare", str(folder), "-o", str(out), "--no-progress"]) == 1
    assert "exists" in capsys.readouterr().err
    single = tmp_path / "one"
    shutil.copytree(shared_dir / "data" / "ciagan_sample" / "clr" / "0", single / "0")
    assert main(["prepare", str(single), "-o", str(tmp_path / "o"), "--no-progress"]) == 1
    assert "at least 2 identities" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
