"""Classic anonymization methods: blur, pixelate, solid fill (the paper's baselines).

Strength is defined on the aligned 128 px face, as in the paper's baselines (blur kernel 9 or 17,
pixelization 8x8 or 16x16), and scaled to the face's size in the frame, so a face far from the
camera is hidden as well as a close one. The defaults are chosen by measured privacy, not by the
paper: ``ciagan eval`` finds the paper's blurs leave most faces identifiable.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ciagan_core.blend import Matte, composite
from ciagan_core.errors import ConfigError

METHODS = ("ciagan", "blur", "pixelate", "solid")
REGIONS = ("mask", "box")


@dataclass(frozen=True)
class MethodSettings:
    """Parameters of the classic methods."""

    #: Gaussian kernel on a 128 px aligned face (sigma 12.5 px, about a fifth of the face's
    #: width). The paper's baselines, 9 and 17, are weak on purpose: with 17, dlib's face
    #: recognizer still names 62% of blurred faces; with 81, at most 3% at any face size, at
    #: chance level (tuned on the "tune" identities, reported on the held-out ones:
    #: benchmarks/results/privacy_cpu.md).
    blur_kernel: int = 81
    #: Cells across the region (the paper's baselines: 8 or 16; fewer is coarser). 16 leaves
    #: 12% of 24 px faces identifiable; 8 stays at chance level at every size.
    pixelate_cells: int = 8
    #: BGR fill colour of ``solid``.
    solid_color: tuple[int, int, int] = (0, 0, 0)

    def validate(self) -> None:
        if self.blur_kernel < 3 or self.blur_kernel % 2 == 0:
            raise ConfigError(f"blur_kernel must be an odd number >= 3, got {self.blur_kernel}")
        if not 2 <= self.pixelate_cells <= 64:
            raise ConfigError(f"pixelate_cells must be in 2..64, got {self.pixelate_cells}")
        if len(self.solid_color) != 3 or not all(0 <= c <= 255 for c in self.solid_color):
            raise ConfigError(f"solid_color must be three values 0..255, got {self.solid_color}")


def apply_method(
    frame: np.ndarray, method: str, matte: Matte, scale: float, settings: MethodSettings
) -> None:
    """Replace the matte's region of ``frame`` in place with ``method``.

    ``scale`` is frame pixels per pixel of a 128 px aligned face.
    """
    sl = matte.slices
    roi = frame[sl]
    if method == "blur":
        replacement = _blur_at_face_scale(frame, matte.roi, settings.blur_kernel, scale)
    elif method == "pixelate":
        replacement = _pixelate(roi, matte.alpha > 0, settings.pixelate_cells)
    elif method == "solid":
        replacement = np.empty_like(roi)
        replacement[...] = np.array(
            settings.solid_color[: roi.shape[2] if roi.ndim == 3 else 1], dtype=roi.dtype
        )
    else:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    composite(frame, matte, replacement)


def blur_sigma(kernel: int) -> float:
    """The Gaussian sigma OpenCV gives a ``kernel`` x ``kernel`` kernel (sigma 0)."""
    return 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8


#: Blurs run at a resolution where their sigma is at most this many pixels: the same result as
#: a large kernel at full size, at a small fraction of the cost.
_WORK_SIGMA = 2.0


def _blur_at_face_scale(
    frame: np.ndarray, roi: tuple[int, int, int, int], kernel: int, scale: float
) -> np.ndarray:
    """Gaussian blur of a ``kernel`` px kernel on the face brought to its aligned 128 px size.

    A face larger than that is blurred with a proportionally larger sigma (a face smaller than
    it keeps the 128 px sigma, relatively stronger). The blur runs on the region's surroundings
    shrunk until the sigma is ``_WORK_SIGMA`` px and enlarged again: the cost stays flat as the
    face and the kernel grow.
    """
    x0, y0, x1, y1 = roi
    height, width = frame.shape[:2]
    sigma = blur_sigma(kernel) * max(scale, 1.0)  # in frame pixels
    pad = int(np.ceil(3 * sigma))  # real neighbours for the kernel, not ROI edges
    px0, py0 = max(x0 - pad, 0), max(y0 - pad, 0)
    px1, py1 = min(x1 + pad, width), min(y1 + pad, height)
    context = frame[py0:py1, px0:px1]
    shrink = max(sigma / _WORK_SIGMA, 1.0)
    if shrink > 1.0:
        small_size = (
            max(1, round(context.shape[1] / shrink)),
            max(1, round(context.shape[0] / shrink)),
        )
        small = cv2.resize(context, small_size, interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), sigma / shrink, borderType=cv2.BORDER_REPLICATE)
        blurred = cv2.resize(
            small, (context.shape[1], context.shape[0]), interpolation=cv2.INTER_LINEAR
        )
    else:
        blurred = cv2.GaussianBlur(context, (kernel, kernel), 0, borderType=cv2.BORDER_REPLICATE)
    return blurred[y0 - py0 : y0 - py0 + (y1 - y0), x0 - px0 : x0 - px0 + (x1 - x0)]


def _pixelate(roi: np.ndarray, inside: np.ndarray, cells: int) -> np.ndarray:
    ys, xs = np.nonzero(inside)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    replacement = roi.copy()
    part = roi[y0:y1, x0:x1]
    small = cv2.resize(
        part, (min(cells, part.shape[1]), min(cells, part.shape[0])), interpolation=cv2.INTER_AREA
    )
    replacement[y0:y1, x0:x1] = cv2.resize(
        small, (part.shape[1], part.shape[0]), interpolation=cv2.INTER_NEAREST
    )
    return replacement
