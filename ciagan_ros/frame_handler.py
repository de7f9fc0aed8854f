"""The node's scheduling and fail-closed logic, without ROS: what the rclpy shell calls.

Each camera has a latest-frame-only slot: a frame that arrives before the previous one was
taken replaces it (the old one is dropped and counted). A worker takes the newest frame of every
camera, anonymizes them together (one generator call across cameras, each camera with its own
tracker and identities) and hands every result to ``publish``. A frame is never published raw:
when the pipeline raises, when no pipeline is loaded, or when the result would be later than
``max_latency_ms``, the output is the whole frame pixelated, or nothing (``on_failure``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ciagan_core.faces import FaceResult
from ciagan_core.frames import to_working
from ciagan_core.pipeline import Anonymizer, anonymize_together

log = logging.getLogger(__name__)

ON_FAILURE = ("pixelate", "drop")
#: Cells across the long side of a frame pixelated whole (nothing recognisable survives).
WHOLE_FRAME_CELLS = 8


@dataclass
class InFrame:
    """A decoded frame waiting for anonymization."""

    camera: str
    frame: np.ndarray
    #: Copied onto every output unchanged (the message header).
    header: Any
    #: ``clock()`` when the message arrived.
    received: float
    #: Anything the shell needs again to publish (the original message, for the codec).
    context: Any = None


@dataclass
class OutFrame:
    """What to publish for one input frame."""

    camera: str
    #: The anonymized (or fully pixelated) frame; None when the frame is dropped.
    image: np.ndarray | None
    header: Any
    context: Any
    faces: list[FaceResult]
    #: "ok", or why the whole frame was pixelated or dropped: "error", "no pipeline", "late".
    status: str
    reason: str = ""
    latency_ms: float = 0.0


@dataclass
class CameraStats:
    """Counters for diagnostics (read by the node's diagnostic updater)."""

    received: int = 0
    published: int = 0
    #: Frames replaced in the slot by a newer one before the worker took them.
    dropped_stale: int = 0
    #: Frames published pixelated whole or dropped, per reason.
    failures: dict[str, int] = field(default_factory=dict)
    faces: int = 0
    fallbacks: int = 0
    #: Messages that could not be decoded (nothing can be published for them).
    undecodable: int = 0
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=200))

    def median_latency_ms(self) -> float:
        return float(np.median(self.latencies_ms)) if self.latencies_ms else 0.0


def pixelate_whole(frame: np.ndarray, cells: int = WHOLE_FRAME_CELLS) -> np.ndarray:
    """The frame pixelated as a whole, in its own layout and pixel type."""
    height, width = frame.shape[:2]
    scale = cells / max(height, width)
    small = cv2.resize(
        frame,
        (max(1, round(width * scale)), max(1, round(height * scale))),
        interpolation=cv2.INTER_AREA,
    )
    out = cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)
    return out.reshape(frame.shape)


