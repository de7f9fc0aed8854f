"""Shared fixtures: the real data and the parity fixture live in ../shared (never copied here)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def _require(path: Path) -> Path:
    if path.exists():
        return path
    message = f"{path} not found: tests need the shared data at ../shared from the project root"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require(SHARED)


@pytest.fixture(scope="session")
def parity_fixture(shared_dir: Path) -> dict[str, np.ndarray]:
    path = _require(shared_dir / "fixtures" / "official_generator_parity.npz")
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def official_state(parity_fixture):
    """The fixture's generator state_dict under the published key names, as float32 tensors."""
    import torch

    return {
        k.removeprefix("state/"): torch.from_numpy(v.astype(np.float32))
        for k, v in parity_fixture.items()
        if k.startswith("state/")
    }


@pytest.fixture(scope="session")
def official_checkpoint(official_state, tmp_path_factory) -> Path:
    """A published-style ``modelG.pth`` saved from the fixture's state_dict."""
    import torch

    path = tmp_path_factory.mktemp("official") / "modelG.pth"
    torch.save(official_state, path)
    return path


@pytest.fixture(scope="session")
def model_file(official_checkpoint, tmp_path_factory) -> Path:
    """The fixture's generator imported into a model file."""
    from ciagan_core.model_file import import_official

    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    import_official(official_checkpoint, path)
    return path
