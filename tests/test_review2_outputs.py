"""Commands that write a file never write it over what they read: ``ciagan model
import-official`` over its checkpoint, ``ciagan export`` over its model or one output over
another, whether named directly, through a symbolic link or as a hard link."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ciagan_core.cli import main
from ciagan_core.errors import InputError
from ciagan_core.model_file import import_official


def _linked(source: Path, how: str) -> Path:
    """``source`` itself, or a new symbolic or hard link to it."""
    if how == "same":
        return source
    link = source.with_name(f"{how}-{source.name}")
    (os.symlink if how == "symlink" else os.link)(source, link)
    return link


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_import_official_never_overwrites_its_checkpoint(checkpoint, how, capsys):
    before = checkpoint.read_bytes()
    output = _linked(checkpoint, how)
    assert main(["model", "import-official", str(checkpoint), "-o", str(output)]) == 1
    assert "would overwrite the checkpoint" in capsys.readouterr().err
    assert checkpoint.read_bytes() == before
    assert output.read_bytes() == before and output.is_symlink() == (how == "symlink")


def test_import_official_as_a_library_call_refuses_too(checkpoint):
    before = checkpoint.read_bytes()
    with pytest.raises(InputError, match="would overwrite"):
        import_official(checkpoint, checkpoint)
    assert checkpoint.read_bytes() == before


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_export_never_writes_onnx_over_its_model(model, how, capsys):
    before = model.read_bytes()
    output = _linked(model, how)
    assert main(["export", str(model), "--onnx", str(output), "--no-check"]) == 1
    assert "would overwrite the model" in capsys.readouterr().err
    assert model.read_bytes() == before and output.read_bytes() == before


@pytest.mark.parametrize(
    ("onnx", "tensorrt", "message"),
    [
        ("out.onnx", "m.safetensors", "would overwrite the model"),
        ("out.onnx", "out.onnx", "are one file"),
        ("out.engine.json", "out.engine", "are one file"),
    ],
    ids=["engine-on-model", "engine-on-onnx", "sidecar-on-onnx"],
)
def test_export_outputs_never_overwrite_the_model_or_each_other(
    model, onnx, tensorrt, message, capsys
):
    before = {p: p.read_bytes() for p in model.parent.iterdir()}
    args = ["export", str(model), "--onnx", str(model.parent / onnx), "--no-check"]
    assert main([*args, "--tensorrt", str(model.parent / tensorrt)]) == 1
    assert message in capsys.readouterr().err
    # Refused before anything was written: not even the ONNX file.
    assert {p: p.read_bytes() for p in model.parent.iterdir()} == before


def test_the_engine_sidecar_never_overwrites_the_model(model, tmp_path, capsys):
    # --tensorrt X writes X and X.json: X.json must not be the model either.
    renamed = model.with_name("net.json")
    model.rename(renamed)
    before = renamed.read_bytes()
    args = ["export", str(renamed), "--onnx", str(tmp_path / "o.onnx"), "--no-check"]
    assert main([*args, "--tensorrt", str(tmp_path / "net")]) == 1
    assert "would overwrite the model" in capsys.readouterr().err
    assert renamed.read_bytes() == before and not (tmp_path / "o.onnx").exists()


def test_export_still_writes_beside_the_model(model, capsys):
    target = model.with_suffix(".onnx")
    assert main(["export", str(model), "--onnx", str(target), "--no-check"]) == 0
    assert target.stat().st_size > 1000


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_from_checkpoint_refuses_a_link_to_its_checkpoint(tmp_path, how, capsys):
    source = tmp_path / "checkpoint.pt"
    source.write_bytes(b"a training checkpoint")
    output = _linked(source, how)
    assert main(["model", "from-checkpoint", str(source), "-o", str(output)]) == 1
    assert "would overwrite the checkpoint" in capsys.readouterr().err
    assert source.read_bytes() == b"a training checkpoint"


def test_from_checkpoint_refuses_an_output_inside_a_compact_checkpoint(tmp_path, capsys):
    compact = tmp_path / "run" / "compact"
    compact.mkdir(parents=True)
    (compact / "manifest.json").write_text("{}")
    output = compact / "manifest.json"
    assert main(["model", "from-checkpoint", str(compact), "-o", str(output)]) == 1
    assert "would overwrite the checkpoint" in capsys.readouterr().err
    assert output.read_text() == "{}"


def test_check_output_apart_allows_new_files_beside_an_input(tmp_path):
    from ciagan_core.model_file import check_output_apart

    source = tmp_path / "in.bin"
    source.write_bytes(b"x")
    check_output_apart(tmp_path / "out.bin", source)
    check_output_apart(tmp_path / "sub" / "out.bin", source)
    with pytest.raises(InputError):
        check_output_apart(tmp_path / "." / "in.bin", source)
    with pytest.raises(InputError):
        check_output_apart(tmp_path / "x" / "out.bin", tmp_path)  # inside an input folder


def test_bench_never_writes_its_report_over_the_model(model_file, tmp_path, capsys):
    """``ciagan bench`` writes engines_<device>.json/.md into --output: a model of that name
    there is refused before the benchmark runs, and stays as it was."""
    model = tmp_path / "engines_cpu.json"
    shutil.copyfile(model_file, model)
    before = model.read_bytes()
    code = main(["bench", str(model), "--output", str(tmp_path), "--batches", "1"])
    assert code != 0 and "would overwrite" in capsys.readouterr().err
    assert model.read_bytes() == before


def test_eval_never_writes_its_report_into_the_labelled_faces(shared_dir, tmp_path, capsys):
    faces = tmp_path / "faces"
    images = sorted((shared_dir / "data" / "celeba_faces" / "images").glob("*.jpg"))[:4]
    for i, image in enumerate(images):
        folder = faces / f"person_{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image, folder / image.name)
    before = sorted(p.relative_to(faces) for p in faces.rglob("*"))
    code = main(["eval", str(faces), "-o", str(faces), "--method", "none", "--no-fid"])
    assert code != 0 and "would overwrite" in capsys.readouterr().err
    assert sorted(p.relative_to(faces) for p in faces.rglob("*")) == before
