"""Inference engines behind one interface, chosen by name."""

from __future__ import annotations

from pathlib import Path

from ciagan_core.engines.base import Engine
from ciagan_core.errors import ConfigError
from ciagan_core.model_file import load_model_file

ENGINES = ("torch",)


def create_engine(
    name: str,
    model_path: str | Path,
    device: str = "cpu",
    precision: str = "fp32",
    max_batch: int = 32,
) -> Engine:
    """Build the engine registered under ``name`` for the model file at ``model_path``."""
    if name == "torch":
        from ciagan_core.engines.torch_engine import TorchEngine

        return TorchEngine(load_model_file(model_path), device, precision, max_batch)
    raise ConfigError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")


__all__ = ["ENGINES", "Engine", "create_engine"]
