"""ONNX export: ONNX Runtime reproduces the PyTorch engine; the graph is TensorRT-friendly."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from ciagan_core.cli import main
from ciagan_core.engines import create_engine
from ciagan_core.engines.onnx_export import export_onnx, graph_to_onnx
from ciagan_core.model_file import load_model_file
from ciagan_core.models import Generator
from ciagan_core.models.inference_graph import GraphModule, build_inference_graph

#: Operators TensorRT's ONNX parser supports (8.5 onwards) that the export may use.
TENSORRT_OPS = {
    "Conv",
    "Pad",
    "Slice",
    "Concat",
    "InstanceNormalization",
    "Relu",
    "LeakyRelu",
    "AveragePool",
    "Resize",
    "DepthToSpace",
    "Gather",
    "Gemm",
    "Reshape",
    "Add",
    "Cast",
}


def _session(model) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _run(session, fixture) -> np.ndarray:
    return session.run(
        None,
        {"image": fixture["generator_input"], "identity": fixture["identity"].astype(np.int32)},
    )[0]


@pytest.fixture(scope="module")
def torch_output(model_file, parity_fixture) -> np.ndarray:
    engine = create_engine("torch", model_file)
    return engine.run(parity_fixture["generator_input"], parity_fixture["identity"])


@pytest.mark.parametrize("pad_ops", ["pad", "slice"])
def test_onnxruntime_fp32_reproduces_the_torch_engine(
    model_file, parity_fixture, torch_output, pad_ops
):
    out = _run(_session(export_onnx(model_file, "fp32", pad_ops)), parity_fixture)
    assert np.abs(out - torch_output).max() < 1e-4
    assert np.abs(out - parity_fixture["raw_output"]).max() < 1e-4


@pytest.mark.parametrize("pad_ops", ["pad", "slice"])
def test_onnxruntime_fp16_stays_within_2e_2(model_file, parity_fixture, torch_output, pad_ops):
    out = _run(_session(export_onnx(model_file, "fp16", pad_ops)), parity_fixture)
    assert np.abs(out - torch_output).max() < 2e-2
    assert np.abs(out - parity_fixture["raw_output"]).max() < 2e-2


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_export_is_checker_clean_opset_17_with_dynamic_batch(model_file, precision):
    model = export_onnx(model_file, precision)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 17
    (image, identity), (output,) = model.graph.input, model.graph.output
    assert (image.name, identity.name, output.name) == ("image", "identity", "output")
    assert image.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert identity.type.tensor_type.elem_type == onnx.TensorProto.INT32
    assert output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert image.type.tensor_type.shape.dim[0].dim_param == "batch"
    session = _session(model)
    for batch in (1, 5):
        out = session.run(
            None,
            {
                "image": np.zeros((batch, 6, 128, 128), np.float32),
                "identity": np.arange(batch, dtype=np.int32),
            },
        )[0]
        assert out.shape == (batch, 3, 128, 128)


@pytest.mark.parametrize("pad_ops", ["pad", "slice"])
def test_export_uses_only_operators_tensorrt_parses(model_file, pad_ops):
    ops = {n.op_type for n in export_onnx(model_file, "fp16", pad_ops).graph.node}
    assert ops <= TENSORRT_OPS
    if pad_ops == "slice":
        assert "Pad" not in ops


def test_fp16_export_keeps_weights_in_half_precision(model_file):
    fp32 = export_onnx(model_file, "fp32").ByteSize()
    fp16 = export_onnx(model_file, "fp16").ByteSize()
    assert fp16 < 0.6 * fp32


def test_restructured_graph_equals_the_generator_on_fresh_weights():
    torch.manual_seed(3)
    net = Generator(num_identities=10).eval()
    for module in net.modules():  # non-trivial norms, so every parameter matters
        if isinstance(module, torch.nn.InstanceNorm2d):
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.bias, -0.5, 0.5)
    folded = Generator(num_identities=10, spectral_norm=False)
    from ciagan_core.models import fold_spectral_norm

    folded.load_state_dict(fold_spectral_norm(net.state_dict()))
    graph = build_inference_graph(folded.state_dict(), 10)
    x, ids = torch.rand(3, 6, 128, 128), torch.tensor([0, 4, 9])
    with torch.no_grad():
        expected = net(x, ids)
        got = GraphModule(graph)(x, ids)
    scale = expected.abs().max().item()
    assert (got - expected).abs().max().item() < 1e-4 * max(scale, 1.0)
    assert graph.macs_per_face() < 0.7 * _generator_macs(folded)


def _generator_macs(net: Generator) -> int:
    total = [0]

    def hook(module, _, out):
        if isinstance(module, torch.nn.Conv2d):
            total[0] += out[0].numel() * module.in_channels * module.kernel_size[0] ** 2
        elif isinstance(module, torch.nn.Linear):
            total[0] += out[0].numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in net.modules()]
    with torch.no_grad():
        net(torch.zeros(1, 6, 128, 128), torch.tensor([0]))
    for handle in handles:
        handle.remove()
    return total[0]


def test_the_published_network_costs_3_28_gflop_and_the_graph_a_third_less(model_file):
    loaded = load_model_file(model_file)
    macs = _generator_macs(loaded.build_generator())
    assert 2 * macs == pytest.approx(3.28e9, rel=1e-3)
    graph = build_inference_graph(loaded.state_dict, 1200)
    assert graph.macs_per_face() < 0.7 * macs


def test_onnxruntime_engine_runs_an_exported_file(model_file, parity_fixture, tmp_path):
    path = tmp_path / "g.onnx"
    path.write_bytes(export_onnx(model_file).SerializeToString())
    engine = create_engine("onnxruntime", path)
    out = engine.run(parity_fixture["generator_input"], parity_fixture["identity"])
    assert engine.num_identities == 1200
    assert np.abs(out - parity_fixture["raw_output"]).max() < 1e-4


def test_onnxruntime_engine_refuses_cuda_without_its_provider(model_file):
    from ciagan_core.errors import BackendUnavailableError

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(BackendUnavailableError, match="no CUDA provider"):
        create_engine("onnxruntime", model_file, device="cuda")


def test_export_command_writes_a_checked_onnx(model_file, tmp_path, capsys):
    target = tmp_path / "out" / "g16.onnx"
    assert main(["export", str(model_file), "--onnx", str(target), "--fp16"]) == 0
    out = capsys.readouterr().out
    assert "opset 17" in out and "ONNX Runtime vs torch" in out
    assert {p.key: p.value for p in onnx.load(str(target)).metadata_props}["precision"] == "fp16"


def test_export_of_a_damaged_model_writes_nothing(model_file, tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(model_file.read_bytes()[:5000])
    target = tmp_path / "g.onnx"
    assert main(["export", str(bad), "--onnx", str(target)]) == 1
    assert "truncated or corrupt" in capsys.readouterr().err
    assert not target.exists()


def test_graph_to_onnx_rejects_unknown_precision(model_file):
    loaded = load_model_file(model_file)
    with pytest.raises(ValueError, match="precision must be one of fp32, fp16"):
        graph_to_onnx(build_inference_graph(loaded.state_dict, 1200), "int8")


def test_auto_engine_picks_onnxruntime_on_cpu_and_the_best_available_on_cuda(model_file):
    import importlib.util

    from ciagan_core.engines import resolve_engine

    assert resolve_engine("auto", "cpu") == "onnxruntime"
    assert resolve_engine("torch", "cpu") == "torch"
    cuda_choice = resolve_engine("auto", "cuda")
    if importlib.util.find_spec("tensorrt") is not None:
        assert cuda_choice == "tensorrt"
    elif "CUDAExecutionProvider" in ort.get_available_providers():
        assert cuda_choice == "onnxruntime"
    else:
        assert cuda_choice == "torch"
    assert create_engine("auto", model_file).name == "onnxruntime"
