"""MediaPipe's face mesh (Apache-2.0) as ONNX, batched, mapped to the 68 iBUG points.

The 468-point ``face_landmark.tflite`` of MediaPipe 0.10.21 was converted to ONNX by
``scripts/convert_face_mesh.py`` (provenance and the source's sha256 in ``face_mesh.json``); it
runs in ONNX Runtime on the CPU, CUDA or TensorRT, one 192x192 crop per face, all faces of a
call in one batch. The 68 points are a fixed linear map of the 468 (``mesh68_map.npz``, fitted
by ``scripts/fit_mesh68.py`` against dlib's points on training identities only; see
``PointMap``).

The crop follows MediaPipe's own region of interest: a square of 1.5 x the face's size around
its centre, turned upright by the eye line (the detector's eye keypoints on the first pass, the
mesh's eye corners on the refining second pass). The model's face score decides whether the
points are trusted at all: a crop it does not see a face in returns None, and the pipeline covers
that face with the fallback.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ciagan_core.errors import BackendUnavailableError, ConfigError, ModelFileError
from ciagan_core.faces import FaceBox

log = logging.getLogger(__name__)

MODEL_DIR = Path(__file__).resolve().parent / "face_mesh"
INPUT_SIZE = 192
#: MediaPipe's region of interest: 1.5 x the face, square.
ROI_SCALE = 1.5
#: MediaPipe's default ``min_tracking_confidence``: below it the crop holds no face.
MIN_FACE_SCORE = 0.5
#: Mesh points on the outer eye corners (image left, image right), as MediaPipe uses for the
#: rotation of its tracking region.
EYE_CORNERS = (33, 263)
#: The common 468 -> 68 index table (jaw, brows, nose, eyes, mouth in iBUG order); the shipped
#: map is fitted towards it.
IBUG68_FROM_MESH = (
    *(162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389),
    *(71, 63, 105, 66, 107, 336, 296, 334, 293, 301),
    *(168, 197, 5, 4, 75, 97, 2, 326, 305),
    *(33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380),
    *(61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181),
    *(78, 82, 13, 312, 308, 317, 14, 87),
)


@dataclass
class MeshResult:
    """One face's mesh: 468 points in frame pixels ([468, 3], z in x's pixel scale) and score."""

    points: np.ndarray
    score: float


@dataclass(frozen=True)
class PointMap:
    """A linear map from the mesh's 468 points to the 68, in the face's own upright frame.

    Points are first moved, turned and scaled so that the outer eye corners lie level at unit
    distance; there ``targets = features @ weights + bias`` (features: the 468 x then the 468
    y; targets: the 68 x then the 68 y); the result is turned back. So the map commutes with
    moving, scaling and turning the face, and can still learn how dlib's contour differs from
    the mesh's by pose.
    """

    weights: np.ndarray  # [936, 136]
    bias: np.ndarray  # [136]

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """[468, 2+] or [N, 468, 2+] frame points -> [68, 2] or [N, 68, 2]."""
        xy = np.asarray(points, np.float64)[..., :2]
        single = xy.ndim == 2
        xy = xy[None] if single else xy
        centre, angle, scale = canonical_frame(xy)
        upright = rotate(xy - centre[:, None], -angle) / scale[:, None, None]
        features = np.concatenate([upright[..., 0], upright[..., 1]], axis=1)
        targets = features @ self.weights.astype(np.float64) + self.bias
        out = np.stack([targets[:, :68], targets[:, 68:]], axis=-1)
        out = rotate(out * scale[:, None, None], angle) + centre[:, None]
        return out[0] if single else out

    @classmethod
    def table(cls) -> PointMap:
        """The index table as a map (each of the 68 points copies one of the 468)."""
        weights = np.zeros((936, 136), np.float32)
        index = np.asarray(IBUG68_FROM_MESH)
        weights[index, np.arange(68)] = 1.0
        weights[468 + index, 68 + np.arange(68)] = 1.0
        return cls(weights, np.zeros(136, np.float32))

    @classmethod
    def load(cls, path: Path) -> PointMap:
        try:
            with np.load(path) as data:
                weights, bias = data["weights"], data["bias"]
        except Exception as exc:  # OSError, BadZipFile, zlib.error, KeyError, ValueError...
            raise ModelFileError(f"{path}: 468-to-68 map unreadable ({exc})") from None
        if weights.shape != (936, 136) or bias.shape != (136,):
            raise ModelFileError(f"{path}: not a 468-to-68 map (weights {weights.shape})")
        if not (np.isfinite(weights).all() and np.isfinite(bias).all()):
            raise ModelFileError(f"{path}: 468-to-68 map holds non-finite values")
        return cls(weights, bias)


def rotate(points: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Turn [N, K, 2] points by ``angle`` [N] radians (image axes)."""
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    x, y = points[..., 0], points[..., 1]
    return np.stack([cos * x - sin * y, sin * x + cos * y], axis=-1)


