"""``ciagan bag IN OUT``: anonymize every image topic of a rosbag2 recording, without ROS.

Reads sqlite3 and mcap rosbag2 folders with ``rosbags``, using the message definitions stored in
the bag, and a ROS 2 distro's standard types for those it does not store (ROS 2 Humble stores
none). Image topics are sensor_msgs' and foxglove_msgs' Image/RawImage and CompressedImage. Two
passes over each image topic: the first detects faces in every frame, so that offline tracking
(``track_recovery``) can cover faces the detector missed from both sides; the second anonymizes
(generator calls batched across time) and writes. Every other message is copied byte for byte
with its connection (type, definition, serialization format, offered QoS) and timestamp; a topic
whose messages embed images (judged from the parsed definitions) stops the run unless kept raw
on purpose. The output is written to a temporary folder beside OUT and renamed only when
complete, never onto anything this run did not check at the start; the input is never modified.
A frame whose anonymization fails is written pixelated whole, never raw.
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
from dataclasses import asdict, dataclass, replace
from pathlib import Path, PurePath
from types import SimpleNamespace
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
IMAGE_TYPES = (IMAGE, COMPRESSED, FOXGLOVE_RAW, FOXGLOVE_COMPRESSED)
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


def _reading(step: Callable, source: Path) -> Callable:
    """``step`` with the errors of a damaged bag (rosbags' own) turned into one BagError."""

    def run(*args):
        try:
            return step(*args)
        except Exception as exc:
            if type(exc).__module__.split(".")[0] in _READER_MODULES:
                raise BagError(
                    f"{source}: cannot read the bag (truncated?): {_one_line(exc)}"
                ) from None
            raise

    return run


def _raw_view(msg: Any, msgtype: str) -> Any:
    """A raw image message as the codec reads it (sensor_msgs' field names)."""
    if msgtype == FOXGLOVE_RAW:  # no is_bigendian: Foxglove's raw images are little-endian
        return SimpleNamespace(
            height=msg.height,
            width=msg.width,
            encoding=msg.encoding,
            step=msg.step,
            data=msg.data,
            is_bigendian=0,
        )
    return msg


def _frame_of(msg: Any, msgtype: str) -> np.ndarray:
    """The pipeline frame of an image message of any of ``IMAGE_TYPES``."""
    if msgtype in COMPRESSED_TYPES:
        return compressed_to_frame(msg)
    return image_to_frame(_raw_view(msg, msgtype))


def _encode(msg: Any, msgtype: str, frame: np.ndarray, original: np.ndarray, quality: int):
    """``msg`` with ``frame`` as its pixels; every other field (header or timestamp and
    frame_id, size, encoding, format, row padding) as it was."""
    if msgtype in COMPRESSED_TYPES:
        return replace(msg, data=frame_to_compressed_data(frame, msg.format, quality))
    return replace(msg, data=frame_to_image_data(frame, _raw_view(msg, msgtype), original))


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


def output_fingerprint(folder: Path) -> list:
    """The files of a written bag (names and sizes), to notice one deleted or cut later."""
    return [
        [str(p.relative_to(folder)), p.stat().st_size]
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file()
    ]


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
    except Exception as exc:
        raise BagError(f"{source}: cannot read the bag ({_one_line(exc)})") from None
    try:
        _check_storage_listed(source, reader)
        from_distro = _complete_types(reader, standard)
        images, carriers, problems = _classify(reader, settings)
        topics_of_images = {c.topic for c in images} | {c.topic for c in carriers}
        unknown = set(settings.keep_topics) - topics_of_images
        if unknown and settings.kept_topics_must_exist:
            raise BagError(f"--keep-topic names no image topic of the bag: {sorted(unknown)}")
        if problems:  # images the tool cannot reach: never copied raw without being told to
            raise BagError("; ".join(problems))
        work = [c for c in images if c.topic not in settings.keep_topics]
        topics = {
            c.topic: TopicReport(c.msgtype, kept_raw=c.topic in settings.keep_topics)
            for c in reader.connections
            if c in images or c in carriers
        }
        counter = _Progress(
            progress, sum(c.msgcount for c in reader.connections) + sum(c.msgcount for c in work)
        )
        if anonymizer is not None:
            detector = anonymizer.detector
        else:
            detector = create_detector(config.detector, config.detector_settings)
        detections = _reading(_detect_all, source)(reader, work, detector, counter)
        recovered = {
            topic: recover_faces(frames, settings.max_gap) for topic, frames in detections.items()
        }
        parent = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
        publishing = _Publishing(parent, target, planned)
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
                writer.close()
                raise
            writer.close()
            if input_fingerprint(source) != fingerprint:
                raise BagError(
                    f"{source}: the recording changed while it was read (still being copied "
                    "or recorded?); nothing written, run again when it is complete"
                )
            model_digest = model_sha256(config)
            report = {
                "complete": True,
                "tool": f"ciagan bag {__version__}",
                "input": str(source),
                "output": str(target),
                "storage": storage,
                "distro": distro,
                "types_from_distro": from_distro,
                "model_sha256": model_digest,
                "input_fingerprint": fingerprint,
                "output_fingerprint": output_fingerprint(tmp),
                "settings_sha256": settings_digest(config, settings, model_digest),
                "detector_precision": getattr(detector, "precision", None),
                "settings": {"bag": asdict(settings), "pipeline": asdict(config)},
                "topics": {t: asdict(r) for t, r in topics.items()},
                "copied_messages": copied,
                "wall_s": round(time.perf_counter() - start, 2),
            }
            publishing.publish(tmp)
            report_path = target.with_name(target.name + ".report.json")
            write_bytes_atomic(report_path, (json.dumps(report, indent=2) + "\n").encode())
        finally:
            publishing.clean_up()
    finally:
        reader.close()
    return report


def _check_target(source: Path, target: Path, overwrite: bool) -> tuple[int, ...] | None:
    """Refuse an output that would lose anything: the input, a folder holding it, a folder
    that is not a rosbag2 bag, a file, a missing or unwritable parent. Returns the identity of
    the bag that --overwrite may replace (None: OUT must still be free at the end)."""
    src, dst = source.resolve(), target.resolve()
    if dst == src or src in dst.parents or dst in src.parents or dst == Path.cwd().resolve():
        raise BagError(f"{target}: the output must be a new folder apart from the input")
    planned = None
    if os.path.lexists(target):
        if not overwrite:
            raise BagError(f"{target} exists; pass --overwrite to replace it")
        if not (target.is_dir() and (target / "metadata.yaml").is_file()):
            raise BagError(f"{target} exists and is not a rosbag2 folder: it is not replaced")
        planned = _identity(target)
    if not target.parent.is_dir():
        raise BagError(f"{target.parent}: no such folder")
    try:
        with tempfile.TemporaryFile(dir=target.parent):
            pass
    except OSError as exc:
        raise BagError(f"{target.parent}: cannot write there ({exc.strerror})") from None
    return planned


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


def _rename_noreplace(src: Path, dst: Path) -> None:
    """Rename the folder ``src`` to ``dst`` only if nothing is there: FileExistsError otherwise,
    for an empty folder too (which a plain rename silently replaces)."""
    if _RENAMEAT2 is not None:
        result = _RENAMEAT2(
            _AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE
        )
        if result == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise OSError(code, os.strerror(code), str(dst))
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


@dataclass
class _Publishing:
    """Moves a finished bag to OUT. OUT must be free, or (--overwrite) still the very bag
    checked at the start: that one moves into the temporary folder first, and back if the new
    bag cannot take its place. Anything else at OUT is left as it is, and the run fails."""

    parent: Path
    target: Path
    planned: tuple[int, ...] | None
    #: The bag being replaced sits in ``parent`` (not to be removed with it).
    holding_old: bool = False

    @property
    def report_path(self) -> Path:
        return self.target.with_name(self.target.name + ".report.json")

    def publish(self, tmp: Path) -> None:
        aside, old_report = self.parent / "previous", self.parent / "previous.report.json"
        changed = (
            f"{self.target} changed while this run wrote it (another run or tool?): it is not "
            "replaced; nothing written"
        )
        if self.planned is not None:
            if _identity(self.target) != self.planned:
                raise BagError(changed)
            try:
                _rename_noreplace(self.target, aside)
            except FileNotFoundError:
                raise BagError(changed) from None
            self.holding_old = True
            moved = _identity(aside)  # a rename changes the folder's ctime, not its inode
            if moved is None or moved[:2] != self.planned[:2]:  # swapped meanwhile
                raise BagError(changed + self._put_back(aside, old_report))
            with contextlib.suppress(FileNotFoundError):  # never an old report beside a new bag
                os.rename(self.report_path, old_report)
        try:
            _rename_noreplace(tmp, self.target)
        except FileExistsError:
            kept = self._put_back(aside, old_report) if self.holding_old else ""
            raise BagError(
                f"{self.target} appeared while this run wrote it (another run or tool?): it is "
                f"left as it is; nothing written{kept}"
            ) from None
        except BaseException:
            if self.holding_old:
                self._put_back(aside, old_report)
            raise
        self.holding_old = False  # replaced, as asked: removed with the temporary folder

    def _put_back(self, aside: Path, old_report: Path) -> str:
        """The bag moved aside back at OUT, or (OUT taken meanwhile) beside it; its report too.
        Returns what to tell about it."""
        home, note = self.target, ""
        try:
            _rename_noreplace(aside, home)
        except FileExistsError:
            home = self.target.with_name(f"{self.target.name}.previous-{uuid.uuid4().hex[:8]}")
            _rename_noreplace(aside, home)
            note = f" (the bag it was to replace is kept at {home})"
        self.holding_old = False
        if old_report.exists():
            with contextlib.suppress(FileExistsError):
                os.link(old_report, home.with_name(home.name + ".report.json"))
        return note

    def clean_up(self) -> None:
        if self.holding_old:  # never remove a bag this run did not replace
            log.error("the bag that was at %s is kept in %s", self.target, self.parent)
            return
        shutil.rmtree(self.parent, ignore_errors=True)


# -- What the bag holds ------------------------------------------------------------------------

#: Message types that carry camera images in a form the codec cannot decode.
VIDEO_TYPES = (
    "theora_image_transport/msg/Packet",
    "ffmpeg_image_transport_msgs/msg/FFMPEGPacket",
    "foxglove_msgs/msg/CompressedVideo",
    "h264_msgs/msg/Packet",
)
#: Types that are, or hold, camera images.
CARRIER_TYPES = (*IMAGE_TYPES, *VIDEO_TYPES)
#: A type no definition describes is judged by its name and its topic's: these words suggest
#: images (or video) and stop the run until the topic is kept explicitly.
_IMAGE_WORDS = re.compile(
    r"(?<![a-z])(image|img|camera|cam|video|frame|picture|photo|snapshot|jpe?g|png|h26[45]|"
    r"hevc|theora|ffmpeg|packet|compressed|disparity|depth|rgbd?|mono|stereo|thermal|"
    r"infrared|ir)s?(?![a-z])"
)


def _looks_like_images(name: str) -> bool:
    """Whether a type's or topic's name has a word of images or video in it (words split at
    separators and case changes: CameraFrame, FFMPEGPacket, /front_cam/raw)."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
    return _IMAGE_WORDS.search(words) is not None


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


def _complete_types(reader: Any, standard: Any) -> list[str]:
    """Register the standard types (with what they hold) of the connections the bag stores no
    definition of and the reader lacks; returns those types."""
    from rosbags.interfaces import MessageDefinitionFormat

    store = reader.typestore
    wanted = sorted(
        {
            c.msgtype
            for c in reader.connections
            if c.msgdef.format == MessageDefinitionFormat.NONE
            and c.msgtype not in store.fielddefs
            and c.msgtype in standard.fielddefs
        }
    )
    typs: dict[str, Any] = {}

    def add(name: str) -> None:
        if name in typs or name in store.fielddefs or name not in standard.fielddefs:
            return
        typs[name] = standard.fielddefs[name]
        for _, desc in standard.fielddefs[name][1]:
            if (inner := _nested(desc)) is not None:
                add(inner)

    for name in wanted:
        add(name)
    if typs:
        store.register(typs)
    return wanted


def _carried(store: Any, msgtype: str, topic: str, seen: set[str]) -> str | None:
    """Why a message of ``msgtype`` (embedded on ``topic``) holds images, or None: it is, or
    holds, an image or video type, or a type nothing defines whose name suggests images."""
    if msgtype in CARRIER_TYPES:
        return f"it holds {msgtype}"
    fields = store.fielddefs.get(msgtype)
    if fields is None:
        if _looks_like_images(msgtype.rsplit("/", 1)[-1]) or _looks_like_images(topic):
            return f"it holds {msgtype}, which the bag does not define"
        return None
    if msgtype in seen:
        return None
    seen.add(msgtype)
    for _, desc in fields[1]:
        inner = _nested(desc)
        if inner is not None and (why := _carried(store, inner, topic, seen)):
            return why
    return None


def _classify(reader: Any, settings: BagSettings) -> tuple[list, list, list[str]]:
    """The connections to anonymize (image types), those that carry images the tool cannot
    anonymize (to be kept explicitly), and the errors of the latter not kept."""
    store, kept = reader.typestore, set(settings.keep_topics)
    images, carriers, problems = [], [], []
    hidden, undefined, malformed = [], [], []
    for c in reader.connections:
        fields = store.fielddefs.get(c.msgtype)
        if c.msgtype in IMAGE_TYPES and fields is not None:
            have = {name for name, _ in fields[1]}
            if set(IMAGE_FIELDS[c.msgtype]) <= have:
                images.append(c)
                continue
            carriers.append(c)
            malformed.append(c)
        elif fields is None:  # no definition, not a standard type: judged by its name
            if _carried(store, c.msgtype, c.topic, set()):
                carriers.append(c)
                undefined.append(c)
        elif c.msgtype in VIDEO_TYPES or _carried(store, c.msgtype, c.topic, set()):
            carriers.append(c)
            hidden.append(c)
    keep = "keep them raw with --keep-topic only if they show no people, or drop them first"
    if bad := sorted({c.topic for c in hidden} - kept):
        problems.append(
            f"topics {bad} carry images inside other message types (or video); they cannot "
            f"be anonymized: {keep}"
        )
    if bad := sorted({c.topic for c in undefined} - kept):
        types = sorted({c.msgtype for c in undefined if c.topic in bad})
        problems.append(
            f"topics {bad} have types the bag does not define ({', '.join(types)}; not "
            f"standard ROS 2 types either) and look like camera topics: they cannot be "
            f"checked or anonymized: {keep} (--keep-topic {bad[0]})"
        )
    if bad := sorted({c.topic for c in malformed} - kept):
        problems.append(
            f"topics {bad}: their image type's definition in the bag lacks the image fields: "
            f"{keep} (--keep-topic {bad[0]})"
        )
    return images, carriers, problems


def _detect_all(reader, work, detector, counter: _Progress) -> dict[str, list[list[FaceBox]]]:
    """First pass: every frame's detections, per topic. Unsupported encodings stop here."""
    detections: dict[str, list[list[FaceBox]]] = {c.topic: [] for c in work}
    if not work:  # rosbags reads every connection when given none
        return detections
    for connection, _, raw in reader.messages(connections=work):
        msg = reader.deserialize(raw, connection.msgtype)
        try:
            frame = _frame_of(msg, connection.msgtype)
            boxes = detect_faces(detector, to_working(frame))
        except InputError as exc:
            if "unsupported" in str(exc):
                raise BagError(
                    f"topic {connection.topic}: {exc}; keep it raw with --keep-topic "
                    f"{connection.topic} if it shows no people"
                ) from None
            boxes = None  # an undecodable frame: dropped in the second pass
        detections[connection.topic].append(boxes if boxes is not None else [])
        counter.step()
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
    face of its own; a box from tracking joins the face it lies on, else is a face that only
    tracking covered."""
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
) -> int:
    """Second pass: copy every connection, anonymize the image topics (one tracker and identity
    policy per topic, one landmarker and engine for all), write. ``boxes``: per topic, every
    frame's detections and the boxes tracking adds. Returns how many messages were copied."""
    found_boxes, added_boxes = boxes
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
    copied = 0

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
        for (connection, timestamp, msg, frame, found, added), result in zip(
            pending, results, strict=True
        ):
            report = topics[connection.topic]
            faces = _faces_of(found, added)
            report.faces += len(faces)
            report.frames_with_faces += bool(faces)
            report.recovered_frames += any(min(face) >= len(found) for face in faces)
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
            copied += 1
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
            (connection, timestamp, msg, frame, found_boxes[topic][i], added_boxes[topic][i])
        )
        if len(pending) >= settings.batch:
            flush()
    flush()
    return copied
