"""``ciagan bag`` never replaces an OUT it did not check: one that appears while it runs (a user's
folder, another run's bag) is left as it is, and the run that finds it fails with nothing
written. Real faces, small bags."""

from __future__ import annotations

import json

import pytest
from conftest import celeba_image, hog_box

from ciagan_core.pipeline import AnonymizerConfig
from ciagan_ros import bag_tool
from ciagan_ros.bag_tool import BagError, BagSettings, anonymize_bag, output_fingerprint

rosbags = pytest.importorskip("rosbags")
from rosbag_messages import NS, STORE, image_message, moving_face  # noqa: E402
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402


@pytest.fixture(scope="module")
def frames(shared_dir, celeba_rows):
    row = celeba_rows[0]
    return moving_face(celeba_image(shared_dir, row), hog_box(row), 2)[0]


@pytest.fixture(params=["renameat2", "portable"])
def rename(request, monkeypatch):
    """The final rename as Linux does it (renameat2 RENAME_NOREPLACE), and without it."""
    if request.param == "portable":
        monkeypatch.setattr(bag_tool, "_RENAMEAT2", None, raising=False)
    elif getattr(bag_tool, "_RENAMEAT2", True) is None:
        pytest.skip("no renameat2 in this C library")
    return request.param


def _bag(path, frames) -> None:
    with Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        cam = writer.add_connection("/cam", "sensor_msgs/msg/Image", typestore=STORE)
        for i, frame in enumerate(frames):
            stamp = 1_700_000_000 * NS + i
            msg = image_message(frame, "bgr8", stamp)
            writer.write(cam, stamp, STORE.serialize_cdr(msg, cam.msgtype))


def _once(action):
    """A progress callback that runs ``action`` once, in the writing pass."""
    done_already = []

    def progress(done: int, total: int) -> None:
        if done == total and not done_already:
            done_already.append(True)
            action()

    return progress


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("contents", ["thesis", "empty"])
def test_an_out_that_appears_while_the_bag_runs_is_never_replaced(
    frames, tmp_path, rename, contents
):
    source, target = tmp_path / "in", tmp_path / "out"
    _bag(source, frames)

    def someone_writes_out() -> None:
        target.mkdir()
        if contents == "thesis":
            (target / "thesis.txt").write_text("four years of work")

    progress = _once(someone_writes_out)
    with pytest.raises(BagError, match="appeared") as error:
        anonymize_bag(source, target, AnonymizerConfig(), BagSettings(), progress)
    assert "\n" not in str(error.value)
    assert _names(tmp_path) == ["in", "out"]  # no temporary, no report
    assert _names(target) == (["thesis.txt"] if contents == "thesis" else [])
    if contents == "thesis":
        assert (target / "thesis.txt").read_text() == "four years of work"


def test_of_two_runs_to_one_out_the_second_to_finish_fails_and_keeps_the_first(
    frames, tmp_path, rename
):
    source, target = tmp_path / "in", tmp_path / "out"
    _bag(source, frames)
    other = {}

    def another_run_finishes_first() -> None:
        other["report"] = anonymize_bag(source, target, AnonymizerConfig(), BagSettings())

    progress = _once(another_run_finishes_first)
    with pytest.raises(BagError, match="appeared"):
        anonymize_bag(source, target, AnonymizerConfig(), BagSettings(), progress)
    assert _names(tmp_path) == ["in", "out", "out.report.json"]
    report = json.loads((tmp_path / "out.report.json").read_text())
    assert report == json.loads(json.dumps(other["report"]))  # the first run's, untouched
    assert report["output_fingerprint"] == output_fingerprint(target)


def test_overwrite_refuses_an_out_replaced_while_it_ran(frames, tmp_path, rename):
    source, target = tmp_path / "in", tmp_path / "out"
    _bag(source, frames)
    anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    old_bag = output_fingerprint(target)

    def user_swaps_out() -> None:
        target.rename(tmp_path / "old_bag")
        target.mkdir()
        (target / "thesis.txt").write_text("four years of work")

    progress = _once(user_swaps_out)
    with pytest.raises(BagError, match="changed"):
        anonymize_bag(source, target, AnonymizerConfig(), BagSettings(overwrite=True), progress)
    assert (target / "thesis.txt").read_text() == "four years of work"
    assert output_fingerprint(tmp_path / "old_bag") == old_bag
    assert _names(tmp_path) == ["in", "old_bag", "out", "out.report.json"]


def test_of_two_overwriting_runs_the_second_to_finish_fails(frames, tmp_path, rename):
    source, target = tmp_path / "in", tmp_path / "out"
    _bag(source, frames)
    anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    other = {}
    settings = BagSettings(overwrite=True)

    def another_run_replaces_it_first() -> None:
        other["report"] = anonymize_bag(source, target, AnonymizerConfig(), settings)

    progress = _once(another_run_replaces_it_first)
    with pytest.raises(BagError, match="changed"):
        anonymize_bag(source, target, AnonymizerConfig(), settings, progress)
    report = json.loads((tmp_path / "out.report.json").read_text())
    assert report == json.loads(json.dumps(other["report"]))
    assert report["output_fingerprint"] == output_fingerprint(target)
    assert _names(tmp_path) == ["in", "out", "out.report.json"]


def test_overwrite_still_replaces_the_bag_it_checked(frames, tmp_path, rename):
    source, target = tmp_path / "in", tmp_path / "out"
    _bag(source, frames)
    first = anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    second = anonymize_bag(source, target, AnonymizerConfig(), BagSettings(overwrite=True))
    assert first["complete"] and second["complete"]
    saved = json.loads((tmp_path / "out.report.json").read_text())
    assert saved == json.loads(json.dumps(second))
    assert _names(tmp_path) == ["in", "out", "out.report.json"]
