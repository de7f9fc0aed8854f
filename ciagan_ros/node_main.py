"""``anonymizer_node``'s entry point, light on purpose: SIGINT and SIGTERM end the process
quietly with status 0 even while the node's imports run (torch, OpenCV and rclpy take a
second), as they do once the node runs."""

from __future__ import annotations

import contextlib
import os
import signal
import sys


def _stop(signum: int, frame: object) -> None:
    # Not ``raise SystemExit``: a signal that lands inside a callback the interpreter runs for
    # itself (importlib's module-lock weakref callback, a finalizer) has its exception printed
    # and dropped, and the node would go on starting. Nothing is open yet: no participant, no
    # file, so ending the process here loses nothing.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed stream must not keep it alive
            stream.flush()
    os._exit(0)


def main() -> int:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop)
    from ciagan_ros.node import main as run  # rclpy takes the signals over at its init

    return run()
