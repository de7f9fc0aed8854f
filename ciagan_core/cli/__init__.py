"""The ``ciagan`` command: one entry point, one module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
from collections.abc import Sequence

from ciagan_core import __version__
from ciagan_core.errors import CiaganError

#: Subcommand modules; each defines ``register(subparsers)`` that sets ``func`` on its parser.
#: ``bag`` lives with the ROS side (it reads messages), in a module that needs no ROS.
SUBCOMMANDS = (
    "ciagan_core.cli.model",
    "ciagan_core.cli.anonymize",
    "ciagan_core.cli.eval",
    "ciagan_core.cli.prepare",
    "ciagan_core.cli.train",
    "ciagan_core.cli.export",
    "ciagan_core.cli.bench",
    "ciagan_ros.bag_cli",
    "ciagan_ros.fleet_cli",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used by tests to check the documented options exist)."""
    parser = argparse.ArgumentParser(
        prog="ciagan", description="CIAGAN face anonymization: models, images, video, engines."
    )
    parser.add_argument("--version", action="version", version=f"ciagan {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 ok, 1 failed, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # SIGTERM (timeout, docker stop, systemd) ends a run like Ctrl-C: partial outputs are
    # removed and the summary says the run was interrupted.
    try:
        previous = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        return int(args.func(args) or 0)
    except CiaganError as exc:
        print(f"ciagan {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk, a vanished folder: one line, not a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"ciagan {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ciagan {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
