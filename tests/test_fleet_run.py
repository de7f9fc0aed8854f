"""``run_fleet`` in this process: the settings it refuses, its warning, its report and progress,
and what an interruption or a failed clean-up leaves (the Ray runs are in test_fleet.py)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import cv2
import pytest

pytest.importorskip("rosbags")
from rosbag_messages import FACE_BOX, first_frame, unchanged_share, write_face_bag

import ciagan_ros.fleet as fleet_module
from ciagan_core.errors import ConfigError, InputError
from ciagan_core.pipeline import AnonymizerConfig
from ciagan_ros.bag_tool import BagSettings, settings_digest
from ciagan_ros.fleet import LOCK_NAME, REPORT_NAME, FleetSettings, run_fleet
from tests.conftest import celeba_image, sample_rows

SETTINGS = BagSettings(max_gap=2)
CONFIG = AnonymizerConfig()
WARNING = "{} apply to Ray workers; without --ray the bags run one after another in this process"


@pytest.fixture(scope="module")
def recordings(shared_dir, celeba_rows, tmp_path_factory) -> dict[str, Path]:
    """Three one-frame bags, a different face in each."""
    folder = tmp_path_factory.mktemp("recordings")
    out = {}
    for i, row in enumerate(sample_rows(celeba_rows, 3)):
        face = cv2.resize(celeba_image(shared_dir, row), (200, 200))
        write_face_bag(folder / f"run{i}", face, frames=1, storage="mcap" if i % 2 else "sqlite3")
        out[f"run{i}"] = folder / f"run{i}"
    return out


def _run(recordings, outdir: Path, fleet: FleetSettings | None = None, **kwargs) -> dict:
    return run_fleet(
        [recordings[n] for n in sorted(recordings)],
        outdir,
        CONFIG,
        SETTINGS,
        fleet or FleetSettings(),
        **kwargs,
    )


def _hidden(outdir: Path) -> list[str]:
    return sorted(
        p.name for p in outdir.iterdir() if p.name.startswith(".") and p.name != LOCK_NAME
    )


@pytest.mark.parametrize(
    "field", ["workers", "num_cpus", "num_gpus", "max_restarts", "max_task_retries"]
)
def test_each_negative_setting_alone_is_refused_before_anything_is_written(
    recordings, tmp_path, field
):
    which = (
        "max_restarts and max_task_retries"
        if field.startswith("max_")
        else "workers, num_cpus and num_gpus"
    )
    with pytest.raises(ConfigError) as refused:
        _run(recordings, tmp_path / "out", FleetSettings(**{field: -1}))
    assert str(refused.value) == f"{which} must not be negative"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "fleet",
    [FleetSettings(num_cpus=float("nan")), FleetSettings(num_gpus=float("inf"))],
    ids=["nan_cpus", "inf_gpus"],
)
def test_settings_that_are_not_numbers_are_refused(recordings, tmp_path, fleet):
    # nan passes "< 0"; either would make the fleet report invalid JSON (NaN, Infinity).
    with pytest.raises(ConfigError) as refused:
        _run(recordings, tmp_path / "out", fleet)
    assert str(refused.value) == "num_cpus and num_gpus must be finite numbers"
    assert not (tmp_path / "out").exists()


def test_zero_cpus_retries_and_restarts_are_accepted(recordings, tmp_path):
    # Zero is a valid setting for each (what it means to Ray is tested in test_fleet.py);
    # the in-process run takes them and is not changed by them.
    fleet = FleetSettings(num_cpus=0, max_restarts=0, max_task_retries=0)
    report = _run(recordings, tmp_path / "out", fleet)
    assert report["done"] == 3 and report["complete"] is True


@pytest.mark.parametrize(
    ("fleet", "named"),
    [
        (FleetSettings(), ""),
        (FleetSettings(workers=1), ""),
        (FleetSettings(workers=2), "--workers"),
        (FleetSettings(num_gpus=0.5), "--gpus-per-worker"),
        (FleetSettings(num_cpus=2), "--cpus-per-worker"),
        (FleetSettings(max_restarts=0, max_task_retries=5), "--max-restarts, --max-task-retries"),
    ],
)
def test_ray_settings_without_ray_are_named_in_a_warning(
    recordings, tmp_path, caplog, fleet, named
):
    with caplog.at_level(logging.WARNING, logger="ciagan_ros.fleet"):
        report = _run({"run0": recordings["run0"]}, tmp_path / "out", fleet)
    assert report["backend"] == "in-process" and report["done"] == 1
    said = [r.getMessage() for r in caplog.records if "apply to Ray workers" in r.getMessage()]
    assert said == ([WARNING.format(named)] if named else [])


def test_an_in_process_run_needs_no_ray_and_a_ray_run_says_how_to_get_it(
    recordings, tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails, as where it is absent
    assert _run({"run0": recordings["run0"]}, tmp_path / "out")["done"] == 1
    with pytest.raises(ConfigError, match=r"--ray needs Ray: pip install"):
        _run(recordings, tmp_path / "ray_out", FleetSettings(ray_address="local"))
    assert not (tmp_path / "ray_out").exists()


def test_an_output_folder_below_missing_folders_is_made(recordings, tmp_path):
    outdir = tmp_path / "a" / "b" / "out"
    assert _run({"run0": recordings["run0"]}, outdir)["done"] == 1
    assert (outdir / "run0" / "metadata.yaml").is_file()


def test_the_report_written_is_the_report_returned_with_every_field(recordings, tmp_path):
    fleet = FleetSettings(max_restarts=1)
    outdir = tmp_path / "out"
    report = _run(recordings, outdir, fleet)
    text = (outdir / REPORT_NAME).read_text()
    assert text == json.dumps(report, indent=2) + "\n"
    assert report["complete"] is True and report["backend"] == "in-process"
    assert (report["bags"], report["done"], report["skipped"], report["failed"]) == (3, 3, 0, 0)
    assert report["not_run"] == 0
    assert report["settings_sha256"] == settings_digest(CONFIG, SETTINGS)
    assert report["fleet"] == asdict(fleet)
    assert [Path(r["source"]).name for r in report["results"]] == ["run0", "run1", "run2"]
    for name, result in zip(("run0", "run1", "run2"), report["results"], strict=True):
        assert result["source"] == str(recordings[name])
        assert result["target"] == str(outdir / name)
        assert (result["status"], result["error"], result["attempts"]) == ("done", "", 1)
        assert result["messages"] == 1 and result["faces"] >= 1
        assert result["worker"] == f"{socket.gethostname()}:{os.getpid()}"
        assert json.loads((outdir / f"{name}.report.json").read_text())["complete"] is True
        before = first_frame(recordings[name])  # every face anonymized
        assert unchanged_share(first_frame(outdir / name), before, FACE_BOX) < 0.05


def test_the_wall_time_is_the_run_s_in_hundredths(recordings, tmp_path, monkeypatch):
    (tmp_path / "out" / "run0").mkdir(parents=True)  # a failure: nothing else reads the clock
    ticks = iter([1000.0])
    clock = SimpleNamespace(perf_counter=lambda: next(ticks, 1001.23456))
    monkeypatch.setattr(fleet_module, "time", clock)
    report = _run({"run0": recordings["run0"]}, tmp_path / "out")
    assert report["failed"] == 1
    assert isinstance(report["wall_s"], float) and report["wall_s"] == 1.23


def test_progress_counts_skipped_failed_and_done_bags_in_one_sequence(recordings, tmp_path):
    outdir = tmp_path / "out"
    _run({"run0": recordings["run0"]}, outdir)  # run0 finished earlier: skipped
    (outdir / "run1").mkdir()  # not made from run1: a failure without --overwrite
    (outdir / "run1" / "notes.txt").write_text("mine")
    calls = []
    report = _run(
        recordings,
        outdir,
        progress=lambda o, i, n: calls.append((Path(o.source).name, o.status, i, n)),
    )
    assert calls == [
        ("run0", "skipped", 1, 3),
        ("run1", "failed", 2, 3),
        ("run2", "done", 3, 3),
    ]
    failed = report["results"][1]
    assert failed["source"] == str(recordings["run1"])
    assert failed["target"] == str(outdir / "run1")
    assert "exists but was not made from this bag" in failed["error"]
    assert (outdir / "run1" / "notes.txt").read_text() == "mine"


def test_no_attempt_counter_is_left_when_the_first_bag_had_none(recordings, tmp_path):
    outdir = tmp_path / "out"
    _run({"run0": recordings["run0"]}, outdir)
    report = _run(recordings, outdir)  # run0 skipped (no counter), run1 and run2 done
    assert (report["skipped"], report["done"]) == (1, 2)
    assert _hidden(outdir) == []


def _lock_is_free(outdir: Path) -> bool:
    """Whether another process could take the fleet's lock on ``outdir`` now."""
    code = (
        "import sys; from pathlib import Path; from ciagan_ros.fleet import FleetLock\n"
        "try:\n    FleetLock(Path(sys.argv[1])).acquire()\nexcept Exception:\n    sys.exit(3)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(outdir / LOCK_NAME)], check=False)
    assert done.returncode in (0, 3)
    return done.returncode == 0


def test_an_interrupted_run_reports_what_finished_as_incomplete(recordings, tmp_path):
    outdir = tmp_path / "out"
    held = []

    def interrupt(outcome, i, n):
        held.append(_lock_is_free(outdir))
        if i == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(recordings, outdir, progress=interrupt)
    assert held == [False, False]  # the folder was locked while the run worked
    report = json.loads((outdir / REPORT_NAME).read_text())
    assert report["complete"] is False
    assert (report["done"], report["not_run"]) == (2, 1)
    assert _hidden(outdir) == []
    assert _lock_is_free(outdir)


def test_the_report_says_incomplete_from_the_start_until_the_run_ends(recordings, tmp_path):
    # A run killed outright (SIGKILL, power loss) must not leave an earlier run's complete
    # report standing beside outputs it has started to replace.
    outdir = tmp_path / "out"
    assert _run(recordings, outdir)["complete"] is True
    seen = []

    def look(outcome, i, n):
        seen.append(json.loads((outdir / REPORT_NAME).read_text())["complete"])

    report = _run(recordings, outdir, FleetSettings(overwrite=True), progress=look)
    assert seen == [False, False, False]
    assert report["complete"] is True
    assert json.loads((outdir / REPORT_NAME).read_text()) == report


def test_an_interruption_stays_the_error_when_its_report_cannot_be_written(
    recordings, tmp_path, monkeypatch
):
    written = []

    def full_after_the_first(path, data):  # the disk fills while the bags are written
        if written:
            raise OSError(28, "No space left on device")
        written.append(path)
        original(path, data)

    original = fleet_module.write_bytes_atomic
    monkeypatch.setattr(fleet_module, "write_bytes_atomic", full_after_the_first)

    def interrupt(outcome, i, n):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run({"run0": recordings["run0"]}, tmp_path / "out", progress=interrupt)


def test_a_clean_up_that_fails_keeps_the_report_and_frees_the_folder(
    recordings, tmp_path, monkeypatch
):
    original = fleet_module.remove_stale_temporaries
    failed = []

    def flaky(folder, names):
        report = folder / REPORT_NAME
        if report.exists() and json.loads(report.read_text())["complete"]:  # after the bags
            failed.append(names)
            raise PermissionError(13, "Permission denied")
        return original(folder, names)

    monkeypatch.setattr(fleet_module, "remove_stale_temporaries", flaky)
    outdir = tmp_path / "out"
    report = _run(recordings, outdir)
    assert report["done"] == 3 and failed == [["run0", "run1", "run2"]]
    assert json.loads((outdir / REPORT_NAME).read_text())["complete"] is True
    assert _hidden(outdir) == []  # the attempt counters went all the same
    assert _lock_is_free(outdir)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_run_s_temporaries_are_removed_and_said(recordings, tmp_path, caplog):
    outdir = tmp_path / "out"
    dead = outdir / ".run0.partial-dead"
    dead.mkdir(parents=True)
    owner = {"host": socket.gethostname(), "pid": _dead_pid()}
    (dead / ".owner.json").write_text(json.dumps(owner))
    with caplog.at_level(logging.WARNING, logger="ciagan_ros.fleet"):
        report = _run({"run0": recordings["run0"]}, outdir)
    assert report["done"] == 1 and not dead.exists()
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert said == ["removed 1 temporary folders of an interrupted run"]


@pytest.mark.parametrize("moved", ["run0", "run0.report.json"])
def test_a_symlinked_output_or_report_is_never_taken_as_finished(recordings, tmp_path, moved):
    # Even one that points at what the fleet wrote (moved elsewhere): a link may point anywhere.
    outdir = tmp_path / "out"
    _run({"run0": recordings["run0"]}, outdir)
    (outdir / moved).rename(tmp_path / moved)
    (outdir / moved).symlink_to(tmp_path / moved)
    report = _run({"run0": recordings["run0"]}, outdir)
    assert (report["skipped"], report["failed"]) == (0, 1)


def test_an_output_that_is_a_symlink_to_a_raw_bag_is_never_taken_as_finished(recordings, tmp_path):
    outdir = tmp_path / "out"
    _run({"run0": recordings["run0"]}, outdir)
    shutil.rmtree(outdir / "run0")
    (outdir / "run0").symlink_to(recordings["run0"])  # the raw recording, with its face
    report = _run({"run0": recordings["run0"]}, outdir)
    assert (report["skipped"], report["failed"]) == (0, 1)
    assert "--overwrite" in report["results"][0]["error"]


def test_a_raw_bag_copied_over_a_finished_output_is_never_taken_as_finished(recordings, tmp_path):
    # Same names, same sizes (a raw frame is as long as its anonymized one), and `cp -p`
    # keeps the modification time: only the change time tells.
    outdir = tmp_path / "out"
    _run({"run1": recordings["run1"]}, outdir)
    [raw] = [p for p in recordings["run1"].iterdir() if p.suffix == ".mcap"]
    written = outdir / "run1" / raw.name
    assert written.stat().st_size == raw.stat().st_size
    mtime = written.stat().st_mtime_ns
    shutil.copyfile(raw, written)
    os.utime(written, ns=(mtime, mtime))
    report = _run({"run1": recordings["run1"]}, outdir)
    assert (report["skipped"], report["failed"]) == (0, 1)
    assert unchanged_share(first_frame(outdir / "run1"), first_frame(raw.parent), FACE_BOX) == 1


@pytest.mark.parametrize("kind", ["symlink", "folder"])
def test_a_lock_that_is_not_a_plain_file_is_refused_and_left_alone(recordings, tmp_path, kind):
    outdir = tmp_path / "out"
    outdir.mkdir()
    victim = tmp_path / "notes.txt"
    victim.write_text("mine")
    if kind == "symlink":
        (outdir / LOCK_NAME).symlink_to(victim)
    else:
        (outdir / LOCK_NAME).mkdir()
    with pytest.raises(InputError, match=LOCK_NAME):
        _run(recordings, outdir)
    assert victim.read_text() == "mine"
    assert sorted(p.name for p in outdir.iterdir()) == [LOCK_NAME]


@pytest.mark.parametrize("name", [REPORT_NAME, LOCK_NAME, "run0.report.json", ".run0.attempts"])
def test_a_bag_named_like_one_of_the_fleet_s_own_files_is_refused(recordings, tmp_path, name):
    odd = tmp_path / "in" / name
    shutil.copytree(recordings["run2"], odd)
    with pytest.raises(InputError, match="rename the bag"):
        run_fleet([recordings["run0"], odd], tmp_path / "out", CONFIG, SETTINGS, FleetSettings())
    assert not (tmp_path / "out").exists()


def test_a_removal_cut_short_leaves_the_owner_file_for_the_next_run(tmp_path, monkeypatch):
    import ciagan_ros.bag_tool as bag_tool

    folder = tmp_path / ".run0.partial-x"
    (folder / "run0").mkdir(parents=True)
    (folder / "run0" / "run0.mcap").write_bytes(b"x")
    (folder / bag_tool.OWNER_FILE).write_text("{}")

    def interrupted(path, ignore_errors=False):
        raise KeyboardInterrupt

    monkeypatch.setattr(bag_tool.shutil, "rmtree", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bag_tool.remove_temporary(folder)
    assert (folder / bag_tool.OWNER_FILE).is_file()
    monkeypatch.undo()
    bag_tool.remove_temporary(folder)
    assert not folder.exists()


def test_a_folder_where_an_attempt_count_goes_is_refused_before_anything_is_written(
    recordings, tmp_path
):
    outdir = tmp_path / "out"
    (outdir / ".run1.attempts").mkdir(parents=True)
    (outdir / ".run1.attempts" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=r"\.run1\.attempts: .* is a folder"):
        _run(recordings, outdir)
    assert sorted(p.name for p in outdir.iterdir()) == [".run1.attempts"]
    assert (outdir / ".run1.attempts" / "notes.txt").read_text() == "mine"


def test_a_counter_that_cannot_be_removed_at_the_end_spares_the_others(recordings, tmp_path):
    outdir = tmp_path / "out"

    def block(outcome, i, n):
        if i == 1:  # something takes run0's counter's name while the others run
            (outdir / ".run0.attempts").unlink()
            (outdir / ".run0.attempts").mkdir()

    report = _run(recordings, outdir, progress=block)
    assert report["done"] == 3 and report["complete"] is True
    assert _hidden(outdir) == [".run0.attempts"]  # run1's and run2's counters went
    assert _lock_is_free(outdir)


def test_a_report_that_is_not_an_object_is_an_unfinished_bag(recordings, tmp_path):
    outdir = tmp_path / "out"
    _run({"run0": recordings["run0"]}, outdir)
    (outdir / "run0.report.json").write_text("[]")
    report = _run({"run0": recordings["run0"]}, outdir)
    assert (report["skipped"], report["failed"]) == (0, 1)


def test_a_finished_output_whose_owner_or_mode_changed_still_resumes(recordings, tmp_path):
    # chmod and chown change no byte (a Kubernetes volume is re-owned on every pod start);
    # a copy of the folder has the same bytes too.
    outdir = tmp_path / "out"
    _run(recordings, outdir)
    for path in (outdir / "run0").rglob("*"):
        os.chmod(path, path.stat().st_mode)
        os.chown(path, path.stat().st_uid, path.stat().st_gid)
    copy = tmp_path / "copy"
    shutil.copytree(outdir, copy)
    for folder in (outdir, copy):
        assert _run(recordings, folder)["skipped"] == 3


def test_a_hard_linked_lock_is_refused_and_its_other_name_kept(recordings, tmp_path):
    outdir = tmp_path / "out"
    outdir.mkdir()
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    os.link(notes, outdir / LOCK_NAME)
    with pytest.raises(InputError, match="hard links"):
        _run(recordings, outdir)
    assert notes.read_text() == "mine"


def test_an_output_folder_in_a_symlink_loop_is_one_clear_error(recordings, tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(InputError, match="cannot resolve the output folder's path"):
        _run(recordings, tmp_path / "loop" / "out")


def test_an_attempt_that_cannot_be_counted_still_runs_its_bag(
    recordings, tmp_path, monkeypatch, caplog
):
    outdir = tmp_path / "out"
    nowhere = tmp_path / "missing" / ".run0.attempts"  # its folder does not exist: write fails
    monkeypatch.setattr(fleet_module, "_attempts_file", lambda job: nowhere)
    with caplog.at_level(logging.WARNING, logger="ciagan_ros.fleet"):
        report = _run({"run0": recordings["run0"]}, outdir)
    assert report["done"] == 1 and report["results"][0]["attempts"] == 1
    assert "cannot count this attempt" in caplog.text


def test_a_file_system_error_is_one_line_from_the_command(
    recordings, tmp_path, monkeypatch, capsys
):
    from ciagan_core.cli import main

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "out" / "fleet_report.json"))

    monkeypatch.setattr(fleet_module, "run_fleet", full)
    code = main(["fleet", str(recordings["run0"]), "-o", str(tmp_path / "out"), "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"ciagan fleet: error: {tmp_path / 'out' / 'fleet_report.json'}: No space left on device"
    ]


def test_a_temporary_folder_that_cannot_be_emptied_keeps_its_owner_file(tmp_path, monkeypatch):
    import pathlib

    import ciagan_ros.bag_tool as bag_tool

    folder = tmp_path / ".run0.partial-x"
    folder.mkdir()
    (folder / "stuck.nfs0001").write_bytes(b"x")  # an NFS silly-rename file, say
    (folder / bag_tool.OWNER_FILE).write_text("{}")
    original = pathlib.Path.unlink

    def unlink(self, missing_ok=False):
        if self.name.startswith("stuck"):
            raise OSError(16, "Device or resource busy")
        return original(self, missing_ok=missing_ok)

    monkeypatch.setattr(pathlib.Path, "unlink", unlink)
    assert bag_tool.remove_temporary(folder) is False
    assert sorted(p.name for p in folder.iterdir()) == [bag_tool.OWNER_FILE, "stuck.nfs0001"]


def test_a_resume_hashes_no_output_whose_sizes_already_differ(recordings, tmp_path, monkeypatch):
    import ciagan_ros.bag_tool as bag_tool

    outdir = tmp_path / "out"
    _run({"run0": recordings["run0"]}, outdir)
    [data] = [p for p in (outdir / "run0").iterdir() if p.suffix in (".db3", ".mcap")]
    with data.open("ab") as f:
        f.write(b"\0")  # one byte more: no need to read the rest
    hashed = []
    original = bag_tool.file_sha256

    def counting(path, *args, **kwargs):
        hashed.append(Path(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(bag_tool, "file_sha256", counting)
    report = _run({"run0": recordings["run0"]}, outdir, FleetSettings())
    assert report["failed"] == 1
    assert [p for p in hashed if outdir in p.parents and p.parent.name == "run0"] == []


def _killed_between_the_renames(source: Path, outdir: Path, monkeypatch) -> Path:
    """Write ``source`` into OUTDIR as a writer killed (SIGKILL: no clean-up) right after
    renaming the bag and before renaming its report; returns the temporary folder left."""
    import ciagan_ros.bag_tool as bag_tool

    original = bag_tool._rename_file_noreplace

    def killed(src, dst):
        raise SystemExit("killed")

    with monkeypatch.context() as patch:
        patch.setattr(bag_tool, "_rename_file_noreplace", killed)
        patch.setattr(bag_tool._Publishing, "clean_up", lambda self: None)
        with pytest.raises(SystemExit):
            bag_tool.anonymize_bag(source, outdir / source.name, CONFIG, SETTINGS)
    assert bag_tool._rename_file_noreplace is original
    [left] = outdir.glob(f".{source.name}.partial-*")
    owner = left / bag_tool.OWNER_FILE
    owner.write_text(json.dumps({**json.loads(owner.read_text()), "pid": _dead_pid()}))
    return left


def test_a_report_left_by_a_writer_killed_between_the_renames_is_put_in_place(
    recordings, tmp_path, monkeypatch
):
    outdir = tmp_path / "out"
    outdir.mkdir()
    left = _killed_between_the_renames(recordings["run0"], outdir, monkeypatch)
    assert (outdir / "run0").is_dir() and not (outdir / "run0.report.json").exists()
    report = _run({"run0": recordings["run0"]}, outdir)
    assert report["skipped"] == 1 and not left.exists()
    assert json.loads((outdir / "run0.report.json").read_text())["complete"] is True


def test_a_left_report_whose_bytes_are_not_the_bag_s_is_not_put_in_place(
    recordings, tmp_path, monkeypatch
):
    outdir = tmp_path / "out"
    outdir.mkdir()
    left = _killed_between_the_renames(recordings["run0"], outdir, monkeypatch)
    [data] = [p for p in (outdir / "run0").iterdir() if p.suffix in (".db3", ".mcap")]
    raw = next(p for p in recordings["run0"].iterdir() if p.suffix == data.suffix)
    shutil.copyfile(raw, data)  # the raw recording put there since
    report = _run({"run0": recordings["run0"]}, outdir)
    assert (report["skipped"], report["failed"]) == (0, 1) and not left.exists()
    assert not (outdir / "run0.report.json").exists()
