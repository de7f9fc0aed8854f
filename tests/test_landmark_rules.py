"""``alignment.landmark_problem``, each of its rules on its own and at its exact limit.

A face whose landmarks fail these rules goes to the fallback instead of the generator (which
replaces only the landmark region). The face is the astronaut's real one (CenterFace's box and
keypoints, dlib's 68 landmarks), put on a quarter-pixel grid so that every limit can be met
exactly: on the limit a face passes, a quarter pixel past it (or the next float) it does not.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ciagan_core.alignment import (
    BROW_DEPTH,
    EDGE_PX,
    EDGE_SHARE,
    EYE_MARGIN,
    landmark_problem,
    mask_polygon,
)

Q = 0.25  # the grid: sums, means and the rules' products below stay exact on it
CUT = "face cut off by the frame edge"
DISAGREE = "landmarks disagree with the detection"
KEYPOINTS = "landmarks disagree with the detector's keypoints"
EYES_OUT = "eyes outside the landmark region (face cut off?)"


def _on_grid(values) -> np.ndarray:
    return np.round(np.asarray(values, np.float64) / Q) * Q


def _exact_mean(landmarks: np.ndarray) -> np.ndarray:
    """Move the chin (point 8) by under 17 quarter pixels so that the mean of the 68 points is
    exact: a sum of 17k quarter pixels over 68 is k sixteenths."""
    out = landmarks.copy()
    for axis in (0, 1):
        out[8, axis] -= (round(out[:, axis].sum() / Q) % 17) * Q
    assert (out.mean(0) * 16 == np.round(out.mean(0) * 16)).all()
    return out


def _moved(box: np.ndarray, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    return box + np.array([dx, dy, dx, dy])


@pytest.fixture(scope="module")
def face(astronaut_face):
    """(landmarks, box, keypoints, frame size): the box's sides are multiples of 5 px, so that
    0.2, 0.4 and 2.5 times them are exact."""
    photo, found, landmarks = astronaut_face
    x0, y0, x1, y1 = (round(v) for v in found.as_array())
    box = np.array([x0, y0, x0 + 5 * round((x1 - x0) / 5), y0 + 5 * round((y1 - y0) / 5)], float)
    for side in (box[2] - box[0], box[3] - box[1]):
        assert EDGE_SHARE * side == side / 5 and BROW_DEPTH * side == 2 * side / 5
    landmarks = _exact_mean(_on_grid(landmarks))
    height, width = photo.shape[:2]
    assert (
        landmark_problem(landmarks, box, _on_grid(found.keypoints), frame_size=(width, height))
        == ""
    )
    return landmarks, box, _on_grid(found.keypoints), (width, height)


@pytest.mark.parametrize(
    "landmarks",
    [
        None,
        np.zeros((67, 2)),
        np.zeros((68, 3)),
        np.full((68, 2), np.nan),
        "one nan",
        "one inf",
    ],
    ids=["none", "67 points", "3-d", "all nan", "one nan", "one inf"],
)
def test_missing_or_broken_landmarks_are_a_landmarker_failure(face, landmarks):
    good, box, keypoints, size = face
    if isinstance(landmarks, str):
        broken = good.copy()
        broken[30, 1] = np.nan if "nan" in landmarks else np.inf
        landmarks = broken
    assert landmark_problem(landmarks, box, keypoints, frame_size=size) == "landmarker failed"


@pytest.mark.parametrize("side", ["left", "top", "right", "bottom"])
def test_the_frame_edge_rule_holds_on_every_side_at_its_margin(face, side):
    """A box closer to the frame's edge than a fifth of its size (at least 2 px) may belong to
    a face the frame cuts off. Exactly at the margin it does not."""
    landmarks, box, keypoints, _ = face
    width, height = box[2] - box[0], box[3] - box[1]
    mx, my = max(EDGE_PX, width / 5), max(EDGE_PX, height / 5)
    assert mx > EDGE_PX and my > EDGE_PX  # the share rules here; the floor is tested below
    # Move the face so that its box lies exactly at the margin on this side.
    shift = {
        "left": (mx - box[0], 0.0),
        "top": (0.0, my - box[1]),
        "right": (0.0, 0.0),
        "bottom": (0.0, 0.0),
    }[side]
    moved = landmarks + shift, _moved(box, *shift), keypoints + shift
    frame = {
        "left": (2000, 2000),
        "top": (2000, 2000),
        "right": (int(box[2] + mx), 2000),
        "bottom": (2000, int(box[3] + my)),
    }[side]
    assert box[2] + mx == frame[0] or side != "right"
    assert box[3] + my == frame[1] or side != "bottom"
    assert landmark_problem(*moved, frame_size=frame) == ""
    # A quarter pixel closer: cut off.
    closer = {"left": (-Q, 0.0), "top": (0.0, -Q), "right": (Q, 0.0), "bottom": (0.0, Q)}[side]
    nearer = moved[0] + closer, _moved(moved[1], *closer), moved[2] + closer
    assert landmark_problem(*nearer, frame_size=frame) == CUT


def test_the_frame_edge_rule_keeps_2_px_for_small_boxes(face):
    """A box of under 10 px: the margin is 2 px (EDGE_PX), not a fifth of the box."""
    landmarks, box, _, _ = face
    small = np.array([2.0, 2.0, 9.5, 9.5])
    tiny = (landmarks - box[:2]) * 0.05 + 2.0
    assert landmark_problem(tiny, small, None, frame_size=(100, 100)) != CUT
    for dx, dy in ((-Q, 0.0), (0.0, -Q)):
        assert landmark_problem(tiny, _moved(small, dx, dy), None, frame_size=(100, 100)) == CUT
    assert landmark_problem(tiny, small, None, frame_size=(11.5, 11.5)) != CUT
    assert landmark_problem(tiny, small, None, frame_size=(11.25, 100)) == CUT
    assert landmark_problem(tiny, small, None, frame_size=(100, 11.25)) == CUT


def test_the_inner_eye_distance_rule_at_its_limit(face):
    landmarks, box, keypoints, _ = face
    distance = landmarks[42, 0] - landmarks[39, 0]
    assert landmark_problem(landmarks, box, keypoints, min_eye_distance=distance) == ""
    problem = landmark_problem(landmarks, box, keypoints, min_eye_distance=distance + Q)
    assert problem == f"face too small or rotated (inner eye distance {distance:.1f} px)"


def test_the_profile_rule_at_its_limit_and_with_the_nose_past_the_jaw(face):
    """The nose's distances to jaw points 2 and 14 (not their neighbours, moved apart here)."""
    landmarks, box, keypoints, _ = face
    landmarks = landmarks + 0.0
    landmarks[[1, 3, 13, 15], 0] += (-1.0, 1.0, -1.0, 1.0)
    nose = landmarks[30, 0]
    left, right = nose - landmarks[2, 0], landmarks[14, 0] - nose
    ratio = min(left, right) / max(left, right)
    assert landmark_problem(landmarks, box, keypoints, min_profile_ratio=ratio) == ""
    above = np.nextafter(ratio, 1.0)
    assert landmark_problem(landmarks, box, keypoints, min_profile_ratio=above) == "strong profile"
    # The nose on (or past) the jaw's side: a profile whatever the ratio asked for.
    for point in (2, 14):
        for past in (0.0, Q):
            turned = landmarks.copy()
            turned[30, 0] = landmarks[point, 0] + (past if point == 14 else -past)
            assert landmark_problem(turned, box, None, min_profile_ratio=0.0) == "strong profile"
        # Half a pixel inside the jaw: a profile only by the ratio asked for.
        inside = landmarks.copy()
        inside[30, 0] = landmarks[point, 0] + (0.5 if point == 2 else -0.5)
        assert landmark_problem(inside, box, None, min_profile_ratio=0.0) == ""


