"""``ciagan fleet``: many rosbag2 recordings through ``ciagan bag``, locally or on a Ray cluster.

Each worker builds one ``Anonymizer`` (detector, landmarker, generator) when it starts and
processes whole bags with ``bag_tool.anonymize_bag``, so every output is exactly what
``ciagan bag`` writes for that bag alone, written the same atomic way. Bags are handed out one
at a time to whichever worker is free (submit, then wait for the next result in any order); a
bag that fails is reported with its error and the others go on.

With Ray, workers are actors with ``num_cpus``/``num_gpus`` each (a GPU worker gets one GPU of
its own: Ray sets ``CUDA_VISIBLE_DEVICES`` for it), restarted when they die
(``max_restarts``); the bag they held is retried (``max_task_retries``). Without Ray the same
worker class runs in this process.

Resuming: a bag whose output and report exist, say ``complete``, and match this input (file
sizes, times, metadata hash) and these settings is skipped, so the same command continues an
interrupted fleet run. Temporary folders of killed workers (``.<bag>.partial-*``) are removed
at start, and before a bag is retried.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ciagan_core.atomic_write import write_bytes_atomic
from ciagan_core.errors import CiaganError, ConfigError, InputError
from ciagan_core.pipeline import AnonymizerConfig
from ciagan_ros.bag_tool import BagSettings, input_fingerprint, settings_digest

log = logging.getLogger(__name__)

REPORT_NAME = "fleet_report.json"
LOCK_NAME = ".ciagan-fleet.lock"


@dataclass(frozen=True)
class FleetSettings:
    """How the bags are spread over workers."""

    #: None: in this process. "local": a Ray started here; "auto": the running cluster; or an
    #: address such as "ray://head:10001".
    ray_address: str | None = None
    #: Workers (actors); 0: as many as the cluster's GPUs (num_gpus > 0) or CPUs allow.
    workers: int = 0
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_restarts: int = 2
    max_task_retries: int = 2
    #: Replace outputs that exist but do not match (never the inputs).
    overwrite: bool = False


@dataclass(frozen=True)
class BagJob:
    source: Path
    target: Path

    @property
    def report_path(self) -> Path:
        return self.target.with_name(self.target.name + ".report.json")


@dataclass
class BagOutcome:
    """One bag's line in the fleet report."""

    source: str
    target: str
    status: str  # done, skipped, failed
    seconds: float = 0.0
    attempts: int = 0
    worker: str = ""
    messages: int = 0
    faces: int = 0
    fallbacks: int = 0
    recovered_frames: int = 0
    failed_frames: int = 0
    error: str = ""

    @classmethod
    def from_report(cls, job: BagJob, status: str, report: dict, **extra) -> BagOutcome:
        topics = report.get("topics", {}).values()
        return cls(
            str(job.source),
            str(job.target),
            status,
            messages=sum(t["messages"] for t in topics) + report.get("copied_messages", 0),
            faces=sum(t["faces"] for t in topics),
            fallbacks=sum(t["fallbacks"] for t in topics),
            recovered_frames=sum(t["recovered_frames"] for t in topics),
            failed_frames=sum(t["failed_frames"] for t in topics),
            **extra,
        )


def find_bags(inputs: Sequence[Path]) -> list[Path]:
    """Every rosbag2 folder given, or found below a given folder (sorted, no duplicates)."""
    found: list[Path] = []
    for item in inputs:
        item = Path(item)
        if not item.exists():
            raise InputError(f"{item}: no such bag or folder")
        if (item / "metadata.yaml").is_file():
            found.append(item)
            continue
        if not item.is_dir():
            raise InputError(f"{item}: not a rosbag2 folder (no metadata.yaml)")
        below = sorted(p.parent for p in item.rglob("metadata.yaml"))
        below = [p for p in below if not p.name.startswith(".")]  # never our own temp folders
        if not below:
            raise InputError(f"{item}: no rosbag2 folder inside")
        found += below
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique


