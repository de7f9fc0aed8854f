"""An output file name that names an existing folder ('.' included) ended in a traceback after
the work (IsADirectoryError, or EBUSY for '.': the result is renamed onto the name at the end).
Every command that writes a named file must refuse it with a one-line error before the work,
and leave the folder as it was."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import pytest
from conftest import celeba_image

from ciagan_core.cli import main
from ciagan_core.errors import InputError


@pytest.fixture
def folder(tmp_path) -> Path:
    path = tmp_path / "models"
    path.mkdir()
    (path / "keep.txt").write_text("the user's file")
    return path


def _one_line_folder_error(capsys, folder: Path) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a folder" in err[0], err
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"]  # nothing written there


def test_import_official_into_a_folder_is_a_one_line_error(checkpoint, folder, capsys):
    assert main(["model", "import-official", str(checkpoint), "-o", str(folder)]) == 1
    _one_line_folder_error(capsys, folder)


def test_import_official_into_the_current_folder_is_a_one_line_error(
    checkpoint, folder, monkeypatch, capsys
):
    shutil.copyfile(checkpoint, folder / "modelG.pth")
    monkeypatch.chdir(folder)
    assert main(["model", "import-official", "modelG.pth", "-o", "."]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a folder" in err[0], err
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt", "modelG.pth"]


def test_from_checkpoint_into_a_folder_is_a_one_line_error(
    official_state, tmp_path, folder, capsys
):
    import torch

    source = tmp_path / "checkpoint.pt"  # a training checkpoint holding the generator
    torch.save(
        {"meta": {"step": 3}, "networks": {"generator": official_state}, "optimizers": {}},
        source,
    )
    assert main(["model", "from-checkpoint", str(source), "-o", str(folder)]) == 1
    _one_line_folder_error(capsys, folder)


@pytest.mark.parametrize("option", ["--onnx", "--tensorrt"])
def test_export_into_a_folder_is_a_one_line_error(model, tmp_path, folder, option, capsys):
    args = ["export", str(model), "--onnx", str(tmp_path / "g.onnx"), option, str(folder)]
    assert main(args) == 1
    _one_line_folder_error(capsys, folder)
    assert not (tmp_path / "g.onnx").exists()  # refused before the work


def test_anonymize_onto_a_folder_named_like_an_output_is_a_one_line_error(
    shared_dir, celeba_rows, tmp_path, capsys
):
    """Two inputs: their outputs go into OUT, where one of them is a folder of the user's."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, row in (("a.png", celeba_rows[0]), ("b.png", celeba_rows[1])):
        assert cv2.imwrite(str(inputs / name), celeba_image(shared_dir, row))
    out = tmp_path / "out"
    (out / "b.png").mkdir(parents=True)
    (out / "b.png" / "keep.txt").write_text("the user's file")
    assert main(["anonymize", str(inputs), "-o", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a folder" in err[0], err
    assert sorted(p.name for p in out.iterdir()) == ["b.png"]  # nothing anonymized yet


def test_anonymize_onto_a_fifo_is_a_one_line_error(shared_dir, celeba_rows, tmp_path, capsys):
    source = tmp_path / "face.png"
    assert cv2.imwrite(str(source), celeba_image(shared_dir, celeba_rows[0]))
    fifo = tmp_path / "out.png"
    os.mkfifo(fifo)
    assert main(["anonymize", str(source), "-o", str(fifo), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a regular file" in err[0], err
    assert fifo.is_fifo()


def test_check_output_file(tmp_path, monkeypatch):
    from ciagan_core.model_file import check_output_file

    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "file.txt").write_text("x")
    os.mkfifo(tmp_path / "fifo")
    for bad, message in [
        (".", "is a folder"),
        ("sub", "is a folder"),
        (tmp_path / "sub", "is a folder"),
        ("fifo", "not a regular file"),
        ("file.txt/m.safetensors", "is not a folder"),
        ("file.txt/new/m.safetensors", "is not a folder"),
    ]:
        with pytest.raises(InputError, match=message):
            check_output_file(bad)
    for good in ("m.safetensors", "file.txt", "sub/m.safetensors", "new/deeper/m.onnx"):
        check_output_file(good)
