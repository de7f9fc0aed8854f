"""Fold spectral normalisation into plain convolution weights (REFERENCE §1).

At inference the published network divides each ``weight_orig`` by
``sigma = u^T (W v)`` with the stored ``u`` and ``v``. Folding does that division once, so the
inference network, the ONNX graph and the TensorRT engine carry ordinary conv weights.
"""

from __future__ import annotations

import torch

SN_SUFFIXES = ("weight_orig", "weight_u", "weight_v")


def fold_spectral_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Copy of ``state`` with every ``X.weight_orig/_u/_v`` triple replaced by ``X.weight``.

    Computed in float64 and stored in float32, so the folded weights are at least as close to the
    exact division as the published float32 forward pass.
    """
    folded: dict[str, torch.Tensor] = {}
    prefixes = {k[: -len(".weight_orig")] for k in state if k.endswith(".weight_orig")}
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        if prefix in prefixes and leaf in SN_SUFFIXES:
            continue
        folded[key] = value.to(torch.float32)
    for prefix in sorted(prefixes):
        try:
            w = state[f"{prefix}.weight_orig"].to(torch.float64)
            u = state[f"{prefix}.weight_u"].to(torch.float64)
            v = state[f"{prefix}.weight_v"].to(torch.float64)
        except KeyError as exc:
            raise KeyError(f"spectral norm of {prefix!r} is incomplete: missing {exc}") from None
        sigma = torch.dot(u, w.flatten(1) @ v)
        folded[f"{prefix}.weight"] = (w / sigma).to(torch.float32)
    return folded