def plan_jobs(inputs: Sequence[Path], outdir: Path) -> list[BagJob]:
    """One output folder per bag, ``OUTDIR/<bag name>``; names must not collide and no output
    may be or hold an input."""
    outdir = Path(outdir)
    bags = find_bags(inputs)
    if not bags:
        raise InputError("no bags to process")
    out = outdir.resolve()
    jobs, names = [], {}
    for bag in bags:
        if bag == out or out in bag.parents:
            raise InputError(f"{bag}: lies inside the output folder {outdir}; choose another")
        if bag in out.parents:
            raise InputError(f"{outdir}: lies inside the input bag {bag}")
        if bag.name in names:
            raise InputError(
                f"two bags are named {bag.name!r} ({names[bag.name]} and {bag}); their outputs "
                f"would collide in {outdir}: rename one or run them separately"
            )
        names[bag.name] = bag
        jobs.append(BagJob(bag, out / bag.name))
    return jobs


def is_finished(job: BagJob, digest: str) -> bool:
    """The output and its report are complete and were made from this input with these
    settings."""
    if not (job.target / "metadata.yaml").is_file() or not job.report_path.is_file():
        return False
    try:
        report = json.loads(job.report_path.read_text())
    except (OSError, ValueError):
        return False
    return (
        report.get("complete") is True
        and report.get("settings_sha256") == digest
        and report.get("input_fingerprint") == input_fingerprint(job.source)
    )


def _attempts_file(job: BagJob) -> Path:
    return job.target.with_name(f".{job.target.name}.attempts")


def _count_attempt(job: BagJob) -> int:
    """Count this try at the bag (Ray retries a task on a restarted worker by itself)."""
    path = _attempts_file(job)
    try:
        count = int(path.read_text()) + 1
    except (OSError, ValueError):
        count = 1
    path.write_text(str(count))
    return count


def _read_attempts(job: BagJob) -> int:
    try:
        return int(_attempts_file(job).read_text())
    except (OSError, ValueError):
        return 0


def remove_stale_temporaries(outdir: Path, name: str | None = None) -> list[Path]:
    """Remove ``.<name>.partial-*`` folders (every bag's when ``name`` is None)."""
    pattern = f".{name}.partial-*" if name else ".*.partial-*"
    removed = []
    for path in Path(outdir).glob(pattern):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


class BagWorker:
    """Builds the pipeline once, then anonymizes whole bags (a Ray actor, or in-process)."""

    def __init__(self, config: AnonymizerConfig, settings: BagSettings):
        from ciagan_core.pipeline import Anonymizer

        self.config = config
        self.settings = settings
        self.digest = settings_digest(config, settings)
        self.anonymizer = Anonymizer(config)
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def process(self, job: BagJob) -> BagOutcome:
        """Anonymize one bag; every error becomes a failed outcome (never an exception)."""
        from ciagan_ros.bag_tool import anonymize_bag

        start = time.perf_counter()
        attempt = _count_attempt(job)
        # A worker killed on this bag earlier left its temporary folder: only one worker holds
        # a bag at a time, so whatever is there is stale.
        remove_stale_temporaries(job.target.parent, job.target.name)
        if attempt > 1 and is_finished(job, self.digest):
            # The killed attempt finished the bag before it died.
            report = json.loads(job.report_path.read_text())
            return BagOutcome.from_report(job, "done", report, worker=self.name, attempts=attempt)
        settings = self.settings
        if attempt > 1 and job.target.exists():
            # The killed attempt got as far as renaming its output: this one replaces it
            # (the driver checked at the start that nothing else was there).
            settings = BagSettings(**{**asdict(self.settings), "overwrite": True})
        try:
            report = anonymize_bag(
                job.source, job.target, self.config, settings, anonymizer=self.anonymizer
            )
        except CiaganError as exc:
            return BagOutcome(
                str(job.source),
                str(job.target),
                "failed",
                error=str(exc),
                worker=self.name,
                seconds=round(time.perf_counter() - start, 2),
                attempts=attempt,
            )
        except Exception as exc:  # a bug must cost one bag, not the fleet
            log.error("%s failed:\n%s", job.source, traceback.format_exc())
            return BagOutcome(
                str(job.source),
                str(job.target),
                "failed",
                error=f"{type(exc).__name__}: {exc}",
                worker=self.name,
                seconds=round(time.perf_counter() - start, 2),
                attempts=attempt,
            )
        return BagOutcome.from_report(
            job,
            "done",
            report,
            worker=self.name,
            seconds=round(time.perf_counter() - start, 2),
            attempts=attempt,
        )

    def pid(self) -> int:
        return os.getpid()


