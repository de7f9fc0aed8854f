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
at start, before a bag is retried and at the end, but only those whose writing process is
provably gone: a process of this host that no longer runs. A folder that another live process
is writing (a ``ciagan bag`` into the same OUTDIR, a worker of this fleet), one written from
another host, or one without a readable owner file is never touched.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import logging
import math
import os
import socket
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from stat import S_ISREG
from typing import Any

from ciagan_core.atomic_write import write_bytes_atomic
from ciagan_core.detection import check_detector_settings
from ciagan_core.errors import CiaganError, ConfigError, InputError
from ciagan_core.pipeline import AnonymizerConfig
from ciagan_ros.bag_tool import (
    OWNER_FILE,
    BagSettings,
    adopt_report,
    input_fingerprint,
    output_fingerprint,
    process_context,
    remove_temporary,
    settings_digest,
)

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


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and ".partial-" in name


def find_bags(inputs: Sequence[Path], exclude: Path | None = None) -> list[Path]:
    """Every rosbag2 folder given, or found below a given folder (hidden and symlinked folders
    included; ``exclude``, the output folder, and temporary output folders skipped), sorted,
    without duplicates."""
    skip = exclude.resolve() if exclude is not None else None
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
        below, seen = [], set()
        for folder, dirs, files in os.walk(item, followlinks=True):
            real = Path(folder).resolve()
            if real in seen or real == skip:  # a symlink loop, or the output folder
                dirs[:] = []
                continue
            seen.add(real)
            if "metadata.yaml" in files and Path(folder) != item:
                below.append(Path(folder))
                dirs[:] = []  # a bag's own subfolders hold no further bags
                continue
            dirs[:] = sorted(d for d in dirs if not _is_temporary(d))
        if not below:
            raise InputError(f"{item}: no rosbag2 folder inside")
        found += sorted(below)
    return list(dict.fromkeys(p.resolve() for p in found))


def plan_jobs(inputs: Sequence[Path], outdir: Path) -> list[BagJob]:
    """One output folder per bag, ``OUTDIR/<bag name>``; names must not collide and no output
    may be or hold an input."""
    outdir = Path(outdir)
    try:
        out = outdir.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        raise InputError(f"{outdir}: cannot resolve the output folder's path ({exc})") from None
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"{outdir}: exists and is not a folder")
    bags = find_bags(inputs, exclude=outdir)
    if not bags:
        raise InputError("no bags to process")
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
    # The fleet's own files in OUTDIR: its report and lock, each bag's report and attempt count.
    reserved = {REPORT_NAME: "the fleet report", LOCK_NAME: "the fleet's lock"}
    for job in jobs:
        reserved[job.report_path.name] = f"the report of bag {job.source}"
        reserved[_attempts_file(job).name] = f"the attempt count of bag {job.source}"
    for job in jobs:
        if job.target.name in reserved:
            raise InputError(
                f"{job.source}: its output {job.target} would be {reserved[job.target.name]}; "
                "rename the bag or run it separately"
            )
        attempts = _attempts_file(job)
        if attempts.is_dir() and not attempts.is_symlink():  # a file the fleet replaces
            raise InputError(
                f"{attempts}: the fleet counts bag {job.source}'s attempts in a file of this "
                "name, but this is a folder; remove or rename it"
            )
    return jobs


