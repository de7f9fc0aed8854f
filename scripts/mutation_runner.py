#!/usr/bin/env python3
"""Decide mutmut's mutants with the tests run in fresh worker processes, never in a fork.

mutmut 3 runs each mutant's tests in a child forked from a parent that has already imported
torch, ONNX Runtime and OpenCV. Their thread pools do not survive a fork: the children of the
pipeline's mutants deadlock now and then (and mutmut counts the timeout as a kill), and OpenCV's
video writer crashes in them. This runner keeps mutmut for what it does well (writing the
mutants into ``mutants/`` and recording which tests reach each function, ``mutmut run`` with a
pattern that matches no mutant) and decides the mutants itself:

- each worker is a freshly started interpreter (``multiprocessing``'s spawn) that imports the
  mutated copy of the project from ``mutants/`` and runs ``pytest.main`` once per mutant, the
  mutant chosen by mutmut's own switch (``MUTANT_UNDER_TEST``), so test subprocesses (the
  ``ciagan`` command line) run the same mutant;
- a mutant's tests are the ones mutmut's stats say reach its function, fastest first, stopping
  at the first failure; a mutant whose tests run past their budget counts as a timeout (killed),
  and its worker is replaced;
- tests marked ``ray`` (tests/conftest.py marks every test that starts a local Ray cluster) run
  last, once the others passed, in a ``python -m pytest`` started for that mutant alone: the
  cluster and its worker processes start with that mutant and end with that process, which a
  timeout (or the replacement of its worker) kills with its process group;
- before any mutant, each function's tests run once on the unmutated code in the order its
  mutants get them: a test that fails there depends on the tests before it (on state another
  test changed) and would kill every mutant falsely, so the run stops and names it;
- tests that killed a mutant are run again on the unmutated code in the same worker after every
  few kills: if one fails there, the worker is replaced and those mutants are decided again, each
  in a new worker, so a kill is never the leftover of an earlier mutant;
- the result goes into mutmut's own ``.meta`` files, so ``mutmut show``/``results`` and
  ``scripts/mutation_report.py`` read it as if mutmut had run it.

    python scripts/mutation_runner.py "ciagan_core.pipeline.x__generate__mutmut_*" --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import fnmatch
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Exit codes written to the .meta files (mutmut's meaning, see scripts/mutation_report.py).
TIMEOUT = 36
CRASHED = -11
NO_TESTS = 33
#: Added to pytest's exit code when it ended without a failing test (an error, no verdict).
UNDECIDED = 100
#: A worker re-runs the tests that killed mutants on the unmutated code after this many kills.
CHECK_EVERY = 10


#: A fresh ``python -m pytest`` for the Ray tests starts a cluster: its seconds on top of theirs.
ISOLATED_OVERHEAD_S = 90.0


@dataclass
class Job:
    mutant: str  # "" runs the unmutated code, "fail" mutmut's forced failure
    tests: list[str]
    budget_s: float
    fresh: bool = False  # must run in a worker that has run nothing before
    isolated: list[str] = field(default_factory=list)  # run last, in a process of their own


@dataclass
class Worker:
    number: int
    process: multiprocessing.Process
    connection: multiprocessing.connection.Connection
    job: Job | None = None
    started: float = 0.0
    deadline: float = 0.0
    runs: int = 0
    kills: list[tuple[str, str]] = field(default_factory=list)  # (mutant, killing test)


def _worker(mutants: str, connection, log_path: str) -> None:
    """One test process: import the mutated project, then run pytest per job until told to stop."""
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.chdir(mutants)
    project = ROOT.resolve()
    sys.path[:] = [mutants] + [p for p in sys.path if p and Path(p).resolve() != project]
    # Test subprocesses (the CLI, the bag tool) import the mutated copy and see the mutant too.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [mutants] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    import pytest
    from mutmut.mutation.trampoline import set_mutant_under_test

    import ciagan_core
    import ciagan_ros

    for package in (ciagan_core, ciagan_ros):
        if not Path(package.__file__).resolve().is_relative_to(Path(mutants).resolve()):
            connection.send(("import", f"{package.__name__} imported from {package.__file__}"))
            return

    class FirstFailure:
        def __init__(self) -> None:
            self.nodeid = ""

        def pytest_runtest_logreport(self, report) -> None:
            if report.failed and not self.nodeid:
                self.nodeid = report.nodeid

    connection.send(("ready", ""))
    while True:
        job = connection.recv()
        if job is None:
            return
        mutant, tests, isolated, budget_s = job
        started = time.monotonic()
        set_mutant_under_test(mutant)
        print(f"\n=== {mutant or 'unmutated'}: {len(tests)} + {len(isolated)} tests", flush=True)
        failure = FirstFailure()
        code = int(pytest.main([*PYTEST_ARGUMENTS, *tests], plugins=[failure])) if tests else 0
        sys.stdout.flush()
        if code == 0 and isolated:
            remaining = budget_s - (time.monotonic() - started)
            if remaining < 30:  # the runner's deadline would come first
                code = TIMEOUT
            else:
                code, nodeid = _run_isolated(mutant, isolated, remaining, log_path + ".pid")
                failure.nodeid = nodeid
        connection.send((mutant, code, failure.nodeid))


PYTEST_ARGUMENTS = ["--rootdir=.", "--tb=short", "-x", "-q", "-p", "no:cacheprovider"]


def _run_isolated(
    mutant: str, tests: list[str], timeout_s: float, pid_file: str
) -> tuple[int, str]:
    """Run ``tests`` in a new ``python -m pytest`` in a process group of its own (its pid in
    ``pid_file`` while it runs, for the runner to kill it with a worker it replaces); returns
    pytest's exit code (TIMEOUT when it ran past ``timeout_s``) and the first failing test."""
    import subprocess

    print(f"--- in a fresh process: {' '.join(tests)}", flush=True)
    env = {**os.environ, "MUTANT_UNDER_TEST": mutant}
    command = [sys.executable, "-m", "pytest", *PYTEST_ARGUMENTS, "-rfE", *tests]
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    Path(pid_file).write_text(str(process.pid))
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        print(output, flush=True)
        return TIMEOUT, ""
    finally:
        Path(pid_file).unlink(missing_ok=True)
    print(output, flush=True)
    for line in output.splitlines():  # pytest's summary: "FAILED nodeid - reason"
        kind, _, rest = line.partition(" ")
        if kind in ("FAILED", "ERROR") and "::" in rest:
            return process.returncode, rest.partition(" - ")[0].strip()
    return process.returncode, ""


