"""The CIAGAN generator (REFERENCE §1, supplement Table 2), 128 px.

``Generator(spectral_norm=True)`` is the trainable network and loads a published checkpoint with
``load_state_dict`` directly. ``Generator(spectral_norm=False)`` is the folded inference network
that model files hold: identical computation, plain convolutions (see ``models.folding``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ciagan_core.models.layers import ConvLayer, ResidualBlock, ResidualBlockDown, ResidualBlockUp

IMAGE_SIZE = 128
INPUT_CHANNELS = 6
#: Widths of the identity MLP (supplement Table 4).
EMBED_WIDTHS = (256, 256, 256, 256, 512, 512, 512)
#: Multiply-accumulates of one face, counted on the network (issue #4 quotes 3.28 GFLOP).
FLOPS_PER_FACE = 3.28e9


class Generator(nn.Module):
    """Encoder-decoder generator conditioned on a target identity.

    ``forward(x, identity)``: ``x`` is [B, 6, 128, 128] in [0, 1] (landmark image, masked face);
    ``identity`` is either integer ids [B] or a one-hot (or any soft) float matrix [B, N].
    Returns the raw [B, 3, 128, 128] output, without activation, as published.
    """

    def __init__(self, num_identities: int = 1200, spectral_norm: bool = True):
        super().__init__()
        if num_identities < 2:
            raise ValueError(f"a generator needs at least 2 identities, got {num_identities}")
        self.num_identities = num_identities
        sn = spectral_norm
        widths = (32, 64, 128, 256, 256)
        cin = INPUT_CHANNELS
        for i, cout in enumerate(widths):
            setattr(self, f"conv{i}", ResidualBlockDown(cin, cout, spectral_norm=sn))
            setattr(self, f"in{i}_e", nn.InstanceNorm2d(cout, affine=True))
            cin = cout
        self.embed = nn.Sequential(
            ConvLayer(512, 256, 3, spectral_norm=sn), nn.InstanceNorm2d(256, affine=True)
        )
        for i in range(1, 5):
            setattr(self, f"res{i}", ResidualBlock(256, spectral_norm=sn))
        ups = ((4, 256, 256), (3, 256, 128), (2, 128, 64), (1, 64, 32), (0, 32, 16))
        for i, cin_d, cout_d in ups:
            setattr(self, f"deconv{i}", ResidualBlockUp(cin_d, cout_d, spectral_norm=sn))
            setattr(self, f"in{i}_d", nn.InstanceNorm2d(cout_d, affine=True))
        # The output conv is plain and zero-padded in the published network.
        self.conv_end = nn.Sequential(nn.Conv2d(16, 3, kernel_size=3, stride=1, padding=1))

        mlp: list[nn.Module] = []
        width_in = num_identities
        for width in EMBED_WIDTHS:
            mlp += [nn.Linear(width_in, width), nn.LeakyReLU(0.2)]
            width_in = width
        self.encode_one_hot = nn.Sequential(*mlp)
        noise: list[nn.Module] = []
        for cin_n, cout_n in ((32, 64), (64, 128), (128, 256)):
            noise += [
                ConvLayer(cin_n, cout_n, 3, spectral_norm=sn),
                nn.LeakyReLU(0.2),
                nn.InstanceNorm2d(cout_n, affine=True),
            ]
        self.encode_noise = nn.Sequential(*noise)

    def embed_identity(self, identity: torch.Tensor) -> torch.Tensor:
        """Identity code [B, 256, 4, 4] from integer ids [B] or a one-hot matrix [B, N]."""
        first = self.encode_one_hot[0]
        assert isinstance(first, nn.Linear)
        if identity.dtype.is_floating_point:
            hidden = first(identity)
        else:
            # A one-hot matmul selects one weight column: a gather is the same sum, N times
            # cheaper, and exports as an ONNX Gather that every engine supports.
            hidden = F.embedding(identity.long(), first.weight.t()) + first.bias
        code = self.encode_one_hot[1:](hidden)
        return self.encode_noise(code.view(-1, 32, 4, 4))

    def forward(self, x: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        out = x
        for i in range(5):
            out = getattr(self, f"in{i}_e")(getattr(self, f"conv{i}")(out))
        out = self.embed(torch.cat((out, self.embed_identity(identity)), 1))
        for i in range(1, 5):
            out = getattr(self, f"res{i}")(out)
        for i in range(4, -1, -1):
            out = getattr(self, f"in{i}_d")(getattr(self, f"deconv{i}")(out))
        return self.conv_end(out)


def xavier_init_(module: nn.Module, bias: float = 0.01) -> None:
    """The published training initialisation: Xavier-normal conv/linear weights, constant bias."""
    for sub in module.modules():
        weight = getattr(sub, "weight_orig", None)
        if weight is None and isinstance(sub, (nn.Conv2d, nn.Linear)):
            weight = sub.weight
        if weight is None:
            continue
        nn.init.xavier_normal_(weight)
        if getattr(sub, "bias", None) is not None:
            nn.init.constant_(sub.bias, bias)
