"""``ciagan fleet``: many bags on Ray (or in-process) write exactly what ``ciagan bag`` writes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rosbags")
from rosbag_messages import NS, STORE, T, image_message
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer

from ciagan_core.cli import main
from ciagan_core.pipeline import AnonymizerConfig
from ciagan_ros.bag_tool import BagSettings, anonymize_bag
from ciagan_ros.fleet import (
    LOCK_NAME,
    FleetLock,
    FleetSettings,
    plan_jobs,
    run_fleet,
)
from tests.conftest import celeba_image, sample_rows

SETTINGS = BagSettings(max_gap=2)


def _write_bag(path: Path, faces: list[np.ndarray], storage: str, frames: int) -> None:
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        image = writer.add_connection("/cam/image", "sensor_msgs/msg/Image", typestore=STORE)
        clock = writer.add_connection("/clock_note", "std_msgs/msg/String", typestore=STORE)
        for i in range(frames):
            canvas = np.full((240, 320, 3), 80, np.uint8)
            face = faces[i % len(faces)]
            canvas[: face.shape[0], 3 * i : 3 * i + face.shape[1]] = face[:, : 320 - 3 * i]
            stamp = 1_700_000_000 * NS + i * 100_000_000
            msg = image_message(canvas, "bgr8", stamp)
            writer.write(image, stamp, STORE.serialize_cdr(msg, image.msgtype))
            note = T["std_msgs/msg/String"](data=f"frame {i}")
            writer.write(clock, stamp + 1, STORE.serialize_cdr(note, clock.msgtype))


def _messages(path: Path) -> list[tuple[str, int, bytes]]:
    with AnyReader([path]) as reader:
        return [(c.topic, t, bytes(raw)) for c, t, raw in reader.messages()]


def _leftovers(outdir: Path) -> list[str]:
    """Hidden things left in a folder (the lock file stays, by design)."""
    return sorted(
        p.name for p in outdir.iterdir() if p.name.startswith(".") and p.name != LOCK_NAME
    )


@pytest.fixture(scope="module")
def faces(shared_dir, celeba_rows) -> list[np.ndarray]:
    return [
        cv2.resize(celeba_image(shared_dir, row), (200, 200))
        for row in sample_rows(celeba_rows, 3)
    ]


@pytest.fixture(scope="module")
def bags(faces, tmp_path_factory) -> dict[str, Path]:
    """Six small bags, mcap and sqlite3, the last one truncated."""
    folder = tmp_path_factory.mktemp("fleet_in")
    out = {}
    for i in range(6):
        name = f"run{i}"
        _write_bag(folder / name, faces, "mcap" if i % 2 else "sqlite3", frames=4)
        out[name] = folder / name
    data = next(p for p in out["run5"].iterdir() if p.suffix in (".mcap", ".db3"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 3])
    return out


@pytest.fixture(scope="module")
def alone(bags, tmp_path_factory) -> dict[str, Path]:
    """What ``ciagan bag`` writes for each good bag on its own."""
    folder = tmp_path_factory.mktemp("alone")
    out = {}
    for name, path in bags.items():
        if name != "run5":
            anonymize_bag(path, folder / name, AnonymizerConfig(), SETTINGS)
            out[name] = folder / name
    return out


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(
            address="local",
            num_cpus=2,
            object_store_memory=80 * 2**20,
            include_dashboard=False,
            log_to_driver=False,
        )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def fleet_run(bags, ray_local, tmp_path_factory):
    outdir = tmp_path_factory.mktemp("fleet_out") / "anonymized"
    report = run_fleet(
        list(bags.values()),
        outdir,
        AnonymizerConfig(),
        SETTINGS,
        FleetSettings(ray_address="local", workers=2),
    )
    # As written by the Ray run: tests that run the fleet into OUTDIR again rewrite it (and
    # they run in any order: the mutation runner runs them fastest first).
    on_disk = json.loads((outdir / "fleet_report.json").read_text())
    return outdir, report, on_disk


def test_ray_outputs_are_what_ciagan_bag_writes_for_each_bag(fleet_run, alone):
    outdir, report, _ = fleet_run
    assert report["done"] == 5 and report["failed"] == 1
    assert report["backend"].startswith("ray (2 workers")
    for name, expected in alone.items():
        assert _messages(outdir / name) == _messages(expected), name
        assert json.loads((outdir / f"{name}.report.json").read_text())["complete"] is True


def test_the_corrupt_bag_is_one_clear_failure_and_nothing_is_left_behind(fleet_run):
    outdir, report, on_disk = fleet_run
    [failed] = [r for r in report["results"] if r["status"] == "failed"]
    assert failed["source"].endswith("run5")
    assert "cannot read the bag" in failed["error"]
    assert not (outdir / "run5").exists()
    assert _leftovers(outdir) == []  # no temporary folder, attempt counter or lock
    assert on_disk["results"] == report["results"]
    done = [r for r in report["results"] if r["status"] == "done"]
    assert all(r["faces"] >= 4 and r["messages"] == 8 and r["attempts"] == 1 for r in done)


def test_running_the_same_command_again_skips_finished_bags(fleet_run, bags, capsys):
    outdir, _, _ = fleet_run
    before = {p.name: p.stat().st_mtime_ns for p in outdir.iterdir()}
    args = ["fleet", *map(str, bags.values()), "-o", str(outdir), "--max-gap", "2"]
    assert main([*args, "--no-progress"]) == 1  # the corrupt bag still fails
    report = json.loads((outdir / "fleet_report.json").read_text())
    assert report["skipped"] == 5 and report["failed"] == 1 and report["done"] == 0
    assert report["backend"] == "in-process"
    for name in ("run0", "run1", "run2", "run3", "run4"):
        assert (outdir / name).stat().st_mtime_ns == before[name]
    printed = capsys.readouterr().out
    assert "5 skipped, 1 failed of 6 bags" in printed


def test_changed_settings_are_never_taken_for_a_finished_bag(fleet_run, bags):
    """Resume matches settings too: the same bag with another method is not skipped (its
    output was made with blur), it asks for --overwrite."""
    outdir, _, _ = fleet_run
    args = ["fleet", str(bags["run1"]), "-o", str(outdir), "--max-gap", "2"]
    assert main([*args, "--method", "pixelate", "--no-progress"]) == 1
    report = json.loads((outdir / "fleet_report.json").read_text())
    assert report["skipped"] == 0 and report["failed"] == 1
    assert "--overwrite" in report["results"][0]["error"]


def test_a_changed_input_is_done_again_only_with_overwrite(bags, faces, tmp_path):
    outdir = tmp_path / "out"  # its own: the Ray run's output stays as that run left it
    assert (
        run_fleet([bags["run0"]], outdir, AnonymizerConfig(), SETTINGS, FleetSettings())["done"]
        == 1
    )
    changed = tmp_path / "run0"
    _write_bag(changed, faces[:1], "mcap", frames=3)
    report = run_fleet([changed], outdir, AnonymizerConfig(), SETTINGS, FleetSettings())
    assert report["failed"] == 1 and "--overwrite" in report["results"][0]["error"]
    report = run_fleet(
        [changed], outdir, AnonymizerConfig(), SETTINGS, FleetSettings(overwrite=True)
    )
    assert report["done"] == 1
    assert len([m for m in _messages(outdir / "run0") if m[0] == "/cam/image"]) == 3
    assert _messages(bags["run0"])  # the input is untouched
    assert _leftovers(outdir) == []


def _kill_worker_when_a_bag_starts(outdir: Path, stop: threading.Event, killed: list) -> None:
    """Kill (SIGKILL) the Ray worker writing a bag into ``outdir`` as soon as its temporary
    folder names it (its owner file): that worker only, never another run's on this host."""
    while not stop.is_set():
        for owner in outdir.glob(".*.partial-*/.owner.json"):
            try:
                pid = json.loads(owner.read_text())["pid"]
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except (OSError, ValueError, KeyError):
                continue  # still being written
            if b"ray::BagWorker" in cmdline:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.01)


