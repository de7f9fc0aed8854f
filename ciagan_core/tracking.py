"""A small IoU tracker: stable ids for ``per_track`` identities, and held boxes for faces the
detector misses for a few frames (fail closed: a face seen a moment ago is still covered)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ciagan_core.faces import box_iou


@dataclass
class Track:
    """A face followed across frames."""

    track_id: int
    box: np.ndarray
    #: Frames since the detector last saw it (0 = seen this frame).
    missed: int = 0
    hits: int = 1


class IoUTracker:
    """Greedy IoU association frame to frame."""

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 0):
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.tracks: list[Track] = []
        self._next_id = 1

    def reset(self) -> None:
        self.tracks = []
        self._next_id = 1

    def update(self, boxes: np.ndarray) -> tuple[list[int], list[Track], list[int]]:
        """Associate this frame's boxes [N, 4].

        Returns (track id per box, tracks missed this frame but still held, ids that ended).
        """
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        assigned: list[int | None] = [None] * len(boxes)
        matched: set[int] = set()
        if self.tracks and len(boxes):
            ious = box_iou(boxes, np.stack([t.box for t in self.tracks]))
            for flat in np.argsort(-ious, axis=None):
                i, j = np.unravel_index(flat, ious.shape)
                if ious[i, j] < self.iou_threshold:
                    break
                if assigned[i] is not None or j in matched:
                    continue
                track = self.tracks[j]
                track.box, track.missed, track.hits = boxes[i], 0, track.hits + 1
                assigned[i] = track.track_id
                matched.add(int(j))
        held, ended, alive = [], [], []
        for j, track in enumerate(self.tracks):
            if j not in matched:
                track.missed += 1
                if track.missed > self.max_missed:
                    ended.append(track.track_id)
                    continue
                held.append(track)
            alive.append(track)
        for i, box in enumerate(boxes):
            if assigned[i] is None:
                track = Track(self._next_id, box)
                self._next_id += 1
                alive.append(track)
                assigned[i] = track.track_id
        self.tracks = alive
        return [int(a) for a in assigned], held, ended
