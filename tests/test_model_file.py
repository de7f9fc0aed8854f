"""The model file and ``ciagan model``: good files load, bad files fail in one clear line."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from ciagan_core.cli import main
from ciagan_core.errors import ModelFileError
from ciagan_core.model_file import import_official, load_model_file, read_model_info
from ciagan_core.models import Discriminator


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_import_then_info_reports_1200_identities_and_128px(capsys, official_checkpoint, tmp_path):
    out_file = tmp_path / "model.safetensors"
    code, out, _ = _cli(
        capsys, "model", "import-official", str(official_checkpoint), "-o", str(out_file)
    )
    assert code == 0 and out_file.is_file()
    code, out, _ = _cli(capsys, "model", "info", str(out_file))
    assert code == 0
    assert "identities:  1200" in out
    assert "image size:  128 px" in out
    assert "parameters:  11,801,123" in out
    assert "official-checkpoint" in out and "modelG.pth" in out


def test_model_file_records_provenance_and_hash(model_file, official_checkpoint):
    info = read_model_info(model_file)
    assert info.format_version == 1
    assert len(info.weights_sha256) == 64
    assert info.provenance["source_file"] == official_checkpoint.name
    assert len(info.provenance["source_sha256"]) == 64


def test_model_file_holds_folded_float32_weights_only(model_file):
    state = load_model_file(model_file).state_dict
    assert all(t.dtype == torch.float32 for t in state.values())
    assert not [k for k in state if "weight_orig" in k or "weight_u" in k]


def test_missing_checkpoint(capsys, tmp_path):
    out_file = tmp_path / "out.safetensors"
    code, _, err = _cli(
        capsys, "model", "import-official", str(tmp_path / "nope.pth"), "-o", str(out_file)
    )
    _assert_one_line_error(code, err, "nope.pth", "not found")
    assert not out_file.exists()


def test_truncated_checkpoint(capsys, official_checkpoint, tmp_path):
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(official_checkpoint.read_bytes()[:200_000])
    out_file = tmp_path / "out.safetensors"
    code, _, err = _cli(capsys, "model", "import-official", str(bad), "-o", str(out_file))
    _assert_one_line_error(code, err, "truncated.pth", "not a readable PyTorch checkpoint")
    assert not out_file.exists()


def test_checkpoint_of_another_network(capsys, tmp_path):
    bad = tmp_path / "modelD.pth"
    torch.save(Discriminator().state_dict(), bad)
    out_file = tmp_path / "out.safetensors"
    code, _, err = _cli(capsys, "model", "import-official", str(bad), "-o", str(out_file))
    _assert_one_line_error(code, err, "modelD.pth", "not a CIAGAN generator")
    assert not out_file.exists()


def test_checkpoint_with_a_wrong_shape(capsys, official_state, tmp_path):
    state = dict(official_state)
    state["res2.conv1.conv2d.weight_orig"] = torch.zeros(256, 256, 1, 1)
    bad = tmp_path / "wrong_shape.pth"
    torch.save(state, bad)
    out_file = tmp_path / "out.safetensors"
    code, _, err = _cli(capsys, "model", "import-official", str(bad), "-o", str(out_file))
    _assert_one_line_error(
        code,
        err,
        "wrong_shape.pth",
        "res2.conv1.conv2d.weight_orig",
        "[256, 256, 1, 1]",
        "[256, 256, 3, 3]",
    )
    assert not out_file.exists()


def test_checkpoint_with_a_different_identity_count(capsys, official_checkpoint, tmp_path):
    out_file = tmp_path / "out.safetensors"
    code, _, err = _cli(
        capsys,
        "model",
        "import-official",
        str(official_checkpoint),
        "-o",
        str(out_file),
        "--identities",
        "500",
    )
    _assert_one_line_error(code, err, "1200 identities", "500 were expected")
    assert not out_file.exists()


def test_checkpoint_with_nan_weights_is_refused(official_state, tmp_path):
    state = dict(official_state)
    state["conv_end.0.bias"] = torch.tensor([0.0, float("nan"), 0.0])
    bad = tmp_path / "nan.pth"
    torch.save(state, bad)
    with pytest.raises(ModelFileError, match="NaN"):
        import_official(bad, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def test_pickle_that_is_not_weights_only_is_refused(tmp_path):
    bad = tmp_path / "pickled.pth"
    torch.save(Path("/etc/passwd"), bad)  # not a state_dict: weights_only loading refuses it
    with pytest.raises(ModelFileError, match=r"pickled\.pth"):
        import_official(bad, tmp_path / "out.safetensors")


def test_missing_model_file(capsys, tmp_path):
    code, _, err = _cli(capsys, "model", "info", str(tmp_path / "absent.safetensors"))
    _assert_one_line_error(code, err, "absent.safetensors", "not found")


def test_truncated_model_file(capsys, model_file, tmp_path):
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(model_file.read_bytes()[:1_000_000])
    code, _, err = _cli(capsys, "model", "info", str(bad))
    _assert_one_line_error(code, err, "cut.safetensors", "truncated or corrupt")


def test_model_file_with_flipped_weight_bytes_fails_its_hash(model_file, tmp_path):
    data = bytearray(model_file.read_bytes())
    data[-100] ^= 0xFF  # inside the last tensor's bytes
    bad = tmp_path / "edited.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256"):
        load_model_file(bad)


def test_safetensors_file_of_something_else_is_refused(tmp_path):
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(3)}, str(other), metadata={"format": "pt"})
    with pytest.raises(ModelFileError, match="not a ciagan model file"):
        load_model_file(other)


def test_model_file_whose_metadata_disagrees_with_its_weights(model_file, tmp_path):
    raw = model_file.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    header["__metadata__"]["num_identities"] = "1000"
    new_header = json.dumps(header, separators=(",", ":")).encode().ljust(header_len)
    assert len(new_header) == header_len
    bad = tmp_path / "meta.safetensors"
    bad.write_bytes(raw[:8] + new_header + raw[8 + header_len :])
    with pytest.raises(ModelFileError, match="metadata says 1000 identities"):
        load_model_file(bad)


def test_a_half_precision_model_file_is_half_the_size_and_generates_the_same(
    model_file, parity_fixture, tmp_path
):
    from ciagan_core.engines import create_engine
    from ciagan_core.model_file import save_model_file

    loaded = load_model_file(model_file)
    half = tmp_path / "half.safetensors"
    info = save_model_file(half, loaded.state_dict, loaded.info.provenance, half=True)
    assert info.format_version == 2
    assert half.stat().st_size < 0.55 * model_file.stat().st_size
    again = load_model_file(half)
    assert all(v.dtype == torch.float32 for v in again.state_dict.values())
    inputs, ids = parity_fixture["generator_input"], parity_fixture["identity"]
    full = create_engine("torch", model_file).run(inputs, ids)
    out = create_engine("torch", half).run(inputs, ids)
    # Weights rounded to float16 move outputs by 0.003 on average (under one grey level),
    # a few by up to 0.022.
    assert np.abs(out - full).max() < 0.05 and np.abs(out - full).mean() < 0.005


@pytest.mark.parametrize("half", [False, True])
def test_a_generator_in_channels_last_writes_the_same_model_file(model_file, tmp_path, half):
    # Training on CUDA keeps the networks channels-last. Its 1x1 convolution weights then count
    # as contiguous with a last stride other than 1, and the first GPU run lost its model file.
    from ciagan_core.model_file import save_model_file

    loaded = load_model_file(model_file)
    plain = loaded.state_dict
    strided = {
        k: v.to(memory_format=torch.channels_last) if v.dim() == 4 else v for k, v in plain.items()
    }
    assert any(v.dim() == 4 and v.is_contiguous() and v.stride(-1) != 1 for v in strided.values())
    a = save_model_file(tmp_path / "a.safetensors", plain, loaded.info.provenance, half=half)
    b = save_model_file(tmp_path / "b.safetensors", strided, loaded.info.provenance, half=half)
    assert a.weights_sha256 == b.weights_sha256
    again = load_model_file(tmp_path / "b.safetensors").state_dict
    assert all(torch.equal(again[k], load_model_file(a.path).state_dict[k]) for k in plain)