@dataclass
class FleetLock:
    """One fleet run per output folder: a second would remove the first's temporary folders."""

    path: Path
    held: bool = field(default=False)

    def acquire(self) -> None:
        me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    other = json.loads(self.path.read_text())
                except (OSError, ValueError):
                    other = {}
                if other.get("host") == me["host"] and _alive(int(other.get("pid", 0))):
                    raise InputError(
                        f"{self.path.parent}: another fleet run (pid {other['pid']}) is writing "
                        "here; wait for it or use another output folder"
                    ) from None
                if other.get("host") not in (None, me["host"]):
                    raise InputError(
                        f"{self.path.parent}: a fleet run on {other['host']} holds {self.path}; "
                        "remove it if that run is over"
                    ) from None
                self.path.unlink(missing_ok=True)  # its run is gone
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(me, handle)
            self.held = True
            return
        raise InputError(f"{self.path}: cannot take the fleet lock")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_fleet(
    inputs: Sequence[Path],
    outdir: Path,
    config: AnonymizerConfig,
    bag_settings: BagSettings,
    fleet: FleetSettings,
    progress: Callable[[BagOutcome, int, int], None] | None = None,
) -> dict[str, Any]:
    """Process every bag; returns the fleet report (also written to OUTDIR/fleet_report.json).
    Raises only for bad arguments; a failing bag is a line in the report."""
    config.validate()
    if fleet.workers < 0 or fleet.num_cpus < 0 or fleet.num_gpus < 0:
        raise ConfigError("workers, num_cpus and num_gpus must not be negative")
    if fleet.max_restarts < 0 or fleet.max_task_retries < 0:
        raise ConfigError("max_restarts and max_task_retries must not be negative")
    outdir = Path(outdir)
    jobs = plan_jobs(inputs, outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    lock = FleetLock(outdir / LOCK_NAME)
    lock.acquire()
    started = time.perf_counter()
    try:
        removed = remove_stale_temporaries(outdir)
        if removed:
            log.warning("removed %d temporary folders of an interrupted run", len(removed))
        digest = settings_digest(config, bag_settings)
        outcomes: list[BagOutcome] = []
        todo: list[BagJob] = []
        for job in jobs:
            if is_finished(job, digest):
                report = json.loads(job.report_path.read_text())
                outcomes.append(BagOutcome.from_report(job, "skipped", report))
            elif job.target.exists() and not fleet.overwrite:
                outcomes.append(
                    BagOutcome(
                        str(job.source),
                        str(job.target),
                        "failed",
                        error=f"{job.target} exists but was not made from this bag with these "
                        "settings; pass --overwrite to replace it",
                    )
                )
            else:
                todo.append(job)
        for job in todo:
            _attempts_file(job).unlink(missing_ok=True)
        if progress:
            for i, outcome in enumerate(outcomes, start=1):
                progress(outcome, i, len(jobs))

        def report_one(outcome: BagOutcome) -> None:
            outcomes.append(outcome)
            if progress:
                progress(outcome, len(outcomes), len(jobs))

        settings = BagSettings(**{**asdict(bag_settings), "overwrite": fleet.overwrite})
        backend = "in-process"
        if todo:
            if fleet.ray_address is None:
                _run_local(todo, config, settings, report_one)
            else:
                backend = _run_ray(todo, config, settings, fleet, report_one)
        order = {str(job.source): i for i, job in enumerate(jobs)}
        outcomes.sort(key=lambda o: order[o.source])
        report = {
            "complete": True,
            "backend": backend,
            "bags": len(jobs),
            "done": sum(o.status == "done" for o in outcomes),
            "skipped": sum(o.status == "skipped" for o in outcomes),
            "failed": sum(o.status == "failed" for o in outcomes),
            "wall_s": round(time.perf_counter() - started, 2),
            "settings_sha256": digest,
            "fleet": asdict(fleet),
            "results": [asdict(o) for o in outcomes],
        }
        write_bytes_atomic(outdir / REPORT_NAME, (json.dumps(report, indent=2) + "\n").encode())
        remove_stale_temporaries(outdir)
        for job in todo:
            _attempts_file(job).unlink(missing_ok=True)
        return report
    finally:
        lock.release()


def _run_local(todo, config, settings, report_one) -> None:
    worker = BagWorker(config, settings)
    for job in todo:
        report_one(worker.process(job))


def _ray_init(address: str):
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--ray needs Ray: pip install -e '.[fleet]' (or pip install 'ray>=2.9')"
        ) from None
    if not ray.is_initialized():
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    return ray


