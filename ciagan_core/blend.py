"""Compositing replaced regions back into the frame through a feathered mask.

Every method (generated face, blur, pixelate, solid) ends here: a region polygon in frame pixels
becomes an alpha matte that is 1 inside the polygon, falls off smoothly over twice the feather
radius outside it, and is exactly 0 beyond, so pixels outside every face's grown region stay
bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_SUBPIXEL_BITS = 4  # fillPoly fixed-point precision


@dataclass(frozen=True)
class Matte:
    """An alpha matte over the frame rectangle ``roi`` = (x0, y0, x1, y1)."""

    roi: tuple[int, int, int, int]
    #: float32 [h, w] in [0, 1]; 1 inside the region.
    alpha: np.ndarray

    @property
    def slices(self) -> tuple[slice, slice]:
        x0, y0, x1, y1 = self.roi
        return slice(y0, y1), slice(x0, x1)


def feather_radius(feather: float, scale: float) -> int:
    """Feather in frame pixels for a feather given in network pixels at ``scale`` px/net px."""
    return max(1, int(np.ceil(feather * scale)))


def region_matte(polygon: np.ndarray, frame_shape: tuple[int, ...], radius: int) -> Matte | None:
    """The matte of ``polygon`` (frame pixels): 1 inside, a cosine fall-off over ``2 * radius``
    pixels of exact Euclidean distance outside, 0 beyond. None if the polygon misses the frame.
    """
    height, width = frame_shape[:2]
    margin = 2 * radius + 2
    x0 = max(int(np.floor(polygon[:, 0].min())) - margin, 0)
    y0 = max(int(np.floor(polygon[:, 1].min())) - margin, 0)
    x1 = min(int(np.ceil(polygon[:, 0].max())) + margin + 1, width)
    y1 = min(int(np.ceil(polygon[:, 1].max())) + margin + 1, height)
    if x0 >= x1 or y0 >= y1:
        return None
    inside = np.zeros((y1 - y0, x1 - x0), np.uint8)
    pts = np.round((polygon - (x0, y0)) * (1 << _SUBPIXEL_BITS)).astype(np.int32)
    cv2.fillPoly(inside, [pts], 255, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
    if not inside.any():
        return None
    # One linear-time pass instead of dilate + blur: cheap for large faces, exact support.
    distance = cv2.distanceTransform(255 - inside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    reach = float(2 * radius)
    alpha = 0.5 * (1.0 + np.cos(np.pi * np.minimum(distance, reach) / reach))
    alpha[distance >= reach] = 0.0
    return Matte((x0, y0, x1, y1), alpha.astype(np.float32))


def composite(frame: np.ndarray, matte: Matte, replacement: np.ndarray) -> None:
    """frame[roi] = alpha * replacement + (1 - alpha) * frame[roi], in place; alpha 0 untouched.

    ``replacement`` has the ROI's shape (uint8, or float in 0..255).
    """
    region = frame[matte.slices]
    if replacement.dtype != region.dtype:
        replacement = np.clip(np.rint(replacement), 0, 255).astype(region.dtype)
    mixed = cv2.blendLinear(replacement, region, matte.alpha, 1.0 - matte.alpha)
    mixed = mixed.reshape(region.shape)
    touched = matte.alpha > 0
    # OpenCV's masked copy writes straight into the frame's view, 100x faster than numpy's
    # where=. A view OpenCV cannot wrap (reversed strides, say) takes the numpy path.
    try:
        if np.shares_memory(cv2.copyTo(mixed, touched.view(np.uint8), region), region):
            return
    except cv2.error:
        pass
    np.copyto(region, mixed, where=touched[..., None] if region.ndim == 3 else touched)


def warp_to_frame(
    image: np.ndarray, net_to_frame: np.ndarray, roi: tuple[int, int, int, int]
) -> np.ndarray:
    """Map a network-space image (HWC) onto the frame rectangle ``roi`` (bilinear)."""
    x0, y0, x1, y1 = roi
    affine = net_to_frame.copy()
    affine[:, 2] -= (x0, y0)
    return cv2.warpAffine(
        image, affine, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
