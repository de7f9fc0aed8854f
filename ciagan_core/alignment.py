"""CIAGAN's face alignment (REFERENCE §3) and its exact inverse.

Forward: 68 landmarks -> crop window framed by the inner eye corners -> 178x218 crop (bicubic)
-> sparse landmark drawing + jaw/brow mask -> Lanczos 144x144 -> centre 128x128 network input.
Inverse: ``CropWindow.net_to_frame`` is the affine map from network pixels back to frame pixels
(both resizes are pixel-centre aligned), used by ``blend`` to put the generated face back.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

CROP_WIDTH, CROP_HEIGHT = 178, 218  # CelebA "aligned" framing
RESIZED = 144  # 1.125 x 128
NET_SIZE = 128
NET_OFFSET = (RESIZED - NET_SIZE) // 2
LINE_COLOR_RGB = (0, 0, 255)  # pure blue
MASK_THRESHOLD = 0.2

#: The sparse drawing: jaw, nose bridge, closed inner mouth. Eyes, brows and lips are not drawn.
LANDMARK_EDGES: tuple[tuple[int, int], ...] = (
    *((i, i + 1) for i in range(16)),
    *((i, i + 1) for i in range(27, 30)),
    *((i, i + 1) for i in range(60, 67)),
    (67, 60),
)


@dataclass(frozen=True)
class CropWindow:
    """The crop [cx - w_r, cx + w_r) x [cy - h_r, cy + h_r) in frame pixels (integers)."""

    cx: int
    cy: int
    half_width: int
    half_height: int

    @property
    def x0(self) -> int:
        return self.cx - self.half_width

    @property
    def y0(self) -> int:
        return self.cy - self.half_height

    @property
    def width(self) -> int:
        return 2 * self.half_width

    @property
    def height(self) -> int:
        return 2 * self.half_height

    @property
    def scale(self) -> tuple[float, float]:
        """Frame pixels per network pixel (x, y)."""
        return self.width / RESIZED, self.height / RESIZED

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Frame points -> 178x218 crop coordinates (REFERENCE §3.4)."""
        ratio = np.array([CROP_WIDTH / self.width, CROP_HEIGHT / self.height])
        return (np.asarray(points, np.float64) - (self.x0, self.y0)) * ratio

    def net_to_frame(self) -> np.ndarray:
        """2x3 affine: network pixel (u, v) -> frame pixel (x, y), pixel centres aligned.

        Crop pixel i (178 wide) samples frame x0 + (i + 0.5) * W/178 - 0.5; the 144 resize and
        the 8 px centre crop compose to x = x0 + (u + 8.5) * W/144 - 0.5, likewise for y.
        """
        sx, sy = self.scale
        return np.array(
            [
                [sx, 0.0, self.x0 + (NET_OFFSET + 0.5) * sx - 0.5],
                [0.0, sy, self.y0 + (NET_OFFSET + 0.5) * sy - 0.5],
            ]
        )

    def net_coverage(self) -> tuple[float, float, float, float]:
        """The frame rectangle (x0, y0, x1, y1) that the 128 px network image covers."""
        a = self.net_to_frame()
        x0, y0 = a @ (-0.5, -0.5, 1.0)
        x1, y1 = a @ (NET_SIZE - 0.5, NET_SIZE - 0.5, 1.0)
        return float(x0), float(y0), float(x1), float(y1)


def crop_window(landmarks: np.ndarray) -> CropWindow | None:
    """The CelebA framing from the inner eye corners p39, p42; None if they are degenerate."""
    p39, p42 = landmarks[39], landmarks[42]
    eye_distance = p42[0] - p39[0]
    half_height = int(eye_distance * 5)
    half_width = int(half_height / CROP_HEIGHT * CROP_WIDTH)
    if half_width < 2:
        return None
    cx, cy = int((p42[0] + p39[0]) / 2), int((p42[1] + p39[1]) / 2)
    return CropWindow(cx, cy, half_width, half_height)


def mask_polygon(landmarks: np.ndarray) -> np.ndarray:
    """The replaced region: (p0.x, p19.y), p0 ... p16, (p16.x, p24.y); [19, 2], same units."""
    pts = np.asarray(landmarks, np.float64)
    return np.vstack([[pts[0, 0], pts[19, 1]], pts[:17], [pts[16, 0], pts[24, 1]]])


