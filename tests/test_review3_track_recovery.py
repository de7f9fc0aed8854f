"""Offline track recovery (``ciagan bag``) for fast faces. Frame-to-frame IoU cannot follow a
face crossing the frame at 60 px a frame: the hits before and after a run of motion-blurred
frames did not overlap, a new track started, nothing was interpolated, and the middle frame's
face was written untouched. And lead-in and hold boxes sat on the first and last hit's box: a
face entering at 25 px a frame, blurred as it came in, was half uncovered."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import celeba_image, hog_box

from ciagan_core.faces import FaceBox
from ciagan_ros.track_recovery import recover_faces

SIZE = 95.0  # a face box's side (px)


def _at(x: float, score: float = 0.9, y: float = 60.0) -> FaceBox:
    return FaceBox(x, y, x + SIZE, y + SIZE, score, "centerface")


def _moving(step: float, seen: list[bool], x: float = 100.0, score: float = 0.9):
    """One face moving ``step`` px a frame; its true box per frame, the detections."""
    truth = [_at(x + step * i, score) for i in range(len(seen))]
    return truth, [[box] if s else [] for box, s in zip(truth, seen, strict=True)]


def _contains(outer: FaceBox, inner: FaceBox) -> bool:
    a, b = outer.as_array(), inner.as_array()
    return bool((a[:2] <= b[:2]).all() and (a[2:] >= b[2:]).all())


def _covering(added: list[list[FaceBox]], index: int, face: FaceBox) -> bool:
    return any(_contains(box, face) for box in added[index])


# -- 2. gaps the IoU tracker cannot bridge ------------------------------------------------------


def test_a_gap_in_a_fast_track_is_interpolated():
    truth, detections = _moving(60.0, [True] * 3 + [False] * 3 + [True] * 3)
    added = recover_faces(detections, max_gap=10)
    for index in (3, 4, 5):
        assert _covering(added, index, truth[index]), f"frame {index}: the face is uncovered"
        # linked: one box is interpolated on the face's path
        centres = [np.array(box.center) for box in added[index]]
        assert min(np.linalg.norm(c - truth[index].center) for c in centres) < 1.0


def test_a_link_between_two_faces_leaves_neither_uncovered():
    """A face stands still, turns away (missed) and is never seen again; another appears
    close by. If the tracks are linked, the interpolated boxes move away from the first face:
    it must stay covered in the gap as if they were not."""
    detections = [[_at(100.0)] for _ in range(5)] + [[], []] + [[_at(230.0)] for _ in range(5)]
    added = recover_faces(detections, max_gap=10)
    for index in (5, 6):
        assert _covering(added, index, _at(100.0)), f"frame {index}: the first face is uncovered"
        assert _covering(added, index, _at(230.0)), f"frame {index}: the second face is uncovered"


def test_a_fast_face_seen_in_every_frame_is_one_track():
    """Consecutive boxes overlap by IoU < 0.3: each detection started a track of its own,
    whose lead-in and hold boxes landed in every other frame at other places."""
    _, detections = _moving(60.0, [True] * 6)
    added = recover_faces(detections, max_gap=10)
    assert not any(added), [len(boxes) for boxes in added]


def test_two_faces_far_apart_are_not_linked():
    """One face leaves at the left, another appears far to the right two frames later: no box
    is interpolated across the frame between them."""
    left = [[_at(100.0)] for _ in range(5)] + [[], []]
    right = [[] for _ in range(7)] + [[_at(1500.0)] for _ in range(5)]
    detections = [a + b for a, b in zip(left + [[]] * 5, right, strict=True)]
    added = recover_faces(detections, max_gap=10)
    middle = _at(800.0)
    for index in range(5, 7):
        assert not any(box.x1 > middle.x0 and box.x0 < middle.x1 for box in added[index])
        assert _covering(added, index, _at(100.0))  # the left face is still held


def test_a_track_is_not_linked_beyond_max_gap():
    _, detections = _moving(60.0, [True] * 3 + [False] * 6 + [True] * 3)
    added = recover_faces(detections, max_gap=2)
    # held for frames 3-4, led in for 7-8; a link (beyond max_gap) would interpolate 5-6
    assert [bool(boxes) for boxes in added[3:9]] == [True, True, False, False, True, True]


# -- 3. lead-in and hold boxes follow the motion ----------------------------------------------


def test_the_lead_in_follows_the_motion_back_and_grows():
    truth, detections = _moving(25.0, [False] * 3 + [True] * 7)
    added = recover_faces(detections, max_gap=10)
    for index in range(3):
        assert _covering(added, index, truth[index]), f"frame {index}: the face is uncovered"
        assert _covering(added, index, truth[3])  # and where it was first seen (it may stand)
    widths = [added[index][0].width for index in range(3)]
    assert widths[0] > widths[1] > widths[2] > SIZE  # uncertainty grows with the distance


def test_the_hold_follows_the_motion_and_is_bounded():
    truth, detections = _moving(25.0, [True] * 5 + [False] * 10)
    added = recover_faces(detections, max_gap=4)
    for index in range(5, 9):
        assert _covering(added, index, truth[index]), f"frame {index}: the face is uncovered"
        assert _covering(added, index, truth[4])
    assert not any(added[9:]), "held beyond max_gap"


def test_a_single_hit_keeps_its_box_grown():
    detections = [[], [], [_at(300.0)], [], []]
    added = recover_faces(detections, max_gap=10)
    for index in (0, 1, 3, 4):
        [box] = added[index]
        assert _contains(box, _at(300.0)) and box.width > SIZE
        np.testing.assert_allclose(box.center, _at(300.0).center)


def test_extrapolated_boxes_are_clipped_to_the_frame():
    _, detections = _moving(60.0, [True] * 4 + [False] * 6, x=300.0)
    added = recover_faces(detections, max_gap=10, frame_sizes=[(760, 252)] * 10)
    for boxes in added:
        for box in boxes:
            assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= 760 and box.y1 <= 252
    # a face leaving the frame is still held where it was last seen, in the frame
    _, detections = _moving(-100.0, [True] * 3 + [False] * 7, x=250.0)
    added = recover_faces(detections, max_gap=10, frame_sizes=[(760, 252)] * 10)
    assert all(len(boxes) == 1 and boxes[0].x0 == 0 for boxes in added[3:])


# -- end to end: ciagan bag on real faces -----------------------------------------------------

rosbags = pytest.importorskip("rosbags")
from rosbag_messages import NS, STORE, image_message  # noqa: E402
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from test_bag_tool import _read, _to_frame  # noqa: E402
from test_review2_track_recovery import _motion_blurred  # noqa: E402


def _crossing(shared_dir, row, step: int, blur: list[int]):
    """A real face crossing a 760 px wide frame at ``step`` px a frame, motion-blurred by
    ``blur[i]`` px in frame i; the frames and the face's box per frame."""
    photo, box = celeba_image(shared_dir, row), hog_box(row).astype(int)
    frames, boxes = [], []
    for i, length in enumerate(blur):
        dx = i * step
        canvas = np.full((photo.shape[0], 760, 3), 90, np.uint8)
        width = min(photo.shape[1], 760 - dx)
        canvas[:, dx : dx + width] = photo[:, :width]
        moved = box + np.array([dx, 0, dx, 0])
        frames.append(_motion_blurred(canvas, moved, length))
        boxes.append(moved)
    return frames, boxes


