#!/usr/bin/env python3
"""GPU check in one command: torch CUDA fp32/fp16 parity on the official fixture, then the
engine benchmark (``ciagan bench``) on CUDA. Results go under $OUT when set, else
benchmarks/results.

    python3 scripts/gpu_check.py [--fixture PATH] [--batches 1,4,16,32]

It needs only torch (CUDA), numpy, safetensors and onnx from the machine's image, and runs from the
source tree (no install). The fixture defaults to ../shared/fixtures/official_generator_parity.npz;
on a machine without ../shared, copy it into an ignored folder of the checkout (e.g. .gpu/) and
pass --fixture .gpu/official_generator_parity.npz. ONNX Runtime (CUDA provider) and TensorRT rows
are added where those import. Exit status 1 if any parity check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--fixture",
        type=Path,
        default=ROOT.parent / "shared" / "fixtures" / "official_generator_parity.npz",
    )
    parser.add_argument("--batches", default="1,4,16,32")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()

    import numpy as np
    import torch

    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible to torch", file=sys.stderr)
        return 2
    from ciagan_core.bench import run_benchmark, write_report
    from ciagan_core.engines import create_engine
    from ciagan_core.model_file import import_official

    out_dir = Path(os.environ.get("OUT") or ROOT / "benchmarks" / "results")
    with np.load(args.fixture) as data:
        fixture = {k: data[k] for k in data.files}
    work = Path(tempfile.mkdtemp(prefix="ciagan_gpu_"))
    state = {
        k[6:]: torch.from_numpy(v.astype(np.float32))
        for k, v in fixture.items()
        if k.startswith("state/")
    }
    torch.save(state, work / "modelG.pth")
    model = work / "fixture.safetensors"
    import_official(work / "modelG.pth", model)

    # --device cpu is a dry run of this script's whole flow on machines without a GPU.
    candidates = [("torch", "fp32"), ("torch", "fp16")] if cuda else [("torch", "fp32")]
    try:
        import onnxruntime

        if not cuda:
            candidates.append(("onnxruntime", "fp32"))
        elif "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            candidates += [("onnxruntime", "fp32"), ("onnxruntime", "fp16")]
    except ImportError:
        pass
    try:
        import tensorrt  # noqa: F401

        if cuda:
            candidates += [("tensorrt", "fp32"), ("tensorrt", "fp16")]
    except ImportError:
        pass

    parity, mean_error, failed = {}, {}, []
    for name, precision in candidates:
        engine = create_engine(name, model, device=args.device, precision=precision)
        out = engine.run(fixture["generator_input"], fixture["identity"])
        difference = np.abs(out - fixture["raw_output"])
        error = float(difference.max())
        parity[f"{name}:{precision}"] = error
        mean_error[f"{name}:{precision}"] = float(difference.mean())
        ok = error < TOLERANCE[precision]
        failed += [] if ok else [f"{name}:{precision}"]
        print(
            f"parity {name:12} {precision}: max abs error {error:.2e} "
            f"({'ok' if ok else 'FAIL'}, tolerance {TOLERANCE[precision]:.0e}), "
            f"mean {difference.mean():.1e}",
            flush=True,
        )

    batches = [int(b) for b in args.batches.split(",")]
    report = run_benchmark(model, candidates, batches, args.device, args.repeats)
    report.accuracy = parity
    json_path, md_path = write_report(report, out_dir, "engines_" + args.device.replace(":", ""))
    # Max abs error per engine:precision, as the bounds apply to it; the mean beside it.
    parity_file = {**parity, "mean_abs_error": mean_error}
    (out_dir / "gpu_parity.json").write_text(json.dumps(parity_file, indent=2) + "\n")
    print(f"wrote {json_path}, {md_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
