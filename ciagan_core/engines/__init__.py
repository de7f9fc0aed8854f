"""Inference engines behind one interface, chosen by name: torch, onnxruntime, tensorrt."""

from __future__ import annotations

from pathlib import Path

from ciagan_core.engines.base import Engine
from ciagan_core.errors import ConfigError

ENGINES = ("auto", "torch", "onnxruntime", "tensorrt")


def resolve_engine(name: str, device: str) -> str:
    """``auto``: the fastest engine available for ``device``.

    CPU: onnxruntime (about twice torch's throughput, engines_cpu.md). CUDA: tensorrt where it
    imports, else onnxruntime with its CUDA provider, else torch.
    """
    if name != "auto":
        return name
    if not device.startswith("cuda"):
        return "onnxruntime"
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        return "tensorrt"
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return "onnxruntime"
    return "torch"


def create_engine(
    name: str,
    model_path: str | Path,
    device: str = "cpu",
    precision: str = "fp32",
    max_batch: int = 32,
    **options: object,
) -> Engine:
    """Build the engine registered under ``name`` for the model file at ``model_path``.

    ``options`` go to the engine (onnxruntime: threads, use_tensorrt, spin; tensorrt: engine_path,
    cache_dir, rebuild, force, workspace_mb).
    """
    name = resolve_engine(name, device)
    if name == "torch":
        from ciagan_core.engines.torch_engine import TorchEngine
        from ciagan_core.model_file import load_model_file

        return TorchEngine(load_model_file(model_path), device, precision, max_batch)
    if name == "onnxruntime":
        from ciagan_core.engines.onnxruntime_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(model_path, device, precision, max_batch, **options)
    if name == "tensorrt":
        from ciagan_core.engines.tensorrt_engine import TensorRTEngine

        return TensorRTEngine(model_path, device, precision, max_batch, **options)
    raise ConfigError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")


__all__ = ["ENGINES", "Engine", "create_engine"]
