"""The ``face-alignment`` package's 2D-FAN (Bulat & Tzimiropoulos 2017), BSD-3 licensed.

The alternative to dlib's predictor for commercial users. Its weights are a TorchScript file
(``2DFAN4-cd938726ad.zip``) that ``face-alignment`` normally downloads on first use; this backend
never downloads anything: it loads the file from ``weights_path`` or from the torch hub cache
(``$TORCH_HOME/hub/checkpoints``) and fails with instructions when it is absent.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ciagan_core.errors import BackendUnavailableError
from ciagan_core.faces import FaceBox

WEIGHTS_FILE = "2DFAN4-cd938726ad.zip"
_RESOLUTION = 256
_REFERENCE_SCALE = 195.0  # face-alignment's box-size normaliser
_CENTER_SHIFT = 0.12  # the crop centre moves up by this share of the box height


def find_weights(weights_path: str | Path | None = None) -> Path:
    """Locate the FAN weights locally, or raise with instructions (no download)."""
    candidates = []
    if weights_path:
        path = Path(weights_path)
        candidates.append(path / WEIGHTS_FILE if path.is_dir() else path)
    else:
        import torch

        candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise BackendUnavailableError(
        f"face_alignment landmarks: weights not found at {candidates[0]}. Download "
        f"{WEIGHTS_FILE} from the face-alignment project's release page on a machine with "
        "internet access, then pass its path (or folder) as the landmark weights path, or place "
        "it in the torch hub cache ($TORCH_HOME/hub/checkpoints)."
    )


class FanLandmarker:
    """2D-FAN on CPU or CUDA, fed with the pipeline's detector boxes."""

    name = "face_alignment"

    def __init__(self, weights_path: str | Path | None = None, device: str = "cpu"):
        path = find_weights(weights_path)
        try:
            from face_alignment.utils import crop, get_preds_fromhm
        except ImportError as exc:
            raise BackendUnavailableError(
                "face_alignment landmarks need the face-alignment package "
                "(pip install 'ciagan_ros[fan]')"
            ) from exc
        import torch

        self._torch = torch
        self._crop, self._decode = crop, get_preds_fromhm
        self.device = device
        self._net = torch.jit.load(str(path), map_location=device).eval()

    def landmarks(self, frame_bgr: np.ndarray, boxes: list[FaceBox]) -> list[np.ndarray | None]:
        torch = self._torch
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        results: list[np.ndarray | None] = []
        for box in boxes:
            center = np.array([box.center[0], box.center[1] - box.height * _CENTER_SHIFT])
            scale = (box.width + box.height) / _REFERENCE_SCALE
            patch = self._crop(rgb, center, scale, resolution=_RESOLUTION)
            tensor = torch.from_numpy(patch.transpose(2, 0, 1)).float().div(255.0)
            with torch.no_grad():
                heatmaps = self._net(tensor[None].to(self.device))[-1].float().cpu().numpy()
            decoded = self._decode(heatmaps, center, scale)
            points = np.asarray(decoded[1] if isinstance(decoded, tuple) else decoded)
            points = points.reshape(-1, 68, 2)[0].astype(np.float64)
            results.append(points if np.isfinite(points).all() else None)
        return results
