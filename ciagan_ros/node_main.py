"""``anonymizer_node``'s entry point, light on purpose: SIGINT and SIGTERM end the process
quietly with status 0 even while the node's imports run (torch, OpenCV and rclpy take a
second), as they do once the node runs."""

from __future__ import annotations

import signal


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main() -> int:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop)
    from ciagan_ros.node import main as run  # rclpy takes the signals over at its init

    return run()
