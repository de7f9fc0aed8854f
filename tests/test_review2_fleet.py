"""``ciagan fleet`` never removes the temporary folder of a live writer: a ``ciagan bag`` into
the same OUTDIR kept writing while a fleet started there, and died when its folder vanished.
Only folders whose writer is provably gone (a process of this host that no longer runs) go."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from conftest import ROOT, celeba_image, sample_rows

pytest.importorskip("rosbags")
from rosbags.highlevel import AnyReader
from test_fleet import SETTINGS, _write_bag

from ciagan_core.pipeline import AnonymizerConfig
from ciagan_ros.bag_tool import OWNER_FILE, process_context
from ciagan_ros.fleet import FleetSettings, remove_stale_temporaries, run_fleet


@pytest.fixture(scope="module")
def bag(shared_dir, celeba_rows, tmp_path_factory) -> Path:
    faces = [
        cv2.resize(celeba_image(shared_dir, row), (200, 200))
        for row in sample_rows(celeba_rows, 3)
    ]
    path = tmp_path_factory.mktemp("in") / "run0"
    _write_bag(path, faces, "mcap", frames=16)
    return path


def _temporary(outdir: Path, name: str, pid: int, host: str | None = None) -> Path:
    """A temporary folder as ``ciagan bag`` makes it, owned by ``pid``, with some data."""
    folder = outdir / f".{name}.partial-test{pid}"
    (folder / name).mkdir(parents=True)
    (folder / name / "data.mcap").write_bytes(b"being written")
    owner = {"host": host or socket.gethostname(), "pid": pid}
    (folder / OWNER_FILE).write_text(json.dumps(owner))
    return folder


def test_a_fleet_run_keeps_the_temporary_of_this_live_process(bag, tmp_path):
    outdir = tmp_path / "out"
    outdir.mkdir()
    live = _temporary(outdir, bag.name, os.getpid())  # this process is alive: it writes
    report = run_fleet([bag], outdir, AnonymizerConfig(), SETTINGS, FleetSettings())
    assert live.is_dir(), "the fleet removed the temporary folder of a live process"
    assert (live / bag.name / "data.mcap").read_bytes() == b"being written"
    assert report["done"] == 1, report["results"]


def test_a_fleet_run_keeps_the_temporary_of_another_live_process(bag, tmp_path):
    outdir = tmp_path / "out"
    outdir.mkdir()
    writer = subprocess.Popen(["sleep", "120"])
    try:
        live = _temporary(outdir, bag.name, writer.pid)
        report = run_fleet([bag], outdir, AnonymizerConfig(), SETTINGS, FleetSettings())
        assert live.is_dir(), "the fleet removed the temporary folder of a live process"
        assert (live / bag.name / "data.mcap").read_bytes() == b"being written"
        assert report["done"] == 1, report["results"]
    finally:
        writer.kill()
        writer.wait()


def _wait_for_temporary(outdir: Path, process: subprocess.Popen, timeout: float = 120) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in outdir.glob(".*.partial-*") if (p / OWNER_FILE).is_file()]
        if found:
            return found[0]
        assert process.poll() is None, process.communicate()
        time.sleep(0.005)
    raise AssertionError("ciagan bag never made its temporary folder")


def test_a_live_ciagan_bag_into_the_same_outdir_survives_a_fleet_run(bag, tmp_path):
    outdir = tmp_path / "out"
    outdir.mkdir()
    command = [sys.executable, "-m", "ciagan_core", "bag", str(bag), str(outdir / bag.name)]
    process = subprocess.Popen(
        [*command, "--no-progress", "--max-gap", str(SETTINGS.max_gap)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        temporary = _wait_for_temporary(outdir, process)
        process.send_signal(signal.SIGSTOP)  # caught writing: it stays alive, mid-bag
        try:
            report = run_fleet([bag], outdir, AnonymizerConfig(), SETTINGS, FleetSettings())
            assert temporary.is_dir() and (temporary / OWNER_FILE).is_file(), (
                "the fleet removed the temporary folder of a live ciagan bag"
            )
            owner = json.loads((temporary / OWNER_FILE).read_text())
            assert owner["pid"] == process.pid and owner.items() >= process_context().items()
            assert report["done"] == 1, report["results"]
        finally:
            process.send_signal(signal.SIGCONT)
        _, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # It ends on its own terms: done, or (the fleet wrote that output meanwhile) a one-line
    # refusal; never a crash on a vanished folder, and nothing of it left behind.
    assert "Traceback" not in err, err
    assert process.returncode == 0 or err.startswith("ciagan bag: error:"), err
    assert not temporary.exists()
    with AnyReader([outdir / bag.name]) as reader:  # a complete bag, whoever renamed last
        assert sum(1 for _ in reader.messages()) == 32


def test_only_provably_dead_writers_of_this_host_lose_their_temporaries(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    zombie = subprocess.Popen(["true"])  # exited, not yet reaped
    deadline = time.monotonic() + 10
    while Path(f"/proc/{zombie.pid}/stat").read_text().split(") ")[1][0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        gone = [_temporary(tmp_path, "a", dead.pid), _temporary(tmp_path, "b", zombie.pid)]
        reused = _temporary(tmp_path, "c", os.getpid())  # our pid, but written long before us
        old = time.time() - 30 * 24 * 3600
        os.utime(reused / OWNER_FILE, (old, old))
        kept = [
            _temporary(tmp_path, "d", 999_999, host="another-node"),  # not provable from here
            _temporary(tmp_path, "e", 1),  # a live process
        ]
        broken = _temporary(tmp_path, "f", dead.pid)
        (broken / OWNER_FILE).write_text('{"host": ')  # being written, or damaged
        kept.append(broken)
        other_namespace = _temporary(tmp_path, "g", dead.pid)
        info = json.loads((other_namespace / OWNER_FILE).read_text())
        info["pid_namespace"] = "pid:[1]"  # a container sharing the host name
        (other_namespace / OWNER_FILE).write_text(json.dumps(info))
        kept.append(other_namespace)
        assert remove_stale_temporaries(tmp_path, list("abcdefg")) == 3
        assert not any(p.exists() for p in [*gone, reused])
        assert all((p / OWNER_FILE).is_file() for p in kept)
    finally:
        zombie.wait()
