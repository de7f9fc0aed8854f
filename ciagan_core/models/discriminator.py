"""The CIAGAN critic (REFERENCE §2) with the public training's channel widths."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ciagan_core.models.layers import ResidualBlockDown

WIDTHS = (64, 128, 256, 512, 512)


class Discriminator(nn.Module):
    """Five residual down blocks, then Linear 8192 -> 1024 -> 1 with LeakyReLU(0.2).

    ``in_channels`` is 6 by default: the public training feeds the blended image concatenated
    with the landmark image.
    """

    def __init__(self, in_channels: int = 6):
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be positive, got {in_channels}")
        self.in_channels = in_channels
        cin = in_channels
        for i, cout in enumerate(WIDTHS, start=1):
            setattr(self, f"conv{i}", ResidualBlockDown(cin, cout))
            cin = cout
        self.dense0 = nn.Linear(WIDTHS[-1] * 4 * 4, 1024)
        self.dense1 = nn.Linear(1024, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for i in range(1, len(WIDTHS) + 1):
            out = getattr(self, f"conv{i}")(out)
        out = F.leaky_relu(self.dense0(out.flatten(1)), 0.2)
        return F.leaky_relu(self.dense1(out), 0.2)
