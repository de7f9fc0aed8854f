"""TensorRT engine: build from the generator's ONNX, cache, deserialize and run.

Written against the documented TensorRT Python API of the versions robots and desktops run:

- 8.5 / 8.6 (JetPack 5): EXPLICIT_BATCH network flag; fp16 from the fp32 ONNX with
  BuilderFlag.FP16; bindings or tensor-name I/O.
- 10.0 to 10.11 (JetPack 6 has 10.3; desktops): no creation flag; fp16 as above; tensor-name I/O
  with ``execute_async_v3``.
- 10.12 and later: fp16 through a STRONGLY_TYPED network built from the fp16 ONNX (weakly typed
  networks are deprecated).
- 11: always strongly typed (the flag and BuilderFlag.FP16 are gone); fp16 from the fp16 ONNX.

Device buffers come from torch CUDA tensors when torch has CUDA, else from cuda-python; pycuda
is not needed. The engine file is cached under a key of everything it depends on
(``engines.cache``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ciagan_core.engines.base import batches, check_batch
from ciagan_core.engines.cache import EngineKey, load_or_build
from ciagan_core.engines.onnx_export import onnx_sha256
from ciagan_core.errors import BackendUnavailableError, CiaganError, ConfigError

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE_MB = 1024


class EngineBuildError(CiaganError):
    """TensorRT could not parse the ONNX or build an engine."""


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(
            "the tensorrt engine needs TensorRT's Python package (JetPack ships it; on a "
            "desktop: pip install tensorrt) and a CUDA GPU"
        ) from exc
    return trt


def version_tuple(version: str) -> tuple[int, int]:
    major, minor = [*version.split("."), "0"][:2]
    return int(major), int(minor)


def uses_strong_typing(version: str) -> bool:
    """fp16 through a strongly typed fp16 network from TensorRT 10.12 on."""
    return version_tuple(version) >= (10, 12)


def onnx_for_build(graph, precision: str, tensorrt_version: str):
    """The ONNX a TensorRT build parses: fp16-typed only for strongly typed builds."""
    from ciagan_core.engines.onnx_export import graph_to_onnx

    typed = "fp16" if precision == "fp16" and uses_strong_typing(tensorrt_version) else "fp32"
    return graph_to_onnx(graph, typed, pad_ops="slice")


def build_engine(
    onnx_bytes: bytes,
    precision: str,
    max_batch: int,
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
    opt_batch: int | None = None,
) -> bytes:
    """Parse the ONNX and build a serialized engine with one profile for batch 1..max_batch."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    creation = trt.NetworkDefinitionCreationFlag
    major, _ = version_tuple(trt.__version__)
    if major < 10 and hasattr(creation, "EXPLICIT_BATCH"):
        flags |= 1 << int(creation.EXPLICIT_BATCH)
    strong = precision == "fp16" and uses_strong_typing(trt.__version__)
    if strong and hasattr(creation, "STRONGLY_TYPED") and major < 11:
        flags |= 1 << int(creation.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT {trt.__version__} cannot parse the ONNX: {errors}")
    config = builder.create_builder_config()
    workspace = workspace_mb << 20
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    else:  # TensorRT < 8.4
        config.max_workspace_size = workspace
    if precision == "fp16" and not strong:
        if hasattr(builder, "platform_has_fast_fp16") and not builder.platform_has_fast_fp16:
            log.warning("this GPU has no fast fp16; the fp16 engine may be slow")
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    opt = opt_batch or max(1, min(max_batch, 8))
    profile.set_shape("image", (1, 6, 128, 128), (opt, 6, 128, 128), (max_batch, 6, 128, 128))
    profile.set_shape("identity", (1,), (opt,), (max_batch,))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT {trt.__version__} failed to build the engine")
    return bytes(serialized)


def gpu_identity(device_index: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability "M.m") from torch, else cuda-python."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(device_index)
            return torch.cuda.get_device_name(device_index), f"{major}.{minor}"
    except ImportError:
        pass
    cudart = _cudart()
    err, props = cudart.cudaGetDeviceProperties(device_index)
    _check(cudart, err, "cudaGetDeviceProperties")
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return name.rstrip("\x00"), f"{props.major}.{props.minor}"


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart
        except ImportError as exc:
            raise BackendUnavailableError(
                "the tensorrt engine needs device memory from torch (CUDA build) or cuda-python"
            ) from exc
    return cudart


def _check(cudart, err, what: str) -> None:
    if int(err) != int(cudart.cudaError_t.cudaSuccess):
        raise CiaganError(f"CUDA error in {what}: {err}")


class _TorchBuffers:
    """Device buffers and stream from torch."""

    def __init__(self, device_index: int):
        import torch

        self.torch, self.device = torch, torch.device("cuda", device_index)
        self.stream = torch.cuda.Stream(self.device)

    def run(self, launch, image: np.ndarray, ids: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.cuda.stream(self.stream):
            x = torch.from_numpy(image).to(self.device, non_blocking=False)
            i = torch.from_numpy(ids).to(self.device)
            y = torch.empty((image.shape[0], 3, 128, 128), dtype=torch.float32, device=self.device)
            launch(
                {"image": x.data_ptr(), "identity": i.data_ptr(), "output": y.data_ptr()},
                self.stream.cuda_stream,
            )
            out = y.cpu()  # waits for this stream
        return out.numpy()


class _CudaPythonBuffers:
    """Device buffers and stream from cuda-python, for machines without CUDA torch."""

    def __init__(self, device_index: int):
        self.cudart = _cudart()
        _check(self.cudart, self.cudart.cudaSetDevice(device_index)[0], "cudaSetDevice")
        err, self.stream = self.cudart.cudaStreamCreate()
        _check(self.cudart, err, "cudaStreamCreate")

    def run(self, launch, image: np.ndarray, ids: np.ndarray) -> np.ndarray:
        cudart = self.cudart
        out = np.empty((image.shape[0], 3, 128, 128), np.float32)
        host = {"image": image, "identity": ids, "output": out}
        ptrs = {}
        try:
            for name, array in host.items():
                err, ptrs[name] = cudart.cudaMalloc(array.nbytes)
                _check(cudart, err, "cudaMalloc")
            h2d, d2h = (
                cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
                cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
            )
            for name in ("image", "identity"):
                _check(
                    cudart,
                    cudart.cudaMemcpyAsync(
                        ptrs[name], host[name].ctypes.data, host[name].nbytes, h2d, self.stream
                    )[0],
                    "cudaMemcpyAsync",
                )
            launch({k: int(v) for k, v in ptrs.items()}, int(self.stream))
            _check(
                cudart,
                cudart.cudaMemcpyAsync(
                    out.ctypes.data, ptrs["output"], out.nbytes, d2h, self.stream
                )[0],
                "cudaMemcpyAsync",
            )
            _check(cudart, cudart.cudaStreamSynchronize(self.stream)[0], "cudaStreamSynchronize")
        finally:
            for ptr in ptrs.values():
                cudart.cudaFree(ptr)
        return out


class TensorRTEngine:
    """A cached TensorRT engine of the generator."""

    name = "tensorrt"

    def __init__(
        self,
        model_path: str | Path,
        device: str = "cuda",
        precision: str = "fp16",
        max_batch: int = 16,
        engine_path: str | Path | None = None,
        cache_dir: str | Path | None = None,
        rebuild: bool = True,
        force: bool = False,
        workspace_mb: int = DEFAULT_WORKSPACE_MB,
    ):
        from ciagan_core.model_file import load_model_file
        from ciagan_core.models.inference_graph import build_inference_graph

        trt = import_tensorrt()
        if not device.startswith("cuda"):
            raise ConfigError(f"the tensorrt engine runs on cuda devices, not {device!r}")
        if precision not in ("fp32", "fp16"):
            raise ConfigError(f"precision must be fp32 or fp16, got {precision!r}")
        index = int(device.partition(":")[2] or 0)
        model_path = Path(model_path)
        loaded = load_model_file(model_path)
        self.num_identities = loaded.info.num_identities
        self.max_batch = max_batch
        onnx_model = onnx_for_build(
            build_inference_graph(loaded.state_dict, self.num_identities),
            precision,
            trt.__version__,
        )
        gpu_name, capability = gpu_identity(index)
        self.key = EngineKey(
            onnx_sha256(onnx_model), trt.__version__, gpu_name, capability, precision, max_batch
        )
        if engine_path is None:
            directory = Path(cache_dir) if cache_dir else model_path.parent / "engines"
            engine_path = directory / self.key.filename(model_path.stem)
        self.engine_path = Path(engine_path)

        def build() -> bytes:
            return build_engine(onnx_model.SerializeToString(), precision, max_batch, workspace_mb)

        data, self.status = load_or_build(
            self.engine_path, self.key, build, rebuild=rebuild, force=force
        )
        logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(logger)
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None and rebuild and self.status == "cached":
            log.warning("%s: TensorRT cannot deserialize it; rebuilding", self.engine_path)
            data, _ = load_or_build(self.engine_path, self.key, build, force=True)
            self.status = "rebuilt"
            self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise EngineBuildError(f"{self.engine_path}: TensorRT cannot deserialize the engine")
        self._context = self._engine.create_execution_context()
        self._tensor_api = hasattr(self._engine, "num_io_tensors")
        try:
            import torch

            use_torch = torch.cuda.is_available()
        except ImportError:
            use_torch = False
        self._buffers = _TorchBuffers(index) if use_torch else _CudaPythonBuffers(index)

    def _launch(self, pointers: dict[str, int], stream: int, batch: int) -> None:
        ctx, engine = self._context, self._engine
        shapes = {"image": (batch, 6, 128, 128), "identity": (batch,)}
        if self._tensor_api:  # TensorRT >= 8.5
            for name, shape in shapes.items():
                ctx.set_input_shape(name, shape)
            for name, ptr in pointers.items():
                ctx.set_tensor_address(name, ptr)
            ok = ctx.execute_async_v3(stream)
        else:  # bindings API (TensorRT < 8.5)
            bindings = [0] * engine.num_bindings
            for name, ptr in pointers.items():
                index = engine.get_binding_index(name)
                bindings[index] = ptr
                if name in shapes:
                    ctx.set_binding_shape(index, shapes[name])
            ok = ctx.execute_async_v2(bindings, stream)
        if not ok:
            raise CiaganError("TensorRT execution failed")

    def run(self, inputs: np.ndarray, identities: np.ndarray) -> np.ndarray:
        inputs, identities = check_batch(inputs, identities, self.num_identities)
        out = np.empty((inputs.shape[0], 3, 128, 128), np.float32)
        for sl in batches(inputs.shape[0], self.max_batch):
            image = np.ascontiguousarray(inputs[sl])
            ids = identities[sl].astype(np.int32)
            out[sl] = self._buffers.run(
                lambda ptrs, stream, b=image.shape[0]: self._launch(ptrs, stream, b), image, ids
            )
        return out
