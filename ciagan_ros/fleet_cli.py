"""``ciagan fleet BAG... -o OUTDIR [--ray [ADDRESS]]``: many bags, locally or on Ray."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from ciagan_core.cli.pipeline_args import add_pipeline_arguments
    from ciagan_ros.bag_cli import add_bag_arguments
    from ciagan_ros.fleet import FleetSettings

    p = sub.add_parser(
        "fleet",
        help="anonymize many rosbag2 recordings like ciagan bag, in this process or on Ray",
        description="Each bag gets OUTDIR/<bag name> and its report, exactly as `ciagan bag` "
        "writes them; OUTDIR/fleet_report.json lists every bag. Running the same command again "
        "skips bags already done.",
    )
    p.add_argument(
        "inputs", type=Path, nargs="+", metavar="BAG", help="rosbag2 folders, or folders of them"
    )
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR")
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run on Ray: 'local' (default: start one here), 'auto' (the cluster this machine "
        "joined with `ray start`), or ray://HEAD:10001",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="workers (default: as the cluster's resources allow)",
    )
    p.add_argument(
        "--cpus-per-worker", type=float, default=FleetSettings.num_cpus, help="Ray num_cpus"
    )
    p.add_argument(
        "--gpus-per-worker",
        type=float,
        default=FleetSettings.num_gpus,
        help="Ray num_gpus (1: one GPU per worker, pinned by CUDA_VISIBLE_DEVICES); use with "
        "--device cuda",
    )
    p.add_argument("--max-restarts", type=int, default=FleetSettings.max_restarts)
    p.add_argument("--max-task-retries", type=int, default=FleetSettings.max_task_retries)
    add_bag_arguments(p)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace outputs that exist but were made from another input or other settings",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_pipeline_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ciagan_core.cli.pipeline_args import pipeline_config
    from ciagan_core.errors import ConfigError
    from ciagan_ros.bag_cli import bag_settings
    from ciagan_ros.fleet import FleetSettings, render_table, run_fleet

    if args.ray is not None and not _looks_like_address(args.ray):
        raise ConfigError(
            f"--ray {args.ray!r} is not a Ray address (local, auto, ray://HEAD:10001 or "
            "HOST:PORT); write the bags before --ray, or give the address"
        )
    fleet = FleetSettings(
        ray_address=args.ray,
        workers=args.workers,
        num_cpus=args.cpus_per_worker,
        num_gpus=args.gpus_per_worker,
        max_restarts=args.max_restarts,
        max_task_retries=args.max_task_retries,
        overwrite=args.overwrite,
    )
    with tqdm(unit="bag", disable=args.no_progress or None, file=sys.stderr) as bar:

        def progress(outcome, done: int, total: int) -> None:
            bar.total = total
            bar.set_postfix_str(f"{Path(outcome.source).name}: {outcome.status}", refresh=False)
            bar.update(done - bar.n)

        report = run_fleet(
            args.inputs, args.output, pipeline_config(args), bag_settings(args), fleet, progress
        )
    print(render_table(report))
    print(f"report: {args.output / 'fleet_report.json'}")
    return 1 if report["failed"] else 0


def _looks_like_address(text: str) -> bool:
    if text in ("local", "auto") or "://" in text:
        return True
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit() and not Path(text).exists()
