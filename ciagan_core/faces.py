"""Records that flow through the pipeline: detected boxes and per-face results."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FaceBox:
    """A detected face in frame pixels (x0, y0 inclusive, x1, y1 exclusive, floats)."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float
    detector: str
    #: Five points (eyes, nose, mouth corners) when the detector gives them, [5, 2].
    keypoints: np.ndarray | None = None

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def center(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2.0, (self.y0 + self.y1) / 2.0

    def as_array(self) -> np.ndarray:
        return np.array([self.x0, self.y0, self.x1, self.y1], dtype=np.float64)

    def scaled(self, factor: float) -> FaceBox:
        """The same box grown (or shrunk) about its centre by ``factor``."""
        cx, cy = self.center
        hw, hh = self.width * factor / 2.0, self.height * factor / 2.0
        return FaceBox(
            cx - hw, cy - hh, cx + hw, cy + hh, self.score, self.detector, self.keypoints
        )


@dataclass
class FaceResult:
    """What the pipeline found and did for one face of one frame."""

    box: FaceBox
    #: 68 iBUG landmarks in frame pixels [68, 2], or None when none were trusted.
    landmarks: np.ndarray | None = None
    #: The method applied ("ciagan", "blur", "pixelate", "solid").
    method: str = ""
    #: "mask" or "box": the region the method replaced.
    region: str = "box"
    #: Why the configured method/region was not used (empty when it was).
    fallback_reason: str = ""
    identity: int | None = None
    track_id: int | None = None
    #: The replaced region's polygon in frame pixels [K, 2] (mask region) or box corners.
    polygon: np.ndarray | None = None
    #: Feather radius in pixels: pixels farther than 2 * feather_px from ``polygon`` are
    #: untouched.
    feather_px: int = 0


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes a [N, 4] and b [M, 4] (x0, y0, x1, y1) -> [N, M]."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; indices kept, best score first."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        if order.size == 1:
            break
        ious = box_iou(boxes[best], boxes[order[1:]])[0]
        order = order[1:][ious < iou_threshold]
    return np.array(keep, dtype=np.int64)
