"""Offline track recovery (``ciagan bag``) when a track's first detection is weak: a face
motion-blurred as it comes into view is missed, then found weakly, then clearly. The frames
before the weak first hit must be covered once the track has a confident hit anywhere."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import celeba_image, hog_box

from ciagan_core.faces import FaceBox
from ciagan_ros.track_recovery import LEAD_SCORE, recover_faces

FRAMES = 10
BOX = (100.0, 80.0, 160.0, 150.0)


def _box(score: float, dx: float = 0.0) -> FaceBox:
    x0, y0, x1, y1 = BOX
    return FaceBox(x0 + dx, y0, x1 + dx, y1, score, "centerface")


def _track(scores: list[float | None]) -> list[list[FaceBox]]:
    """One face moving 2 px a frame; None: the detector missed it in that frame."""
    return [[] if s is None else [_box(s, 2.0 * i)] for i, s in enumerate(scores)]


def _covered(added: list[list[FaceBox]], index: int) -> bool:
    return any(box.detector == "tracker" for box in added[index])


def _contains(outer: FaceBox, inner: np.ndarray) -> bool:
    return bool(
        (outer.as_array()[:2] <= inner[:2]).all() and (outer.as_array()[2:] >= inner[2:]).all()
    )


def test_frames_before_a_weak_first_hit_are_covered_when_the_track_is_confident_later():
    detections = _track([None, None, None, 0.37] + [0.94] * 6)
    added = recover_faces(detections, max_gap=10)
    for index in range(3):
        assert _covered(added, index), f"frame {index} before the weak first hit is uncovered"
        # Where the face was (it moves 2 px a frame), and the first hit's box (it may stand).
        [box] = added[index]
        assert _contains(box, _box(0, 2.0 * index).as_array())
        assert _contains(box, detections[3][0].as_array())
        assert box.width < 2 * detections[3][0].width  # grown with the distance, bounded
    assert not any(added[3:]), "frames with detections get nothing added"


def test_the_lead_in_reaches_max_gap_frames_back_from_the_first_hit():
    detections = _track([None] * 5 + [0.2, 0.3, 0.9, 0.9, 0.9])
    added = recover_faces(detections, max_gap=3)
    assert [_covered(added, i) for i in range(5)] == [False, False, True, True, True]


def test_a_track_of_weak_hits_only_is_not_led_in_but_is_held_after():
    detections = _track([None, None, 0.3, 0.35, 0.3, None, None, None, None, None])
    added = recover_faces(detections, max_gap=3)
    assert not _covered(added, 0) and not _covered(added, 1)
    assert [_covered(added, i) for i in range(5, 10)] == [True, True, True, False, False]


def test_frames_after_a_weak_last_hit_are_held():
    detections = _track([0.9] * 5 + [0.3, None, None, None, None])
    added = recover_faces(detections, max_gap=10)
    assert all(_covered(added, i) for i in range(6, 10))
    for index in range(6, 10):  # where the face goes on to, and where it was last seen
        [box] = added[index]
        assert _contains(box, _box(0, 2.0 * index).as_array())
        assert _contains(box, detections[5][0].as_array())


def test_lead_score_is_the_documented_confidence():
    assert LEAD_SCORE == 0.5


# -- end to end: ciagan bag on a recording ----------------------------------------------------

rosbags = pytest.importorskip("rosbags")
from rosbag_messages import NS, STORE, image_message  # noqa: E402
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from test_bag_tool import _read, _to_frame  # noqa: E402

#: Horizontal motion blur per frame (px): frames 0-2 missed, frame 3 found weakly, 4-9 sharp.
BLUR = [61, 61, 61, 41] + [0] * 6


def _motion_blurred(image: np.ndarray, box: np.ndarray, length: int) -> np.ndarray:
    if not length:
        return image
    out = image.copy()
    x0, y0, x1, y1 = box.astype(int)
    y0, x0 = max(0, y0 - 20), max(0, x0 - 20)
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length
    out[y0 : y1 + 20, x0 : x1 + 20] = cv2.filter2D(out[y0 : y1 + 20, x0 : x1 + 20], -1, kernel)
    return out


@pytest.fixture(scope="module")
def blurred_entry(shared_dir, celeba_rows):
    """A face moving across a 320x272 frame, blurred as it enters; its box per frame."""
    row = celeba_rows[0]
    photo, box = celeba_image(shared_dir, row), hog_box(row)
    frames, boxes = [], []
    for i in range(FRAMES):
        canvas = np.full((272, 320, 3), 90, np.uint8)
        dx = 2 * i
        canvas[: photo.shape[0], dx : dx + photo.shape[1]] = photo[:, : 320 - dx]
        moved = box + np.array([dx, 0, dx, 0])
        frames.append(_motion_blurred(canvas, moved, BLUR[i]))
        boxes.append(moved)
    return frames, boxes


def test_a_bag_covers_the_frames_before_a_weak_first_detection(blurred_entry, tmp_path):
    from ciagan_core.detection import create_detector
    from ciagan_core.pipeline import AnonymizerConfig
    from ciagan_ros.bag_tool import BagSettings, anonymize_bag

    frames, boxes = blurred_entry
    detector = create_detector("centerface")
    scores = [[round(b.score, 2) for b in detector.detect(frame)] for frame in frames]
    # The situation of the review: missed, then weak (below LEAD_SCORE), then confident.
    assert scores[:3] == [[], [], []], scores
    assert len(scores[3]) == 1 and scores[3][0] < LEAD_SCORE, scores
    assert all(s and s[0] >= LEAD_SCORE for s in scores[4:]), scores

    source, target = tmp_path / "in", tmp_path / "out"
    with Writer(source, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/cam/image", "sensor_msgs/msg/Image", typestore=STORE)
        for i, frame in enumerate(frames):
            stamp = 1_700_000_000 * NS + i * 100_000_000
            msg = image_message(frame, "bgr8", stamp)
            writer.write(conn, stamp, STORE.serialize_cdr(msg, conn.msgtype))
    report = anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    after = _read(target)["/cam/image"]["decoded"]
    for i in range(4):
        x0, y0, x1, y1 = boxes[i].astype(int)
        face = (slice(y0, y1), slice(x0, x1))
        unchanged = (_to_frame(after[i])[face] == frames[i][face]).all(axis=-1).mean()
        assert unchanged < 0.1, f"frame {i}: {unchanged:.0%} of the face kept its input pixels"
    assert report["topics"]["/cam/image"]["recovered_frames"] == 3
