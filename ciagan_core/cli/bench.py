"""``ciagan bench MODEL``: faces/s and latency per engine and batch size."""

from __future__ import annotations

import argparse
from pathlib import Path

from ciagan_core.bench import report_paths, run_benchmark, write_report
from ciagan_core.errors import ConfigError
from ciagan_core.model_file import check_output_apart


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark inference engines against matmul throughput")
    p.add_argument("model", type=Path, help="generator model file (.safetensors)")
    p.add_argument(
        "--engines",
        default=None,
        help="comma list of ENGINE[:PRECISION] (default cpu: torch,onnxruntime; "
        "cuda: torch:fp32,torch:fp16,onnxruntime,tensorrt:fp16)",
    )
    p.add_argument("--batches", default="1,4,16,32", help="comma list of batch sizes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument(
        "--output",
        type=Path,
        default=Path("benchmarks/results"),
        help="folder for engines_<device>.json and .md",
    )
    p.add_argument(
        "--accuracy-fixture",
        type=Path,
        default=None,
        help="parity fixture (.npz): also record each engine's max error on it",
    )
    p.set_defaults(func=run)


def parse_engines(spec: str | None, device: str) -> list[tuple[str, str]]:
    if spec is None:
        spec = (
            "torch,onnxruntime"
            if device == "cpu"
            else "torch:fp32,torch:fp16,onnxruntime,tensorrt:fp16"
        )
    engines = []
    for item in spec.split(","):
        name, _, precision = item.strip().partition(":")
        precision = precision or "fp32"
        if precision not in ("fp32", "fp16"):
            raise ConfigError(f"bad engine spec {item!r}: precision is fp32 or fp16")
        engines.append((name, precision))
    return engines


def fixture_accuracy(model: Path, fixture: Path, engines, device: str) -> dict[str, float]:
    import numpy as np

    from ciagan_core.engines import create_engine

    with np.load(fixture) as data:
        inputs, ids, expected = data["generator_input"], data["identity"], data["raw_output"]
    return {
        f"{n}:{p}": float(
            np.abs(
                create_engine(n, model, device=device, precision=p).run(inputs, ids) - expected
            ).max()
        )
        for n, p in engines
    }


def run(args: argparse.Namespace) -> int:
    try:
        batches = [int(b) for b in args.batches.split(",")]
    except ValueError:
        raise ConfigError(f"--batches takes integers, got {args.batches!r}") from None
    engines = parse_engines(args.engines, args.device)
    stem = "engines_" + args.device.replace(":", "")
    inputs = [args.model, *([args.accuracy_fixture] if args.accuracy_fixture else [])]
    for path in report_paths(args.output, stem):  # before the work, not after it
        check_output_apart(path, *inputs)
    report = run_benchmark(args.model, engines, batches, args.device, args.repeats)
    if args.accuracy_fixture:
        report.accuracy = fixture_accuracy(args.model, args.accuracy_fixture, engines, args.device)
    json_path, md_path = write_report(report, args.output, stem)
    best = max(report.rows, key=lambda r: r.share_of_matmul)
    print(
        f"best: {best.engine} {best.precision} batch {best.batch}: {best.faces_per_s:.1f} "
        f"faces/s = {100 * best.share_of_matmul:.1f}% of the matmul reference"
    )
    print(f"wrote {json_path} and {md_path}")
    return 0