class FrameHandler:
    """Latest-frame slots per camera, a worker, and the fail-closed rules (module docstring)."""

    def __init__(
        self,
        cameras: Sequence[str],
        publish: Callable[[OutFrame], None],
        on_failure: str = "pixelate",
        max_latency_ms: float = 500.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if on_failure not in ON_FAILURE:
            raise ValueError(f"on_failure must be one of {', '.join(ON_FAILURE)}")
        self.cameras = list(cameras)
        self.publish = publish
        self.on_failure = on_failure
        self.max_latency_ms = max_latency_ms
        self.clock = clock
        self.stats = {camera: CameraStats() for camera in self.cameras}
        self._anonymizers: dict[str, Anonymizer] | None = None
        #: Why there is no pipeline (said with every frame that fails closed for it).
        self.no_pipeline_reason = "no pipeline loaded yet"
        self._slots: dict[str, InFrame | None] = dict.fromkeys(self.cameras)
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._running = False

    # -- configuration ----------------------------------------------------------------------

    def set_anonymizers(
        self, anonymizers: dict[str, Anonymizer] | None, reason: str = "no pipeline loaded yet"
    ) -> None:
        """One anonymizer per camera, sharing detector and engine (None: not loaded, for
        ``reason``; every frame then fails closed)."""
        if anonymizers is not None and set(anonymizers) != set(self.cameras):
            raise ValueError("one anonymizer per camera is needed")
        with self._lock:
            self._anonymizers = anonymizers
            self.no_pipeline_reason = reason

    def snapshot(self, camera: str) -> CameraStats:
        """A copy of ``camera``'s counters, consistent at one instant."""
        with self._lock:
            stats = self.stats[camera]
            return CameraStats(
                stats.received,
                stats.published,
                stats.dropped_stale,
                dict(stats.failures),
                stats.faces,
                stats.fallbacks,
                stats.undecodable,
                deque(stats.latencies_ms, maxlen=stats.latencies_ms.maxlen),
            )

    # -- input side (the executor's callbacks: never blocks on inference) --------------------

    def count_undecodable(self, camera: str) -> None:
        """A message of ``camera`` that could not be decoded was dropped."""
        with self._lock:
            self.stats[camera].received += 1
            self.stats[camera].undecodable += 1

    def submit(self, item: InFrame) -> None:
        """Put a frame in its camera's slot, replacing (and counting) an unprocessed one."""
        with self._lock:
            stats = self.stats[item.camera]
            stats.received += 1
            if self._slots[item.camera] is not None:
                stats.dropped_stale += 1
            self._slots[item.camera] = item
            self._lock.notify()

    # -- worker ------------------------------------------------------------------------------

    def process_pending(self) -> int:
        """Anonymize the newest frame of every camera that has one; publish; return how many."""
        with self._lock:
            items = [item for item in self._slots.values() if item is not None]
            self._slots = dict.fromkeys(self.cameras)
            anonymizers = self._anonymizers
        if not items:
            return 0
        for item, out in zip(items, self._anonymize(items, anonymizers), strict=True):
            out.latency_ms = (self.clock() - item.received) * 1e3
            if out.status == "ok" and out.latency_ms > self.max_latency_ms:
                out = self._failed(item, "late", f"ready after {out.latency_ms:.0f} ms")
                out.latency_ms = (self.clock() - item.received) * 1e3
            if out.image is not None:
                try:
                    self.publish(out)
                except Exception as exc:  # one bad frame must not stop the camera
                    log.error("publishing a frame of %s failed: %s", item.camera, exc)
                    out = OutFrame(
                        item.camera,
                        None,
                        item.header,
                        item.context,
                        [],
                        "error",
                        f"publish failed: {exc}",
                        out.latency_ms,
                    )
            self._account(out)
        return len(items)

    def _anonymize(self, items: list[InFrame], anonymizers) -> list[OutFrame]:
        if anonymizers is None:
            return [self._failed(i, "no pipeline", self.no_pipeline_reason) for i in items]
        try:
            results = anonymize_together([(anonymizers[i.camera], i.frame) for i in items])
        except Exception as exc:
            if len(items) > 1:  # one camera's bad frame must not fail the others' frames
                return [out for item in items for out in self._anonymize([item], anonymizers)]
            # fail closed: the whole frame, never the raw one
            log.error("anonymization failed for a frame of %s: %s", items[0].camera, exc)
            return [self._failed(items[0], "error", str(exc))]
        return [
            OutFrame(i.camera, r.image, i.header, i.context, r.faces, "ok")
            for i, r in zip(items, results, strict=True)
        ]

    def _failed(self, item: InFrame, status: str, reason: str) -> OutFrame:
        image = None
        if self.on_failure == "pixelate":
            try:
                to_working(item.frame)  # a frame the pipeline cannot read is dropped
                image = pixelate_whole(item.frame)
            except Exception as exc:
                reason = f"{reason}; frame dropped: {exc}"
        return OutFrame(item.camera, image, item.header, item.context, [], status, reason)

    def _account(self, out: OutFrame) -> None:
        with self._lock:
            stats = self.stats[out.camera]
            stats.latencies_ms.append(out.latency_ms)
            if out.status != "ok":
                stats.failures[out.status] = stats.failures.get(out.status, 0) + 1
            if out.image is not None:
                stats.published += 1
            stats.faces += len(out.faces)
            stats.fallbacks += sum(1 for f in out.faces if f.fallback_reason)

    def start(self) -> None:
        """Run the worker in a thread until ``stop``."""
        if self._thread is not None:
            return
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="ciagan-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the worker (the frame it is working on is finished and published) and drop the
        frames still waiting: after a deactivate they would come out late with old stamps."""
        with self._lock:
            self._running = False
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            for camera, item in self._slots.items():
                if item is not None:
                    self.stats[camera].dropped_stale += 1
            self._slots = dict.fromkeys(self.cameras)

    def _loop(self) -> None:
        while True:
            with self._lock:
                while self._running and not any(self._slots.values()):
                    self._lock.wait(0.1)
                if not self._running:
                    return
            self.process_pending()