def is_finished(job: BagJob, digest: str) -> bool:
    """The output and its report are complete, were made from this input with these settings,
    and the output's files are all still there with the bytes written (names and sizes first,
    then each file's sha256); a symlinked output or report never is."""
    if not (job.target / "metadata.yaml").is_file() or not job.report_path.is_file():
        return False
    if job.target.is_symlink() or job.report_path.is_symlink():
        return False  # never what ciagan bag wrote: it may point at anything, a raw bag too
    try:
        report = json.loads(job.report_path.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(report, dict) or not isinstance(report.get("output_fingerprint"), list):
        return False
    recorded = report["output_fingerprint"]
    return (
        report.get("complete") is True
        and report.get("settings_sha256") == digest
        and report.get("input_fingerprint") == input_fingerprint(job.source)
        and output_fingerprint(job.target, expected=recorded) == recorded
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
    try:
        path.write_text(str(count))
    except OSError as exc:  # a full disk: the bag itself then fails with the reason
        log.warning("%s: cannot count this attempt (%s)", path, exc.strerror)
    return count


def _read_attempts(job: BagJob) -> int:
    try:
        return int(_attempts_file(job).read_text())
    except (OSError, ValueError):
        return 0


def remove_stale_temporaries(outdir: Path, names: Sequence[str]) -> int:
    """Remove the temporary folders (``.<name>.partial-*``, holding ``ciagan bag``'s owner
    file) left for these bag names by writers that are provably gone (``writer_gone``);
    every other one stays, whoever asks. Returns how many were removed."""
    removed = 0
    for name in names:
        for path in Path(outdir).glob(f".{glob.escape(name)}.partial-*"):
            owner = path / OWNER_FILE
            if path.is_symlink() or not owner.is_file():
                continue  # not a folder ciagan bag made: never ours to remove
            if not writer_gone(owner):
                log.info("%s: its writer may still run; left in place", path)
                continue
            target = Path(outdir) / name
            if adopt_report(path, target):  # killed between the bag's rename and its report's
                log.warning("%s: put in place the report its killed writer left", target)
            removed += remove_temporary(path)
    return removed


#: A process that started this much later than an owner file was written is not its writer
#: (its pid was reused), allowing for coarse clocks and for a shared filesystem's own clock.
PID_REUSE_MARGIN_S = 60.0


def writer_gone(owner: Path) -> bool:
    """Whether the process named by a temporary folder's owner file (host, pid) is provably
    gone: it ran on this host and no process has its pid now, or the one that has it is a
    zombie, or started after the owner file was written (a reused pid, as in a restarted
    container). Another host's writer, or an owner file that cannot be read (perhaps being
    written), is never provably gone."""
    try:
        info = json.loads(owner.read_text())
        written = owner.stat().st_mtime
        host, pid = info["host"], info["pid"]
    except (OSError, ValueError, TypeError, KeyError):
        return False
    if host != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    # A writer in another PID namespace (a container sharing this host name) or on another
    # machine of the same name has pids this process cannot see: never provably gone. (Owner
    # files that do not record these keys are judged by the host name alone.)
    for key, value in process_context().items():
        if key in info and info[key] != value:
            return False
    started = _process_start(pid)
    if started is None:
        return True
    return started > written + PID_REUSE_MARGIN_S


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch; -inf when it runs but its start
    cannot be read), or None when no live process has that pid (none, or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no such process, or no /proc (not Linux): ask the kernel
        return None if _no_such_process(pid) else float("-inf")
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (command) "
    if fields[0] in ("Z", "X"):  # exited, not yet reaped: it writes nothing any more
        return None
    try:
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError, IndexError):
        return float("-inf")


def _no_such_process(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


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

        def outcome(status: str, report: dict | None = None, error: str = "") -> BagOutcome:
            extra = {
                "worker": self.name,
                "seconds": round(time.perf_counter() - start, 2),
                "attempts": attempt,
            }
            if report is not None:
                return BagOutcome.from_report(job, status, report, **extra)
            return BagOutcome(str(job.source), str(job.target), status, error=error, **extra)

        # A worker killed on this bag earlier left its temporary folder; another process
        # (a `ciagan bag` into the same OUTDIR) may be writing one too: only a dead writer's goes.
        remove_stale_temporaries(job.target.parent, [job.target.name])
        if attempt > 1 and is_finished(job, self.digest):
            # The killed attempt finished the bag before it died.
            return outcome("done", json.loads(job.report_path.read_text()))
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
            return outcome("failed", error=str(exc))
        except Exception as exc:  # a bug must cost one bag, not the fleet
            log.error("%s failed:\n%s", job.source, traceback.format_exc())
            return outcome("failed", error=f"{type(exc).__name__}: {exc}")
        return outcome("done", report)


@dataclass
class FleetLock:
    """One fleet run per output folder (a second would remove the first's temporary folders).

    An advisory ``flock`` on OUTDIR/.ciagan-fleet.lock: the kernel releases it when the
    process ends, however it ends, so a killed run never blocks the next one. The file stays.
    """

    path: Path
    handle: Any = field(default=None)

    def acquire(self) -> None:
        import fcntl

        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            why = "a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
            raise InputError(
                f"{self.path}: cannot use it as the fleet's lock ({why}); remove it, or use "
                "another output folder"
            ) from None
        info = os.fstat(fd)
        if not S_ISREG(info.st_mode) or info.st_nlink > 1:
            os.close(fd)
            what = "is not a file" if not S_ISREG(info.st_mode) else "has other names (hard links)"
            raise InputError(
                f"{self.path}: {what}; the fleet's lock must be a file of its own: remove it, "
                "or use another output folder"
            )
        handle = os.fdopen(fd, "r+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise InputError(
                f"{self.path.parent}: another fleet run is writing here ({holder}; lock "
                f"{self.path}); wait for it or use another output folder"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        self.handle = handle

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()  # releases the flock
            self.handle = None


#: Settings that only Ray uses, and their command-line options.
RAY_OPTIONS = {
    "workers": "--workers",
    "num_cpus": "--cpus-per-worker",
    "num_gpus": "--gpus-per-worker",
    "max_restarts": "--max-restarts",
    "max_task_retries": "--max-task-retries",
}


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
    # Settings that would make detection miss faces fail every bag: refuse them before
    # anything (the output folder, its lock, a report) is written.
    check_detector_settings(config.detector, config.detector_settings)
    if fleet.workers < 0 or fleet.num_cpus < 0 or fleet.num_gpus < 0:
        raise ConfigError("workers, num_cpus and num_gpus must not be negative")
    if not (math.isfinite(fleet.num_cpus) and math.isfinite(fleet.num_gpus)):
        raise ConfigError("num_cpus and num_gpus must be finite numbers")
    if fleet.max_restarts < 0 or fleet.max_task_retries < 0:
        raise ConfigError("max_restarts and max_task_retries must not be negative")
    outdir = Path(outdir)
    jobs = plan_jobs(inputs, outdir)
    if fleet.ray_address is None:
        ignored = [
            option
            for name, option in RAY_OPTIONS.items()
            if getattr(fleet, name) != getattr(FleetSettings, name)
            and not (name == "workers" and fleet.workers <= 1)
        ]
        if ignored:
            log.warning(
                "%s apply to Ray workers; without --ray the bags run one after another in "
                "this process",
                ", ".join(ignored),
            )
    if fleet.ray_address is not None:
        _import_ray()  # before anything is created
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{outdir}: cannot create the output folder ({exc.strerror})") from None
    names = [job.target.name for job in jobs]
    lock = FleetLock(outdir / LOCK_NAME)
    lock.acquire()
    started = time.perf_counter()
    outcomes: list[BagOutcome] = []
    digest = settings_digest(config, bag_settings)
    backend = "in-process"

    def write_report(complete: bool) -> dict[str, Any]:
        order = {str(job.source): i for i, job in enumerate(jobs)}
        outcomes.sort(key=lambda o: order[o.source])
        report = {
            "complete": complete,
            "backend": backend,
            "bags": len(jobs),
            "done": sum(o.status == "done" for o in outcomes),
            "skipped": sum(o.status == "skipped" for o in outcomes),
            "failed": sum(o.status == "failed" for o in outcomes),
            "not_run": len(jobs) - len(outcomes),
            "wall_s": round(time.perf_counter() - started, 2),
            "settings_sha256": digest,
            "fleet": asdict(fleet),
            "results": [asdict(o) for o in outcomes],
        }
        write_bytes_atomic(outdir / REPORT_NAME, (json.dumps(report, indent=2) + "\n").encode())
        return report

    try:
        # Until this run ends, the report says it is not complete (an earlier run's would
        # otherwise stand while this one works, and after it is killed).
        try:
            write_report(complete=False)
        except OSError as exc:
            raise InputError(f"{outdir / REPORT_NAME}: cannot write it ({exc.strerror})") from None
        removed = remove_stale_temporaries(outdir, names)
        if removed:
            log.warning("removed %d temporary folders of an interrupted run", removed)
        for job in jobs:
            _attempts_file(job).unlink(missing_ok=True)
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
                        "settings (or was changed since); pass --overwrite to replace it",
                    )
                )
            else:
                todo.append(job)
        if progress:
            for i, outcome in enumerate(outcomes, start=1):
                progress(outcome, i, len(jobs))

        def report_one(outcome: BagOutcome) -> None:
            outcomes.append(outcome)
            if progress:
                progress(outcome, len(outcomes), len(jobs))

        # One --keep-topic list serves recordings that need not all have those topics.
        settings = BagSettings(
            **{
                **asdict(bag_settings),
                "overwrite": fleet.overwrite,
                "kept_topics_must_exist": False,
            }
        )
        if todo:
            if fleet.ray_address is None:
                _run_local(todo, config, settings, report_one)
            else:
                backend = _run_ray(todo, config, settings, fleet, report_one)
        return write_report(complete=True)
    except BaseException:
        with contextlib.suppress(Exception):  # Ctrl-C: say what did finish
            write_report(complete=False)
        raise
    finally:
        with contextlib.suppress(OSError):
            remove_stale_temporaries(outdir, names)
        for job in jobs:
            with contextlib.suppress(OSError):
                _attempts_file(job).unlink(missing_ok=True)
        lock.release()


def _run_local(todo, config, settings, report_one) -> None:
    worker = BagWorker(config, settings)
    for job in todo:
        report_one(worker.process(job))


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--ray needs Ray: pip install -e '.[fleet]' (or pip install 'ray[client]>=2.9')"
        ) from None
    return ray