def canonical_frame(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre [N, 2], eye-line angle [N] and outer-eye distance [N] of meshes [N, 468, 2]."""
    line = xy[:, EYE_CORNERS[1]] - xy[:, EYE_CORNERS[0]]
    scale = np.maximum(np.linalg.norm(line, axis=-1), 1e-6)
    return xy.mean(axis=1), np.arctan2(line[:, 1], line[:, 0]), scale


def roi_transform(
    centre: tuple[float, float], size: float, angle: float
) -> tuple[np.ndarray, np.ndarray]:
    """2x3 affine maps frame -> crop and crop -> frame for a square region of side ``size``
    around ``centre``, rotated by ``angle`` (radians, the eye line's angle in the frame)."""
    scale = INPUT_SIZE / max(size, 1e-6)
    cos, sin = np.cos(angle), np.sin(angle)
    # Rotate by -angle about the centre, scale, then move the centre to the crop's centre.
    rot = np.array([[cos, sin], [-sin, cos]]) * scale
    half = INPUT_SIZE / 2.0
    forward = np.hstack([rot, (np.array([half, half]) - rot @ np.asarray(centre))[:, None]])
    inverse = cv2.invertAffineTransform(forward)
    return forward, inverse


def box_roi(box: FaceBox) -> tuple[tuple[float, float], float, float]:
    """First-pass region from a detector box: centre, side and eye-line angle."""
    angle = 0.0
    if box.keypoints is not None and np.asarray(box.keypoints).shape == (5, 2):
        right_eye, left_eye = np.asarray(box.keypoints, np.float64)[:2]
        dx, dy = left_eye - right_eye
        if np.hypot(dx, dy) > 1e-3:
            angle = float(np.arctan2(dy, dx))
    return box.center, ROI_SCALE * max(box.width, box.height), angle


def mesh_roi(points: np.ndarray) -> tuple[tuple[float, float], float, float]:
    """Second-pass region from a first-pass mesh ([468, 2+] frame pixels), as MediaPipe tracks:
    upright by the eye corners, square around the points' extent in that upright frame."""
    xy = points[None, :, :2].astype(np.float64)
    angle = canonical_frame(xy)[1]
    upright = rotate(xy, -angle)[0]
    lo, hi = upright.min(0), upright.max(0)
    centre = rotate(((lo + hi) / 2.0)[None, None], angle)[0, 0]
    return (
        (float(centre[0]), float(centre[1])),
        ROI_SCALE * float((hi - lo).max()),
        float(angle[0]),
    )


def cut_crop(frame_bgr: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """The 192x192 RGB float crop in [0, 1] that ``forward`` maps out of the frame.

    Large faces are shrunk with area averaging first: a bilinear warp straight down to 192 px
    would skip pixels and alias.
    """
    scale = float(np.hypot(forward[0, 0], forward[0, 1]))
    image = frame_bgr
    if scale < 0.5:
        # Cut the region's bounding box, shrink it to twice the crop's resolution, re-aim.
        inverse = cv2.invertAffineTransform(forward)
        n = INPUT_SIZE
        corners = np.array([[0, 0, 1], [n, 0, 1], [0, n, 1], [n, n, 1]], np.float64)
        frame_pts = corners @ inverse.T
        h, w = frame_bgr.shape[:2]
        x0, y0 = np.floor(frame_pts.min(0)).astype(int)
        x1, y1 = np.ceil(frame_pts.max(0)).astype(int) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            factor = 2 * scale
            part = frame_bgr[y0:y1, x0:x1]
            size = (max(1, round((x1 - x0) * factor)), max(1, round((y1 - y0) * factor)))
            image = cv2.resize(part, size, interpolation=cv2.INTER_AREA)
            sx, sy = size[0] / (x1 - x0), size[1] / (y1 - y0)
            # crop = forward . (frame point); a pixel centre q of the shrunk image is the frame
            # point x0 + (q + 0.5) / s - 0.5 (pixel centres aligned, as cv2.resize samples).
            to_frame = np.array(
                [[1 / sx, 0, x0 + 0.5 / sx - 0.5], [0, 1 / sy, y0 + 0.5 / sy - 0.5], [0, 0, 1]]
            )
            forward = forward @ to_frame
    crop = cv2.warpAffine(
        image,
        forward,
        (INPUT_SIZE, INPUT_SIZE),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    return crop[..., ::-1].astype(np.float32) * (1.0 / 255.0)


def _providers(device: str, max_batch: int) -> list:
    """ONNX Runtime providers for ``device``; the CPU when this onnxruntime has no CUDA."""
    import onnxruntime as ort

    from ciagan_core.detection.quantized import default_cache_dir
    from ciagan_core.engines.onnxruntime_engine import providers_for

    available = ort.get_available_providers()
    if device.startswith("cuda") and "CUDAExecutionProvider" not in available:
        log.warning(
            "the mesh landmarker runs on the CPU: this onnxruntime has no CUDA provider "
            "(install onnxruntime-gpu for %s)",
            device,
        )
        return ["CPUExecutionProvider"]
    providers = providers_for(device, available, "TensorrtExecutionProvider" in available)
    for i, provider in enumerate(providers):
        if isinstance(provider, tuple) and provider[0] == "TensorrtExecutionProvider":
            # One engine for every batch size up to max_batch, built once and cached.
            shape = "image:{}x192x192x3"
            options = {
                **provider[1],
                "trt_profile_min_shapes": shape.format(1),
                "trt_profile_opt_shapes": shape.format(min(8, max_batch)),
                "trt_profile_max_shapes": shape.format(max_batch),
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(default_cache_dir() / "face_mesh_trt"),
            }
            providers[i] = ("TensorrtExecutionProvider", options)
    return providers


class MeshLandmarker:
    """The face mesh on every box of a frame in one ONNX Runtime call, mapped to 68 points."""

    name = "mesh"

    def __init__(
        self,
        model_path: str | Path | None = None,
        device: str = "cpu",
        *,
        refine: bool = True,
        min_face_score: float = MIN_FACE_SCORE,
        mapping: str = "fitted",
        threads: int = 0,
        max_batch: int = 32,
    ):
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise BackendUnavailableError("the mesh landmarker needs onnxruntime") from exc
        if not 0.0 < min_face_score < 1.0:
            raise ConfigError(f"min_face_score must be in (0, 1), got {min_face_score}")
        if max_batch < 1:
            raise ConfigError(f"max_batch must be at least 1, got {max_batch}")
        self.max_batch = max_batch
        folder = Path(model_path) if model_path else MODEL_DIR
        onnx_path = folder / "face_mesh.onnx" if folder.is_dir() else folder
        if not onnx_path.is_file():
            raise ModelFileError(
                f"{onnx_path}: face mesh model not found (reinstall ciagan_ros, or make it with "
                "scripts/convert_face_mesh.py)"
            )
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        providers = _providers(device, max_batch)
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        except Exception as exc:
            raise ModelFileError(f"{onnx_path}: not a usable ONNX model ({exc})") from None
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        inputs = {i.name: i.shape for i in self.session.get_inputs()}
        if (
            list(outputs) != ["landmarks", "face_logit"]
            or list(inputs) != ["image"]
            or list(inputs["image"][1:]) != [INPUT_SIZE, INPUT_SIZE, 3]
            or outputs["landmarks"][-1] != 468 * 3
            or outputs["face_logit"][-1] != 1
        ):
            raise ModelFileError(
                f"{onnx_path}: not the converted 468-point face mesh (inputs {inputs}, outputs "
                f"{outputs}); make it with scripts/convert_face_mesh.py"
            )
        self.refine = refine
        self.min_face_score = min_face_score
        if mapping == "table":
            self.map68 = PointMap.table()
        elif mapping == "fitted":
            self.map68 = PointMap.load(onnx_path.parent / "mesh68_map.npz")
        else:
            raise ConfigError(f"mapping must be 'fitted' or 'table', got {mapping!r}")

    def _run(self, frame_bgr: np.ndarray, rois: list) -> list[MeshResult]:
        forwards, inverses, crops = [], [], []
        for centre, size, angle in rois:
            forward, inverse = roi_transform(centre, size, angle)
            forwards.append(forward)
            inverses.append(inverse)
            crops.append(cut_crop(frame_bgr, forward))
        batch = np.stack(crops)
        parts = [
            self.session.run(None, {"image": batch[i : i + self.max_batch]})
            for i in range(0, len(batch), self.max_batch)
        ]
        raw = np.concatenate([p[0] for p in parts])
        logits = np.concatenate([p[1] for p in parts])
        raw = raw.reshape(len(rois), 468, 3).astype(np.float64)
        scores = 1.0 / (1.0 + np.exp(-logits.reshape(-1).astype(np.float64)))
        results = []
        for points, score, inverse in zip(raw, scores, inverses, strict=True):
            frame_xy = points[:, :2] @ inverse[:, :2].T + inverse[:, 2]
            z = points[:, 2:] * float(np.hypot(inverse[0, 0], inverse[0, 1]))
            results.append(MeshResult(np.hstack([frame_xy, z]), float(score)))
        return results

    def mesh(self, frame_bgr: np.ndarray, boxes: list[FaceBox]) -> list[MeshResult]:
        """The 468-point mesh of every box (after the refining pass when enabled)."""
        if not boxes:
            return []
        frame = np.ascontiguousarray(frame_bgr)
        results = self._run(frame, [box_roi(box) for box in boxes])
        if self.refine:
            again = [i for i, r in enumerate(results) if r.score >= self.min_face_score]
            if again:
                refined = self._run(frame, [mesh_roi(results[i].points) for i in again])
                for i, result in zip(again, refined, strict=True):
                    # A refined crop that loses the face keeps the first pass's verdict.
                    if result.score >= self.min_face_score:
                        results[i] = result
        return results

    def landmarks(self, frame_bgr: np.ndarray, boxes: list[FaceBox]) -> list[np.ndarray | None]:
        out: list[np.ndarray | None] = []
        for result in self.mesh(frame_bgr, boxes):
            if result.score < self.min_face_score or not np.isfinite(result.points).all():
                out.append(None)
            else:
                out.append(self.map68(result.points))
        return out


def model_provenance(model_path: str | Path | None = None) -> dict:
    """What ``face_mesh.json`` says about the shipped model (source, sha256, versions)."""
    folder = Path(model_path) if model_path else MODEL_DIR
    try:
        return json.loads((folder / "face_mesh.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{folder}/face_mesh.json unreadable ({exc})") from None
