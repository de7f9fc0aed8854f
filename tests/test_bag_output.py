"""``ciagan bag`` never replaces an OUT it did not check: one that appears while it runs (a user's
folder, another run's bag) is left as it is, and the run that finds it fails with nothing
written; nor a report path (``OUT.report.json``) that is the user's, or the input; nor, with
--overwrite, a folder that is more than a rosbag2 bag. Nor does it lose the messages of storage
files that metadata.yaml does not list. Real faces, small bags."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import celeba_image, hog_box

from ciagan_core.cli import main
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


def _bag(path, frames, storage: str = "sqlite3") -> None:
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
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


# -- The report path, checked with OUT at the start -----------------------------------------


def _tree(folder) -> dict:
    """Every file below ``folder`` with its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_file_of_the_users_at_the_report_path_is_never_replaced(frames, tmp_path):
    source = tmp_path / "rec"
    _bag(source, frames)
    notes = tmp_path / "notes.report.json"
    notes.write_text("my thesis, 3 years of work")
    for overwrite, refusal in ((False, "exists; pass --overwrite"), (True, "not a report of")):
        with pytest.raises(BagError, match=refusal):
            anonymize_bag(
                source, tmp_path / "notes", AnonymizerConfig(), BagSettings(overwrite=overwrite)
            )
    assert notes.read_text() == "my thesis, 3 years of work"
    assert _names(tmp_path) == ["notes.report.json", "rec"]


def test_a_report_of_this_tool_is_replaced_only_with_overwrite(frames, tmp_path):
    """The report of an earlier run whose bag was deleted since."""
    source, target = tmp_path / "rec", tmp_path / "out"
    _bag(source, frames)
    first = anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    shutil.rmtree(target)
    with pytest.raises(BagError, match=r"out\.report\.json exists; pass --overwrite"):
        anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    assert json.loads((tmp_path / "out.report.json").read_text()) == json.loads(json.dumps(first))
    second = anonymize_bag(source, target, AnonymizerConfig(), BagSettings(overwrite=True))
    assert json.loads((tmp_path / "out.report.json").read_text()) == json.loads(json.dumps(second))
    assert _names(tmp_path) == ["out", "out.report.json", "rec"]