def _ray_init(address: str):
    ray = _import_ray()
    if ray.is_initialized():
        return ray
    try:
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except Exception as exc:  # ConnectionError, ValueError (ray:// without ray[client]), ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"--ray {address}: cannot connect to Ray ({first})") from None
    return ray


def _run_ray(todo, config, settings, fleet: FleetSettings, report_one) -> str:
    ray = _ray_init(fleet.ray_address or "local")
    resources = ray.cluster_resources()
    # Workers the cluster can hold at once: more would wait forever for resources.
    fits = int(resources.get("CPU", 0) // fleet.num_cpus) if fleet.num_cpus else len(todo)
    if fleet.num_gpus:
        fits = min(fits, int(resources.get("GPU", 0) // fleet.num_gpus))
    if fits < 1:
        raise ConfigError(
            f"the Ray cluster ({resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} "
            f"GPUs) cannot hold one worker of {fleet.num_cpus:g} CPUs and {fleet.num_gpus:g} "
            "GPUs; lower --cpus-per-worker/--gpus-per-worker or add nodes"
        )
    count = min(fleet.workers or fits, fits, len(todo))
    if fleet.workers > fits:
        log.warning("the cluster holds %d workers of this size, not %d", fits, fleet.workers)
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
                remove_stale_temporaries(job.target.parent, [job.target.name])
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
