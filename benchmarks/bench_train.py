#!/usr/bin/env python3
"""Training benchmark: samples/s of one CIAGAN step configuration on the device at hand.

Run from the project root:

    python benchmarks/bench_train.py [--device cuda] [--batch-size 16] [--steps 20]
    python benchmarks/bench_train.py --data PREPARED   # a set from ciagan prepare

Without ``--data`` it prepares the authors' sample (``../shared/data/ciagan_sample``) in a
temporary folder. It times whole training steps (1 siamese, 1 critic, 3 generator updates by
default, as ``ciagan train``) after warm-up steps, and in the same run an fp32 matmul as the
machine's reference, so a run on another machine can be planned from the ratio. Writes
``benchmarks/results/train_<device>.{json,md}`` (or under ``$OUT`` when set).

``--profile N`` then profiles N more steps (torch.profiler) into ``train_<device>_profile.txt``:
the operators that take the most device and host time, and the share of the steps' wall time
the device spent in kernels (low means the steps wait on Python and kernel launches, so larger
batches or CUDA graphs pay; high means the arithmetic itself is the cost).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ciagan_core.bench import machine_description, matmul_reference  # noqa: E402
from ciagan_core.training.config import TrainConfig  # noqa: E402
from ciagan_core.training.trainer import Trainer  # noqa: E402

SAMPLE = ROOT.parent / "shared" / "data" / "ciagan_sample" / "clr"


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def profile_steps(trainer: Trainer, steps: int, path: Path) -> None:
    """Profile ``steps`` training steps; write the top operators and the device's busy share."""
    from torch.profiler import ProfilerActivity, profile

    cuda = trainer.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    _sync(trainer.device)
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(steps):
            trainer.train_step()
        _sync(trainer.device)
    wall_us = (time.perf_counter() - start) * 1e6
    events = prof.key_averages()
    lines = [f"{steps} steps, {wall_us / 1e6 / steps:.3f} s per step while profiled"]
    if cuda:
        from torch.autograd import DeviceType

        # The kernels themselves: an operator's device time already holds its kernels', so
        # summing every event would count each kernel twice.
        kernels_us = sum(
            e.self_device_time_total
            for e in prof.events()
            if e.device_type == DeviceType.CUDA and not e.is_user_annotation
        )
        lines.append(f"device busy in kernels: {kernels_us / wall_us:.1%} of the wall time")
        lines += ["", events.table(sort_by="self_cuda_time_total", row_limit=25)]
    lines += ["", events.table(sort_by="self_cpu_time_total", row_limit=25)]
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:2]), f"(profile: {path})", sep="\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="prepared set (default: the authors' sample)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--profile", type=int, default=0, help="profile this many more steps")
    args = parser.parse_args()
    out_dir = Path(os.environ.get("OUT") or ROOT / "benchmarks" / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"train_{args.device.split(':')[0]}"

    from ciagan_core.cli import main as ciagan

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = Path(tmp) / "prepared"
            if ciagan(["prepare", str(SAMPLE), "-o", str(data), "--split", "none"]) != 0:
                return 1
        config = replace(
            TrainConfig(),
            batch_size=args.batch_size,
            device=args.device,
            precision=args.precision,
        )
        trainer = Trainer(config, data, Path(tmp) / "run")
        for _ in range(args.warmup):
            trainer.train_step()
        times = []
        for _ in range(args.steps):
            _sync(trainer.device)
            start = time.perf_counter()
            trainer.train_step()
            _sync(trainer.device)
            times.append(time.perf_counter() - start)
        if args.profile:
            profile_steps(trainer, args.profile, out_dir / f"{stem}_profile.txt")
    step_s = statistics.median(times)
    reference = matmul_reference(args.device)
    result = {
        "machine": machine_description(args.device),
        "device": args.device,
        "precision": trainer.precision,
        "batch_size": args.batch_size,
        "updates_per_step": {
            "identity": config.identity_updates,
            "critic": config.critic_updates,
            "generator": config.generator_updates,
        },
        "timed_steps": args.steps,
        "median_step_s": round(step_s, 4),
        "samples_per_s": round(args.batch_size / step_s, 3),
        "steps_per_10_min": int(600 / step_s),
        "matmul_fp32_gflops": round(reference.torch_gflops, 1),
        "samples_per_s_per_matmul_tflops": round(
            args.batch_size / step_s / (reference.torch_gflops / 1e3), 3
        ),
    }
    (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    machine = result["machine"]
    where = machine.get("gpu") or f"{machine.get('processor') or 'CPU'}, {os.cpu_count()} CPUs"
    lines = [
        f"# Training benchmark ({args.device})",
        "",
        f"{where}; torch {machine.get('torch')}. One step = {config.identity_updates} siamese, "
        f"{config.critic_updates} critic and {config.generator_updates} generator updates at "
        f"batch {args.batch_size} ({trainer.precision}); median of {args.steps} steps after "
        f"{args.warmup} warm-up.",
        "",
        "| samples/s | s per step | steps per 10 min | fp32 matmul GFLOP/s (same run) |",
        "|---|---|---|---|",
        f"| {result['samples_per_s']:.2f} | {step_s:.2f} | {result['steps_per_10_min']} | "
        f"{reference.torch_gflops:.0f} |",
        "",
    ]
    (out_dir / f"{stem}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
