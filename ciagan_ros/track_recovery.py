"""Offline tracking for recorded streams: faces the detector missed, recovered from both sides.

A live node can only hold a lost face on its last box. Offline, the whole recording is known:
a face missed between two detections of the same track (a gap of up to ``max_gap`` frames) is
covered on boxes interpolated between them, the frames before a track's first detection are
covered when the track has a confident detection anywhere (its first hit may be weak: a face
blurred or dark as it comes into view, then seen clearly), and the frames after its last one
are held.

Frame-to-frame IoU cannot follow a fast face (at 60 px a frame, a 95 px face's boxes in two
frames barely overlap), and loses it across a gap, so the IoU tracks are then linked: a track
that ends is continued by one that starts within ``max_gap`` frames with a box of similar size
at a place its motion allows (a link may join two faces, so in a link's gap each side is also
covered as if there were none). Before a track's first hit and after its last one, the face is
covered where its motion would take it and where it was, on a box that grows with the distance
from the hit.
"""

from __future__ import annotations

import bisect
import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ciagan_core.faces import FaceBox
from ciagan_core.tracking import IoUTracker

#: A track needs one detection scoring this much for the frames before its first hit to be
#: covered (a track of weak detections only may be a false positive: it is not led in).
LEAD_SCORE = 0.5
#: Linking: the later track's first box may be up to this many times larger or smaller...
LINK_SIZE_RATIO = 2.0
#: ...and lie up to this many box sizes per frame of the gap from the earlier one's last box
#: (a face 100 px wide at 150 px a frame crosses a 1920 px frame in 13 frames) or, when the
#: earlier track's velocity predicts where it is, up to LINK_PREDICTION_SLACK box sizes plus
#: LINK_PREDICTION_SLACK_PER_FRAME per frame from that prediction.
LINK_REACH_PER_FRAME = 1.5
LINK_PREDICTION_SLACK = 0.5
LINK_PREDICTION_SLACK_PER_FRAME = 0.25
#: A track's velocity at its start (end): from its first (last) hit to its hit furthest from
#: it within this many frames.
VELOCITY_FRAMES = 5
#: A box extrapolated n frames from its hit covers the face both where it was and where its
#: velocity (up to 1 + SPEED_SLACK times) would take it, grown on every side by
#: n x GROW_PER_FRAME of its size; an interpolated box grows the same with the distance from
#: its nearer hit.
SPEED_SLACK = 0.25
GROW_PER_FRAME = 0.05


@dataclass
class _Track:
    hits: list[tuple[int, FaceBox]]
    #: Positions in ``hits`` where a linked track begins (the gap before them is a link's).
    joins: set[int] = field(default_factory=set)

    @property
    def start(self) -> int:
        return self.hits[0][0]

    @property
    def end(self) -> int:
        return self.hits[-1][0]


def recover_faces(
    detections: Sequence[Sequence[FaceBox]],
    max_gap: int,
    lead_score: float = LEAD_SCORE,
    frame_sizes: Sequence[tuple[int, int] | None] | None = None,
) -> list[list[FaceBox]]:
    """The boxes to add to each frame (detector ``"tracker"``, score 0) for the faces the
    detector missed, given every frame's detections of one camera in order. ``frame_sizes``
    (width, height per frame), when given, clips the boxes to their frame; boxes wholly
    outside it (a face that left the frame) are not added."""
    tracks = _linked(_iou_tracks(detections, max_gap), max_gap)
    added: list[list[FaceBox]] = [[] for _ in detections]
    last_frame = len(detections) - 1

    def add(index: int, xyxy: np.ndarray) -> None:
        x0, y0, x1, y1 = (float(v) for v in xyxy)
        x0, y0 = max(x0, 0.0), max(y0, 0.0)
        size = frame_sizes[index] if frame_sizes is not None else None
        if size is not None:
            x1, y1 = min(x1, float(size[0])), min(y1, float(size[1]))
        if x1 > x0 and y1 > y0:
            added[index].append(FaceBox(x0, y0, x1, y1, 0.0, "tracker"))

    for track in tracks:
        hits = track.hits
        for position, ((i0, b0), (i1, b1)) in enumerate(itertools.pairwise(hits), start=1):
            # A link may join two faces: in its gap each is also covered as if it were not.
            joined = position in track.joins and i1 > i0 + 1
            if joined:
                before, after = _end_velocity(hits[:position]), _start_velocity(hits[position:])
            for index in range(i0 + 1, i1):  # a gap (within max_gap: tracker or linking)
                t = (index - i0) / (i1 - i0)
                box = (1 - t) * b0.as_array() + t * b1.as_array()
                add(index, _grown(box, min(index - i0, i1 - index)))
                if joined:
                    add(index, _extrapolated(b0, before, index - i0))
                    add(index, _extrapolated(b1, after, index - i1))
        # Any confident hit vouches for the whole track, its weak first hit included: the
        # frames before that first hit are covered.
        if any(box.score >= lead_score for _, box in hits):
            velocity = _start_velocity(hits)
            for index in range(max(0, track.start - max_gap), track.start):
                add(index, _extrapolated(hits[0][1], velocity, index - track.start))
        velocity = _end_velocity(hits)  # held whatever its score
        for index in range(track.end + 1, min(last_frame, track.end + max_gap) + 1):
            add(index, _extrapolated(hits[-1][1], velocity, index - track.end))
    return added


