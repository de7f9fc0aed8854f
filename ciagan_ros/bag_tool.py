"""``ciagan bag IN OUT``: anonymize every image topic of a rosbag2 recording, without ROS.

Reads sqlite3 and mcap rosbag2 folders with ``rosbags``, using the message definitions stored in
the bag, and a ROS 2 distro's standard types for those it does not store (ROS 2 Humble stores
none; Foxglove's image types are shipped here). Image topics are sensor_msgs' and
foxglove_msgs' Image/RawImage and CompressedImage. Two passes: the first detects faces in every
frame of the image topics, so that offline tracking (``track_recovery``) can cover faces the
detector missed from both sides, and scans the bytes of every other topic for encoded images;
the second anonymizes (generator calls batched across time) and writes. Every other message is
copied byte for byte with its connection (type, definition, serialization format, offered QoS)
and timestamp. Fail closed: a topic whose type (its parsed definition, at any depth) holds
images or video, has a byte array that can hold pixels, is shaped like an image (width, height
and an array of numbers), or is defined nowhere (it cannot be checked), and a topic whose
messages hold a JPEG or PNG (raw, base64 or hex; whole, or its start), a colored or organized
intensity point cloud, an array laid out like an image or a marker with a color per point,
stop the run unless kept raw on purpose.
The output is written to a temporary folder beside OUT and renamed only when complete, never
onto anything this run did not check at the start; the input is never modified. A frame whose
anonymization fails is written pixelated whole, never raw.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from ciagan_core import __version__
from ciagan_core.atomic_write import write_bytes_atomic
from ciagan_core.detection import create_detector
from ciagan_core.errors import CiaganError, InputError
from ciagan_core.faces import FaceBox, box_iou
from ciagan_core.frames import to_working
from ciagan_core.model_file import file_sha256
from ciagan_core.pipeline import Anonymizer, AnonymizerConfig, anonymize_together, detect_faces
from ciagan_ros.frame_handler import pixelate_whole
from ciagan_ros.image_codec import (
    compressed_to_frame,
    frame_to_compressed_data,
    frame_to_image_data,
    image_to_frame,
)
from ciagan_ros.track_recovery import recover_faces

log = logging.getLogger(__name__)

#: Written into each temporary output folder: the host and process writing it.
OWNER_FILE = ".owner.json"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
#: Foxglove's twins of the two: the same pixels under other field names (``timestamp`` and
#: ``frame_id`` for the header; a RawImage has no ``is_bigendian``: little-endian).
FOXGLOVE_RAW = "foxglove_msgs/msg/RawImage"
FOXGLOVE_COMPRESSED = "foxglove_msgs/msg/CompressedImage"
FOXGLOVE_VIDEO = "foxglove_msgs/msg/CompressedVideo"
IMAGE_TYPES = (IMAGE, COMPRESSED, FOXGLOVE_RAW, FOXGLOVE_COMPRESSED)
#: Foxglove's published ROS 2 definitions of its image and video types (github.com/foxglove/
#: schemas, ros_foxglove_msgs/ros2/*.msg, the layout since foxglove_msgs 2.0; comments left
#: out). No distro has them: they read a bag that stores no definitions (ROS 2 Humble's sqlite3
#: bags, an mcap schema Humble left empty), so that its Foxglove image topics are anonymized
#: (and video ones refused) instead of judged as types nothing defines.
FOXGLOVE_DEFINITIONS = {
    FOXGLOVE_COMPRESSED: (
        "builtin_interfaces/Time timestamp\nstring frame_id\nuint8[] data\nstring format\n"
    ),
    FOXGLOVE_RAW: (
        "builtin_interfaces/Time timestamp\nstring frame_id\nuint32 width\nuint32 height\n"
        "string encoding\nuint32 step\nuint8[] data\n"
    ),
    FOXGLOVE_VIDEO: (
        "builtin_interfaces/Time timestamp\nstring frame_id\nuint8[] data\nstring format\n"
    ),
}
COMPRESSED_TYPES = (COMPRESSED, FOXGLOVE_COMPRESSED)
#: The fields the codec reads and writes, per image type.
IMAGE_FIELDS = {
    IMAGE: ("height", "width", "encoding", "is_bigendian", "step", "data"),
    COMPRESSED: ("format", "data"),
    FOXGLOVE_RAW: ("height", "width", "encoding", "step", "data"),
    FOXGLOVE_COMPRESSED: ("format", "data"),
}
STORAGES = ("sqlite3", "mcap")
#: ROS 2 distros whose standard message types read a bag that stores no definitions.
DISTROS = (
    "dashing",
    "eloquent",
    "foxy",
    "galactic",
    "humble",
    "iron",
    "jazzy",
    "kilted",
    "lyrical",
)


class BagError(CiaganError):
    """A bag that cannot be read, or a request the tool refuses (no output is written)."""


@dataclass(frozen=True)
class BagSettings:
    """How ``ciagan bag`` treats a recording (the pipeline's settings are its own config)."""

    #: Image topics copied raw on purpose (listed in the report as kept).
    keep_topics: tuple[str, ...] = ()
    #: Output storage: "sqlite3", "mcap", or None for the input's own.
    storage: str | None = None
    #: Frames per generator call.
    batch: int = 8
    #: Longest run of frames a tracked face may be missed and still be covered.
    max_gap: int = 10
    jpeg_quality: int = 95
    overwrite: bool = False
    #: A --keep-topic the bag lacks is an error (a typo must not pass); ``ciagan fleet``
    #: turns this off, since one list serves many recordings.
    kept_topics_must_exist: bool = True
    #: Whose standard message types read the types a bag stores no definition of (ROS 2
    #: Humble stores none), when the bag does not name its distro itself.
    distro: str = "humble"


@dataclass
class TopicReport:
    """What happened on one image topic."""

    msgtype: str
    messages: int = 0
    frames_with_faces: int = 0
    #: Faces covered in the written frames, each once per frame (detected, or recovered by
    #: tracking; several boxes on one face, e.g. two tracks' around a zoom, count once).
    faces: int = 0
    #: Of those, faces covered by the fallback method instead of the generator.
    fallbacks: int = 0
    #: Written frames where tracking alone covered a face (one the detector missed there).
    recovered_frames: int = 0
    #: Frames written pixelated whole because anonymizing them failed.
    failed_frames: int = 0
    #: Frames that could not be decoded: not written at all (never raw).
    dropped_frames: int = 0
    kept_raw: bool = False


@dataclass
class _Progress:
    """Messages handled so far out of ``total`` (both passes), reported to ``report``."""

    report: Callable[[int, int], None]
    total: int
    done: int = 0

    def step(self) -> None:
        self.done += 1
        self.report(self.done, self.total)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _yaml_problem(exc: Exception) -> str:
    """A YAML parser's error in one line: what, and where."""
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if problem and mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return _one_line(exc)


def read_metadata(path: Path) -> dict[str, Any]:
    """The ``rosbag2_bagfile_information`` of a rosbag2 folder; BagError (one line, naming the
    file) when it is missing or malformed."""
    import yaml

    file = Path(path) / "metadata.yaml"
    try:
        text = file.read_text()
    except FileNotFoundError:
        raise BagError(f"{path}: not a rosbag2 folder (no metadata.yaml)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BagError(f"{file}: cannot read it ({_one_line(exc)})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BagError(f"{file}: not valid YAML ({_yaml_problem(exc)})") from None
    info = data.get("rosbag2_bagfile_information") if isinstance(data, dict) else None
    if not isinstance(info, dict) or not isinstance(info.get("storage_identifier"), str):
        raise BagError(
            f"{file}: not rosbag2 metadata (no rosbag2_bagfile_information with a "
            "storage_identifier)"
        )
    return info


def _distro(source: Path, info: dict[str, Any], fallback: str) -> str:
    """The distro whose standard types read what the bag does not define: the one the bag
    names (metadata.yaml's ``ros_distro``, since Iron; the sqlite3 schema table, since Humble),
    else ``fallback``."""
    named = info.get("ros_distro")
    if named not in DISTROS and info.get("storage_identifier") == "sqlite3":
        import sqlite3

        for name in info.get("relative_file_paths") or []:
            file = source / PurePath(str(name)).name
            if file.suffix != ".db3" or not file.is_file():
                continue
            try:
                with contextlib.closing(
                    sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
                ) as db:
                    named = db.execute("SELECT ros_distro FROM schema").fetchone()[0]
            except (sqlite3.Error, TypeError, IndexError):
                named = None
            break
    return named if named in DISTROS else fallback


#: Modules whose exceptions mean a damaged bag.
_READER_MODULES = ("rosbags", "sqlite3", "apsw", "zstandard", "lz4", "mcap", "ruamel", "yaml")


def _disk_full(exc: BaseException) -> BagError | None:
    """The error to tell for an output disk that filled (sqlite3's or the OS's), else None."""
    if "disk is full" in str(exc) or getattr(exc, "errno", None) == errno.ENOSPC:
        return BagError(
            f"cannot write the anonymized bag: no space left on the output's disk "
            f"({_one_line(exc)}); nothing written"
        )
    return None


def _reading(step: Callable, source: Path) -> Callable:
    """``step`` with the errors of a damaged bag (rosbags' own) turned into one BagError."""

    def run(*args):
        try:
            return step(*args)
        except Exception as exc:
            # The writer's storage errors pass through here too: a full disk is the output's.
            if (full := _disk_full(exc)) is not None:
                raise full from None
            if type(exc).__module__.split(".")[0] in _READER_MODULES:
                raise BagError(
                    f"{source}: cannot read the bag (truncated?): {_one_line(exc)}"
                ) from None
            raise

    return run


def _frame_of(msg: Any, msgtype: str) -> np.ndarray:
    """The pipeline frame of an image message of any of ``IMAGE_TYPES``."""
    if msgtype in COMPRESSED_TYPES:
        return compressed_to_frame(msg)
    return image_to_frame(msg)  # the codec reads Foxglove's RawImage fields too


def _encode(msg: Any, msgtype: str, frame: np.ndarray, original: np.ndarray, quality: int):
    """``msg`` with ``frame`` as its pixels; every other field (header or timestamp and
    frame_id, size, encoding, format, row padding) as it was."""
    if msgtype in COMPRESSED_TYPES:
        return replace(msg, data=frame_to_compressed_data(frame, msg.format, quality))
    return replace(msg, data=frame_to_image_data(frame, msg, original))


def process_context() -> dict[str, str | None]:
    """This process's kernel instance (``boot_id``) and PID namespace: an owner file records
    them beside host and pid, so that a writer in a container sharing the host name is never
    taken for a dead one (``ciagan fleet``'s clean-up)."""

    def read(what: Callable[[], str]) -> str | None:
        try:
            return what().strip()
        except OSError:
            return None

    return {
        "boot_id": read(lambda: Path("/proc/sys/kernel/random/boot_id").read_text()),
        "pid_namespace": read(lambda: os.readlink("/proc/self/ns/pid")),
    }


def input_fingerprint(source: Path) -> dict[str, Any]:
    """What identifies a recording cheaply: every file's name, size and modification time, and
    the sha256 of metadata.yaml (a re-recorded or edited bag gets a new one)."""
    files = sorted(p for p in Path(source).rglob("*") if p.is_file())
    listing = [[str(p.relative_to(source)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    metadata = Path(source) / "metadata.yaml"
    return {
        "files": listing,
        "metadata_sha256": file_sha256(metadata) if metadata.is_file() else None,
    }


def output_fingerprint(folder: Path, expected: list | None = None) -> list:
    """The files of a written bag: names, sizes and the sha256 of their bytes, to notice one
    deleted, cut, rewritten or replaced later (a raw recording copied over an anonymized one
    has the same names and sizes). A symlink is listed as one: it is never a file this tool
    wrote. With ``expected`` (a fingerprint recorded earlier), files are hashed only when the
    names and sizes match it (a cheap first check); otherwise sizes stand in for the hashes."""
    entries = []
    for p in sorted(Path(folder).rglob("*")):
        if p.is_symlink():
            entries.append([str(p.relative_to(folder)), "symlink"])
        elif p.is_file():
            entries.append([str(p.relative_to(folder)), p.stat().st_size, p])
    if expected is not None:
        shallow = [e[:2] for e in entries]
        if shallow != [list(e[:2]) if isinstance(e, list) else e for e in expected]:
            return shallow
    return [e if e[1] == "symlink" else [e[0], e[1], file_sha256(e[2])] for e in entries]


def adopt_report(folder: Path, target: Path) -> bool:
    """A writer killed between renaming its bag to ``target`` and its report to
    ``target.report.json`` left the report in its temporary ``folder``: put it in place if it
    is that bag's report (complete, naming ``target``, and recording the very bytes there) and
    nothing is at the report's path. Returns whether it did."""
    pending, home = Path(folder) / "report.json", report_path(target)
    if not pending.is_file() or pending.is_symlink() or os.path.lexists(home):
        return False
    if target.is_symlink() or not target.is_dir():
        return False
    try:
        report = json.loads(pending.read_text())
        named = Path(report["output"]).resolve() == target.resolve()
    except (OSError, ValueError, TypeError, KeyError, RuntimeError):
        return False
    recorded = report.get("output_fingerprint")
    if not named or report.get("complete") is not True or not isinstance(recorded, list):
        return False
    if output_fingerprint(target, expected=recorded) != recorded:
        return False
    try:
        _rename_file_noreplace(pending, home)
    except OSError:
        return False
    return True


def remove_temporary(folder: Path) -> bool:
    """Remove a temporary output folder, its owner file last and only once nothing else is
    left: a removal cut short (Ctrl-C) or failing (a file that cannot be removed) leaves a
    folder that still names its writer, so a later run can tell that writer is gone and try
    again (a folder without an owner file is never removed: it may be a user's). Returns
    whether the folder is gone."""
    folder = Path(folder)
    with contextlib.suppress(OSError):
        for child in folder.iterdir():
            if child.name == OWNER_FILE:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
        if [child.name for child in folder.iterdir()] == [OWNER_FILE]:
            (folder / OWNER_FILE).unlink()
            folder.rmdir()
    return not os.path.lexists(folder)


def model_sha256(config: AnonymizerConfig) -> str | None:
    """sha256 of the model file's bytes (None without a model)."""
    return file_sha256(Path(config.model)) if config.model else None


def settings_digest(
    config: AnonymizerConfig, settings: BagSettings, model_digest: str | None = None
) -> str:
    """sha256 of every setting that changes the output (not --overwrite, nor the order or
    repetition of --keep-topic). ``model_digest``: the model's sha256 when already known (it
    is hashed otherwise; a model file is tens of MB)."""
    import hashlib

    bag = {
        **asdict(settings),
        "overwrite": None,
        "kept_topics_must_exist": None,
        "keep_topics": sorted(set(settings.keep_topics)),
    }
    shaping = {
        "bag": bag,
        "pipeline": asdict(config),
        "model_sha256": model_digest if model_digest is not None else model_sha256(config),
        "version": __version__,
    }
    return hashlib.sha256(json.dumps(shaping, sort_keys=True, default=str).encode()).hexdigest()


def anonymize_bag(
    source: Path,
    target: Path,
    config: AnonymizerConfig,
    settings: BagSettings,
    progress: Callable[[int, int], None] | None = None,
    anonymizer: Anonymizer | None = None,
) -> dict:
    """Anonymize the bag at ``source`` into ``target``; returns the report (also written to
    ``<target>.report.json``). Raises BagError (or InputError) with nothing written.

    ``anonymizer``, when given, lends its detector, landmarker and engine (built for
    ``config``), so that many bags share one loaded pipeline (``ciagan fleet``)."""
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    source, target = Path(source), Path(target)
    progress = progress or (lambda done, total: None)
    if not source.is_dir():
        raise BagError(f"{source}: no such rosbag2 folder")
    planned = _check_target(source, target, settings.overwrite)
    info = read_metadata(source)
    _check_files_listed(source, info)
    storage = settings.storage or info["storage_identifier"]
    if storage not in STORAGES:
        raise BagError(f"unknown storage {storage!r}; choose one of {', '.join(STORAGES)}")
    if settings.distro not in DISTROS:
        raise BagError(f"unknown distro {settings.distro!r}; choose one of {', '.join(DISTROS)}")
    config.validate()
    start = time.perf_counter()
    fingerprint = input_fingerprint(source)  # before reading: a change while reading shows
    config = replace(config, hold_frames=0)  # offline recovery does better, both ways
    distro = _distro(source, info, settings.distro)
    standard = get_typestore(Stores(f"ros2_{distro}"))
    try:
        reader = AnyReader([source], default_typestore=standard)
        reader.open()
    except KeyError as exc:  # rosbags: a stored definition names a type it does not define
        raise BagError(
            f"{source}: cannot read the bag: its stored definitions use {exc.args[0]} without "
            "defining it, so its topics cannot be checked for images"
        ) from None
    except Exception as exc:
        raise BagError(f"{source}: cannot read the bag ({_one_line(exc)})") from None
    try:
        _check_storage_listed(source, reader)
        completed = _complete_types(reader, standard)
        plan = _classify(reader, settings, standard, distro)
        unknown = set(settings.keep_topics) - {c.topic for c in reader.connections}
        if unknown and settings.kept_topics_must_exist:
            raise BagError(f"--keep-topic names no topic of the bag: {sorted(unknown)}")
        if plan.problems:  # what the tool cannot anonymize: never copied raw unless told to
            raise BagError("; ".join(plan.problems) + f"; {KEEP_WARNING}")
        work = plan.work
        topics = {
            c.topic: TopicReport(c.msgtype, kept_raw=c.topic in settings.keep_topics)
            for c in reader.connections
            if c in plan.images or c in plan.flagged
        }
        counter = _Progress(
            progress,
            sum(c.msgcount for c in reader.connections)
            + sum(c.msgcount for c in work + plan.scanned),
        )
        if anonymizer is not None:
            detector = anonymizer.detector
        else:
            detector = create_detector(config.detector, config.detector_settings)
        detections = _reading(_detect_all, source)(reader, work, plan, detector, counter)
        recovered = {
            topic: recover_faces(frames, settings.max_gap) for topic, frames in detections.items()
        }
        parent = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
        publishing = _Publishing(parent, target, *planned)
        tmp = parent / target.name  # the data file is named after this folder
        try:
            # Who writes here: a later run removes the folder only if this process is gone.
            owner = {"host": socket.gethostname(), "pid": os.getpid(), **process_context()}
            write_bytes_atomic(parent / OWNER_FILE, json.dumps(owner).encode())
            writer = Writer(
                tmp,
                version=9,
                storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3,
            )
            writer.open()
            try:
                copied = _reading(_write_all, source)(
                    reader,
                    writer,
                    work,
                    config,
                    settings,
                    detector,
                    (detections, recovered),
                    topics,
                    counter,
                    anonymizer,
                )
            except BaseException:
                with contextlib.suppress(Exception):  # the error that stopped the writing is
                    writer.close()  # the one to tell (closing a full disk's bag fails again)
                raise
            try:
                writer.close()  # writes the last chunk, commits the sqlite3 transaction
            except Exception as exc:
                if (full := _disk_full(exc)) is not None:
                    raise full from None
                raise
            if input_fingerprint(source) != fingerprint:
                raise BagError(
                    f"{source}: the recording changed while it was read (still being copied "
                    "or recorded?); nothing written, run again when it is complete"
                )
            model_digest = model_sha256(config)
            kept = set(settings.keep_topics)
            report = {
                "complete": True,
                "tool": f"ciagan bag {__version__}",
                "input": str(source),
                "output": str(target),
                "storage": storage,
                "distro": distro,
                "types_from_distro": completed["distro"],
                "types_from_foxglove": completed["foxglove"],
                "model_sha256": model_digest,
                "input_fingerprint": fingerprint,
                "output_fingerprint": output_fingerprint(tmp),
                "settings_sha256": settings_digest(config, settings, model_digest),
                "detector_precision": getattr(detector, "precision", None),
                "settings": {"bag": asdict(settings), "pipeline": asdict(config)},
                "topics": {t: asdict(r) for t, r in topics.items()},
                "copied_messages": sum(copied.values()),
                # Everything that passed through unanonymized, for an auditor: kept topics and
                # every other topic, with its type and why it was copied as it is.
                "copied_topics": [
                    {
                        "topic": c.topic,
                        "msgtype": c.msgtype,
                        "messages": copied.get(c.id, 0),
                        "kept": c.topic in kept,
                        "why": "kept (--keep-topic)"
                        if c.topic in kept
                        else "no images: checked by type and content",
                    }
                    for c in sorted(reader.connections, key=lambda c: (c.topic, c.msgtype))
                    if c not in work
                ],
                "wall_s": round(time.perf_counter() - start, 2),
            }
            report_file = parent / "report.json"
            report_file.write_bytes((json.dumps(report, indent=2) + "\n").encode())
            publishing.publish(tmp, report_file)
        finally:
            publishing.clean_up()
    finally:
        reader.close()
    return report


def report_path(target: Path) -> Path:
    """Where the report of the bag written to ``target`` goes: ``OUT.report.json``."""
    return target.with_name(target.name + ".report.json")


def _check_target(
    source: Path, target: Path, overwrite: bool
) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    """Refuse an output that would lose anything: the input, a folder holding it, a folder
    that is not a rosbag2 bag and nothing else, a file, a missing or unwritable parent; and a
    report path (``OUT.report.json``) that is, or holds, the input, or exists and is not a
    report of this tool. Returns the identities of the bag and of the report that --overwrite
    may replace (None: that path must still be free at the end)."""
    try:
        src, dst = source.resolve(), target.resolve()
        rep = report_path(target).resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        raise BagError(f"{target}: cannot resolve the output's path ({exc})") from None
    if dst == src or src in dst.parents or dst in src.parents or dst == Path.cwd().resolve():
        raise BagError(f"{target}: the output must be a new folder apart from the input")
    report = report_path(target)
    if rep == src or src in rep.parents or rep in src.parents:
        raise BagError(
            f"{report}: the report of OUT {target} would be or hold the input; choose another OUT"
        )
    planned = planned_report = None
    if os.path.lexists(target):
        if not overwrite:
            raise BagError(f"{target} exists; pass --overwrite to replace it")
        if why := replaceable_bag_problem(target):
            raise BagError(f"{target} exists and {why}: it is not replaced")
        planned = _identity(target)
    if os.path.lexists(report):
        if not overwrite:
            raise BagError(f"{report} exists; pass --overwrite to replace it")
        if not _is_a_report(report):
            raise BagError(
                f"{report} exists and is not a report of ciagan bag: it is not replaced"
            )
        planned_report = _identity(report)
    if not target.parent.is_dir():
        raise BagError(f"{target.parent}: no such folder")
    try:
        with tempfile.TemporaryFile(dir=target.parent):
            pass
    except OSError as exc:
        raise BagError(f"{target.parent}: cannot write there ({exc.strerror})") from None
    return planned, planned_report


#: Beside a sqlite3 storage file, SQLite's own files for it.
_SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


def replaceable_bag_problem(folder: Path) -> str | None:
    """Why --overwrite must not replace ``folder`` (None: it may): only a folder that is a
    rosbag2 bag (its metadata.yaml parses as rosbag2_bagfile_information) and holds nothing
    but that bag's files (metadata.yaml, the storage files it lists, SQLite's journal files
    of those) is replaced; a dataset with a metadata.yaml of its own, or a bag with the
    user's notes beside it, is not. One line, for a message."""
    if folder.is_symlink() or not folder.is_dir():
        return "is not a rosbag2 folder (not a folder)"
    try:
        info = read_metadata(folder)
    except BagError:
        return "is not a rosbag2 folder (no rosbag2 metadata.yaml)"
    listed = {PurePath(str(name)).name for name in info.get("relative_file_paths") or []}
    allowed = {"metadata.yaml"} | listed | {n + s for n in listed for s in _SQLITE_SIDECARS}
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        return f"cannot be listed ({exc.strerror})"
    foreign = [
        e.name
        for e in entries
        if e.name not in allowed or e.is_symlink() or not e.is_file(follow_symlinks=False)
    ]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if foreign[5:] else "")
        return f"holds more than a rosbag2 bag ({shown})"
    return None


def _is_a_report(path: Path) -> bool:
    """Whether ``path`` is a file that ``ciagan bag`` wrote as a report (a JSON object naming
    the tool), not a link or anything of the user's."""
    if path.is_symlink() or not path.is_file() or path.stat().st_size > 64 * 2**20:
        return False
    try:
        report = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and str(report.get("tool", "")).startswith("ciagan bag ")


# -- Publishing: the final rename, never onto what this run did not check -----------------------


def _identity(path: Path) -> tuple[int, ...] | None:
    """What is at ``path`` (not following a link): device, inode, and the times its entries
    last changed (an inode number freed and reused, or a folder edited, is not the same);
    None when nothing is there."""
    try:
        stat = os.lstat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns


def _find_renameat2() -> Any:
    """The C library's renameat2 (Linux, glibc 2.28+), or None."""
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    return function


_RENAMEAT2 = _find_renameat2()
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def _renameat2_noreplace(src: Path, dst: Path) -> bool:
    """Rename with renameat2's RENAME_NOREPLACE: True when done, False when this system or
    file system lacks it; FileExistsError when something is at ``dst``."""
    if _RENAMEAT2 is None:
        return False
    result = _RENAMEAT2(
        _AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE
    )
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(dst))


def _rename_noreplace(src: Path, dst: Path) -> None:
    """Rename the folder ``src`` to ``dst`` only if nothing is there: FileExistsError otherwise,
    for an empty folder too (which a plain rename silently replaces)."""
    if _renameat2_noreplace(src, dst):
        return
    # Without it (another system, a file system that lacks it): claim ``dst`` by creating it,
    # which fails on anything there, then rename onto that empty folder, which fails if
    # anything was put into it meanwhile.
    os.mkdir(dst)
    try:
        os.rename(src, dst)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.rmdir(dst)  # only while it is empty
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst)) from None
        raise


def _rename_file_noreplace(src: Path, dst: Path) -> None:
    """Rename the file ``src`` to ``dst`` only if nothing is there (FileExistsError)."""
    if _renameat2_noreplace(src, dst):
        return
    try:
        os.link(src, dst)  # fails on anything at dst
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: claim dst first
        os.close(os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        os.replace(src, dst)
        return
    os.unlink(src)


@dataclass
class _Publishing:
    """Moves a finished bag to OUT and its report to OUT.report.json. Each must be free, or
    (--overwrite) still the very bag or report checked at the start: those move into the
    temporary folder first, and back if the new ones cannot take their place. Anything else
    at either path is left as it is, and the run fails."""

    parent: Path
    target: Path
    planned: tuple[int, ...] | None
    planned_report: tuple[int, ...] | None = None
    #: The bag being replaced sits in ``parent`` (not to be removed with it).
    holding_old: bool = False
    #: The report being replaced sits in ``parent``.
    holding_report: bool = False
    #: The new bag is in place and this, its report, not yet (put in place on clean-up).
    report_pending: Path | None = None

    @property
    def report_path(self) -> Path:
        return report_path(self.target)

    def publish(self, tmp: Path, report_file: Path) -> None:
        aside, old_report = self.parent / "previous", self.parent / "previous.report.json"

        def changed(path: Path) -> str:
            return (
                f"{path} changed while this run wrote {self.target} (another run or tool?): "
                "it is not replaced; nothing written"
            )

        def appeared(path: Path) -> str:
            return (
                f"{path} appeared while this run wrote {self.target} (another run or tool?): "
                "it is left as it is; nothing written"
            )

        # Both paths are checked before either is touched.
        for path, planned in (
            (self.target, self.planned),
            (self.report_path, self.planned_report),
        ):
            now = _identity(path)
            if planned is None and now is not None:
                raise BagError(appeared(path))
            if planned is not None and now != planned:
                raise BagError(changed(path))
        if self.planned is not None:
            try:
                _rename_noreplace(self.target, aside)
            except FileNotFoundError:
                raise BagError(changed(self.target)) from None
            self.holding_old = True
            moved = _identity(aside)  # a rename changes the folder's ctime, not its inode
            if moved is None or moved[:2] != self.planned[:2]:  # swapped meanwhile
                raise BagError(changed(self.target) + self._put_back(aside, old_report))
        if self.planned_report is not None:
            try:
                _rename_file_noreplace(self.report_path, old_report)
            except FileNotFoundError:
                raise BagError(
                    changed(self.report_path) + self._put_back(aside, old_report)
                ) from None
            self.holding_report = True
            moved = _identity(old_report)
            if moved is None or moved[:2] != self.planned_report[:2]:
                raise BagError(changed(self.report_path) + self._put_back(aside, old_report))
        try:
            _rename_noreplace(tmp, self.target)
        except FileExistsError:
            kept = self._put_back(aside, old_report)
            raise BagError(appeared(self.target) + kept) from None
        except BaseException:
            self._put_back(aside, old_report)
            raise
        # Replaced, as asked: the old bag and report go with the temporary folder.
        self.holding_old = self.holding_report = False
        self.report_pending = report_file
        try:
            _rename_file_noreplace(report_file, self.report_path)
            self.report_pending = None
        except FileExistsError:
            self.report_pending = None  # put there in the instant since the check: never replaced
            home = self.target.with_name(f"{self.target.name}.report-{uuid.uuid4().hex[:8]}.json")
            _rename_file_noreplace(report_file, home)
            raise BagError(
                f"{self.report_path} appeared while this run wrote {self.target} (another run "
                f"or tool?): it is left as it is; the bag is written, its report is {home}"
            ) from None

    def _put_back(self, aside: Path, old_report: Path) -> str:
        """The bag and report moved aside back where they were, or (taken meanwhile) beside
        them. Returns what to tell about it."""
        note, home = "", self.target
        if self.holding_old:
            try:
                _rename_noreplace(aside, home)
            except FileExistsError:
                home = self.target.with_name(f"{self.target.name}.previous-{uuid.uuid4().hex[:8]}")
                _rename_noreplace(aside, home)
                note = f" (the bag it was to replace is kept at {home})"
            self.holding_old = False
        if self.holding_report:
            try:
                _rename_file_noreplace(old_report, report_path(home))
            except FileExistsError:
                elsewhere = home.with_name(f"{home.name}.report-{uuid.uuid4().hex[:8]}.json")
                _rename_file_noreplace(old_report, elsewhere)
                note += f" (the report it was to replace is kept at {elsewhere})"
            self.holding_report = False
        return note

    def clean_up(self) -> None:
        if self.holding_old or self.holding_report:  # never remove what this run did not replace
            log.error("what was at %s (or its report) is kept in %s", self.target, self.parent)
            return
        if self.report_pending is not None:
            # Interrupted between the bag's rename and its report's: the report goes in place.
            try:
                _rename_file_noreplace(self.report_pending, self.report_path)
            except OSError:
                log.error("the report of %s is kept in %s", self.target, self.parent)
                return
        remove_temporary(self.parent)


# -- What the bag holds ------------------------------------------------------------------------

#: Message types that carry camera images in a form the codec cannot decode.
VIDEO_TYPES = (
    "theora_image_transport/msg/Packet",
    "ffmpeg_image_transport_msgs/msg/FFMPEGPacket",
    FOXGLOVE_VIDEO,
    "h264_msgs/msg/Packet",
)
#: Types that are, or hold, camera images.
CARRIER_TYPES = (*IMAGE_TYPES, *VIDEO_TYPES)
#: Element types of a byte array (msg ``uint8[]``, ``byte[]``, ``char[]``, ``int8[]``; IDL
#: ``sequence<octet>``, ``sequence<uint8>``, ...): a frame's pixels, or an encoded image, fit in
#: one.
_BYTE_TYPES = frozenset({"uint8", "int8", "byte", "octet", "char"})
#: A fixed-size byte array this long (a 32x32 gray face) or longer can hold a frame; shorter
#: ones are identifiers (UUIDs, GIDs, hashes, addresses).
FIXED_BYTES_PIXELS = 1024
#: Standard types whose byte arrays hold no camera pixels, and why. Each is trusted only under
#: its standard definition (a bag's own type of the same name is judged like any other), and
#: its topics' bytes are still scanned for encoded images (``_embedded_image``). The other
#: standard types with bytes are images (sensor_msgs' Image, CompressedImage), or fixed arrays
#: shorter than ``FIXED_BYTES_PIXELS`` (unique_identifier_msgs/UUID, rmw_dds_common/Gid,
#: rosgraph_msgs/TypeHash), or left out on purpose: std_msgs' ByteMultiArray, UInt8MultiArray
#: and Int8MultiArray are opaque bytes that hold a frame or a JPEG as readily as anything else.
SAFE_BYTE_HOLDERS = {
    "sensor_msgs/msg/PointCloud2": "points (x, y, z, intensity, ...) laid out by its fields; "
    "one whose points carry color (a camera's image in 3D), or an organized one with anything "
    "besides x, y, z (an intensity image), stops the run (_cloud_problem)",
    "nav_msgs/msg/OccupancyGrid": "a map's cells (-1..100), not a camera's pixels",
    "map_msgs/msg/OccupancyGridUpdate": "a part of such a map (Nav2's costmap updates)",
    "rcl_interfaces/msg/ParameterValue": "a node parameter's bytes (/parameter_events)",
    "visualization_msgs/msg/MeshFile": "an RViz mesh file (textures inside are found by the "
    "scan; the Marker holding it also holds a CompressedImage texture, which stops the run)",
}
#: Standard types shaped like an image (integer width and height, and an array of numbers)
#: that hold no camera pixels, and why; trusted like ``SAFE_BYTE_HOLDERS`` (only under their
#: standard definition), and their messages checked (``_content_problem``). Only the type
#: itself is exempt: a type that holds one takes its width and height (``_shape_fields``).
SAFE_SHAPED_HOLDERS = {
    "sensor_msgs/msg/CameraInfo": "a camera's calibration: its d holds the distortion "
    "coefficients (more than MAX_DISTORTION of them stop the run)",
}
#: The element types of an array of numbers (msg and IDL names, as rosbags parses them).
_INTEGER_TYPES = frozenset(
    {"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", *_BYTE_TYPES}
)
_NUMBER_TYPES = _INTEGER_TYPES | {"float32", "float64", "float128"}
#: Integer fields that give a type an image's shape, when they come with an array of numbers.
_SHAPE_FIELDS = (("width", "height"), ("rows", "cols"), ("rows", "columns"))
#: A message type of at most this many numbers (and nothing else) is pixel-like: an array of
#: them holds an image's pixels (gray; b, g, r, a; and a depth, ...).
PIXEL_NUMBERS = 8
#: std_msgs' MultiArrayLayout: a layout with two or more dimensions this long is an image's,
#: and so is one of two or more dimensions with one of ``ARRAY_PIXELS`` or more (a list of
#: pixels and their channels, [262144, 3]: a 64x64 image or more).
LAYOUT = "std_msgs/msg/MultiArrayLayout"
ARRAY_SIDE = 16
ARRAY_PIXELS = 4096
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
#: More distortion coefficients than this are no camera model's (OpenCV's most: 14).
MAX_DISTORTION = 64
#: The standard definitions of ``SAFE_BYTE_HOLDERS`` that no distro's typestore has.
_SAFE_REFERENCES = {
    "map_msgs/msg/OccupancyGridUpdate": (
        "std_msgs/Header header\nint32 x\nint32 y\nuint32 width\nuint32 height\nint8[] data\n"
    ),
}
#: Point clouds: their fields (or channels) are checked per message (``_cloud_problem``).
CLOUDS = ("sensor_msgs/msg/PointCloud2", "sensor_msgs/msg/PointCloud")
#: Types whose messages are checked one by one for an image's shape (``_content_problem``).
#: Markers with a color per point (Foxy's Marker has no texture, so it passes the type rules).
MARKERS = (
    "visualization_msgs/msg/Marker",
    "visualization_msgs/msg/ImageMarker",
    "visualization_msgs/msg/MarkerArray",
)
CHECKED_TYPES = (*CLOUDS, LAYOUT, CAMERA_INFO, *MARKERS)
#: The only fields of an organized point cloud that make no image of the scene (a depth map's
#: points), named exactly so, once each.
_XYZ = ("x", "y", "z")
#: Names of padding fields: their bytes must be the same in every point (``_cloud_problem``).
_PADDING = frozenset({"", "_"})
#: sensor_msgs/PointField's datatypes (INT8 ... FLOAT64): their sizes in bytes.
_POINT_FIELD_SIZES = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 8: 8}
#: Names of a point cloud's color fields.
_COLOR_FIELDS = frozenset(
    {"rgb", "rgba", "bgr", "bgra", "argb", "r", "g", "b", "red", "green", "blue", "color"}
)
#: How to go on with a topic the tool cannot anonymize (ends every such refusal).
KEEP_WARNING = (
    "convert such topics to sensor_msgs/Image or CompressedImage, or drop them, first; "
    "--keep-topic TOPIC copies a topic raw, faces included, for a topic that shows no people"
)


def _check_files_listed(source: Path, info: dict[str, Any]) -> None:
    """Stop when the folder holds storage files that metadata.yaml does not list: rosbags
    reads only the listed ones, so their messages would vanish."""
    listed = {PurePath(str(name)).name for name in info.get("relative_file_paths") or []}
    suffixes = (".db3", ".mcap", ".db3.zstd", ".mcap.zstd")
    unlisted = sorted(
        p.name
        for p in source.iterdir()
        if p.name.endswith(suffixes) and p.name not in listed and p.is_file()
    )
    if unlisted:
        raise BagError(
            f"{source}: storage files that {source / 'metadata.yaml'} does not list: "
            f"{unlisted}; their messages would be lost: repair metadata.yaml first "
            f"(ros2 bag reindex {source})"
        )


def _check_storage_listed(source: Path, reader: Any) -> None:
    """Stop when the storage holds messages that metadata.yaml does not list (or lists under
    another type or QoS): rosbags reads only what it lists, so they would vanish."""
    listed = reader.connections
    missing: dict[str, int] = {}
    for bag in getattr(reader, "readers", []):
        for storage in getattr(getattr(bag, "storage", None), "storages", None) or []:
            for held in storage.connections:
                if held.msgcount and not any(
                    c.topic == held.topic
                    and c.msgtype == held.msgtype
                    and c.ext == held.ext
                    and (not c.digest or not held.digest or c.digest == held.digest)
                    for c in listed
                ):
                    missing[held.topic] = missing.get(held.topic, 0) + held.msgcount
    if missing:
        raise BagError(
            f"{source}: the storage holds {sum(missing.values())} messages on topics that "
            f"{source / 'metadata.yaml'} does not list, or lists differently: {sorted(missing)}; "
            "they would be lost: repair metadata.yaml first (ros2 bag reindex)"
        )


def _nested(desc: Any) -> str | None:
    """The message type a field holds (itself, or in an array or sequence), or None."""
    from rosbags.interfaces import Nodetype

    kind, value = desc
    if kind == Nodetype.NAME:
        return value
    if kind in (Nodetype.ARRAY, Nodetype.SEQUENCE) and value[0][0] == Nodetype.NAME:
        return value[0][1]
    return None


def _foxglove_fielddefs() -> dict[str, Any]:
    """Foxglove's image and video types, parsed from ``FOXGLOVE_DEFINITIONS``."""
    from rosbags.typesys import get_types_from_msg

    types: dict[str, Any] = {}
    for name, text in FOXGLOVE_DEFINITIONS.items():
        types.update(get_types_from_msg(text, name))
    return types


def _complete_types(reader: Any, standard: Any) -> dict[str, list[str]]:
    """Register the definitions of the connections' types that the bag stores none of and the
    reader lacks: the distro's standard types, else Foxglove's published image and video
    types (no distro has them), with what they hold. Returns those types, by source."""
    from rosbags.interfaces import MessageDefinitionFormat

    store = reader.typestore
    foxglove = _foxglove_fielddefs()
    known = {**foxglove, **standard.fielddefs}
    wanted = sorted(
        {
            c.msgtype
            for c in reader.connections
            if c.msgdef.format == MessageDefinitionFormat.NONE
            and c.msgtype not in store.fielddefs
            and c.msgtype in known
        }
    )
    typs: dict[str, Any] = {}

    def add(name: str) -> None:
        if name in typs or name in store.fielddefs or name not in known:
            return
        typs[name] = known[name]
        for _, desc in known[name][1]:
            if (inner := _nested(desc)) is not None:
                add(inner)

    for name in wanted:
        add(name)
    if typs:
        store.register(typs)
    return {
        "distro": [t for t in wanted if t in standard.fielddefs],
        "foxglove": [t for t in wanted if t not in standard.fielddefs],
    }


def _same_fields(one: Any, two: Any) -> bool:
    """Whether two parsed definitions have the same fields (byte, char and uint8 alike: msg
    and IDL name them differently)."""

    def norm(value: Any) -> Any:
        if isinstance(value, tuple | list):
            return tuple(norm(v) for v in value)
        return "uint8" if value in ("byte", "char", "octet") else value

    return one is not None and two is not None and norm(one[1]) == norm(two[1])


def _safe_holders(store: Any, standard: Any) -> set[str]:
    """The ``SAFE_BYTE_HOLDERS`` and ``SAFE_SHAPED_HOLDERS`` the reader knows under their
    standard definition (the distro's, else the newest ROS 2's, else ``_SAFE_REFERENCES``)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    safe, latest = set(), None
    for name in (*SAFE_BYTE_HOLDERS, *SAFE_SHAPED_HOLDERS):
        have = store.fielddefs.get(name)
        if have is None:
            continue
        reference = standard.fielddefs.get(name)
        if reference is None and name in _SAFE_REFERENCES:
            reference = get_types_from_msg(_SAFE_REFERENCES[name], name)[name]
        if reference is None:
            latest = latest or get_typestore(Stores.LATEST)
            reference = latest.fielddefs.get(name)
        if _same_fields(have, reference):
            safe.add(name)
    return safe


@dataclass
class _Finding:
    """What a message type may carry, the first path to each (``None``: nothing)."""

    images: str | None = None  # an image or video type, at any depth
    undefined: str | None = None  # a type nothing defines, at any depth
    pixels: str | None = None  # a byte array outside the safe holders
    shaped: str | None = None  # a type shaped like an image: width, height, numbers
    checked: bool = False  # holds a CHECKED_TYPES (its messages are checked one by one)


def _inspect(store: Any, msgtype: str, safe: set[str]) -> _Finding:
    """Walk the parsed definition of ``msgtype`` (msg or IDL alike) to every depth."""
    from rosbags.interfaces import Nodetype

    found, seen = _Finding(), set()

    def walk(name: str, path: str) -> None:
        if name in CARRIER_TYPES:
            found.images = found.images or f"{path}: {name}"
            return
        if name in CHECKED_TYPES:
            found.checked = True
        if name in safe:
            return
        fields = store.fielddefs.get(name)
        if fields is None:
            found.undefined = found.undefined or name
            return
        if name in seen:
            return
        seen.add(name)
        if found.shaped is None and (shape := _image_shape(store, name, safe)):
            found.shaped = f"{path}: {shape}"
        for member, (kind, value) in fields[1]:
            where = f"{path}.{member}"
            if kind == Nodetype.NAME:
                walk(value, where)
            elif kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
                (inner_kind, inner), size = value
                variable = kind == Nodetype.SEQUENCE
                if inner_kind == Nodetype.BASE:
                    if inner[0] in _BYTE_TYPES and (variable or size >= FIXED_BYTES_PIXELS):
                        shape = "[]" if variable else f"[{size}]"
                        found.pixels = found.pixels or f"{where} ({inner[0]}{shape})"
                elif inner_kind == Nodetype.NAME:
                    if (variable or size >= FIXED_BYTES_PIXELS) and _byte_struct(store, inner):
                        # an array of pixels: a struct of bytes (r, g, b) per element
                        found.pixels = found.pixels or f"{where} ({inner}[])"
                    walk(inner, f"{where}[]")

    walk(msgtype, msgtype)
    return found


def _shape_fields(store: Any, name: str, within: frozenset = frozenset()) -> str | None:
    """The integer fields that give ``name`` an image's shape (width and height, or rows and
    cols), its own or those of a message it holds, at any depth (``meta.size.width``), or None.
    A safe holder's own shape counts for a type that holds it (a frame that takes its size from
    an embedded sensor_msgs/CameraInfo): only the safe type itself is exempt (``_inspect``
    never judges it)."""
    from rosbags.interfaces import Nodetype

    fields = store.fielddefs.get(name)
    if fields is None or name in within:
        return None
    ints = {
        member
        for member, (kind, value) in fields[1]
        if kind == Nodetype.BASE and value[0] in _INTEGER_TYPES
    }
    if pair := next((pair for pair in _SHAPE_FIELDS if set(pair) <= ints), None):
        return f"{pair[0]} and {pair[1]}"
    for member, (kind, value) in fields[1]:
        inner = None
        if kind == Nodetype.NAME and value not in CARRIER_TYPES:
            inner = _shape_fields(store, value, within | {name})
        if inner:
            return " and ".join(f"{member}.{side}" for side in inner.split(" and "))
    return None


def _numbers_in(store: Any, name: str, safe: set[str], within: frozenset = frozenset()):
    """How many numbers a message of type ``name`` can hold in arrays, at any depth (inf: a
    variable-length one), and the array that holds the most (None: none). An array of
    messages counts the numbers in their arrays, or, for a pixel (``_pixel_struct``), its
    numbers. The safe holders, and image types (judged elsewhere), count as none."""
    from rosbags.interfaces import Nodetype

    fields = store.fielddefs.get(name)
    if fields is None or name in safe or name in CARRIER_TYPES or name in within:
        return 0, None
    within = within | {name}
    total, most = 0, (0, None)
    for member, (kind, value) in fields[1]:
        if kind == Nodetype.NAME:
            numbers, path = _numbers_in(store, value, safe, within)
            path = path and f"{member}.{path}"
        elif kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
            (inner_kind, inner), size = value
            if inner_kind == Nodetype.BASE:
                each, element = int(inner[0] in _NUMBER_TYPES), inner[0]
            elif inner_kind == Nodetype.NAME:
                each = _numbers_in(store, inner, safe, within)[0] or _pixel_struct(store, inner)
                element = inner
            else:
                each = 0
            if not each:
                continue
            variable = kind == Nodetype.SEQUENCE
            numbers = float("inf") if variable else size * each
            path = f"{member} ({element}{'[]' if variable else f'[{size}]'})"
        else:
            continue
        total += numbers
        if path is not None and numbers > most[0]:
            most = (numbers, path)
    return total, most[1]


def _pixel_struct(store: Any, name: str, within: frozenset = frozenset()) -> int:
    """How many numbers a pixel-like message type holds: nothing but numbers (number fields,
    fixed arrays of numbers, and pixel-like messages: a std_msgs/ColorRGBA inside), 1 to
    ``PIXEL_NUMBERS`` in all (a gray value; b, g, r, a and a depth); else 0."""
    from rosbags.interfaces import Nodetype

    fields = store.fielddefs.get(name)
    if not fields or not fields[1] or name in within:
        return 0
    total = 0
    for _, (kind, value) in fields[1]:
        if kind == Nodetype.BASE and value[0] in _NUMBER_TYPES:
            total += 1
        elif kind == Nodetype.NAME and (inner := _pixel_struct(store, value, within | {name})):
            total += inner
        elif (
            kind == Nodetype.ARRAY
            and value[0][0] == Nodetype.BASE
            and value[0][1][0] in _NUMBER_TYPES
        ):
            total += value[1]
        else:
            return 0
        if total > PIXEL_NUMBERS:
            return 0
    return total


def _image_shape(store: Any, name: str, safe: set[str]) -> str | None:
    """Why the message type ``name`` is shaped like an image, or None: integer width and
    height (or rows and cols; ``_shape_fields``) with arrays that can hold a 32x32 frame's
    numbers (``FIXED_BYTES_PIXELS``: a variable-length array of any int, uint or float type,
    or of pixel-like messages, ``_pixel_struct``, or fixed ones of that many), at any depth
    below it."""
    shape = _shape_fields(store, name)
    if shape is None:
        return None
    numbers, first = _numbers_in(store, name, safe)
    if numbers < FIXED_BYTES_PIXELS or first is None:
        return None
    return f"{shape}, and numbers in {first}"


def _reaching(store: Any, msgtype: str) -> set[str]:
    """The types, ``msgtype`` and those it holds at any depth, from which one of
    ``CHECKED_TYPES`` can be reached."""
    reach: dict[str, bool] = {}

    def reaches(name: str) -> bool:
        if name not in reach:
            reach[name] = name in CHECKED_TYPES  # also ends a cycle
            fields = store.fielddefs.get(name)
            if fields is not None and name not in CHECKED_TYPES:
                inner = [t for _, desc in fields[1] if (t := _nested(desc)) is not None]
                reach[name] = any([reaches(t) for t in inner])
        return reach[name]

    reaches(msgtype)
    return {name for name, yes in reach.items() if yes}


def _byte_struct(store: Any, msgtype: str) -> bool:
    """Whether a message type is nothing but single bytes (such as a pixel's r, g, b)."""
    from rosbags.interfaces import Nodetype

    fields = store.fielddefs.get(msgtype)
    return bool(fields and fields[1]) and all(
        kind == Nodetype.BASE and value[0] in _BYTE_TYPES for _, (kind, value) in fields[1]
    )


@dataclass
class _Plan:
    """What to do with each connection of a bag."""

    #: Image topics the tool anonymizes (kept ones included).
    images: list = field(default_factory=list)
    #: Topics it cannot anonymize (images inside other types, video, types nothing defines,
    #: byte arrays that can hold pixels, types shaped like an image, a malformed image type):
    #: to be kept explicitly.
    flagged: list = field(default_factory=list)
    #: Topics copied byte for byte after their bytes are scanned for encoded images.
    scanned: list = field(default_factory=list)
    #: Connection ids whose messages hold ``CHECKED_TYPES`` (point clouds, array layouts,
    #: camera calibrations: checked one by one, ``_content_problem``).
    checked: set = field(default_factory=set)
    #: The types from which a ``CHECKED_TYPES`` can be reached (where to look for them).
    reaching: set = field(default_factory=set)
    #: The refusals for flagged topics that are not kept.
    problems: list[str] = field(default_factory=list)
    kept: frozenset = frozenset()

    @property
    def work(self) -> list:
        return [c for c in self.images if c.topic not in self.kept]


def _classify(reader: Any, settings: BagSettings, standard: Any, distro: str) -> _Plan:
    """Judge every connection by its type's parsed definition (the bag's, the distro's, or
    Foxglove's): an image type is anonymized; a type that holds images or video, a type
    nothing defines (it cannot be checked), a type with a byte array that can hold pixels
    (outside ``SAFE_BYTE_HOLDERS``), and a type shaped like an image (``_image_shape``, outside
    ``SAFE_SHAPED_HOLDERS``) stop the run unless kept; every other topic is copied, its
    messages checked for images first (``_check_content``)."""
    store = reader.typestore
    kept = frozenset(settings.keep_topics)
    safe = _safe_holders(store, standard)
    plan = _Plan(kept=kept)
    hidden, undefined, pixels, shaped, malformed = {}, {}, {}, {}, {}
    for c in reader.connections:
        fields = store.fielddefs.get(c.msgtype)
        if c.msgtype in IMAGE_TYPES and fields is not None:
            if set(IMAGE_FIELDS[c.msgtype]) <= {name for name, _ in fields[1]}:
                plan.images.append(c)
            else:
                plan.flagged.append(c)
                malformed[c.topic] = c.msgtype
            continue
        found = _inspect(store, c.msgtype, safe)
        if found.images:
            hidden[c.topic] = found.images
        elif found.undefined:
            undefined[c.topic] = (c.msgtype, found.undefined)
        elif found.pixels:
            pixels[c.topic] = found.pixels
        elif found.shaped:
            shaped[c.topic] = found.shaped
        else:
            if c.topic not in kept:
                plan.scanned.append(c)
                if found.checked:
                    plan.checked.add(c.id)
                    plan.reaching |= _reaching(store, c.msgtype)
            continue
        plan.flagged.append(c)
    if bad := sorted(set(hidden) - kept):
        plan.problems.append(
            f"topics {bad} carry images inside other message types (or video): they cannot "
            f"be anonymized ({'; '.join(hidden[t] for t in bad)})"
        )
    if bad := sorted(set(undefined) - kept):
        types = sorted(
            {t if t == inner else f"{t} (holds {inner})" for t, inner in map(undefined.get, bad)}
        )
        plan.problems.append(
            f"topics {bad} have types that neither the bag nor ROS 2 {distro}'s standard "
            f"types define ({', '.join(types)}): they cannot be checked for images, nor "
            "anonymized"
        )
    if bad := sorted(set(pixels) - kept):
        plan.problems.append(
            f"topics {bad} have byte arrays that can hold camera pixels "
            f"({'; '.join(pixels[t] for t in bad)}), in no image type the tool knows: they "
            "cannot be anonymized"
        )
    if bad := sorted(set(shaped) - kept):
        plan.problems.append(
            f"topics {bad} have types shaped like an image, integer width and height (or rows "
            f"and cols) with arrays of numbers that can hold camera pixels "
            f"({'; '.join(shaped[t] for t in bad)}), in no image type the tool knows: they "
            "cannot be anonymized"
        )
    if bad := sorted(set(malformed) - kept):
        plan.problems.append(
            f"topics {bad}: their image type's definition in the bag lacks the image "
            "fields: they cannot be anonymized"
        )
    return plan


#: Encoded images inside other bytes: (magic, what it starts, how to get the image's bytes).
_JPEG, _PNG = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"
#: The markers a JPEG's header may hold before its scan (SOFn, DHT, DAC, DQT, DRI, APPn, COM).
_JPEG_MARKERS = frozenset({*range(0xC0, 0xD0), 0xDB, 0xDD, *range(0xE0, 0xF0), 0xFE}) - {0xC8}
#: Frame headers (SOFn): baseline, progressive, lossless, arithmetic.
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: Base64 text (RFC 4648's alphabet, and its URL-safe one of section 5: "-" and "_"), lines
#: apart or not; and the base64 of a JPEG's and a PNG's first bytes, in either alphabet.
_BASE64 = re.compile(rb"[A-Za-z0-9+/\-_\r\n]+=*")
_BASE64_MAGICS = re.compile(rb"(?=/9j/|_9j_|iVBORw0KGgo)")
_URLSAFE = bytes.maketrans(b"-_", b"+/")
#: Hex text (lowercased) of a JPEG's and a PNG's first bytes, the bytes apart or not (by
#: whitespace, commas, colons, semicolons or dashes; "0x", "\x" or "%" before each or not),
#: each place it starts (overlapping ones too); and such text's whole run.
_HEX_SEPARATORS = b" \t\r\n\v\f,:;-"
_HEX_APART = rb"[\s,:;\-]*(?:0x|\\x|%)?"
_HEX_MAGICS = re.compile(
    rb"(?="
    + rb"|".join(_HEX_APART.join(magic.hex(" ").encode().split()) for magic in (_JPEG, _PNG))
    + rb")"
)
_HEX_RUN = re.compile(rb"(?:(?:0x|\\x|%)?[0-9a-f]{2}[\s,:;\-]*)+")


#: A JPEG's or PNG's well-formed header with this many bytes from its start on is an image
#: even if it does not decode whole (cut off: the rest in the next messages, or damaged); a
#: shorter one, whole or not, must decode (a header printed into a log is no image).
IMAGE_START = 256


def _jpeg_header(
    data: bytes, start: int, dead: set | None = None
) -> tuple[int, bool, tuple[int, int]] | None:
    """The JPEG starting at ``start``, if its header is well formed up to its first scan
    (every segment a known marker with a length inside ``data``; a frame header of 1 to 4
    components, 8 to 16 bits and a size, before a scan header of 1 to 4 of them, each of the
    length they need), else None: random bytes that happen to start like a JPEG stop here.
    Returns where it ends (its EOI marker, else the end of ``data``), whether it has one, and
    its size. ``dead``: the (segment, components seen) from which an earlier walk in ``data``
    failed, and this one fails too (the walks of a run of decoys share their segments: each is
    walked once)."""
    pos, size, components, walked = start + 2, None, 0, []
    dead = set() if dead is None else dead
    while pos + 4 <= len(data):
        if (pos, components) in dead:
            break
        walked.append((pos, components))
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:  # start of scan: the image data follows, up to the EOI marker
            scanned = data[pos + 4] if pos + 4 < len(data) else 0
            if size is None or not 0 < scanned <= components or length != 6 + 2 * scanned:
                break
            end = data.find(b"\xff\xd9", pos)
            return (len(data), False, size) if end < 0 else (end + 2, True, size)
        if marker not in _JPEG_MARKERS or length < 2 or pos + 2 + length > len(data):
            break
        if marker in _JPEG_FRAMES:
            frame = data[pos + 4 : pos + 2 + length]
            components = frame[5] if len(frame) > 5 else 0
            width, height = frame[3:5], frame[1:3]
            if (
                size is not None
                or frame[0] not in (8, 12, 16)
                or not 0 < components <= 4
                or length != 8 + 3 * components
                or not int.from_bytes(width, "big")
                or not int.from_bytes(height, "big")
            ):
                break
            size = (int.from_bytes(width, "big"), int.from_bytes(height, "big"))
        pos += 2 + length
    dead.update(walked)
    return None


def _png_header(
    data: bytes, start: int, _: Any = None
) -> tuple[int, bool, tuple[int, int]] | None:
    """The PNG starting at ``start``, if its first chunk is its header (IHDR, its checksum
    right): where it ends (its IEND chunk, else the end of ``data``), whether it has one, and
    its size."""
    import zlib

    chunk = data[start + 12 : start + 33]
    if (
        data[start + 8 : start + 12] != b"\x00\x00\x00\x0d"
        or len(chunk) < 21
        or chunk[:4] != b"IHDR"
        or zlib.crc32(chunk[:17]) != int.from_bytes(chunk[17:], "big")
    ):
        return None
    size = (int.from_bytes(chunk[4:8], "big"), int.from_bytes(chunk[8:12], "big"))
    end = data.find(b"IEND", start)
    return (len(data), False, size) if end < 0 else (end + 8, True, size)


def _decodes(data: bytes) -> tuple[int, int] | None:
    """The size of the image ``data`` holds, when OpenCV decodes it."""
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return None if image is None else (image.shape[1], image.shape[0])


def _encoded_image(data: bytes) -> str | None:
    """A JPEG or PNG image inside ``data`` (raw), as found by ``_embedded_image``: every
    place its magic bytes start is checked (decoys cannot use up a budget), and one whose
    header is well formed is an image, whole (decoded) or not (cut off: the rest may come in
    the next messages)."""
    dead: set = set()
    for magic, kind, header in ((_JPEG, "JPEG", _jpeg_header), (_PNG, "PNG", _png_header)):
        pos = data.find(magic)
        while pos >= 0:
            if (found := header(data, pos, dead)) is not None:
                end, whole, (width, height) = found
                if whole and (size := _decodes(data[pos:end])):
                    return f"a {kind} image of {size[0]}x{size[1]} pixels"
                if end - pos >= IMAGE_START:
                    return (
                        f"the start of a {kind} image of {width}x{height} pixels (a "
                        f"well-formed header and {end - pos} bytes; it does not decode whole: "
                        "the rest cut off, sent elsewhere or damaged)"
                    )
            pos = data.find(magic, pos + 1)
    return None


def _fresh_starts(
    text: bytes, starts: Any, run: re.Pattern, digits: Callable[[bytes], int], unit: int
):
    """The ``starts`` (increasing positions in ``text``) worth decoding as text (base64, hex)
    from there, each with the end of its run: the first of each run, and the first at each
    other offset in it (``digits`` before it, modulo ``unit``); what those decode to holds the
    others. Each run is decoded a few times at most, not once per start: decoys can neither
    hide an image behind them nor make the scan slow."""
    end, last, count, offsets = -1, 0, 0, set()
    for pos in starts:
        if pos >= end:
            end, last, count, offsets = run.match(text, pos).end(), pos, 0, set()
        else:
            count += digits(text[last:pos])
            last = pos
        if count % unit not in offsets:
            offsets.add(count % unit)
            yield pos, end


def _embedded_image(data: bytes) -> str | None:
    """What encoded image ``data`` (a message's serialized bytes) holds, or None: a JPEG or
    PNG anywhere in it, raw, base64 (either alphabet) or hex (as text), whole or its start
    (``_encoded_image``: a well-formed header; a whole one is confirmed by decoding it), so
    random bytes are never taken for one."""
    import base64
    import binascii

    if found := _encoded_image(data):
        return found
    starts = (m.start() for m in _BASE64_MAGICS.finditer(data))
    for pos, end in _fresh_starts(data, starts, _BASE64, _base64_digits, 4):
        text = data[pos:end].translate(_URLSAFE, b"\r\n=")
        text = text[: len(text) - (len(text) % 4 == 1)]  # unpadded (base64url) or cut
        try:
            decoded = base64.b64decode(text + b"=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            continue
        if found := _encoded_image(decoded):
            return f"{found} (base64)"
    return _hex_image(data)


def _base64_digits(text: bytes) -> int:
    """How many base64 digits a piece of a run holds (its line breaks not counted)."""
    return len(text.translate(None, b"\r\n"))


def _hex_digits(text: bytes) -> bytes:
    """The hex digits of a run of hex text (lowercased), without separators and prefixes."""
    return text.replace(b"0x", b"").translate(None, _HEX_SEPARATORS + b"\\x%")


def _hex_image(data: bytes) -> str | None:
    """A JPEG or PNG written in hex inside ``data`` (any case, the bytes apart or not), as
    found by ``_embedded_image``."""
    lower = data.lower()
    starts = (m.start() for m in _HEX_MAGICS.finditer(lower))
    count = lambda piece: len(_hex_digits(piece))  # noqa: E731
    for pos, end in _fresh_starts(lower, starts, _HEX_RUN, count, 2):
        digits = _hex_digits(lower[pos:end])
        if image := _encoded_image(bytes.fromhex(digits[: len(digits) // 2 * 2].decode())):
            return f"{image} (hex)"
    return None


def _cloud_problem(cloud: Any) -> str | None:
    """What makes a point cloud an image, or None: points that carry color (sensor_msgs/
    PointCloud2's fields, or sensor_msgs/PointCloud's channels); or, organized (height and
    width over 1), anything besides one x, y and z each: a field of another name (intensity,
    reflectivity, ambient, "X", ...), x, y or z declared twice, or bytes besides theirs
    (padding fields, bytes of point_step no field declares, row padding) that are not the
    same in every point (PCL pads with a constant): an image of the scene, row by row. An
    unorganized one (a lidar's scan) may have intensity."""
    named = getattr(cloud, "fields", None)
    if named is None:
        named = getattr(cloud, "channels", None) or []
    names = [str(item.name) for item in named]
    for name in names:
        if name.lower() in _COLOR_FIELDS:
            return (
                f"a point cloud whose points carry color (field {name!r}): a camera's image in 3D"
            )
    height, width = int(getattr(cloud, "height", 1)), int(getattr(cloud, "width", 1))
    if height <= 1 or width <= 1 or getattr(cloud, "data", None) is None:
        return None
    organized = f"an organized point cloud of {width}x{height} points"
    scene = "an image of the scene (a camera's, or a lidar's intensity image)"
    for name in names:
        if name not in _XYZ and name not in _PADDING:
            return f"{organized} with field {name!r}: {scene}"
    if twice := sorted({name for name in names if name in _XYZ and names.count(name) > 1}):
        return f"{organized} with field {twice[0]!r} declared more than once: {scene}"
    step, row = int(cloud.point_step), int(cloud.row_step)
    data = np.frombuffer(bytes(cloud.data), np.uint8)
    if step <= 0 or row < width * step or data.size < height * row:
        return (
            f"{organized} whose data does not fit its layout (point_step {step}, row_step "
            f"{row}, {data.size} bytes): it cannot be checked for {scene}"
        )
    free = np.ones(step, bool)  # the bytes of a point that x, y and z do not hold
    for item in named:
        if item.name in _XYZ:
            offset = int(item.offset)
            free[offset : offset + _POINT_FIELD_SIZES.get(int(item.datatype), 0)] = False
    rows = data[: height * row].reshape(height, row)
    loose = [
        rows[:, : width * step].reshape(height * width, step)[:, free],
        rows[:, width * step :],
        data[height * row :].reshape(-1, 1),
    ]
    if any(part.size and (part != part[0]).any() for part in loose):
        return (
            f"{organized} whose bytes besides x, y and z (padding fields, bytes of point_step "
            f"no field declares, row padding) are not the same in every point: they can hold "
            f"{scene}"
        )
    return None


def _layout_problem(layout: Any) -> str | None:
    """An array layout (std_msgs/MultiArrayLayout) shaped like an image, or None: two or more
    dimensions, two of them of ``ARRAY_SIDE`` or more (rows and columns), or one of
    ``ARRAY_PIXELS`` or more (a list of pixels, and their channels)."""
    dims = list(getattr(layout, "dim", None) or [])
    sizes = [int(d.size) for d in dims]
    if len(sizes) < 2:
        return None
    if sum(size >= ARRAY_SIDE for size in sizes) >= 2:
        why = f"two or more dimensions of {ARRAY_SIDE} or more"
    elif max(sizes) >= ARRAY_PIXELS:
        why = f"a dimension of {ARRAY_PIXELS} or more beside others: pixels and their channels"
    else:
        return None
    shape = " x ".join(f"{d.size} ({d.label})" if d.label else str(d.size) for d in dims)
    return f"an array of {shape} (its MultiArrayLayout): an image's shape ({why})"


def _marker_problem(marker: Any) -> str | None:
    """A visualization_msgs Marker or ImageMarker with a color for each of
    ``FIXED_BYTES_PIXELS`` or more points (a MarkerArray: all its markers' together), or None:
    a colored point cloud, a camera's image in 3D, whatever the markers' type (the colors are
    in the bag however RViz draws them)."""
    markers = getattr(marker, "markers", None)
    for member in ("colors", "outline_colors"):
        count = sum(len(getattr(m, member, None) or ()) for m in markers or [marker])
        if count >= FIXED_BYTES_PIXELS:
            return (
                f"{'markers' if markers is not None else 'a marker'} with {count} colors "
                f"({member}), one per point: a colored point cloud, a camera's image in 3D"
            )
    return None


def _calibration_problem(info: Any) -> str | None:
    """A sensor_msgs/CameraInfo whose distortion coefficients (d) can hold pixels, or None."""
    coefficients = getattr(info, "d", None)
    count = 0 if coefficients is None else len(coefficients)
    if count <= MAX_DISTORTION:
        return None
    return (
        f"a CameraInfo with {count} distortion coefficients (d): no camera model has that many "
        "(OpenCV's most: 14); they can hold camera pixels"
    )


_CHECKS = {
    **dict.fromkeys(CLOUDS, _cloud_problem),
    LAYOUT: _layout_problem,
    CAMERA_INFO: _calibration_problem,
    **dict.fromkeys(MARKERS, _marker_problem),
}


def _content_problem(store: Any, msg: Any, msgtype: str, reaching: set[str]) -> str | None:
    """What a message holds that is an image after all, or None: each of ``CHECKED_TYPES`` in
    it, at any depth (only the fields that can lead to one are read), judged by
    ``_CHECKS``."""
    from rosbags.interfaces import Nodetype

    if msgtype in _CHECKS:
        return _CHECKS[msgtype](msg)
    fields = store.fielddefs.get(msgtype)
    for member, desc in fields[1] if fields is not None else ():
        inner = _nested(desc)
        if inner is None or inner not in reaching:
            continue
        value = getattr(msg, member, None)
        many = desc[0] in (Nodetype.ARRAY, Nodetype.SEQUENCE) and value is not None
        for item in value if many else [value]:
            if item is not None and (what := _content_problem(store, item, inner, reaching)):
                return what
    return None


def _check_content(reader: Any, connection: Any, raw: Any, index: int, plan: _Plan) -> None:
    """Stop when a message of a topic about to be copied holds an image after all."""
    data = raw if isinstance(raw, bytes) else bytes(raw)
    what = _embedded_image(data)
    if what is None and connection.id in plan.checked:
        msg = reader.deserialize(data, connection.msgtype)
        what = _content_problem(reader.typestore, msg, connection.msgtype, plan.reaching)
    if what is not None:
        raise BagError(
            f"topic {connection.topic} ({connection.msgtype}): its message {index} holds "
            f"{what}: it cannot be anonymized; {KEEP_WARNING}"
        )


def _detect_all(
    reader, work, plan, detector, counter: _Progress
) -> dict[str, list[list[FaceBox]]]:
    """First pass: every frame's detections, per topic; and the bytes of every topic to be
    copied, scanned for images. Unsupported encodings, and images found, stop here."""
    detections: dict[str, list[list[FaceBox]]] = {c.topic: [] for c in work}
    reading = work + plan.scanned
    if not reading:  # rosbags reads every connection when given none
        return detections
    work_ids = {c.id for c in work}
    seen: dict[int, int] = {}
    for connection, _, raw in reader.messages(connections=reading):
        counter.step()
        if connection.id not in work_ids:
            seen[connection.id] = seen.get(connection.id, 0) + 1
            _check_content(reader, connection, raw, seen[connection.id] - 1, plan)
            continue
        msg = reader.deserialize(raw, connection.msgtype)
        try:
            frame = _frame_of(msg, connection.msgtype)
            boxes = detect_faces(detector, to_working(frame))
        except InputError as exc:
            if "unsupported" in str(exc):
                raise BagError(
                    f"topic {connection.topic}: {exc}: it cannot be anonymized; --keep-topic "
                    f"{connection.topic} copies it raw, faces included, for a topic that "
                    "shows no people"
                ) from None
            boxes = None  # an undecodable frame: dropped in the second pass
        detections[connection.topic].append(boxes if boxes is not None else [])
    return detections


# -- Writing -----------------------------------------------------------------------------------


def _add_output_connection(writer: Any, reader: Any, connection: Any, redefine: set[str]):
    """The output connection of an input one: the same topic, type, serialization format,
    offered QoS, and definition as stored (a type stored without one gets none, unless its
    messages are re-serialized here: then the definition they were written with)."""
    from rosbags.interfaces import MessageDefinitionFormat
    from rosbags.typesys import TypesysError

    ext = connection.ext
    options = {
        "serialization_format": getattr(ext, "serialization_format", "cdr"),
        "offered_qos_profiles": getattr(ext, "offered_qos_profiles", []),
    }
    msgdef, msgtype = connection.msgdef, connection.msgtype
    if msgdef.format == MessageDefinitionFormat.NONE:
        if msgtype in redefine:
            return writer.add_connection(
                connection.topic, msgtype, typestore=reader.typestore, **options
            )
        return _add_connection_as_stored(writer, connection, "", **options)
    digest = str(connection.digest or "")
    if not digest.startswith("RIHS01_"):
        try:
            digest = reader.typestore.hash_rihs01(msgtype)
        except (TypesysError, KeyError):
            return _add_connection_as_stored(writer, connection, "", **options)
    idl_header = "=" * 80 + "\nIDL: "
    if msgdef.format == MessageDefinitionFormat.IDL and not msgdef.data.startswith(idl_header):
        # rosbags' writer tells IDL from msg by this header: a bare IDL text goes as it is
        return _add_connection_as_stored(writer, connection, digest, **options)
    return writer.add_connection(
        connection.topic, msgtype, msgdef=msgdef.data, rihs01=digest, **options
    )


def _add_connection_as_stored(
    writer: Any, connection: Any, digest: str, serialization_format: str, offered_qos_profiles
):
    """A connection with the input's definition exactly as stored: none (as ROS 2 Humble
    writes: no sqlite3 definition row; an mcap schema with no encoding and no text), or a bare
    IDL text. rosbags' ``add_connection`` needs a definition and a hash, so this does its few
    steps itself."""
    from io import StringIO

    from rosbags.interfaces import Connection, ConnectionExtRosbag2
    from rosbags.rosbag2.metadata import dump_qos_v8, dump_qos_v9
    from ruamel.yaml import YAML

    try:
        storage, added = writer.storage, writer.added_types
        qos = list(offered_qos_profiles)
        new = Connection(
            id=len(writer.connections) + 1,
            topic=connection.topic,
            msgtype=connection.msgtype,
            msgdef=connection.msgdef,
            digest=digest,
            msgcount=0,
            ext=ConnectionExtRosbag2(
                serialization_format=serialization_format, offered_qos_profiles=qos
            ),
            owner=writer,
        )
        dumped = (dump_qos_v9 if writer.version >= 9 else dump_qos_v8)(qos)
        if not isinstance(dumped, str):
            stream = StringIO()
            yaml = YAML(typ="safe")
            yaml.default_flow_style = False
            yaml.dump(dumped, stream)
            dumped = stream.getvalue().strip()
        if new.msgtype not in added:
            if new.msgdef.data:
                storage.add_msgtype(new)
            elif hasattr(storage, "schemas"):  # mcap: a schema without encoding is none
                from rosbags.rosbag2.storage_mcap import Schema, write_schema

                schema = Schema(len(storage.schemas) + 1, new.msgtype, "", "")
                storage.schemas.append(schema)
                write_schema(storage.chunk.bio, schema)
            added.add(new.msgtype)
        storage.add_connection(new, dumped)
        writer.connections.append(new)
        writer.counts[new.id] = 0
    except AttributeError as exc:  # another rosbags than the one this was written for
        raise BagError(
            f"topic {connection.topic}: this rosbags version cannot copy a connection without "
            f"a message definition ({exc}); install rosbags 0.11"
        ) from None
    return new


def _same_face(a: FaceBox, b: FaceBox) -> bool:
    """Two boxes on one face: they overlap (IoU >= 0.3), or one lies mostly inside the other
    (the boxes of two tracks of one face around a zoom: the detector's tracker parts them)."""
    one, two = a.as_array(), b.as_array()
    if box_iou(one, two)[0, 0] >= 0.3:
        return True
    ix = max(0.0, min(one[2], two[2]) - max(one[0], two[0]))
    iy = max(0.0, min(one[3], two[3]) - max(one[1], two[1]))
    smaller = min(a.width * a.height, b.width * b.height)
    return smaller > 0 and ix * iy >= 0.5 * smaller


def _faces_of(found: list[FaceBox], added: list[FaceBox]) -> list[list[int]]:
    """The faces of a frame as groups of indices into ``found + added``: every detection is a
    face of its own (the first ``len(found)`` groups); a box from tracking joins the face it
    lies on, else is a face that only tracking covered."""
    faces = [[i] for i in range(len(found))]
    boxes = found + added
    for index in range(len(found), len(boxes)):
        home = next(
            (face for face in faces if any(_same_face(boxes[index], boxes[i]) for i in face)),
            None,
        )
        if home is None:
            faces.append([index])
        else:
            home.append(index)
    return faces


def missed_allowance(counts: list[int]) -> list[int]:
    """Per frame of one camera, how many faces the detector may have missed there, from how
    many it found in each frame (``counts``): the most it found in the nearest frame before
    and the nearest frame after that have any, less what it found in this one. Tracking's
    boxes that lie on no detection count as faces only up to this many: a face moving fast
    leaves the boxes of its earlier and later tracks all over a frame where it was found, and
    they are one face, not several (whatever tracking does, only its boxes are counted)."""
    before, after = [0] * len(counts), [0] * len(counts)
    last = 0
    for i, count in enumerate(counts):
        before[i], last = last, count or last
    last = 0
    for i in range(len(counts) - 1, -1, -1):
        after[i], last = last, counts[i] or last
    return [max(0, max(b, a) - c) for b, a, c in zip(before, after, counts, strict=True)]


def _write_all(
    reader,
    writer,
    work,
    config,
    settings,
    detector,
    boxes,
    topics,
    counter: _Progress,
    shared: Anonymizer | None = None,
) -> dict[int, int]:
    """Second pass: copy every connection, anonymize the image topics (one tracker and identity
    policy per topic, one landmarker and engine for all), write. ``boxes``: per topic, every
    frame's detections and the boxes tracking adds. Returns how many messages were copied byte
    for byte, per connection id."""
    found_boxes, added_boxes = boxes
    allowance = {
        topic: missed_allowance([len(found) for found in frames])
        for topic, frames in found_boxes.items()
    }
    work_topics = {c.topic for c in work}
    work_ids = {c.id for c in work}
    redefine = {c.msgtype for c in work}
    outputs = {
        connection.id: _add_output_connection(writer, reader, connection, redefine)
        for connection in reader.connections
    }
    # Detection itself is done (boxes); the landmarker and engine are loaded once.
    first = shared or Anonymizer(config, detector=detector)
    anonymizers = {
        topic: Anonymizer(
            config, detector=first.detector, landmarker=first.landmarker, engine=first.engine
        )
        for topic in work_topics
    }
    index = dict.fromkeys(work_topics, 0)
    pending: list[tuple] = []
    copied: dict[int, int] = {}

    def flush() -> None:
        if not pending:
            return
        try:
            results = anonymize_together(
                [(anonymizers[p[0].topic], p[3]) for p in pending],
                [p[4] + p[5] for p in pending],
            )
        except Exception as exc:  # fail closed: these frames pixelated whole
            log.error("anonymization failed for %d frames: %s", len(pending), exc)
            results = [None] * len(pending)
        for (connection, timestamp, msg, frame, found, added, missed), result in zip(
            pending, results, strict=True
        ):
            report = topics[connection.topic]
            groups = _faces_of(found, added)
            # each detection is a face; tracking's boxes on none, up to the faces missed here
            recovered = groups[len(found) :][:missed]
            faces = groups[: len(found)] + recovered
            report.faces += len(faces)
            report.frames_with_faces += bool(faces)
            report.recovered_frames += bool(recovered)
            if result is None:
                report.failed_frames += 1
                image = pixelate_whole(frame)
            else:
                image = result.image
                fell_back = [bool(f.fallback_reason) for f in result.faces]
                report.fallbacks += sum(
                    1 for face in faces if any(fell_back[i] for i in face if i < len(fell_back))
                )
            out = _encode(msg, connection.msgtype, image, frame, settings.jpeg_quality)
            data = reader.typestore.serialize_cdr(out, connection.msgtype)
            writer.write(outputs[connection.id], timestamp, data)
        pending.clear()

    for connection, timestamp, raw in reader.messages():
        counter.step()
        if connection.id not in work_ids:
            writer.write(outputs[connection.id], timestamp, raw)  # byte for byte
            copied[connection.id] = copied.get(connection.id, 0) + 1
            continue
        topic = connection.topic
        i = index[topic]
        index[topic] += 1
        topics[topic].messages += 1
        msg = reader.deserialize(raw, connection.msgtype)
        try:
            frame = _frame_of(msg, connection.msgtype)
            to_working(frame)
        except InputError as exc:
            topics[topic].dropped_frames += 1
            log.warning("%s frame %d dropped (not decodable): %s", topic, i, exc)
            continue
        pending.append(
            (
                connection,
                timestamp,
                msg,
                frame,
                found_boxes[topic][i],
                added_boxes[topic][i],
                allowance[topic][i],
            )
        )
        if len(pending) >= settings.batch:
            flush()
    flush()
    return copied
