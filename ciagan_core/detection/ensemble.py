"""Union of several detectors merged by NMS: the paper's proposed cure for missed faces."""

from __future__ import annotations

import numpy as np

from ciagan_core.detection.base import Detector
from ciagan_core.faces import FaceBox, nms


class EnsembleDetector:
    """Runs every member; overlapping boxes are merged, earlier members' boxes preferred.

    Scores of different backends are not comparable, so the merge ranks by member order first
    (the first member's box, e.g. CenterFace's with its keypoints, survives) and score second.
    """

    name = "ensemble"

    def __init__(self, members: list[Detector], iou_threshold: float = 0.4):
        if not members:
            raise ValueError("an ensemble needs at least one detector")
        self.members = members
        self.iou_threshold = iou_threshold

    @property
    def precision(self) -> str | None:
        """The precision of the first member that has one (CenterFace's)."""
        return next((p for m in self.members if (p := getattr(m, "precision", None))), None)

    def detect(self, frame_bgr: np.ndarray) -> list[FaceBox]:
        boxes: list[FaceBox] = []
        ranks: list[float] = []
        for member_index, member in enumerate(self.members):
            found = sorted(member.detect(frame_bgr), key=lambda b: -b.score)
            boxes += found
            # Member order decides first; within a member, its own score order (position).
            priority = len(self.members) - member_index
            ranks += [priority - 0.5 * i / max(len(found), 1) for i in range(len(found))]
        if not boxes:
            return []
        keep = nms(np.stack([b.as_array() for b in boxes]), np.array(ranks), self.iou_threshold)
        return [boxes[i] for i in keep]
