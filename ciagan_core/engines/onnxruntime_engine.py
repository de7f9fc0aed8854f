"""ONNX Runtime engine: CPU, plus the CUDA and TensorRT execution providers when installed."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ciagan_core.engines.base import batches, check_batch
from ciagan_core.engines.onnx_export import export_onnx
from ciagan_core.errors import BackendUnavailableError, ConfigError, ModelFileError

log = logging.getLogger(__name__)


def providers_for(
    device: str, available: list[str], use_tensorrt: bool = False
) -> list[str | tuple[str, dict]]:
    """ONNX Runtime providers for ``device`` (cpu, cuda, cuda:N), in preference order."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if not device.startswith("cuda"):
        raise ConfigError(f"device must be cpu, cuda or cuda:N, got {device!r}")
    if "CUDAExecutionProvider" not in available:
        raise BackendUnavailableError(
            f"device {device!r} requested but this onnxruntime has no CUDA provider "
            f"(available: {', '.join(available)}); install onnxruntime-gpu"
        )
    index = int(device.partition(":")[2] or 0)
    chosen: list[str | tuple[str, dict]] = []
    if use_tensorrt and "TensorrtExecutionProvider" in available:
        chosen.append(("TensorrtExecutionProvider", {"device_id": index}))
    chosen += [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    return chosen


class OnnxRuntimeEngine:
    """The generator's ONNX graph (or a given .onnx file) in an ONNX Runtime session."""

    name = "onnxruntime"

    def __init__(
        self,
        model_path: str | Path,
        device: str = "cpu",
        precision: str = "fp32",
        max_batch: int = 32,
        threads: int = 0,
        use_tensorrt: bool = False,
        spin: bool = False,
    ):
        import onnxruntime as ort

        model_path = Path(model_path)
        if model_path.suffix == ".onnx":
            import onnx

            if not model_path.is_file():
                raise ModelFileError(f"{model_path}: ONNX model not found")
            try:
                proto = onnx.load(str(model_path))
            except Exception as exc:
                raise ModelFileError(f"{model_path}: not a readable ONNX model ({exc})") from None
            props = {p.key: p.value for p in proto.metadata_props}
            if "num_identities" not in props:
                raise ModelFileError(f"{model_path}: not a ciagan generator ONNX export")
        else:
            proto = export_onnx(model_path, precision)
            props = {p.key: p.value for p in proto.metadata_props}
        self.num_identities = int(props["num_identities"])
        self.precision = props.get("precision", precision)
        self.max_batch = max_batch
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning idle workers suit back-to-back calls (an engine alone: +30% faces/s at batch 1)
        # but steal the cores the detector and landmarker need in the pipeline (45 -> 29 ms per
        # 640x480 frame with one face without it), so it is off unless asked for.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        if threads:
            options.intra_op_num_threads = threads
        providers = providers_for(device, ort.get_available_providers(), use_tensorrt)
        self.session = ort.InferenceSession(
            proto.SerializeToString(), options, providers=providers
        )
        log.info("onnxruntime session on %s", self.session.get_providers())

    def run(self, inputs: np.ndarray, identities: np.ndarray) -> np.ndarray:
        inputs, identities = check_batch(inputs, identities, self.num_identities)
        out = np.empty((inputs.shape[0], 3, 128, 128), np.float32)
        for sl in batches(inputs.shape[0], self.max_batch):
            out[sl] = self.session.run(
                ["output"], {"image": inputs[sl], "identity": identities[sl].astype(np.int32)}
            )[0]
        return out
