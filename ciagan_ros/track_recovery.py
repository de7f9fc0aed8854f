"""Offline tracking for recorded streams: faces the detector missed, recovered from both sides.

A live node can only hold a lost face on its last box. Offline, the whole recording is known:
a face missed between two detections of the same track (a gap of up to ``max_gap`` frames) is
covered on boxes interpolated between them, the frames before a track's first detection are
covered when the track has a confident detection anywhere (its first hit may be weak: a face
blurred or dark as it comes into view, then seen clearly), and the frames after its last one
are held.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from ciagan_core.faces import FaceBox
from ciagan_core.tracking import IoUTracker

#: A track needs one detection scoring this much for the frames before its first hit to be
#: covered (a track of weak detections only may be a false positive: it is not led in).
LEAD_SCORE = 0.5


def recover_faces(
    detections: Sequence[Sequence[FaceBox]], max_gap: int, lead_score: float = LEAD_SCORE
) -> list[list[FaceBox]]:
    """The boxes to add to each frame (detector ``"tracker"``, score 0) for the faces the
    detector missed, given every frame's detections of one camera in order."""
    tracker = IoUTracker(max_missed=max_gap)
    seen: dict[int, list[tuple[int, FaceBox]]] = defaultdict(list)
    for index, boxes in enumerate(detections):
        arrays = np.stack([b.as_array() for b in boxes]) if boxes else np.zeros((0, 4))
        track_ids, _, _ = tracker.update(arrays)
        for box, track in zip(boxes, track_ids, strict=True):
            seen[track].append((index, box))
    added: list[list[FaceBox]] = [[] for _ in detections]
    last_frame = len(detections) - 1

    def add(index: int, xyxy: np.ndarray) -> None:
        added[index].append(FaceBox(*(float(v) for v in xyxy), 0.0, "tracker"))

    for hits in seen.values():
        for (i0, b0), (i1, b1) in itertools.pairwise(hits):
            for index in range(i0 + 1, i1):  # a gap (IoUTracker kept it within max_gap)
                t = (index - i0) / (i1 - i0)
                add(index, (1 - t) * b0.as_array() + t * b1.as_array())
        first_index, first = hits[0]
        # Any confident hit vouches for the whole track, its weak first hit included: the
        # frames before that first hit are covered on its box.
        if any(box.score >= lead_score for _, box in hits):
            for index in range(max(0, first_index - max_gap), first_index):
                add(index, first.as_array())
        last_index, last = hits[-1]  # held whatever its score: covering more is safe
        for index in range(last_index + 1, min(last_frame, last_index + max_gap) + 1):
            add(index, last.as_array())
    return added
