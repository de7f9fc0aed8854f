"""``ciagan train PREPARED -o RUN``: train a generator (REFERENCE §4) on a prepared set."""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

from ciagan_core.errors import ConfigError


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``1.5h``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 600, 10m, 1.5h)")
    value = float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    if value <= 0:
        raise argparse.ArgumentTypeError("a duration must be positive")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a CIAGAN generator on a prepared set (from ciagan prepare)",
        description="Train CIAGAN (LSGAN + identity loss). Settings: --config YAML (every key: "
        "config/train.yaml), then the options below. The run folder gets checkpoints, "
        "losses.csv, sample grids and, at the end, model.safetensors.",
    )
    p.add_argument("data", type=Path, metavar="PREPARED", help="folder made by ciagan prepare")
    p.add_argument(
        "-o", "--output", type=Path, required=True, help="run folder (new, or --resume)"
    )
    p.add_argument("--config", type=Path, help="YAML settings (see config/train.yaml)")
    p.add_argument("--steps", type=int, help="train until this step")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"))
    p.add_argument("--seed", type=int)
    p.add_argument("--eval-every", type=int, help="steps between held-out evaluations (0: off)")
    p.add_argument(
        "--time-limit",
        type=parse_duration,
        help="stop cleanly and save everything before this much time has passed (600, 10m, 1h)",
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        metavar="CHECKPOINT",
        help="continue a run: from RUN/checkpoint.pt, else RUN/compact, or the given "
        "checkpoint.pt or compact folder",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def _resume_source(out: Path, resume: str) -> Path:
    from ciagan_core.training.trainer import checkpoint_path, is_run_folder

    if resume != "auto":
        return Path(resume)  # a run folder, its checkpoint.pt or its compact/
    if not is_run_folder(out):
        raise ConfigError(f"{out}: nothing to resume (no checkpoint.pt or compact/)")
    return checkpoint_path(out)


def run(args: argparse.Namespace) -> int:
    import time

    from tqdm import tqdm

    from ciagan_core.training.config import load_config
    from ciagan_core.training.trainer import (
        Trainer,
        check_output_folder,
        is_run_folder,
        run_training,
    )

    started = time.monotonic()  # --time-limit counts start-up (data loading) too

    overrides = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "device": args.device,
        "precision": args.precision,
        "seed": args.seed,
        "eval_every": args.eval_every,
    }
    config = load_config(args.config, overrides)
    out: Path = args.output
    check_output_folder(out, args.data, resume=args.resume is not None)
    source = _resume_source(out, args.resume) if args.resume else None
    # Everything that can fail on bad input (data, config, checkpoint) fails before the run
    # folder is created or touched.
    trainer = Trainer(config, args.data, out)
    if config.eval_every:
        from ciagan_core.training.monitor import eval_sample

        eval_sample(trainer.data_folder, config.eval_faces)
    if source is not None:
        print(f"resuming from {trainer.resume(source)}")
    with tqdm(
        total=config.steps,
        initial=trainer.step,
        unit="step",
        disable=args.no_progress or None,
        dynamic_ncols=True,
    ) as bar:

        def progress(step: int, losses: dict[str, float]) -> None:
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(
                    {k.removeprefix("loss_"): f"{v:.3f}" for k, v in losses.items()}, refresh=False
                )

        new_folder = not out.exists() or not any(out.iterdir())
        try:
            summary = run_training(trainer, args.time_limit, progress, started)
        except BaseException:
            # A run that failed before saving anything leaves no folder that is neither
            # new nor resumable.
            if new_folder and out.is_dir() and not is_run_folder(out):
                shutil.rmtree(out, ignore_errors=True)
            raise
    print(
        f"{summary['stopped']} at step {summary['step']}/{summary['steps']} "
        f"({summary['samples_per_s']} samples/s on {summary['device']}, {summary['precision']}); "
        f"model: {summary['model']}"
    )
    return 0