@pytest.mark.parametrize("side", ["left", "top", "right", "bottom"])
def test_the_landmarks_centre_may_lie_a_fifth_of_the_box_outside_it(face, side):
    """The landmarks' mean must lie within the box grown by a fifth of its size on each side;
    on that limit it does, a quarter pixel beyond it not."""
    landmarks, box, keypoints, _ = face
    cx, cy = landmarks.mean(0)
    width, height = box[2] - box[0], box[3] - box[1]
    x0, y0 = {
        "left": (cx + width / 5, box[1]),
        "right": (cx - width / 5 - width, box[1]),
        "top": (box[0], cy + height / 5),
        "bottom": (box[0], cy - height / 5 - height),
    }[side]
    limit = np.array([x0, y0, x0 + width, y0 + height])
    assert landmark_problem(landmarks, limit, keypoints) == ""
    past = {"left": (Q, 0), "right": (-Q, 0), "top": (0, Q), "bottom": (0, -Q)}[side]
    assert landmark_problem(landmarks, _moved(limit, *past), keypoints) == DISAGREE


def test_the_jaw_may_be_0_4_to_2_5_times_the_box_wide(face):
    landmarks, box, keypoints, _ = face
    jaw = landmarks[16, 0] - landmarks[0, 0]
    cx = landmarks.mean(0)[0]
    # Narrow jaw: the box 2.5 times as wide as the jaw (jaw = 0.4 box).
    wide = 2.5 * jaw
    assert 0.4 * wide == jaw
    box_wide = np.array([cx - wide / 2, box[1], cx + wide / 2, box[3]])
    assert landmark_problem(landmarks, box_wide, keypoints) == ""
    box_wider = box_wide + np.array([-Q, 0, Q, 0])
    assert landmark_problem(landmarks, box_wider, keypoints) == DISAGREE
    # Wide jaw: the box 0.4 times as wide as the jaw (jaw = 2.5 box). The jaw's right end moves
    # to make the jaw a multiple of 2.5 px (the box then a whole number of pixels wide).
    landmarks = landmarks.copy()
    landmarks[16, 0] += -jaw % 2.5
    landmarks = _exact_mean(landmarks)
    jaw = landmarks[16, 0] - landmarks[0, 0]
    cx = landmarks.mean(0)[0]
    narrow = jaw / 2.5
    assert 2.5 * narrow == jaw
    box_narrow = np.array([cx - narrow / 2, box[1], cx + narrow / 2, box[3]])
    assert landmark_problem(landmarks, box_narrow, keypoints) == ""
    box_narrower = box_narrow + np.array([Q / 2, 0, -Q / 2, 0])
    assert landmark_problem(landmarks, box_narrower, keypoints) == DISAGREE