def _run_ray(todo, config, settings, fleet: FleetSettings, report_one) -> str:
    ray = _ray_init(fleet.ray_address or "local")
    resources = ray.cluster_resources()
    if fleet.workers:
        count = fleet.workers
    elif fleet.num_gpus:
        count = int(resources.get("GPU", 0) // fleet.num_gpus)
    else:
        count = int(resources.get("CPU", 1) // max(fleet.num_cpus, 1e-9))
    count = max(1, min(count, len(todo)))
    actor_class = ray.remote(
        num_cpus=fleet.num_cpus,
        num_gpus=fleet.num_gpus,
        max_restarts=fleet.max_restarts,
        max_task_retries=fleet.max_task_retries,
    )(BagWorker)
    actors = [actor_class.remote(config, settings) for _ in range(count)]
    idle = list(actors)
    pending: dict[Any, tuple[BagJob, Any, float]] = {}
    queue = list(todo)
    from ray.exceptions import RayActorError, RayError

    try:
        while queue or pending:
            while queue and idle:
                job, actor = queue.pop(0), idle.pop(0)
                pending[actor.process.remote(job)] = (job, actor, time.perf_counter())
            ready, _ = ray.wait(list(pending), num_returns=1)
            job, actor, start = pending.pop(ready[0])
            try:
                outcome = ray.get(ready[0])
                idle.append(actor)
            except RayError as exc:  # the worker died more often than it may be retried
                first_line = (str(exc).strip().splitlines() or [""])[0]
                outcome = BagOutcome(
                    str(job.source),
                    str(job.target),
                    "failed",
                    seconds=round(time.perf_counter() - start, 2),
                    attempts=_read_attempts(job),
                    error=f"worker lost ({type(exc).__name__}: {first_line})",
                )
                remove_stale_temporaries(job.target.parent, job.target.name)
                if isinstance(exc, RayActorError):  # gone for good: a new one takes its place
                    actor = actor_class.remote(config, settings)
                    actors.append(actor)
                idle.append(actor)
            report_one(outcome)
    finally:
        for actor in actors:
            ray.kill(actor)
    return f"ray ({count} workers, {fleet.num_cpus} CPU / {fleet.num_gpus} GPU each)"


def render_table(report: dict) -> str:
    """The fleet report as a text table."""
    rows = [
        ("bag", "status", "s", "tries", "messages", "faces", "fallbacks", "recovered", "error")
    ]
    for r in report["results"]:
        rows.append(
            (
                Path(r["source"]).name,
                r["status"],
                f"{r['seconds']:.1f}",
                str(r["attempts"]),
                str(r["messages"]),
                str(r["faces"]),
                str(r["fallbacks"]),
                str(r["recovered_frames"]),
                r["error"][:80],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.append(
        f"{report['done']} done, {report['skipped']} skipped, {report['failed']} failed "
        f"of {report['bags']} bags in {report['wall_s']:.1f} s ({report['backend']})"
    )
    return "\n".join(lines)