class Runner:
    def __init__(self, mutants: Path, workers: int, log_dir: Path) -> None:
        self.mutants = mutants.resolve()
        self.log_dir = log_dir
        self.context = multiprocessing.get_context("spawn")
        self.workers = [self._start(number) for number in range(workers)]

    # --- workers -------------------------------------------------------------------------
    def _start(self, number: int) -> Worker:
        ours, theirs = self.context.Pipe()
        log = self.log_dir / f"worker-{number}.log"
        process = self.context.Process(
            target=_worker, args=(str(self.mutants), theirs, str(log)), daemon=True
        )
        process.start()
        theirs.close()
        worker = Worker(number, process, ours)
        if not ours.poll(600):
            raise SystemExit(f"worker {number} did not start in 10 minutes (see {log})")
        kind, detail = ours.recv()
        if kind != "ready":
            raise SystemExit(f"worker {number}: {detail}")
        return worker

    def _replace(self, worker: Worker) -> Worker:
        worker.process.kill()
        worker.process.join(10)
        # The fresh pytest it may have started for Ray tests runs in a group of its own.
        pid_file = self.log_dir / f"worker-{worker.number}.log.pid"
        with contextlib.suppress(OSError, ValueError):
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)
        pid_file.unlink(missing_ok=True)
        worker.connection.close()
        fresh = self._start(worker.number)
        self.workers[self.workers.index(worker)] = fresh
        return fresh

    def _send(self, worker: Worker, job: Job) -> None:
        worker.job = job
        worker.started = time.monotonic()
        # The first job of a worker also pays for importing the tests' modules and models.
        budget = job.budget_s + (120 if worker.runs == 0 else 0)
        worker.deadline = worker.started + budget
        if job.isolated:  # the worker's own timeout of the fresh process comes first
            worker.deadline += 60
        worker.connection.send((job.mutant, job.tests, job.isolated, budget))

    def shutdown(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(OSError):
                worker.connection.send(None)
            worker.process.join(30)
            if worker.process.is_alive():
                worker.process.kill()

    def baseline(self, jobs: list[Job]) -> None:
        """Run each distinct test list once on the unmutated code, in the order the mutants get
        it; stop the run if a test fails there."""
        budgets: dict[tuple, float] = {}
        for job in jobs:
            key = (tuple(job.tests), tuple(job.isolated))
            budgets[key] = max(budgets.get(key, 0.0), job.budget_s)
        queue = list(budgets)
        print(f"{len(queue)} test lists to run on the unmutated code first")
        while queue or any(w.job for w in self.workers):
            for worker in self.workers:
                if worker.job is None and queue:
                    key = queue.pop(0)
                    self._send(worker, Job("", list(key[0]), budgets[key], isolated=list(key[1])))
            busy = {w.connection: w for w in self.workers if w.job is not None}
            for connection in multiprocessing.connection.wait(list(busy), timeout=5):
                worker = busy[connection]
                worker.job = None
                worker.runs += 1
                try:
                    _, code, failed = connection.recv()
                except (EOFError, OSError):
                    raise SystemExit(
                        f"worker {worker.number} died on the unmutated code"
                    ) from None
                if code != 0:
                    raise SystemExit(
                        f"{failed or 'a test'} fails on the unmutated code after the tests before "
                        f"it (exit {code}; see worker {worker.number}'s log): it would kill "
                        "mutants falsely; make it independent of the tests' order"
                    )
            now = time.monotonic()
            for worker in self.workers:
                if worker.job is not None and now > worker.deadline:
                    raise SystemExit(
                        f"worker {worker.number} ran past its budget on the unmutated code"
                    )

    # --- results -------------------------------------------------------------------------
    def _meta_path(self, mutant: str) -> Path:
        module = mutant.partition("__mutmut_")[0].rpartition(".")[0]
        return self.mutants / (module.replace(".", "/") + ".py.meta")

    def record(self, mutant: str, code: int, duration: float) -> None:
        path = self._meta_path(mutant)
        # Runners deciding other mutants of the same module may write the file too.
        with (self.mutants / "runner-logs" / "meta.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            meta = json.loads(path.read_text())
            if mutant not in meta["exit_code_by_key"]:
                raise SystemExit(f"{mutant} is not a mutant of {path}")
            meta["exit_code_by_key"][mutant] = code
            meta.setdefault("durations_by_key", {})[mutant] = duration
            temporary = path.with_suffix(f".meta.{os.getpid()}")
            temporary.write_text(json.dumps(meta, indent=4))
            temporary.replace(path)

    # --- the run -------------------------------------------------------------------------
    def run(self, jobs: list[Job]) -> dict[str, str]:
        queue = list(jobs)
        verdicts: dict[str, str] = {}
        total = len(jobs)
        checks: dict[int, list[tuple[str, str]]] = {}  # worker number -> kills being checked

        def status(mutant: str, verdict: str, seconds: float, test: str = "") -> None:
            verdicts[mutant] = verdict
            shown = f" by {test}" if test else ""
            print(f"[{len(verdicts)}/{total}] {verdict:9} {mutant} ({seconds:.0f} s){shown}")
            sys.stdout.flush()

        def requeue(kills: list[tuple[str, str]]) -> None:
            for mutant, _ in kills:
                verdicts.pop(mutant, None)
                original = next(j for j in jobs if j.mutant == mutant)
                queue.insert(
                    0,
                    Job(mutant, original.tests, original.budget_s, True, original.isolated),
                )

        while queue or any(w.job for w in self.workers):
            for worker in self.workers:
                if worker.job is not None:
                    continue
                if len(worker.kills) >= CHECK_EVERY or (not queue and worker.kills):
                    checks[worker.number] = worker.kills
                    tests = list(dict.fromkeys(test for _, test in worker.kills))
                    worker.kills = []
                    self._send(worker, Job("", tests, 60 + 30 * len(tests)))
                    continue
                if not queue:
                    continue
                job = queue.pop(0)
                if job.fresh and worker.runs:
                    worker = self._replace(worker)
                self._send(worker, job)
            busy = {w.connection: w for w in self.workers if w.job is not None}
            if not busy:
                continue
            ready = multiprocessing.connection.wait(list(busy), timeout=5)
            now = time.monotonic()
            for connection in ready:
                worker = busy[connection]
                job, worker.job = worker.job, None
                seconds = now - worker.started
                worker.runs += 1
                try:
                    mutant, code, failed = connection.recv()
                except (EOFError, OSError):
                    # The mutant killed the test process itself (a crash, os._exit).
                    if job.mutant:
                        self.record(job.mutant, CRASHED, seconds)
                        status(job.mutant, "crashed", seconds)
                    # Kills not yet checked cannot be checked in a new worker: decide again.
                    requeue(checks.pop(worker.number, []) + worker.kills)
                    self._replace(worker)
                    continue
                if not mutant:  # a check of earlier kills on the unmutated code
                    kills = checks.pop(worker.number, [])
                    if code != 0:
                        print(f"  worker {worker.number}: {failed} fails unmutated; deciding")
                        print(f"  {len(kills)} mutants again, each in a new worker")
                        requeue(kills)
                        self._replace(worker)
                    continue
                if code == 5:
                    self.record(mutant, NO_TESTS, seconds)
                    status(mutant, "no tests", seconds)
                elif code == TIMEOUT:  # the fresh process of its Ray tests ran past the budget
                    self.record(mutant, TIMEOUT, seconds)
                    status(mutant, "timeout", seconds)
                elif code == 0:
                    self.record(mutant, 0, seconds)
                    status(mutant, "survived", seconds)
                elif not failed:
                    # pytest stopped without a failing test (a collection or usage error):
                    # no verdict; the report lists it as suspicious (see the worker's log).
                    self.record(mutant, UNDECIDED + code, seconds)
                    status(mutant, f"error {code}", seconds)
                else:
                    self.record(mutant, 1, seconds)
                    status(mutant, "killed", seconds, failed)
                    # A new worker ran nothing before it, and the Ray tests ran in a process
                    # of their own: neither kill can be an earlier mutant's leftover.
                    if not job.fresh and failed not in job.isolated:
                        worker.kills.append((mutant, failed))
            for worker in list(self.workers):
                if worker.job is not None and now > worker.deadline:
                    job = worker.job
                    worker.job = None
                    if job.mutant:
                        self.record(job.mutant, TIMEOUT, now - worker.started)
                        status(job.mutant, "timeout", now - worker.started)
                        requeue_kills = worker.kills
                    else:
                        requeue_kills = checks.pop(worker.number, []) + worker.kills
                    # Kills not yet checked cannot be checked in a new worker: decide them again.
                    requeue(requeue_kills)
                    self._replace(worker)
        return verdicts


def ray_tests(mutants: Path, tests: set[str]) -> set[str]:
    """Which of ``tests`` are marked ``ray`` (collected once, in the mutated copy)."""
    files = sorted({test.partition("::")[0] for test in tests})
    if not files:
        return set()
    import subprocess

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",  # one node ID a line
            "-m",
            "ray",
            "--rootdir=.",
            "-p",
            "no:cacheprovider",
            *files,
        ],
        cwd=mutants,
        env={**os.environ, "PYTHONPATH": str(mutants)},
        capture_output=True,
        text=True,
    )
    if result.returncode not in (0, 5):  # 5: none marked
        raise SystemExit(f"collecting the Ray tests failed:\n{result.stdout[-3000:]}")
    marked = {line.strip() for line in result.stdout.splitlines() if "::" in line}
    return {test for test in tests if test in marked}


