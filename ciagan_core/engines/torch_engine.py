"""PyTorch engine: the generator's inference graph on CPU or CUDA (fp16 on CUDA)."""

from __future__ import annotations

import numpy as np
import torch

from ciagan_core.engines.base import batches, check_batch
from ciagan_core.errors import BackendUnavailableError, ConfigError
from ciagan_core.model_file import LoadedModel
from ciagan_core.models.inference_graph import GraphModule, build_inference_graph


class TorchEngine:
    """The restructured generator (``models.inference_graph``) in PyTorch eager mode."""

    name = "torch"

    def __init__(
        self, model: LoadedModel, device: str = "cpu", precision: str = "fp32", max_batch: int = 32
    ):
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailableError(f"device {device!r} requested but CUDA is unavailable")
        if precision not in ("fp32", "fp16"):
            raise ConfigError(f"precision must be fp32 or fp16, got {precision!r}")
        if precision == "fp16" and not device.startswith("cuda"):
            raise ConfigError("fp16 in the torch engine needs a CUDA device")
        self.device = torch.device(device)
        if self.device.type == "cuda" and precision == "fp32":
            # cuDNN convolutions default to TF32 (10-bit mantissa); fp32 must mean fp32.
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.num_identities = model.info.num_identities
        self.max_batch = max_batch
        graph = build_inference_graph(model.state_dict, self.num_identities)
        self.net = GraphModule(graph, half=precision == "fp16").eval().to(self.device)

    def run(self, inputs: np.ndarray, identities: np.ndarray) -> np.ndarray:
        inputs, identities = check_batch(inputs, identities, self.num_identities)
        out = np.empty((inputs.shape[0], 3, 128, 128), np.float32)
        with torch.inference_mode():
            for sl in batches(inputs.shape[0], self.max_batch):
                x = torch.from_numpy(inputs[sl]).to(self.device)
                ids = torch.from_numpy(identities[sl]).to(self.device)
                out[sl] = self.net(x, ids).cpu().numpy()
        return out
