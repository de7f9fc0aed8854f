"""``ciagan bag IN OUT`` (also ``ros2 run ciagan_ros anonymize_bag IN OUT``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from ciagan_core.cli.pipeline_args import add_pipeline_arguments

    p = sub.add_parser(
        "bag",
        help="anonymize every image topic of a rosbag2 recording (sqlite3, mcap), no ROS needed",
    )
    p.add_argument("input", type=Path, metavar="IN", help="rosbag2 folder to read")
    p.add_argument("output", type=Path, metavar="OUT", help="rosbag2 folder to write")
    add_bag_arguments(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_pipeline_arguments(p)
    p.set_defaults(func=run)


def add_bag_arguments(p: argparse.ArgumentParser) -> None:
    """The options of how a bag is treated, shared by ``ciagan bag`` and ``ciagan fleet``."""
    from ciagan_ros.bag_tool import DISTROS, STORAGES, BagSettings

    p.add_argument(
        "--keep-topic",
        action="append",
        default=[],
        metavar="TOPIC",
        help="a topic to copy raw, neither anonymized nor checked (faces included; listed as "
        "kept in the report), for a topic the tool cannot anonymize that shows no people; "
        "repeatable",
    )
    p.add_argument(
        "--storage",
        choices=STORAGES,
        default=None,
        help="output storage (default: the input's)",
    )
    p.add_argument(
        "--batch", type=int, default=BagSettings.batch, help="frames per generator call"
    )
    p.add_argument(
        "--max-gap",
        type=int,
        default=BagSettings.max_gap,
        help="frames a tracked face may be missed and still be covered "
        f"(default: {BagSettings.max_gap})",
    )
    p.add_argument("--jpeg-quality", type=int, default=BagSettings.jpeg_quality)
    p.add_argument(
        "--distro",
        choices=DISTROS,
        default=BagSettings.distro,
        help="ROS 2 distro whose standard message types read the types a bag stores no "
        "definition of (ROS 2 Humble stores none), when the bag does not name its distro "
        f"(default: {BagSettings.distro})",
    )


def bag_settings(args: argparse.Namespace):
    """``BagSettings`` from the shared options (validated)."""
    from ciagan_core.errors import ConfigError
    from ciagan_ros.bag_tool import BagSettings

    if args.batch < 1 or args.max_gap < 0 or not 1 <= args.jpeg_quality <= 100:
        raise ConfigError("--batch must be >= 1, --max-gap >= 0, --jpeg-quality in 1..100")
    return BagSettings(
        keep_topics=tuple(args.keep_topic),
        storage=args.storage,
        batch=args.batch,
        max_gap=args.max_gap,
        jpeg_quality=args.jpeg_quality,
        overwrite=args.overwrite,
        distro=args.distro,
    )


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ciagan_core.cli.pipeline_args import pipeline_config
    from ciagan_ros.bag_tool import anonymize_bag

    settings = bag_settings(args)
    with tqdm(unit="msg", disable=args.no_progress or None, file=sys.stderr) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        report = anonymize_bag(args.input, args.output, pipeline_config(args), settings, progress)
    for topic, r in report["topics"].items():
        state = (
            "kept raw"
            if r["kept_raw"]
            else (
                f"{r['messages']} frames, {r['faces']} faces, {r['fallbacks']} fallbacks, "
                f"{r['recovered_frames']} recovered by tracking, {r['failed_frames']} pixelated "
                f"whole, {r['dropped_frames']} dropped"
            )
        )
        print(f"{topic}: {state}")
    if report.get("types_from_distro"):
        print(
            f"read {len(report['types_from_distro'])} types the bag does not define with ROS 2 "
            f"{report['distro']}'s standard definitions: {', '.join(report['types_from_distro'])}"
        )
    if report.get("types_from_foxglove"):
        print(
            f"read {', '.join(report['types_from_foxglove'])}, which the bag does not define, "
            "with Foxglove's published definitions"
        )
    kept = sorted({t["topic"] for t in report.get("copied_topics", []) if t["kept"]})
    if kept:
        print(f"copied raw as asked (--keep-topic), faces included: {', '.join(kept)}")
    print(
        f"wrote {args.output} ({report['copied_messages']} other messages copied); "
        f"report: {args.output}.report.json"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ros2 run ciagan_ros anonymize_bag``."""
    from ciagan_core.cli import main as ciagan_main

    return ciagan_main(["bag", *(sys.argv[1:] if argv is None else argv)])