def test_a_worker_killed_mid_bag_is_restarted_and_its_bag_completed(faces, ray_local, tmp_path):
    source = tmp_path / "long"
    _write_bag(source, faces, "mcap", frames=24)
    expected = tmp_path / "expected"
    anonymize_bag(source, expected, AnonymizerConfig(), SETTINGS)
    outdir = tmp_path / "out"
    outdir.mkdir()
    stop, killed = threading.Event(), []
    watcher = threading.Thread(target=_kill_worker_when_a_bag_starts, args=(outdir, stop, killed))
    watcher.start()
    try:
        report = run_fleet(
            [source],
            outdir,
            AnonymizerConfig(),
            SETTINGS,
            FleetSettings(ray_address="local", workers=1, max_restarts=2, max_task_retries=2),
        )
    finally:
        stop.set()
        watcher.join()
    assert killed, "no worker was killed: the test did not test anything"
    [result] = report["results"]
    assert result["status"] == "done", result
    assert result["attempts"] == 2
    assert _messages(outdir / "long") == _messages(expected)
    assert _leftovers(outdir) == []


def test_bad_plans_are_refused_before_anything_runs(bags, tmp_path):
    twin = tmp_path / "other" / "run0"
    twin.parent.mkdir()
    (twin).mkdir()
    (twin / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")
    with pytest.raises(Exception, match="two bags are named 'run0'"):
        plan_jobs([bags["run0"], twin], tmp_path / "out")
    with pytest.raises(Exception, match="inside the output folder"):
        plan_jobs([bags["run0"]], bags["run0"].parent)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Exception, match="no rosbag2 folder inside"):
        plan_jobs([empty], tmp_path / "out3")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", [["--threshold", "0.9"], ["--min-face", "30"]])
