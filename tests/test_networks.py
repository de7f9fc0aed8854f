"""Shapes and training-time behaviour of the three CIAGAN networks."""

from __future__ import annotations

import pytest
import torch

from ciagan_core.models import Discriminator, Generator, IdentityNet
from ciagan_core.models.generator import xavier_init_
from ciagan_core.models.layers import SpectralNormConv2d


def test_generator_with_configurable_identities_maps_6x128_to_3x128():
    net = Generator(num_identities=10).eval()
    out = net(torch.rand(2, 6, 128, 128), torch.tensor([0, 9]))
    assert out.shape == (2, 3, 128, 128)
    assert net.state_dict()["encode_one_hot.0.weight"].shape == (256, 10)


def test_generator_rejects_fewer_than_two_identities():
    with pytest.raises(ValueError, match="at least 2 identities"):
        Generator(num_identities=1)


@pytest.mark.parametrize("channels", [6, 3])
def test_discriminator_scores_each_image_with_configurable_input_channels(channels):
    net = Discriminator(in_channels=channels)
    out = net(torch.rand(3, channels, 128, 128))
    assert out.shape == (3, 1)
    assert net.dense0.in_features == 512 * 4 * 4


def test_identity_network_embeds_images():
    net = IdentityNet(embedding_size=50).eval()
    assert net(torch.rand(2, 3, 128, 128)).shape == (2, 50)


def test_spectral_norm_power_iteration_runs_only_in_training():
    torch.manual_seed(0)
    conv = SpectralNormConv2d(4, 8, 3)
    u0 = conv.weight_u.clone()
    conv.eval()(torch.rand(1, 4, 8, 8))
    assert torch.equal(conv.weight_u, u0)
    for _ in range(200):
        conv.train()(torch.rand(1, 4, 8, 8))
    assert not torch.equal(conv.weight_u, u0)
    # After convergence the normalised weight has unit spectral norm.
    sigma = torch.linalg.matrix_norm(conv.normalized_weight().detach().flatten(1), ord=2)
    assert sigma.item() == pytest.approx(1.0, abs=1e-2)


def test_spectral_norm_gradients_reach_the_original_weight():
    conv = SpectralNormConv2d(2, 3, 3).train()
    conv(torch.rand(1, 2, 6, 6)).sum().backward()
    assert conv.weight_orig.grad is not None and conv.weight_orig.grad.abs().sum() > 0


def test_xavier_init_sets_constant_bias():
    net = Generator(num_identities=4)
    xavier_init_(net, bias=0.01)
    assert torch.all(net.conv0.conv_r1.conv2d.bias == 0.01)
    assert torch.all(net.encode_one_hot[0].bias == 0.01)
