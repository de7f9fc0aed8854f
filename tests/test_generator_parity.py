"""The generator reproduces the published implementation's output on the official fixture."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ciagan_core.model_file import load_model_file
from ciagan_core.models import Generator, fold_spectral_norm

TOLERANCE = 1e-4


def _run(net: Generator, fixture, identity: torch.Tensor) -> np.ndarray:
    net.eval()
    with torch.no_grad():
        return net(torch.from_numpy(fixture["generator_input"]).float(), identity).numpy()


def _ids(fixture) -> torch.Tensor:
    return torch.from_numpy(fixture["identity"]).long()


def test_unfolded_network_loads_published_state_dict_and_matches(parity_fixture, official_state):
    net = Generator(num_identities=1200)
    net.load_state_dict(official_state, strict=True)
    out = _run(net, parity_fixture, _ids(parity_fixture))
    assert out.shape == (3, 3, 128, 128)
    assert np.abs(out - parity_fixture["raw_output"]).max() < TOLERANCE


def test_one_hot_and_integer_identities_give_the_same_output(parity_fixture, official_state):
    net = Generator(num_identities=1200)
    net.load_state_dict(official_state)
    one_hot = torch.nn.functional.one_hot(_ids(parity_fixture), 1200).float()
    by_id = _run(net, parity_fixture, _ids(parity_fixture))
    by_one_hot = _run(net, parity_fixture, one_hot)
    assert np.abs(by_id - by_one_hot).max() < 1e-5


def test_folded_model_file_from_import_official_matches(parity_fixture, model_file):
    loaded = load_model_file(model_file)
    assert loaded.info.num_identities == 1200
    out = _run(loaded.build_generator(), parity_fixture, _ids(parity_fixture))
    assert np.abs(out - parity_fixture["raw_output"]).max() < TOLERANCE


def test_blended_output_follows_the_published_formula(parity_fixture):
    raw, mask, face = (parity_fixture[k] for k in ("raw_output", "mask", "face"))
    blended = np.clip(raw * mask + face * (1 - mask), 0, 1)
    np.testing.assert_allclose(blended, parity_fixture["blended_output"], atol=1e-6)


def test_folding_removes_every_spectral_norm_tensor(official_state):
    folded = fold_spectral_norm(official_state)
    assert not [k for k in folded if k.endswith(("weight_orig", "weight_u", "weight_v"))]
    assert set(folded) == set(Generator(1200, spectral_norm=False).state_dict())


def test_different_identities_give_different_faces(parity_fixture, official_state):
    net = Generator(num_identities=1200)
    net.load_state_dict(official_state)
    a = _run(net, parity_fixture, torch.tensor([0, 0, 0]))
    b = _run(net, parity_fixture, torch.tensor([5, 5, 5]))
    assert np.abs(a - b).mean() > 1e-3


@pytest.mark.parametrize("batch", [1, 4])
def test_output_of_a_face_does_not_depend_on_its_batch(parity_fixture, official_state, batch):
    net = Generator(num_identities=1200)
    net.load_state_dict(official_state)
    x = torch.from_numpy(parity_fixture["generator_input"][:1]).float().repeat(batch, 1, 1, 1)
    with torch.no_grad():
        out = net.eval()(x, torch.zeros(batch, dtype=torch.long)).numpy()
    assert np.abs(out[-1] - parity_fixture["raw_output"][0]).max() < TOLERANCE