def _iou_tracks(detections: Sequence[Sequence[FaceBox]], max_gap: int) -> list[_Track]:
    """The IoU tracker's tracks (its gaps within ``max_gap``), in order of their first hit."""
    tracker = IoUTracker(max_missed=max_gap)
    seen: dict[int, list[tuple[int, FaceBox]]] = defaultdict(list)
    for index, boxes in enumerate(detections):
        arrays = np.stack([b.as_array() for b in boxes]) if boxes else np.zeros((0, 4))
        track_ids, _, _ = tracker.update(arrays)
        for box, track in zip(boxes, track_ids, strict=True):
            seen[track].append((index, box))
    return [_Track(hits) for hits in seen.values()]


def _linked(tracks: list[_Track], max_gap: int) -> list[_Track]:
    """Tracks continued by the ones that continue them (_link_cost), greedily by cost, each
    end to one start."""
    tracks = sorted(tracks, key=lambda track: track.start)
    starts = [track.start for track in tracks]
    candidates = []
    for a, track in enumerate(tracks):
        first = bisect.bisect_right(starts, track.end)
        for b in range(first, bisect.bisect_right(starts, track.end + max_gap + 1)):
            cost = _link_cost(track, tracks[b], max_gap)
            if cost is not None:
                candidates.append((cost, a, b))
    following: dict[int, int] = {}
    followed: set[int] = set()
    for _, a, b in sorted(candidates):
        if a not in following and b not in followed:
            following[a] = b
            followed.add(b)
    chains = []
    for head in range(len(tracks)):
        if head in followed:
            continue
        chain, current = _Track(list(tracks[head].hits)), head
        while current in following:
            current = following[current]
            chain.joins.add(len(chain.hits))
            chain.hits += tracks[current].hits
        chains.append(chain)
    return chains


def _link_cost(a: _Track, b: _Track, max_gap: int) -> float | None:
    """How far ``b``'s first box is from where ``a`` would continue, in units of what is
    allowed (at most 1), or None when ``b`` cannot continue ``a``: it starts before ``a``
    ends or more than ``max_gap`` frames after, its box size differs by more than
    LINK_SIZE_RATIO, or it lies further than motion allows."""
    frames = b.start - a.end
    if frames < 1 or frames > max_gap + 1:
        return None
    last, first = a.hits[-1][1], b.hits[0][1]
    ratios = (last.width / max(first.width, 1e-6), last.height / max(first.height, 1e-6))
    if any(not 1 / LINK_SIZE_RATIO <= r <= LINK_SIZE_RATIO for r in ratios):
        return None
    size = (last.width + last.height + first.width + first.height) / 4
    start, target = np.array(last.center), np.array(first.center)
    reach = np.linalg.norm(target - start) / (LINK_REACH_PER_FRAME * size * frames)
    cost = reach
    if len(a.hits) > 1:
        predicted = start + _end_velocity(a.hits) * frames
        slack = size * (LINK_PREDICTION_SLACK + LINK_PREDICTION_SLACK_PER_FRAME * frames)
        cost = min(cost, np.linalg.norm(target - predicted) / slack)
    return float(cost) if cost <= 1.0 else None


def _start_velocity(hits: list[tuple[int, FaceBox]]) -> np.ndarray:
    """The centre's motion per frame at the start of ``hits``: from the first hit to the last
    one within VELOCITY_FRAMES of it (zero when there is none)."""
    near = list(itertools.takewhile(lambda hit: hit[0] - hits[0][0] <= VELOCITY_FRAMES, hits))
    return _velocity(near[0], near[-1])


def _end_velocity(hits: list[tuple[int, FaceBox]]) -> np.ndarray:
    """The same at the end of ``hits``, from the first hit within VELOCITY_FRAMES of the last."""
    near = list(
        itertools.takewhile(lambda hit: hits[-1][0] - hit[0] <= VELOCITY_FRAMES, hits[::-1])
    )
    return _velocity(near[-1], near[0])


def _velocity(first: tuple[int, FaceBox], last: tuple[int, FaceBox]) -> np.ndarray:
    (i0, b0), (i1, b1) = first, last
    if i0 == i1:
        return np.zeros(2)
    return (np.array(b1.center) - np.array(b0.center)) / (i1 - i0)


def _extrapolated(box: FaceBox, velocity: np.ndarray, frames: int) -> np.ndarray:
    """``box`` ``frames`` frames away (negative: before it): the hull of where it was and
    where its velocity, up to 1 + SPEED_SLACK times, takes it, grown with the distance."""
    xyxy = box.as_array()
    shift = np.tile(velocity * frames * (1 + SPEED_SLACK), 2)
    hull = np.concatenate([np.minimum(xyxy, xyxy + shift)[:2], np.maximum(xyxy, xyxy + shift)[2:]])
    return _grown(hull, abs(frames), size=xyxy)


def _grown(xyxy: np.ndarray, frames: int, size: np.ndarray | None = None) -> np.ndarray:
    """``xyxy`` grown on every side by ``frames`` x GROW_PER_FRAME of its width and height
    (those of ``size``, when given)."""
    reference = xyxy if size is None else size
    margin = frames * GROW_PER_FRAME * (reference[2:] - reference[:2])
    return np.concatenate([xyxy[:2] - margin, xyxy[2:] + margin])