def _ours(landmarks: np.ndarray) -> np.ndarray:
    """The landmarks' eyes, nose tip and mouth corners, as the detector's keypoints order them."""
    return np.array(
        [
            landmarks[36:42].mean(0),
            landmarks[42:48].mean(0),
            landmarks[30],
            landmarks[48],
            landmarks[54],
        ]
    )


def _keypoint_error(landmarks: np.ndarray, keypoints: np.ndarray) -> float:
    """The rule's measure: mean distance of the five points over the landmarks' eye distance."""
    ours = _ours(landmarks)
    return np.linalg.norm(ours - keypoints, axis=1).mean() / np.linalg.norm(ours[1] - ours[0])


def test_keypoints_may_be_half_the_eye_distance_off_the_landmarks(face):
    """The detector's five keypoints against the landmarks' eyes, nose tip and mouth corners:
    half the distance between the eyes off on average, no more."""
    landmarks, box, _, _ = face
    ours = _ours(landmarks)
    interocular = np.linalg.norm(ours[1] - ours[0])
    # Moved down (eyes moved down stay inside the region) by the largest amount the rule
    # allows: an error of exactly 0.5.
    low = high = 0.5 * interocular
    candidates = [low]
    for _ in range(400):  # the floats around it, nearest first
        low, high = np.nextafter(low, 0.0), np.nextafter(high, np.inf)
        candidates += [low, high]
    down = next(
        np.array([0.0, d])
        for d in candidates
        if _keypoint_error(landmarks, ours + np.array([0.0, d])) == 0.5
    )
    assert landmark_problem(landmarks, box, ours + down) == ""
    assert _keypoint_error(landmarks, ours + down * (1 + 1e-9)) > 0.5
    assert landmark_problem(landmarks, box, ours + down * (1 + 1e-9)) == KEYPOINTS
    # Only five keypoints count: anything else is ignored (as if there were none).
    far = ours + 5 * interocular
    assert landmark_problem(landmarks, box, far) == KEYPOINTS
    assert landmark_problem(landmarks, box, far[:4]) == ""
    assert landmark_problem(landmarks, box, far[:, :1]) == ""


