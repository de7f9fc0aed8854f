"""The inference-engine interface every backend implements (torch, onnxruntime, tensorrt)."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ciagan_core.errors import ConfigError, InputError


class Engine(Protocol):
    """Runs the generator on a batch of faces.

    ``run(inputs, identities)``: inputs [B, 6, 128, 128] float32 in [0, 1], identities [B] int
    -> raw generator output [B, 3, 128, 128] float32. Engines split batches larger than
    ``max_batch`` themselves.
    """

    name: str
    num_identities: int
    max_batch: int

    def run(self, inputs: np.ndarray, identities: np.ndarray) -> np.ndarray: ...


def check_batch(
    inputs: np.ndarray, identities: np.ndarray, num_identities: int
) -> tuple[np.ndarray, np.ndarray]:
    """Validate and normalise an engine call's arguments (float32 / int64, contiguous)."""
    inputs = np.ascontiguousarray(inputs, dtype=np.float32)
    identities = np.ascontiguousarray(identities).astype(np.int64, copy=False).reshape(-1)
    if inputs.ndim != 4 or inputs.shape[1:] != (6, 128, 128):
        raise InputError(f"generator input must be [B, 6, 128, 128], got {list(inputs.shape)}")
    if identities.shape[0] != inputs.shape[0]:
        raise InputError(
            f"{identities.shape[0]} identities given for a batch of {inputs.shape[0]} faces"
        )
    bad = identities[(identities < 0) | (identities >= num_identities)]
    if bad.size:
        raise ConfigError(
            f"identity {int(bad[0])} is outside the model's range 0..{num_identities - 1}"
        )
    return inputs, identities


def batches(count: int, max_batch: int) -> list[slice]:
    """Consecutive slices of at most ``max_batch`` items covering ``count``."""
    return [slice(i, min(i + max_batch, count)) for i in range(0, count, max_batch)]