def _bag_unchanged_shares(frames, boxes, tmp_path) -> list[float]:
    from ciagan_core.pipeline import AnonymizerConfig
    from ciagan_ros.bag_tool import BagSettings, anonymize_bag

    source, target = tmp_path / "in", tmp_path / "out"
    with Writer(source, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/cam/image", "sensor_msgs/msg/Image", typestore=STORE)
        for i, frame in enumerate(frames):
            stamp = 1_700_000_000 * NS + i * NS // 30
            msg = image_message(frame, "bgr8", stamp)
            writer.write(conn, stamp, STORE.serialize_cdr(msg, conn.msgtype))
    anonymize_bag(source, target, AnonymizerConfig(method="solid"), BagSettings())
    after = _read(target)["/cam/image"]["decoded"]
    shares = []
    for msg, frame, box in zip(after, frames, boxes, strict=True):
        x0, y0, x1, y1 = box
        face = (slice(y0, y1), slice(x0, x1))
        shares.append(float((_to_frame(msg)[face] == frame[face]).all(axis=-1).mean()))
    return shares


def _scores(frames) -> list[list[float]]:
    from ciagan_core.detection import create_detector

    detector = create_detector("centerface")
    return [[round(b.score, 2) for b in detector.detect(frame)] for frame in frames]


def test_a_bag_covers_a_fast_face_blurred_in_the_middle_of_its_crossing(
    shared_dir, celeba_rows, tmp_path
):
    frames, boxes = _crossing(shared_dir, celeba_rows[0], 60, [0, 0, 0, 61, 61, 61, 0, 0, 0])
    scores = _scores(frames)
    assert scores[3:6] == [[], [], []] and all(scores[:3]) and all(scores[6:]), scores
    shares = _bag_unchanged_shares(frames, boxes, tmp_path)
    assert max(shares) < 0.1, [f"{s:.0%}" for s in shares]


def test_a_bag_covers_a_fast_face_blurred_as_it_enters(shared_dir, celeba_rows, tmp_path):
    frames, boxes = _crossing(shared_dir, celeba_rows[0], 25, [61, 61, 61, 41] + [0] * 6)
    scores = _scores(frames)
    assert scores[:3] == [[], [], []] and all(scores[3:]), scores
    shares = _bag_unchanged_shares(frames, boxes, tmp_path)
    assert max(shares) < 0.1, [f"{s:.0%}" for s in shares]