def test_only_the_eyes_must_lie_inside_the_region(face):
    """A nose keypoint off the face (within the keypoints' agreement) does not count: the
    region must hold the eyes."""
    landmarks, box, keypoints, _ = face
    wild = keypoints.copy()
    wild[2, 0] = box[2] + 10  # the nose keypoint past the box's right side
    assert _keypoint_error(landmarks, wild) <= 0.5
    assert (
        cv2.pointPolygonTest(
            mask_polygon(landmarks).astype(np.float32),
            (float(wild[2, 0]), float(wild[2, 1])),
            True,
        )
        < 0
    )
    assert landmark_problem(landmarks, box, wild) == ""


@pytest.mark.parametrize("eye", [0, 1])
def test_each_eye_must_lie_a_tenth_of_the_eye_distance_inside_the_region(face, eye):
    """The region replaced must hold both eyes (keypoints) with a margin of a tenth of the
    distance between them: an eye moved up to the margin passes, a little higher not."""
    landmarks, box, keypoints, _ = face
    polygon = mask_polygon(landmarks).astype(np.float32)

    def up(by: float) -> np.ndarray:
        moved = keypoints.copy()
        moved[eye, 1] -= by
        return moved

    def room(moved) -> float:
        """How far inside the region the eye is, less the margin (from the moved eyes)."""
        eye_point = (float(moved[eye, 0]), float(moved[eye, 1]))
        margin = EYE_MARGIN * np.linalg.norm(moved[1] - moved[0])
        return cv2.pointPolygonTest(polygon, eye_point, True) - margin

    # Move this eye up until it is just at the margin (the region's top is the brows).
    low, high = 0.0, float(box[3] - box[1])
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if room(up(mid)) >= 0 else (low, mid)
    at, beyond = up(low), up(low + 0.05)
    assert room(at) >= 0 > room(beyond)
    assert landmark_problem(landmarks, box, at) == ""
    assert landmark_problem(landmarks, box, beyond) == EYES_OUT


def test_without_keypoints_the_brows_must_lie_in_the_boxs_upper_four_tenths(face):
    landmarks, box, _, _ = face
    brows = min(landmarks[19, 1], landmarks[24, 1])
    assert landmarks[19, 1] != landmarks[24, 1]  # the higher brow counts
    height = box[3] - box[1]
    top = brows - 2 * height / 5  # the brows exactly 0.4 of the height down
    limit = np.array([box[0], top, box[2], top + height])
    assert landmark_problem(landmarks, limit, None) == ""
    assert landmark_problem(landmarks, _moved(limit, dy=-Q), None) == EYES_OUT


def test_an_eye_exactly_at_the_margin_passes(face):
    """With the brows level (the region's top edge horizontal) and the eyes 40 px apart on one
    line, the margin is exactly 4 px: eyes 4 px below the brows pass, a quarter pixel higher
    not."""
    landmarks, box, keypoints, _ = face
    level = landmarks.copy()
    level[[19, 24], 1] = min(landmarks[19, 1], landmarks[24, 1])
    top = level[19, 1]
    x = _on_grid(_ours(level)[:2, 0].mean())
    eyes = keypoints.copy()
    eyes[:2] = [(x - 20, top + 4), (x + 20, top + 4)]
    assert EYE_MARGIN * np.linalg.norm(eyes[1] - eyes[0]) == 4.0
    assert _keypoint_error(level, eyes) <= 0.5
    assert landmark_problem(level, box, eyes) == ""
    assert landmark_problem(level, box, eyes - (0, Q)) == EYES_OUT


@pytest.mark.parametrize("higher", [19, 24])
def test_the_higher_brow_sets_the_depth(face, higher):
    """Without keypoints, whichever brow point (19 or 24) is higher is measured."""
    landmarks, box, _, _ = face
    raised = landmarks.copy()
    raised[higher, 1] = min(landmarks[19, 1], landmarks[24, 1]) - 2.0
    height = box[3] - box[1]
    top = raised[higher, 1] - 2 * height / 5
    limit = np.array([box[0], top, box[2], top + height])
    assert landmark_problem(raised, limit, None) == ""
    assert landmark_problem(raised, _moved(limit, dy=-Q), None) == EYES_OUT