def load_jobs(
    mutants: Path,
    patterns: list[str],
    rerun: bool,
    factor: float,
    first: list[str],
    last: list[str],
) -> list[Job]:
    stats = json.loads((mutants / "mutmut-stats.json").read_text())
    tests_by_function = stats["tests_by_mangled_function_name"]
    duration = stats["duration_by_test"]
    chosen = [
        mutant
        for meta_path in sorted(mutants.rglob("*.py.meta"))
        for mutant, code in json.loads(meta_path.read_text())["exit_code_by_key"].items()
        if any(fnmatch.fnmatchcase(mutant, p) for p in patterns) and (code is None or rerun)
    ]
    tests_of = {
        mutant: tests_by_function.get(mutant.partition("__mutmut_")[0], []) for mutant in chosen
    }
    selected = {t for tests in tests_of.values() for t in tests}
    isolated = ray_tests(mutants, selected | set(first) | set(last))
    jobs = []
    for mutant in chosen:
        tests = sorted(tests_of[mutant], key=lambda t: duration.get(t, 0))
        tests = list(dict.fromkeys([*first, *tests, *last]))
        estimate = sum(duration.get(t, 0.0) for t in tests)
        budget = max(120.0, factor * estimate + 60.0)
        ray = [t for t in tests if t in isolated]
        if ray:
            budget += ISOLATED_OVERHEAD_S
        tests = [t for t in tests if t not in isolated]
        jobs.append(Job(mutant, tests, budget, isolated=ray))
    return sorted(jobs, key=lambda job: job.budget_s)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("patterns", nargs="+", help="mutmut mutant names or fnmatch patterns")
    parser.add_argument("--mutants", type=Path, default=ROOT / "mutants")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rerun", action="store_true", help="decide decided mutants again")
    parser.add_argument(
        "--tests",
        nargs="+",
        default=[],
        metavar="TEST",
        help="run these tests first for every mutant (tests written after mutmut's stats were)",
    )
    parser.add_argument(
        "--tests-last",
        nargs="+",
        default=[],
        metavar="TEST",
        help="run these tests last, once mutmut's own selection passed (slower new tests)",
    )
    parser.add_argument(
        "--budget-factor",
        type=float,
        default=4.0,
        help="a mutant's tests may take this many times their clean duration, plus 60 s",
    )
    args = parser.parse_args()
    if not (args.mutants / "mutmut-stats.json").exists():
        parser.error(f"{args.mutants}/mutmut-stats.json is missing: run `mutmut run` first")
    conftest = Path("tests") / "conftest.py"
    if (ROOT / conftest).read_bytes() != (args.mutants / conftest).read_bytes():
        # Its hooks decide which tests run in a fresh process (the `ray` mark).
        parser.error(
            f"{args.mutants / conftest} differs from {ROOT / conftest}: the mutated copy is "
            "older than the tests; run `mutmut run` again (scripts/mutation.sh does)"
        )
    os.environ.setdefault("CIAGAN_SHARED", str(ROOT.parent / "shared"))  # collection needs it
    jobs = load_jobs(
        args.mutants, args.patterns, args.rerun, args.budget_factor, args.tests, args.tests_last
    )
    without_tests = [job for job in jobs if not job.tests and not job.isolated]
    jobs = [job for job in jobs if job.tests or job.isolated]
    log_dir = args.mutants / "runner-logs"
    log_dir.mkdir(exist_ok=True)
    # One thread per worker: the workers share the cores, and torch would oversubscribe them.
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    print(f"{len(jobs)} mutants to decide, {len(without_tests)} reached by no test")
    runner = Runner(args.mutants, max(1, min(args.workers, len(jobs) or 1)), log_dir)
    try:
        for job in without_tests:
            runner.record(job.mutant, NO_TESTS, 0.0)
        if jobs:
            # mutmut's forced failure: every test must fail when the mutated copy is imported.
            first = runner.workers[0]
            some = next((job.tests[:1] for job in jobs if job.tests), [])
            runner._send(
                first, Job("fail", some, 600, isolated=[] if some else jobs[0].isolated[:1])
            )
            _, code, _ = first.connection.recv()
            first.job = None
            first.runs += 1
            if code == 0:
                raise SystemExit("the tests pass under mutmut's forced failure: wrong import path")
        runner.baseline(jobs)
        verdicts = runner.run(jobs)
    finally:
        runner.shutdown()
    counts: dict[str, int] = {}
    for verdict in verdicts.values():
        counts[verdict] = counts.get(verdict, 0) + 1
    print("done:", ", ".join(f"{n} {v}" for v, n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
