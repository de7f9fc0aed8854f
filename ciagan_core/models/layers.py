"""Building blocks of the CIAGAN networks (REFERENCE §1), named as in the published weights.

Every convolution is reflection-padded and, in the trainable form, spectrally normalised. The
spectral norm is our own small module rather than ``torch.nn.utils.spectral_norm`` so that its
parameter names (``weight_orig``, ``weight_u``, ``weight_v``) stay those of the published
checkpoints whatever torch version is installed, and so that the folded form used for inference
and export is an ordinary ``nn.Conv2d`` with no hooks.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

_SN_EPS = 1e-12


class SpectralNormConv2d(nn.Module):
    """Conv2d whose weight is divided by its largest singular value (Miyato et al. 2018).

    In training mode one power iteration refines ``weight_u``/``weight_v`` per forward call, as
    torch's own spectral norm does; in eval mode the stored vectors are used as they are, which is
    what the published implementation computes at inference.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.stride = stride
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride)
        self.weight_orig = nn.Parameter(conv.weight.detach().clone())
        self.bias = nn.Parameter(conv.bias.detach().clone())
        fan = in_channels * kernel_size * kernel_size
        self.register_buffer(
            "weight_u", F.normalize(torch.randn(out_channels), dim=0, eps=_SN_EPS)
        )
        self.register_buffer("weight_v", F.normalize(torch.randn(fan), dim=0, eps=_SN_EPS))

    def normalized_weight(self) -> torch.Tensor:
        """The weight the convolution uses: ``weight_orig / sigma``.

        Computed in float32 even under mixed precision: sigma from a bfloat16 power iteration
        is off by up to 1%, and the stored ``u``/``v`` would drift with it.
        """
        with torch.autocast(self.weight_orig.device.type, enabled=False):
            return self._normalized_weight()

    def _normalized_weight(self) -> torch.Tensor:
        w_mat = self.weight_orig.flatten(1)
        u, v = self.weight_u, self.weight_v
        if self.training:
            with torch.no_grad():
                v = F.normalize(w_mat.t() @ u, dim=0, eps=_SN_EPS)
                u = F.normalize(w_mat @ v, dim=0, eps=_SN_EPS)
                self.weight_u.copy_(u)
                self.weight_v.copy_(v)
            # Clones keep autograd from seeing the in-place buffer update.
            u, v = u.clone(), v.clone()
        sigma = torch.dot(u, w_mat @ v)
        return self.weight_orig / sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.normalized_weight(), self.bias, self.stride)


class ConvLayer(nn.Module):
    """Reflection padding (k // 2) followed by a convolution, spectrally normalised or folded."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        spectral_norm: bool = True,
    ):
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        if spectral_norm:
            self.conv2d: nn.Module = SpectralNormConv2d(
                in_channels, out_channels, kernel_size, stride
            )
        else:
            self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(self.reflection_pad(x))


class ResidualBlockDown(nn.Module):
    """Right: ReLU, conv3x3, ReLU, conv3x3, avgpool2. Left: conv1x1, avgpool2. Sum."""

    def __init__(self, in_channels: int, out_channels: int, spectral_norm: bool = True):
        super().__init__()
        self.conv_r1 = ConvLayer(in_channels, out_channels, 3, spectral_norm=spectral_norm)
        self.conv_r2 = ConvLayer(out_channels, out_channels, 3, spectral_norm=spectral_norm)
        self.conv_l = ConvLayer(in_channels, out_channels, 1, spectral_norm=spectral_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        right = self.conv_r2(F.relu(self.conv_r1(F.relu(x))))
        return F.avg_pool2d(self.conv_l(x), 2) + F.avg_pool2d(right, 2)


class ResidualBlockUp(nn.Module):
    """Right: IN, ReLU, upsample, conv3x3, IN, ReLU, conv3x3. Left: upsample, conv1x1. Sum."""

    def __init__(self, in_channels: int, out_channels: int, spectral_norm: bool = True):
        super().__init__()
        self.norm_r1 = nn.InstanceNorm2d(in_channels, affine=True)
        self.conv_r1 = ConvLayer(in_channels, out_channels, 3, spectral_norm=spectral_norm)
        self.norm_r2 = nn.InstanceNorm2d(out_channels, affine=True)
        self.conv_r2 = ConvLayer(out_channels, out_channels, 3, spectral_norm=spectral_norm)
        self.conv_l = ConvLayer(in_channels, out_channels, 1, spectral_norm=spectral_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        right = F.interpolate(F.relu(self.norm_r1(x)), scale_factor=2.0, mode="nearest")
        right = self.conv_r2(F.relu(self.norm_r2(self.conv_r1(right))))
        left = self.conv_l(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return left + right


class ResidualBlock(nn.Module):
    """conv3x3, IN, ReLU, conv3x3, IN, plus the input."""

    def __init__(self, channels: int, spectral_norm: bool = True):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3, spectral_norm=spectral_norm)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, 3, spectral_norm=spectral_norm)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.in1(self.conv1(x)))
        return x + self.in2(self.conv2(out))