def render_landmark_image(points_crop: np.ndarray) -> np.ndarray:
    """The 178x218 RGB drawing: white, 1 px pure blue lines (REFERENCE §3.3)."""
    image = np.full((CROP_HEIGHT, CROP_WIDTH, 3), 255, np.uint8)
    pts = np.trunc(points_crop).astype(np.int64)
    for a, b in LANDMARK_EDGES:
        cv2.line(
            image,
            (int(pts[a, 0]), int(pts[a, 1])),
            (int(pts[b, 0]), int(pts[b, 1])),
            LINE_COLOR_RGB,
            1,
        )
    return image


def render_mask_image(points_crop: np.ndarray) -> np.ndarray:
    """The 178x218 mask image: 0 inside the polygon (replaced), 255 outside (REFERENCE §3.4)."""
    image = np.full((CROP_HEIGHT, CROP_WIDTH), 255, np.uint8)
    polygon = np.trunc(mask_polygon(points_crop)).astype(np.int32)
    cv2.fillPoly(image, [polygon], 0)
    return image


def extract_window(frame: np.ndarray, x0: int, y0: int, width: int, height: int) -> np.ndarray:
    """frame[y0:y0+height, x0:x0+width] with edge replication outside the frame."""
    h, w = frame.shape[:2]
    fx0, fy0 = max(x0, 0), max(y0, 0)
    fx1, fy1 = min(x0 + width, w), min(y0 + height, h)
    if fx0 < fx1 and fy0 < fy1:
        part = frame[fy0:fy1, fx0:fx1]
        return cv2.copyMakeBorder(
            part, fy0 - y0, y0 + height - fy1, fx0 - x0, x0 + width - fx1, cv2.BORDER_REPLICATE
        )
    rows = np.clip(np.arange(y0, y0 + height), 0, h - 1)
    cols = np.clip(np.arange(x0, x0 + width), 0, w - 1)
    return frame[np.ix_(rows, cols)]


def to_resized(image: np.ndarray) -> np.ndarray:
    """A 178x218 uint8 image -> Lanczos 144x144 uint8 (training crops its 128 px from here,
    jittered; inference takes the centre)."""
    return np.asarray(Image.fromarray(image).resize((RESIZED, RESIZED), Image.LANCZOS))


def to_network(image: np.ndarray) -> np.ndarray:
    """A 178x218 uint8 image -> Lanczos 144x144 -> centre 128x128, float32 in [0, 1], HWC."""
    resized = to_resized(image)
    window = slice(NET_OFFSET, NET_OFFSET + NET_SIZE)
    return resized[window, window].astype(np.float32) / 255.0


@dataclass
class AlignedFace:
    """One face ready for the generator, with what is needed to put the result back."""

    window: CropWindow
    #: [3, 128, 128] float32 in [0, 1], RGB.
    face: np.ndarray
    #: [3, 128, 128] float32 in [0, 1], RGB landmark drawing.
    landmark_image: np.ndarray
    #: [1, 128, 128] float32, 1 where the generator replaces the face.
    mask: np.ndarray
    #: The mask polygon in frame pixels [19, 2].
    polygon: np.ndarray

    def generator_input(self) -> np.ndarray:
        """[6, 128, 128]: landmark image, then the face with the masked region blacked out."""
        return np.concatenate([self.landmark_image, self.face * (1.0 - self.mask)], axis=0)


def network_mask(mask_image: np.ndarray) -> np.ndarray:
    """Mask image (0 inside) -> [1, 128, 128] float {0, 1} as the published loader computes it."""
    resized = to_network(mask_image)
    return ((1.0 - resized) > MASK_THRESHOLD).astype(np.float32)[None]


def aligned_crop(
    frame_bgr: np.ndarray, landmarks: np.ndarray
) -> tuple[CropWindow, np.ndarray, np.ndarray] | None:
    """The CelebA-framed 178x218 BGR crop of a face and its 68 landmarks in crop pixels
    (REFERENCE §3.1-2): what training data stores, and what inference aligns from."""
    window = crop_window(landmarks)
    if window is None:
        return None
    crop = extract_window(frame_bgr, window.x0, window.y0, window.width, window.height)
    crop = cv2.resize(crop, (CROP_WIDTH, CROP_HEIGHT), interpolation=cv2.INTER_CUBIC)
    return window, crop, window.to_crop(landmarks)


def align_face(frame_bgr: np.ndarray, landmarks: np.ndarray) -> AlignedFace | None:
    """Align one face of a BGR frame; None if its eye corners give no usable window."""
    aligned = aligned_crop(frame_bgr, landmarks)
    if aligned is None:
        return None
    window, crop, points = aligned
    crop_rgb = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
    return AlignedFace(
        window=window,
        face=to_network(crop_rgb).transpose(2, 0, 1),
        landmark_image=to_network(render_landmark_image(points)).transpose(2, 0, 1),
        mask=network_mask(render_mask_image(points)),
        polygon=mask_polygon(landmarks),
    )


