"""``ciagan bag IN OUT``: anonymize every image topic of a rosbag2 recording, without ROS.

Reads sqlite3 and mcap rosbag2 folders with ``rosbags``, using the message definitions stored in
the bag. Two passes over each image topic: the first detects faces in every frame, so that
offline tracking (``track_recovery``) can cover faces the detector missed from both sides; the
second anonymizes (generator calls batched across time) and writes. Every other message is
copied byte for byte with its connection (type, definition, serialization format, offered QoS)
and timestamp. The output is written to a temporary folder beside OUT and renamed only when
complete; the input is never modified. A frame whose anonymization fails is written pixelated
whole, never raw.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ciagan_core import __version__
from ciagan_core.atomic_write import write_bytes_atomic
from ciagan_core.detection import create_detector
from ciagan_core.errors import CiaganError, InputError
from ciagan_core.faces import FaceBox
from ciagan_core.frames import to_working
from ciagan_core.model_file import file_sha256
from ciagan_core.pipeline import Anonymizer, AnonymizerConfig, anonymize_together, detect_faces
from ciagan_ros.frame_handler import pixelate_whole
from ciagan_ros.image_codec import (
    frame_to_compressed_data,
    frame_to_image_data,
    message_to_frame,
)
from ciagan_ros.track_recovery import recover_faces

log = logging.getLogger(__name__)

#: Written into each temporary output folder: the host and process writing it.
OWNER_FILE = ".owner.json"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED)
STORAGES = ("sqlite3", "mcap")


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


@dataclass
class TopicReport:
    """What happened on one image topic."""

    msgtype: str
    messages: int = 0
    frames_with_faces: int = 0
    faces: int = 0
    fallbacks: int = 0
    #: Frames where tracking covered a face the detector missed.
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


def _storage_of(path: Path) -> str:
    import yaml

    try:
        info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        return str(info["storage_identifier"])
    except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise BagError(f"{path}: not a rosbag2 folder (metadata.yaml: {exc})") from None


#: Modules whose exceptions mean a damaged bag.
_READER_MODULES = ("rosbags", "sqlite3", "apsw", "zstandard", "lz4", "mcap", "ruamel", "yaml")


def _reading(step: Callable, source: Path) -> Callable:
    """``step`` with the errors of a damaged bag (rosbags' own) turned into one BagError."""

    def run(*args):
        try:
            return step(*args)
        except Exception as exc:
            if type(exc).__module__.split(".")[0] in _READER_MODULES:
                raise BagError(f"{source}: cannot read the bag (truncated?): {exc}") from None
            raise

    return run


def _encode(msg: Any, msgtype: str, frame: np.ndarray, original: np.ndarray, quality: int):
    if msgtype == COMPRESSED:
        return replace(msg, data=frame_to_compressed_data(frame, msg.format, quality))
    return replace(msg, data=frame_to_image_data(frame, msg, original))


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

    source, target = Path(source), Path(target)
    progress = progress or (lambda done, total: None)
    if not source.is_dir():
        raise BagError(f"{source}: no such rosbag2 folder")
    _check_target(source, target, settings.overwrite)
    storage = settings.storage or _storage_of(source)
    if storage not in STORAGES:
        raise BagError(f"unknown storage {storage!r}; choose one of {', '.join(STORAGES)}")
    config.validate()
    start = time.perf_counter()
    fingerprint = input_fingerprint(source)  # before reading: a change while reading shows
    config = replace(config, hold_frames=0)  # offline recovery does better, both ways
    try:
        reader = AnyReader([source])
        reader.open()
    except Exception as exc:
        raise BagError(f"{source}: cannot read the bag ({exc})") from None
    try:
        images = [c for c in reader.connections if c.msgtype in IMAGE_TYPES]
        unknown = (
            set(settings.keep_topics)
            - {c.topic for c in images}
            - {c.topic for c in reader.connections if _may_carry_images(c)}
        )
        if unknown and settings.kept_topics_must_exist:
            raise BagError(f"--keep-topic names no image topic of the bag: {sorted(unknown)}")
        hidden = sorted(
            {c.topic for c in reader.connections if _may_carry_images(c)}
            - set(settings.keep_topics)
        )
        if hidden:  # images the tool cannot reach: never copied raw without being told to
            raise BagError(
                f"topics {hidden} carry images inside other message types (or video); they "
                "cannot be anonymized: keep them raw with --keep-topic only if they show no "
                "people, or drop them from the bag first"
            )
        work = [c for c in images if c.topic not in settings.keep_topics]
        topics = {
            c.topic: TopicReport(c.msgtype, kept_raw=c.topic in settings.keep_topics)
            for c in reader.connections
            if c.msgtype in IMAGE_TYPES or _may_carry_images(c)
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
        for topic, frames in recovered.items():
            topics[topic].recovered_frames = sum(1 for boxes in frames if boxes)
        parent = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
        # Who writes here: a later run removes the folder only if this process is gone.
        (parent / OWNER_FILE).write_text(
            json.dumps({"host": socket.gethostname(), "pid": os.getpid()})
        )
        tmp = parent / target.name  # the data file is named after this folder
        try:
            writer = Writer(
                tmp,
                version=9,
                storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3,
            )
            writer.open()
            try:
                boxes = {
                    topic: [a + b for a, b in zip(found, recovered[topic], strict=True)]
                    for topic, found in detections.items()
                }
                _reading(_write_all, source)(
                    reader,
                    writer,
                    work,
                    config,
                    settings,
                    detector,
                    boxes,
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
                "model_sha256": model_digest,
                "input_fingerprint": fingerprint,
                "output_fingerprint": output_fingerprint(tmp),
                "settings_sha256": settings_digest(config, settings, model_digest),
                "detector_precision": getattr(detector, "precision", None),
                "settings": {"bag": asdict(settings), "pipeline": asdict(config)},
                "topics": {t: asdict(r) for t, r in topics.items()},
                "copied_messages": sum(
                    c.msgcount for c in reader.connections if c.id not in {w.id for w in work}
                ),
                "wall_s": round(time.perf_counter() - start, 2),
            }
            report_path = target.with_name(target.name + ".report.json")
            report_path.unlink(missing_ok=True)  # never an old report beside a new bag
            if target.exists():  # --overwrite: the old bag moves aside only now
                os.replace(target, parent / "previous")
            os.replace(tmp, target)
            write_bytes_atomic(report_path, (json.dumps(report, indent=2) + "\n").encode())
        finally:
            shutil.rmtree(parent, ignore_errors=True)
    finally:
        reader.close()
    return report


def _check_target(source: Path, target: Path, overwrite: bool) -> None:
    """Refuse an output that would lose anything: the input, a folder holding it, a folder
    that is not a rosbag2 bag, a file, a missing or unwritable parent."""
    src, dst = source.resolve(), target.resolve()
    if dst == src or src in dst.parents or dst in src.parents or dst == Path.cwd().resolve():
        raise BagError(f"{target}: the output must be a new folder apart from the input")
    if target.exists():
        if not overwrite:
            raise BagError(f"{target} exists; pass --overwrite to replace it")
        if not (target.is_dir() and (target / "metadata.yaml").is_file()):
            raise BagError(f"{target} exists and is not a rosbag2 folder: it is not replaced")
    if not target.parent.is_dir():
        raise BagError(f"{target.parent}: no such folder")
    try:
        with tempfile.TemporaryFile(dir=target.parent):
            pass
    except OSError as exc:
        raise BagError(f"{target.parent}: cannot write there ({exc.strerror})") from None


#: Message types that carry camera images in a form the codec cannot decode.
VIDEO_TYPES = (
    "theora_image_transport/msg/Packet",
    "ffmpeg_image_transport_msgs/msg/FFMPEGPacket",
    "foxglove_msgs/msg/CompressedVideo",
    "h264_msgs/msg/Packet",
)


def _may_carry_images(connection: Any) -> bool:
    """A non-image connection whose messages embed images or video (not anonymizable here)."""
    if connection.msgtype in IMAGE_TYPES:
        return False
    if connection.msgtype in VIDEO_TYPES:
        return True
    definition = getattr(connection.msgdef, "data", "") or ""
    return "sensor_msgs/Image" in definition or "sensor_msgs/CompressedImage" in definition


def _detect_all(reader, work, detector, counter: _Progress) -> dict[str, list[list[FaceBox]]]:
    """First pass: every frame's detections, per topic. Unsupported encodings stop here."""
    detections: dict[str, list[list[FaceBox]]] = {c.topic: [] for c in work}
    if not work:  # rosbags reads every connection when given none
        return detections
    for connection, _, raw in reader.messages(connections=work):
        msg = reader.deserialize(raw, connection.msgtype)
        try:
            frame = message_to_frame(msg)
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
) -> None:
    """Second pass: copy every connection, anonymize the image topics (one tracker and identity
    policy per topic, one landmarker and engine for all), write."""
    work_topics = {c.topic for c in work}
    work_ids = {c.id for c in work}
    outputs = {}
    for connection in reader.connections:
        ext = connection.ext
        outputs[connection.id] = writer.add_connection(
            connection.topic,
            connection.msgtype,
            msgdef=connection.msgdef.data,
            rihs01=connection.digest if str(connection.digest).startswith("RIHS01_") else None,
            serialization_format=getattr(ext, "serialization_format", "cdr"),
            offered_qos_profiles=getattr(ext, "offered_qos_profiles", []),
        )
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

    def flush() -> None:
        if not pending:
            return
        try:
            results = anonymize_together(
                [(anonymizers[p[0].topic], p[3]) for p in pending], [p[4] for p in pending]
            )
        except Exception as exc:  # fail closed: these frames pixelated whole
            log.error("anonymization failed for %d frames: %s", len(pending), exc)
            results = [None] * len(pending)
        for (connection, timestamp, msg, frame, _), result in zip(pending, results, strict=True):
            report = topics[connection.topic]
            if result is None:
                report.failed_frames += 1
                image = pixelate_whole(frame)
            else:
                image = result.image
                report.faces += len(result.faces)
                report.fallbacks += result.fallbacks
                report.frames_with_faces += bool(result.faces)
            out = _encode(msg, connection.msgtype, image, frame, settings.jpeg_quality)
            data = reader.typestore.serialize_cdr(out, connection.msgtype)
            writer.write(outputs[connection.id], timestamp, data)
        pending.clear()

    for connection, timestamp, raw in reader.messages():
        counter.step()
        if connection.id not in work_ids:
            writer.write(outputs[connection.id], timestamp, raw)  # byte for byte
            continue
        topic = connection.topic
        i = index[topic]
        index[topic] += 1
        topics[topic].messages += 1
        msg = reader.deserialize(raw, connection.msgtype)
        try:
            frame = message_to_frame(msg)
            to_working(frame)
        except InputError as exc:
            topics[topic].dropped_frames += 1
            log.warning("%s frame %d dropped (not decodable): %s", topic, i, exc)
            continue
        pending.append((connection, timestamp, msg, frame, boxes[topic][i]))
        if len(pending) >= settings.batch:
            flush()
    flush()
