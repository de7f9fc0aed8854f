"""The TensorRT engine cache: keys, stale and damaged engines (no GPU needed)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from ciagan_core.engines.cache import (
    EngineCacheError,
    EngineKey,
    load_or_build,
    read_engine,
    sidecar,
    write_engine,
)
from ciagan_core.engines.onnx_export import export_onnx, onnx_sha256
from ciagan_core.engines.tensorrt_engine import onnx_for_build, uses_strong_typing, version_tuple

KEY = EngineKey(
    onnx_sha256="a" * 64,
    tensorrt_version="10.3.0",
    gpu_name="Orin",
    compute_capability="8.7",
    precision="fp16",
    max_batch=16,
)


class Builder:
    """Counts builds; stands in for TensorRT's builder, which this machine cannot run."""

    def __init__(self, payload: bytes = b"engine-bytes"):
        self.payload, self.calls = payload, 0

    def __call__(self) -> bytes:
        self.calls += 1
        return self.payload + bytes([self.calls])


@pytest.mark.parametrize(
    "change",
    [
        {"onnx_sha256": "b" * 64},
        {"precision": "fp32"},
        {"tensorrt_version": "10.12.0"},
        {"gpu_name": "RTX 4090"},
        {"compute_capability": "8.9"},
        {"max_batch": 32},
    ],
)
def test_any_change_of_the_key_selects_another_engine_file(change):
    assert KEY.filename("gen") != replace(KEY, **change).filename("gen")


def test_a_changed_model_changes_the_onnx_hash(model_file, official_state, tmp_path):
    from ciagan_core.model_file import import_official

    state = dict(official_state)
    state["conv_end.0.bias"] = state["conv_end.0.bias"] + 0.5
    import torch

    other_ckpt = tmp_path / "other.pth"
    torch.save(state, other_ckpt)
    other = tmp_path / "other.safetensors"
    import_official(other_ckpt, other)
    assert onnx_sha256(export_onnx(model_file)) != onnx_sha256(export_onnx(other))
    assert onnx_sha256(export_onnx(model_file)) == onnx_sha256(export_onnx(model_file))


def test_first_use_builds_then_the_cache_is_used(tmp_path):
    builder, path = Builder(), tmp_path / KEY.filename("gen")
    data, status = load_or_build(path, KEY, builder)
    assert status == "built" and builder.calls == 1 and path.is_file()
    again, status = load_or_build(path, KEY, builder)
    assert status == "cached" and again == data and builder.calls == 1


def test_a_damaged_engine_is_rebuilt(tmp_path):
    builder, path = Builder(), tmp_path / "gen.engine"
    load_or_build(path, KEY, builder)
    path.write_bytes(path.read_bytes()[:-3] + b"xyz")
    with pytest.raises(EngineCacheError, match="damaged"):
        read_engine(path, KEY)
    data, status = load_or_build(path, KEY, builder)
    assert status == "rebuilt" and builder.calls == 2
    assert read_engine(path, KEY) == data


def test_a_damaged_engine_is_refused_when_rebuilding_is_off(tmp_path):
    builder, path = Builder(), tmp_path / "gen.engine"
    load_or_build(path, KEY, builder)
    damaged = path.read_bytes()[:10]
    path.write_bytes(damaged)
    with pytest.raises(EngineCacheError, match=r"damaged.*rebuilding is off"):
        load_or_build(path, KEY, builder, rebuild=False)
    assert path.read_bytes() == damaged and builder.calls == 1


@pytest.mark.parametrize(
    "change", [{"tensorrt_version": "8.6.2"}, {"precision": "fp32"}, {"gpu_name": "Xavier"}]
)
def test_a_stale_engine_is_never_used(tmp_path, change):
    builder, path = Builder(), tmp_path / "gen.engine"
    load_or_build(path, KEY, builder)
    current = replace(KEY, **change)
    with pytest.raises(EngineCacheError, match="stale engine") as info:
        load_or_build(path, current, builder, rebuild=False)
    assert next(iter(change)) in str(info.value)
    _, status = load_or_build(path, current, builder)
    assert status == "rebuilt"
    assert json.loads(sidecar(path).read_text())["key"] == {**KEY.__dict__, **change}


def test_an_engine_without_its_record_is_not_trusted(tmp_path):
    path = tmp_path / "gen.engine"
    write_engine(path, KEY, b"bytes")
    sidecar(path).unlink()
    with pytest.raises(EngineCacheError, match="records what it was built for"):
        read_engine(path, KEY)


def test_a_missing_engine_with_building_off_is_refused(tmp_path):
    with pytest.raises(EngineCacheError, match="not found; building is off"):
        load_or_build(tmp_path / "none.engine", KEY, Builder(), rebuild=False)


def test_force_rebuilds_a_valid_engine(tmp_path):
    builder, path = Builder(), tmp_path / "gen.engine"
    load_or_build(path, KEY, builder)
    _, status = load_or_build(path, KEY, builder, force=True)
    assert builder.calls == 2 and status == "built"


@pytest.mark.parametrize(
    ("version", "strong"),
    [
        ("8.5.2", False),
        ("8.6.1", False),
        ("10.3.0", False),
        ("10.11.0", False),
        ("10.12.0", True),
        ("10.13.1", True),
        ("11.0.0", True),
    ],
)
def test_fp16_uses_a_strongly_typed_network_from_tensorrt_10_12(version, strong):
    assert uses_strong_typing(version) is strong


def test_the_build_onnx_is_fp16_typed_only_for_strong_typing(model_file):
    from ciagan_core.model_file import load_model_file
    from ciagan_core.models.inference_graph import build_inference_graph

    loaded = load_model_file(model_file)
    graph = build_inference_graph(loaded.state_dict, 1200)
    props = {}
    for version in ("8.6.1", "10.12.0"):
        model = onnx_for_build(graph, "fp16", version)
        props[version] = {p.key: p.value for p in model.metadata_props}
        assert "Pad" not in {n.op_type for n in model.graph.node}
    assert props["8.6.1"]["precision"] == "fp32"  # weakly typed: BuilderFlag.FP16 instead
    assert props["10.12.0"]["precision"] == "fp16"
    assert version_tuple("10.3.0.26") == (10, 3)


def test_an_unwritable_cache_still_returns_the_built_engine(tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    builder, path = Builder(), blocker / "engines" / KEY.filename("gen")
    data, status = load_or_build(path, KEY, builder)
    assert status == "built" and data == b"engine-bytes\x01" and not path.exists()
    assert "cannot cache the engine" in caplog.text
    again, _ = load_or_build(path, KEY, builder)
    assert builder.calls == 2 and again == b"engine-bytes\x02"  # built again, never half-read