def test_settings_that_miss_faces_are_refused_before_anything_is_written(
    bags, tmp_path, option, capsys
):
    out = tmp_path / "out"
    assert main(["fleet", str(bags["run0"]), "-o", str(out), *option, "--no-progress"]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not out.exists()  # no folder, lock or report


def test_a_second_run_on_the_same_output_folder_is_refused(bags, tmp_path):
    outdir = tmp_path / "out"
    outdir.mkdir()
    other = FleetLock(outdir / LOCK_NAME)
    other.acquire()  # a live run holds the folder
    try:
        with pytest.raises(Exception, match="another fleet run is writing here"):
            run_fleet([bags["run0"]], outdir, AnonymizerConfig(), SETTINGS, FleetSettings())
    finally:
        other.release()
    # A run that died (however) holds nothing: the next one proceeds.
    (outdir / LOCK_NAME).write_text("pid 1 on elsewhere")
    report = run_fleet([bags["run0"]], outdir, AnonymizerConfig(), SETTINGS, FleetSettings())
    assert report["done"] == 1


def test_cleanup_removes_only_this_fleets_dead_temporaries(bags, tmp_path):
    outdir = tmp_path / "out"
    outdir.mkdir()
    mine = outdir / ".run0.partial-dead"  # a killed run's, for a bag of this fleet
    mine.mkdir()
    (mine / ".owner.json").write_text(json.dumps({"host": os.uname().nodename, "pid": 999999}))
    theirs = outdir / ".run1.partial-2026"  # the user's own folder (no owner file)
    theirs.mkdir()
    (theirs / "keep.txt").write_text("mine")
    busy = outdir / ".run1.partial-busy"  # a live process is writing it
    busy.mkdir()
    (busy / ".owner.json").write_text(json.dumps({"host": os.uname().nodename, "pid": 1}))
    from ciagan_ros.fleet import remove_stale_temporaries

    assert remove_stale_temporaries(outdir, ["run0", "run1", "notes"]) == 1
    assert not mine.exists() and (theirs / "keep.txt").exists() and busy.exists()
    assert remove_stale_temporaries(outdir, ["run[0]"]) == 0  # names are not patterns


def test_bags_below_a_folder_include_hidden_and_linked_ones_but_not_the_output(bags, tmp_path):
    root = tmp_path / "recordings"
    root.mkdir()
    (root / ".late").mkdir()
    shutil.copytree(bags["run0"], root / "a")
    shutil.copytree(bags["run1"], root / ".late" / "b")
    (root / "c").symlink_to(bags["run2"], target_is_directory=True)
    outdir = root / "anonymized"  # inside the searched folder: never searched itself
    first = run_fleet([root], outdir, AnonymizerConfig(), SETTINGS, FleetSettings())
    # A linked bag is named by what it links to (so one bag reached twice is done once).
    assert sorted(Path(r["target"]).name for r in first["results"]) == ["a", "b", "run2"]
    again = run_fleet([root], outdir, AnonymizerConfig(), SETTINGS, FleetSettings())
    assert again["skipped"] == 3


def test_a_damaged_output_is_not_skipped(bags, tmp_path):
    outdir = tmp_path / "out"
    run_fleet([bags["run0"]], outdir, AnonymizerConfig(), SETTINGS, FleetSettings())
    data = next(p for p in (outdir / "run0").iterdir() if p.suffix in (".db3", ".mcap"))
    data.unlink()
    report = run_fleet([bags["run0"]], outdir, AnonymizerConfig(), SETTINGS, FleetSettings())
    assert report["failed"] == 1 and "--overwrite" in report["results"][0]["error"]


def test_a_kept_topic_may_be_missing_from_some_bags_of_a_fleet(bags, tmp_path):
    settings = BagSettings(max_gap=2, keep_topics=("/depth/image",))
    report = run_fleet(
        [bags["run0"], bags["run1"]],
        tmp_path / "out",
        AnonymizerConfig(),
        settings,
        FleetSettings(),
    )
    assert report["done"] == 2


def test_a_recording_that_changes_while_it_is_read_is_not_written(bags, tmp_path, monkeypatch):
    import ciagan_ros.bag_tool as bag_tool

    source = tmp_path / "growing"
    shutil.copytree(bags["run0"], source)
    real = bag_tool._detect_all

    def detect_then_grow(*args):
        out = real(*args)
        (source / "metadata.yaml").write_text((source / "metadata.yaml").read_text() + "\n")
        return out

    monkeypatch.setattr(bag_tool, "_detect_all", detect_then_grow)
    with pytest.raises(bag_tool.BagError, match="changed while it was read"):
        anonymize_bag(source, tmp_path / "out", AnonymizerConfig(), SETTINGS)
    assert not (tmp_path / "out").exists()
    assert _leftovers(tmp_path) == []


def test_more_workers_than_the_cluster_holds_are_capped_not_stuck(bags, ray_local, tmp_path):
    report = run_fleet(
        [bags["run0"], bags["run1"], bags["run2"]],
        tmp_path / "out",
        AnonymizerConfig(),
        SETTINGS,
        FleetSettings(ray_address="local", workers=5),
    )
    assert report["done"] == 3 and report["backend"].startswith("ray (2 workers")
    with pytest.raises(Exception, match="cannot hold one worker"):
        run_fleet(
            [bags["run0"]],
            tmp_path / "out2",
            AnonymizerConfig(),
            SETTINGS,
            FleetSettings(ray_address="local", num_gpus=1),
        )
