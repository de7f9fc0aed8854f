"""``ciagan export MODEL --onnx OUT.onnx [--fp16] [--tensorrt OUT.engine --max-batch 16]``."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ciagan_core.atomic_write import write_bytes_atomic
from ciagan_core.engines.onnx_export import PAD_OPS, export_onnx, onnx_sha256
from ciagan_core.errors import CiaganError, InputError
from ciagan_core.model_file import check_output_apart, same_file

#: ONNX Runtime vs the torch engine on the export check (the tests hold the fixture to 1e-4).
CHECK_TOLERANCE = {"fp32": 1e-3, "fp16": 5e-2}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model file to ONNX and (optionally) TensorRT")
    p.add_argument("model", type=Path, help="generator model file (.safetensors)")
    p.add_argument("--onnx", type=Path, required=True, help="ONNX file to write")
    p.add_argument("--fp16", action="store_true", help="half-precision weights and compute")
    p.add_argument(
        "--pad-ops",
        choices=PAD_OPS,
        default="pad",
        help="write paddings as Pad (default) or Slice+Concat (any TensorRT)",
    )
    p.add_argument(
        "--no-check",
        action="store_true",
        help="skip the ONNX Runtime check against the torch engine",
    )
    p.add_argument("--tensorrt", type=Path, default=None, help="also build this TensorRT engine")
    p.add_argument("--max-batch", type=int, default=16, help="TensorRT profile's largest batch")
    p.add_argument("--workspace-mb", type=int, default=1024, help="TensorRT builder workspace")
    p.add_argument("--device", default="cuda", help="GPU for the TensorRT build (cuda:N)")
    p.set_defaults(func=run)


def check_with_onnxruntime(model_path: Path, onnx_bytes: bytes, precision: str) -> float:
    """Max abs difference between ONNX Runtime (CPU) and the torch engine on sample faces."""
    import onnxruntime as ort

    from ciagan_core.engines.torch_engine import TorchEngine
    from ciagan_core.model_file import load_model_file

    loaded = load_model_file(model_path)
    rng = np.random.default_rng(0)
    inputs = rng.random((2, 6, 128, 128), dtype=np.float32)
    ids = np.array([0, loaded.info.num_identities - 1], np.int32)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": inputs, "identity": ids})[0]
    expected = TorchEngine(loaded).run(inputs, ids)
    error = float(np.abs(got - expected).max())
    if not error <= CHECK_TOLERANCE[precision]:
        raise CiaganError(
            f"the exported ONNX differs from the torch engine by {error:.2e} "
            f"(> {CHECK_TOLERANCE[precision]:.0e}); not written"
        )
    return error


def check_outputs(args: argparse.Namespace) -> None:
    """Before anything is written: no output on the model (or a link to it), and no two
    outputs on one file (the engine's ``.json`` sidecar included)."""
    from ciagan_core.build_cache import sidecar

    outputs = [("--onnx", args.onnx)]
    if args.tensorrt:
        outputs += [
            ("--tensorrt", args.tensorrt),
            ("--tensorrt's sidecar", sidecar(args.tensorrt)),
        ]
    for _, path in outputs:
        check_output_apart(path, args.model, what="model")
    for i, (name, path) in enumerate(outputs):
        for other_name, other in outputs[i + 1 :]:
            if same_file(path, other):
                raise InputError(f"{name} {path} and {other_name} {other} are one file")


def run(args: argparse.Namespace) -> int:
    check_outputs(args)
    precision = "fp16" if args.fp16 else "fp32"
    model = export_onnx(args.model, precision, args.pad_ops)
    data = model.SerializeToString()
    check = (
        ""
        if args.no_check
        else (f", ONNX Runtime vs torch {check_with_onnxruntime(args.model, data, precision):.1e}")
    )
    write_bytes_atomic(args.onnx, data)
    print(
        f"wrote {args.onnx}: opset {model.opset_import[0].version}, {precision}, "
        f"inputs image[B,6,128,128] float32 + identity[B] int32, "
        f"sha256 {onnx_sha256(model)[:16]}{check}"
    )
    if args.tensorrt:
        from ciagan_core.engines.tensorrt_engine import TensorRTEngine

        engine = TensorRTEngine(
            args.model,
            device=args.device,
            precision=precision,
            max_batch=args.max_batch,
            engine_path=args.tensorrt,
            force=True,
            workspace_mb=args.workspace_mb,
        )
        key = engine.key
        print(
            f"wrote {engine.engine_path} (+ .json): TensorRT {key.tensorrt_version}, "
            f"{key.gpu_name} sm {key.compute_capability}, {precision}, batch 1..{key.max_batch}"
        )
    return 0
