"""The exact geometry of the boxes the bag tool's track recovery adds (ciagan_ros.track_recovery):
how far a lost face's box follows its motion and grows, how boxes are clipped to the frame,
and that a linked gap is also covered as if unlinked. Loose bounds here let a mutation that
shrinks or misplaces these boxes (a face left uncovered) pass unnoticed."""

from __future__ import annotations

import numpy as np
import pytest

from ciagan_core.faces import FaceBox
from ciagan_ros.track_recovery import (
    GROW_PER_FRAME,
    LEAD_SCORE,
    SPEED_SLACK,
    _extrapolated,
    _grown,
    recover_faces,
)


def _box(x0: float, y0: float, x1: float, y1: float, score: float = 0.9) -> FaceBox:
    return FaceBox(x0, y0, x1, y1, score, "centerface")


@pytest.mark.parametrize("frames", [3, -4])
def test_an_extrapolated_box_is_the_grown_hull_of_where_the_motion_takes_it(frames):
    box = _box(100.0, 50.0, 160.0, 130.0)  # 60 x 80
    velocity = np.array([7.0, -3.0])
    shift = velocity * frames * (1 + SPEED_SLACK)
    moved = box.as_array() + np.tile(shift, 2)
    hull = np.concatenate(
        [np.minimum(box.as_array(), moved)[:2], np.maximum(box.as_array(), moved)[2:]]
    )
    margin = (
        abs(frames) * GROW_PER_FRAME * np.array([60.0, 80.0])
    )  # the face's size, not the hull's
    expected = np.concatenate([hull[:2] - margin, hull[2:] + margin])
    np.testing.assert_allclose(_extrapolated(box, velocity, frames), expected)


def test_a_box_grows_by_its_own_size_or_the_size_given():
    xyxy = np.array([10.0, 20.0, 50.0, 100.0])  # 40 x 80
    np.testing.assert_allclose(_grown(xyxy, 2), [6.0, 12.0, 54.0, 108.0])
    size = np.array([0.0, 0.0, 10.0, 10.0])
    np.testing.assert_allclose(_grown(xyxy, 2, size=size), [9.0, 19.0, 51.0, 101.0])


def test_added_boxes_are_clipped_at_the_frame_and_say_they_are_the_trackers():
    """A face held after it was last seen at the top-left corner: its box starts at 0, 0
    exactly and ends at the frame's size, with score 0 and detector "tracker"."""
    detections = [[_box(0.0, 0.0, 50.0, 50.0)] for _ in range(3)] + [[] for _ in range(3)]
    added = recover_faces(detections, max_gap=3, frame_sizes=[(52, 51)] * 6)
    for index in (3, 4, 5):
        [box] = added[index]
        assert (box.x0, box.y0) == (0.0, 0.0)
        assert (box.x1, box.y1) == (52.0, 51.0)  # grown past the frame, clipped to it
        assert box.score == 0.0 and box.detector == "tracker"
    unclipped = recover_faces(detections, max_gap=3)
    assert unclipped[3][0].x1 > 52.0  # without frame sizes, nothing is clipped


@pytest.mark.parametrize("axis", [0, 1])
def test_a_box_wholly_outside_the_frame_is_not_added(axis):
    """A face last seen beyond the right (bottom) edge: its held box, clipped, has no width
    (height) left; that is no box."""
    corner = [41.0, 0.0] if axis == 0 else [0.0, 41.0]
    face = _box(*corner, corner[0] + 20.0, corner[1] + 20.0)
    detections = [[face] for _ in range(3)] + [[]]
    added = recover_faces(detections, max_gap=1, frame_sizes=[(40, 40)] * 4)
    # held one frame: grown by 1 px (0.05 x 20) to start at 40, the frame's edge
    assert added[3] == []
    inside = recover_faces(detections, max_gap=1, frame_sizes=[(41, 41)] * 4)
    assert len(inside[3]) == 1


@pytest.mark.parametrize("missed", [1, 3])
def test_a_linked_gap_is_also_covered_as_if_the_tracks_were_not_linked(missed):
    """A link may join two different faces: in its gap (one frame or more), besides the
    interpolated box, each side's own motion is followed (three boxes a frame)."""
    step = 60.0
    seen = [True] * 3 + [False] * missed + [True] * 3
    detections = [
        [_box(100 + step * i, 60.0, 195 + step * i, 155.0)] if s else []
        for i, s in enumerate(seen)
    ]
    added = recover_faces(detections, max_gap=10)
    last, first = 2, 3 + missed  # the hits on either side of the gap
    velocity = np.array([step, 0.0])  # both faces' motion per frame
    for index in range(3, 3 + missed):
        t = (index - last) / (first - last)
        between = (1 - t) * detections[last][0].as_array() + t * detections[first][0].as_array()
        expected = [
            _grown(between, min(index - last, first - index)),
            _extrapolated(detections[last][0], velocity, index - last),  # the first face on
            _extrapolated(detections[first][0], velocity, index - first),  # the second, back
        ]
        np.testing.assert_allclose([b.as_array() for b in added[index]], expected)


@pytest.mark.parametrize(("score", "covered"), [(LEAD_SCORE, True), (LEAD_SCORE - 1e-6, False)])
def test_a_track_with_a_hit_of_the_lead_score_is_covered_before_its_first_hit(score, covered):
    """A face first found at frame 3: a track with a hit of LEAD_SCORE (or more) vouches for
    the frames before it, which get its box followed back; a weaker one does not."""
    detections = [[] for _ in range(3)] + [[_box(100.0, 60.0, 180.0, 140.0, score)]] * 3
    added = recover_faces(detections, max_gap=3)
    assert [len(added[i]) for i in range(3)] == ([1, 1, 1] if covered else [0, 0, 0])


def test_a_gap_is_covered_by_the_interpolated_box_grown_with_the_distance():
    """A slow face the detector misses for two frames (the IoU tracker bridges the gap): each
    missed frame gets the box interpolated between the hits on both sides, grown by 0.05 of
    the face's size per frame to the nearer hit."""

    def at(i: int) -> FaceBox:
        return _box(100.0 + 2 * i, 60.0 + i, 180.0 + 2 * i, 140.0 + i)

    seen = [True, True, True, False, False, True, True]
    detections = [[at(i)] if s else [] for i, s in enumerate(seen)]
    added = recover_faces(detections, max_gap=5)
    for index in (3, 4):
        [box] = added[index]
        t = (index - 2) / 3
        expected = _grown(
            (1 - t) * at(2).as_array() + t * at(5).as_array(), min(index - 2, 5 - index)
        )
        np.testing.assert_allclose(box.as_array(), expected)
    assert all(added[i] == [] for i in (0, 1, 2, 5, 6))
