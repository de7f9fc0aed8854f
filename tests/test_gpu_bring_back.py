"""scripts/gpu_bring_back.py: what a GPU slice leaves in $OUT is always one whole checkpoint
that the run saved, the newest one, never a mix of two saves and never the one it resumed from."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from ciagan_core.training.checkpoint import _write_compact, read_compact

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_bring_back", ROOT / "scripts/gpu_bring_back.py")
gpu_bring_back = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_bring_back)


def _save(folder: Path, step: int, megabytes: int) -> None:
    """A compact checkpoint at ``step`` in ``megabytes`` parts of 1 MiB (the last one short)."""
    weights = torch.full(((megabytes * 2**20 - 4096) // 2,), float(step), dtype=torch.float16)
    _write_compact(folder, {"generator/w": weights}, {}, ["generator"], {"step": step}, 1)


@pytest.fixture
def run(tmp_path) -> tuple[Path, Path, Path]:
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.tgz").write_bytes(b"logs")
    return tmp_path / "run" / "compact", out, tmp_path / "state"


def _round(run, after_step: int = 0) -> str:
    source, out, state = run
    return gpu_bring_back.bring_back(source, out, after_step, state)


def _held(out: Path) -> int:
    manifest, _ = read_compact(out)  # every part's and the whole blob's sha256
    return manifest["step"]


def test_only_a_checkpoint_newer_than_the_resumed_one_is_brought_back(run):
    source, out, _ = run
    assert _round(run, after_step=1377) == "no checkpoint yet"
    _save(source, 1377, 2)  # a run that made no step saves what it resumed from
    assert "not newer" in _round(run, after_step=1377)
    assert sorted(p.name for p in out.iterdir()) == ["results.tgz"]
    _save(source, 1378, 2)
    assert _round(run, after_step=1377) == "copied the compact checkpoint at step 1378"
    assert _held(out) == 1378
    assert _round(run, after_step=1377) == "already copied"


def test_a_newer_save_replaces_the_copy_file_for_file(run):
    source, out, _ = run
    _save(source, 10, 4)
    _round(run)
    assert len(list(out.glob("part-*.bin"))) == 4
    _save(source, 20, 2)  # fewer parts: none of the old ones may stay beside the new
    assert "step 20" in _round(run)
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "part-000.bin",
        "part-001.bin",
        "results.tgz",
    ]
    assert _held(out) == 20
    assert not list(out.parent.glob(".ciagan-stage-*"))  # the staging folder is gone


def test_a_torn_or_damaged_checkpoint_never_replaces_a_good_copy(run):
    source, out, _ = run
    _save(source, 10, 3)
    _round(run)
    good = {p.name: p.read_bytes() for p in out.iterdir()}
    _save(source, 20, 3)
    part = source / "part-001.bin"
    part.write_bytes(b"\0" * part.stat().st_size)  # as if caught halfway through a write
    assert _round(run).startswith("copy not whole")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == good
    (source / "part-002.bin").unlink()  # or a part missing
    assert _round(run).startswith("copy not whole")
    assert _held(out) == 10
    _save(source, 30, 3)  # the next good save comes back
    assert "step 30" in _round(run) and _held(out) == 30


def test_a_save_during_the_copy_is_copied_next_round(run, monkeypatch):
    source, out, _ = run
    _save(source, 10, 2)
    _round(run)
    copy = gpu_bring_back.shutil.copyfile
    calls = []

    def copy_then_save(src, dst):
        result = copy(src, dst)
        calls.append(dst)
        if len(calls) == 1:  # the run saves again while its first part is being copied
            _save(source, 30, 2)
        return result

    _save(source, 20, 2)
    monkeypatch.setattr(gpu_bring_back.shutil, "copyfile", copy_then_save)
    said = _round(run)
    assert said.startswith(("copy not whole", "a save came in")), said
    assert _held(out) == 10
    monkeypatch.setattr(gpu_bring_back.shutil, "copyfile", copy)
    assert "step 30" in _round(run) and _held(out) == 30


def test_a_checkpoint_that_would_not_come_back_whole_is_warned_about(run, capsys):
    source, out, _ = run
    _save(source, 5, 8)  # 8 parts and the manifest, beside results.tgz: 10 files
    assert "step 5" in _round(run)
    assert "WARNING: 9 files and results.tgz" in capsys.readouterr().err
    assert json.loads((out / "manifest.json").read_text())["step"] == 5
