"""The fleet's bag worker in this process: what each attempt at a bag does and reports.

Ray retries a task on a restarted worker by itself, so a second attempt may find the bag
finished by the attempt that died (it must keep that output, not redo it), or find nothing (it
must anonymize the bag). Its outcome is the bag's line in the fleet report.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rosbags")
from ros_node import unchanged_share
from rosbag_messages import FACE_BOX as FACE
from rosbag_messages import first_frame, write_face_bag

from ciagan_core.pipeline import AnonymizerConfig
from ciagan_ros.bag_tool import BagSettings, settings_digest
from ciagan_ros.fleet import BagJob, BagWorker, is_finished
from tests.conftest import celeba_image, sample_rows

SETTINGS = BagSettings(max_gap=2)


@pytest.fixture(scope="module")
def face(shared_dir, celeba_rows) -> np.ndarray:
    return cv2.resize(celeba_image(shared_dir, sample_rows(celeba_rows, 1)[0]), (200, 200))


@pytest.fixture(scope="module")
def worker() -> BagWorker:
    return BagWorker(AnonymizerConfig(), SETTINGS)


def _job(tmp_path: Path, face: np.ndarray) -> tuple[BagJob, np.ndarray]:
    canvas = write_face_bag(tmp_path / "in" / "run", face)
    (tmp_path / "out").mkdir()
    return BagJob(tmp_path / "in" / "run", tmp_path / "out" / "run"), canvas


def _timed(worker: BagWorker, job: BagJob):
    before = time.perf_counter()
    outcome = worker.process(job)
    return outcome, time.perf_counter() - before


def test_an_attempt_reports_its_worker_time_and_count(worker, face, tmp_path):
    job, canvas = _job(tmp_path, face)
    outcome, wall = _timed(worker, job)
    assert outcome.status == "done", outcome.error
    assert outcome.source == str(job.source) and outcome.target == str(job.target)
    assert outcome.worker == f"{socket.gethostname()}:{os.getpid()}"
    assert outcome.attempts == 1
    # Its own wall time in seconds, rounded to hundredths (a float, never a whole number).
    assert isinstance(outcome.seconds, float) and outcome.seconds == round(outcome.seconds, 2)
    assert wall - 0.5 <= outcome.seconds <= wall + 0.01
    assert outcome.messages == 3 and outcome.faces == 3 and outcome.error == ""
    assert unchanged_share(canvas, first_frame(job.target), FACE) < 0.05


def test_a_failed_attempt_names_its_bag_output_worker_and_time(worker, tmp_path):
    (tmp_path / "in" / "run").mkdir(parents=True)
    (tmp_path / "in" / "run" / "metadata.yaml").write_text("not: a bag\n")
    (tmp_path / "out").mkdir()
    job = BagJob(tmp_path / "in" / "run", tmp_path / "out" / "run")
    outcome, wall = _timed(worker, job)
    assert outcome.status == "failed" and outcome.error
    assert outcome.source == str(job.source) and outcome.target == str(job.target)
    assert outcome.worker == f"{socket.gethostname()}:{os.getpid()}"
    assert outcome.attempts == 1
    assert isinstance(outcome.seconds, float) and 0 <= outcome.seconds <= wall + 0.01
    assert not job.target.exists()


def test_a_retry_keeps_the_output_that_the_dead_attempt_finished(worker, face, tmp_path):
    job, _ = _job(tmp_path, face)
    first = worker.process(job)
    assert first.status == "done" and is_finished(job, worker.digest)
    inode = job.target.stat().st_ino
    files = {p.name: p.stat().st_mtime_ns for p in job.target.iterdir()}
    # The worker died after finishing: Ray runs the task again on a restarted worker.
    again = worker.process(job)
    assert again.status == "done" and again.attempts == 2
    assert again.messages == first.messages and again.faces == first.faces
    assert job.target.stat().st_ino == inode  # not replaced
    assert {p.name: p.stat().st_mtime_ns for p in job.target.iterdir()} == files


def test_a_retry_after_an_attempt_that_left_nothing_anonymizes_the_bag(worker, face, tmp_path):
    job, canvas = _job(tmp_path, face)
    job.target.with_name(".run.attempts").write_text("1")  # the first attempt died early
    outcome = worker.process(job)
    assert outcome.status == "done" and outcome.attempts == 2, outcome.error
    assert is_finished(job, worker.digest)
    assert unchanged_share(canvas, first_frame(job.target), FACE) < 0.05


def test_a_retry_replaces_an_output_that_the_dead_attempt_did_not_finish(worker, face, tmp_path):
    job, canvas = _job(tmp_path, face)
    worker.process(job)
    report = json.loads(job.report_path.read_text())
    report["complete"] = False  # it died between renaming the output and its report
    job.report_path.write_text(json.dumps(report))
    inode = job.target.stat().st_ino
    outcome = worker.process(job)
    assert outcome.status == "done" and outcome.attempts == 2, outcome.error
    assert job.target.stat().st_ino != inode
    assert is_finished(job, worker.digest)
    assert unchanged_share(canvas, first_frame(job.target), FACE) < 0.05


def test_a_retry_redoes_a_finished_output_made_with_other_settings(face, tmp_path):
    job, _ = _job(tmp_path, face)
    other = BagWorker(AnonymizerConfig(method="pixelate"), SETTINGS)
    assert other.process(job).status == "done"
    worker = BagWorker(AnonymizerConfig(), SETTINGS)
    assert worker.digest != other.digest == settings_digest(other.config, SETTINGS)
    inode = job.target.stat().st_ino
    outcome = worker.process(job)  # attempt 2 of this bag, with the default settings
    assert outcome.status == "done" and outcome.attempts == 2
    assert job.target.stat().st_ino != inode
    assert is_finished(job, worker.digest) and not is_finished(job, other.digest)


def test_a_first_attempt_never_replaces_a_folder_already_at_the_output(worker, face, tmp_path):
    # The driver sends a bag whose output exists only with --overwrite; a worker on its first
    # attempt must not take such a folder for the leftover of a dead attempt.
    job, _ = _job(tmp_path, face)
    job.target.mkdir()
    (job.target / "notes.txt").write_text("mine")
    outcome = worker.process(job)
    assert outcome.status == "failed" and outcome.attempts == 1
    assert "exists" in outcome.error
    assert (job.target / "notes.txt").read_text() == "mine"


def test_a_first_attempt_never_replaces_another_run_s_output(worker, face, tmp_path):
    # An anonymized bag made with other settings, as a user's earlier run leaves it: without
    # --overwrite the fleet reports it; a worker must not take it for its own dead attempt's.
    job, _ = _job(tmp_path, face)
    assert BagWorker(AnonymizerConfig(method="pixelate"), SETTINGS).process(job).status == "done"
    job.target.with_name(".run.attempts").unlink()  # the fleet starts every bag afresh
    inode, files = job.target.stat().st_ino, sorted(p.name for p in job.target.iterdir())
    outcome = worker.process(job)
    assert outcome.status == "failed" and outcome.attempts == 1 and "exists" in outcome.error
    assert job.target.stat().st_ino == inode
    assert sorted(p.name for p in job.target.iterdir()) == files


def test_a_worker_builds_its_pipeline_once_for_all_its_bags(face, tmp_path, monkeypatch):
    import ciagan_core.pipeline as pipeline
    import ciagan_ros.bag_tool as bag_tool

    built = []
    for module in (pipeline, bag_tool):
        original = module.create_detector

        def counting(*args, _original=original, **kwargs):
            built.append(1)
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, "create_detector", counting)
    worker = BagWorker(AnonymizerConfig(), SETTINGS)
    assert len(built) == 1
    for name in ("a", "b"):
        job, _ = _job(tmp_path / name, face)
        assert worker.process(job).status == "done"
    assert len(built) == 1  # the detector (and landmarker, engine) loaded once