#: How far inside the replaced region the detector's eye keypoints must be, in eye distances.
#: Measured on 200 CelebA faces: every face cut at the box's upper quarter has its eyes at
#: least 0.2 outside; 99% of whole faces have them at least 0.1 inside, and the 1% closer
#: fall back to the grown box (the safe side).
EYE_MARGIN = 0.1
#: A box this close to the frame's edge (px, or this share of the box's size, whichever is
#: larger) may belong to a face the frame cuts off: detectors stop their boxes a few pixels
#: short of the edge on cut faces.
EDGE_PX = 2.0
EDGE_SHARE = 0.2
#: Without keypoints, the brows must lie within this share of the box's height from its top
#: (dlib HOG boxes: at most 0.3 on 200 CelebA faces).
BROW_DEPTH = 0.4


def landmark_problem(
    landmarks: np.ndarray | None,
    box_xyxy: np.ndarray,
    keypoints: np.ndarray | None = None,
    min_eye_distance: float = 6.0,
    min_profile_ratio: float = 0.2,
    frame_size: tuple[int, int] | None = None,
) -> str:
    """Why these landmarks should not drive generation ("" when they look trustworthy).

    ``frame_size`` (width, height): a face whose box reaches the frame's edge is cut off, and
    the landmarker places the missing part's points where the frame ends, not where the face
    does (the detector's keypoints shift with them).
    """
    if landmarks is None or landmarks.shape != (68, 2) or not np.isfinite(landmarks).all():
        return "landmarker failed"
    if frame_size is not None:
        x0, y0, x1, y1 = box_xyxy
        width, height = frame_size
        mx, my = max(EDGE_PX, EDGE_SHARE * (x1 - x0)), max(EDGE_PX, EDGE_SHARE * (y1 - y0))
        if x0 < mx or y0 < my or x1 > width - mx or y1 > height - my:
            return "face cut off by the frame edge"
    eye_distance = landmarks[42, 0] - landmarks[39, 0]
    if eye_distance < min_eye_distance:
        return f"face too small or rotated (inner eye distance {eye_distance:.1f} px)"
    nose = landmarks[30, 0]
    left, right = nose - landmarks[2, 0], landmarks[14, 0] - nose
    if min(left, right) <= 0 or min(left, right) / max(left, right) < min_profile_ratio:
        return "strong profile"
    x0, y0, x1, y1 = box_xyxy
    bw, bh = x1 - x0, y1 - y0
    cx, cy = landmarks[:, 0].mean(), landmarks[:, 1].mean()
    if not (x0 - 0.2 * bw <= cx <= x1 + 0.2 * bw and y0 - 0.2 * bh <= cy <= y1 + 0.2 * bh):
        return "landmarks disagree with the detection"
    jaw_width = landmarks[16, 0] - landmarks[0, 0]
    if not 0.4 * bw <= jaw_width <= 2.5 * bw:
        return "landmarks disagree with the detection"
    if keypoints is not None and keypoints.shape == (5, 2):
        ours = np.array(
            [
                landmarks[36:42].mean(0),
                landmarks[42:48].mean(0),
                landmarks[30],
                landmarks[48],
                landmarks[54],
            ]
        )
        interocular = max(np.linalg.norm(ours[1] - ours[0]), 1.0)
        error = np.linalg.norm(ours - keypoints, axis=1).mean() / interocular
        if error > 0.5:
            return "landmarks disagree with the detector's keypoints"
        # A face cut off at the top of the frame gets landmarks placed too low, and its region
        # would start below the eyes: both eyes must lie well inside the region replaced.
        polygon = mask_polygon(landmarks).astype(np.float32)
        margin = EYE_MARGIN * max(np.linalg.norm(keypoints[1] - keypoints[0]), 1.0)
        for eye in keypoints[:2]:
            if cv2.pointPolygonTest(polygon, (float(eye[0]), float(eye[1])), True) < margin:
                return "eyes outside the landmark region (face cut off?)"
    elif min(landmarks[19, 1], landmarks[24, 1]) > y0 + BROW_DEPTH * bh:
        # Without keypoints: the brows (the region's top) must be in the box's upper part.
        return "eyes outside the landmark region (face cut off?)"
    return ""