@pytest.mark.parametrize("layout", ["is", "holds"])
def test_a_report_path_that_is_or_holds_the_input_is_refused_first(
    frames, tmp_path, capsys, layout
):
    """An input bag folder named ``x.report.json`` (or inside one) and OUT ``x``: one line, and
    nothing written (not a bag published, then a crash writing its report)."""
    folder = tmp_path / "x.report.json"
    source = folder if layout == "is" else folder / "rec"
    if layout == "holds":
        folder.mkdir()
    _bag(source, frames)
    before = _tree(tmp_path)
    assert main(["bag", str(source), str(tmp_path / "x"), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "x.report.json" in err and "input" in err, err
    assert _names(tmp_path) == ["x.report.json"] and _tree(tmp_path) == before


# -- --overwrite replaces only a folder that is nothing but a rosbag2 bag ----------------------


def _not_only_a_bag(folder, frames, case: str) -> None:
    if case == "dataset":  # a metadata.yaml of its own, not rosbag2's
        (folder / "raw").mkdir(parents=True)
        (folder / "metadata.yaml").write_text("name: my dataset\nlicense: cc-by\n")
        (folder / "labels.csv").write_text("3 years of labels\n")
        (folder / "raw" / "scan001.bin").write_bytes(b"data")
    else:  # a real bag, with the user's files beside it
        _bag(folder, frames)
        if case == "bag_and_notes":
            (folder / "notes.txt").write_text("what this recording shows")
        else:
            (folder / "calibration").mkdir()
            (folder / "calibration" / "camera.yaml").write_text("fx: 500\n")


@pytest.mark.parametrize("case", ["dataset", "bag_and_notes", "bag_and_a_folder"])
def test_overwrite_replaces_only_a_folder_that_is_nothing_but_a_bag(
    frames, tmp_path, capsys, case
):
    source, target = tmp_path / "rec", tmp_path / "mydataset"
    _bag(source, frames)
    _not_only_a_bag(target, frames, case)
    before = _tree(target)
    assert main(["bag", str(source), str(target), "--overwrite", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not replaced" in err, err
    assert _tree(target) == before
    assert _names(tmp_path) == ["mydataset", "rec"]


def test_fleet_overwrite_replaces_only_a_folder_that_is_nothing_but_a_bag(frames, tmp_path):
    from ciagan_ros.fleet import FleetSettings, run_fleet

    source, outdir = tmp_path / "in" / "rec", tmp_path / "out"
    source.parent.mkdir()
    _bag(source, frames)
    _not_only_a_bag(outdir / "rec", frames, "dataset")
    before = _tree(outdir / "rec")
    report = run_fleet(
        [source], outdir, AnonymizerConfig(), BagSettings(), FleetSettings(overwrite=True)
    )
    assert report["failed"] == 1 and "not replaced" in report["results"][0]["error"]
    assert _tree(outdir / "rec") == before


# -- Storage files metadata.yaml does not list ----------------------------------------------


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_storage_files_that_metadata_yaml_does_not_list_stop_the_run(frames, tmp_path, storage):
    """A split recording whose metadata.yaml lists its first file only (rosbag2 killed before
    it rewrote it): the other file's messages would be lost."""
    source, other = tmp_path / "rec", tmp_path / "part"
    _bag(source, frames, storage)
    _bag(other, frames, storage)
    [data] = [p for p in other.iterdir() if p.suffix in (".db3", ".mcap")]
    data.rename(source / f"rec_1{data.suffix}")
    shutil.rmtree(other)
    with pytest.raises(BagError, match=rf"\['rec_1\{data.suffix}'\].*ros2 bag reindex") as error:
        anonymize_bag(source, tmp_path / "out", AnonymizerConfig(), BagSettings())
    assert "\n" not in str(error.value)
    assert _names(tmp_path) == ["rec"]


def test_an_interruption_between_the_bag_and_its_report_still_puts_the_report(
    frames, tmp_path, monkeypatch
):
    # Ctrl-C in the instant after the bag's rename: the report it was about to get is put in
    # place on the way out (it would otherwise go with the temporary folder, and the bag
    # could never be resumed).
    source, target = tmp_path / "in", tmp_path / "out"
    _bag(source, frames)
    original = bag_tool._rename_file_noreplace
    calls = []

    def interrupted_once(src, dst):
        calls.append(dst)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return original(src, dst)

    monkeypatch.setattr(bag_tool, "_rename_file_noreplace", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    report = json.loads(bag_tool.report_path(target).read_text())
    assert report["complete"] is True
    assert report["output_fingerprint"] == output_fingerprint(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out", "out.report.json"]


def test_an_output_path_in_a_symlink_loop_is_one_clear_error(frames, tmp_path):
    source = tmp_path / "in"
    _bag(source, frames)
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(BagError, match="cannot resolve the output's path"):
        anonymize_bag(source, tmp_path / "loop" / "out", AnonymizerConfig(), BagSettings())


def test_the_output_fingerprint_names_each_file_s_content(frames, tmp_path):
    import hashlib

    _bag(tmp_path / "bag", frames)
    fingerprint = output_fingerprint(tmp_path / "bag")
    for name, size, digest in fingerprint:
        data = (tmp_path / "bag" / name).read_bytes()
        assert (size, digest) == (len(data), hashlib.sha256(data).hexdigest())
    # Hashed only when names and sizes match what was recorded.
    assert output_fingerprint(tmp_path / "bag", expected=[["other", 1, "x"]]) == [
        e[:2] for e in fingerprint
    ]


def test_a_full_output_disk_is_named_as_such_not_blamed_on_the_input(
    frames, tmp_path, monkeypatch
):
    import sqlite3

    source, target = tmp_path / "in", tmp_path / "out"
    _bag(source, frames)

    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(bag_tool, "_write_all", full)
    with pytest.raises(BagError) as refused:
        anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    assert "no space left on the output's disk" in str(refused.value)
    assert "cannot read" not in str(refused.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


@pytest.mark.parametrize("where", ["closing", "writing and closing"])
def test_a_disk_that_fills_as_the_bag_is_closed_is_named_as_such(
    frames, tmp_path, monkeypatch, where
):
    # sqlite3 commits and mcap writes its last chunk when the writer closes: a full disk
    # shows there, after the loop (and again there after the loop failed).
    import sqlite3

    from rosbags.rosbag2 import Writer

    source, target = tmp_path / "in", tmp_path / "out"
    _bag(source, frames)
    original_close = Writer.close

    def close_full(self):
        original_close(self)
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Writer, "close", close_full)
    if where == "writing and closing":

        def write_full(*args, **kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(bag_tool, "_write_all", write_full)
    with pytest.raises(BagError, match="no space left on the output's disk"):
        anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
