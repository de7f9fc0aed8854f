"""rosbag2 messages for the bag tests: images made from BGR frames, in ROS 2 Humble's types."""

from __future__ import annotations

import cv2
import numpy as np
from rosbags.typesys import Stores, get_typestore

STORE = get_typestore(Stores.ROS2_HUMBLE)
T = STORE.types
NS = 10**9


def image_message(frame: np.ndarray, encoding: str, stamp: int):
    """A sensor_msgs/Image of a BGR frame in ``encoding`` (bgr8, rgb8, mono8), stamped in ns."""
    header = T["std_msgs/msg/Header"](
        stamp=T["builtin_interfaces/msg/Time"](sec=stamp // NS, nanosec=stamp % NS),
        frame_id="camera",
    )
    pixels = {
        "bgr8": frame,
        "rgb8": cv2.cvtColor(frame, cv2.COLOR_BGR2RGB),
        "mono8": cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY),
    }[encoding]
    step = frame.shape[1] * (1 if pixels.ndim == 2 else 3)
    return T["sensor_msgs/msg/Image"](
        header=header,
        height=frame.shape[0],
        width=frame.shape[1],
        encoding=encoding,
        is_bigendian=0,
        step=step,
        data=np.ascontiguousarray(pixels).reshape(-1),
    )


def compressed_message(frame: np.ndarray, fmt: str, stamp: int):
    """A sensor_msgs/CompressedImage of a BGR frame (``fmt``: jpeg or png), stamped in ns."""
    header = T["std_msgs/msg/Header"](
        stamp=T["builtin_interfaces/msg/Time"](sec=stamp // NS, nanosec=stamp % NS),
        frame_id="camera",
    )
    _, data = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", frame)
    return T["sensor_msgs/msg/CompressedImage"](header=header, format=fmt, data=data.reshape(-1))


# -- Foxglove's image types ----------------------------------------------------------------------

FOXGLOVE_COMPRESSED = "foxglove_msgs/msg/CompressedImage"
FOXGLOVE_RAW = "foxglove_msgs/msg/RawImage"
FOXGLOVE_VIDEO = "foxglove_msgs/msg/CompressedVideo"
SEPARATOR = "=" * 80 + "\n"
_TIME = SEPARATOR + "MSG: builtin_interfaces/Time\nint32 sec\nuint32 nanosec\n"

#: Complete ros2msg definitions, as rosbag2 stores them, written from Foxglove's published
#: schemas (foxglove_msgs/msg/*.msg).
FOXGLOVE_DEFINITIONS = {
    FOXGLOVE_COMPRESSED: (
        "# A compressed image\n"
        "builtin_interfaces/Time timestamp\n"
        "string frame_id\n"
        "# Compressed image data\n"
        "uint8[] data\n"
        "# Image format: jpeg, png, webp, avif\n"
        "string format\n" + _TIME
    ),
    FOXGLOVE_RAW: (
        "# A raw image\n"
        "builtin_interfaces/Time timestamp\n"
        "string frame_id\n"
        "uint32 width\n"
        "uint32 height\n"
        "# Encoding of the raw image data: rgb8, bgr8, mono8, ...\n"
        "string encoding\n"
        "# Byte length of a single row\n"
        "uint32 step\n"
        "uint8[] data\n" + _TIME
    ),
    FOXGLOVE_VIDEO: (
        "# A single frame of a compressed video bitstream\n"
        "builtin_interfaces/Time timestamp\n"
        "string frame_id\n"
        "uint8[] data\n"
        "# Video format: h264, h265, vp9, av1\n"
        "string format\n" + _TIME
    ),
}


def store_with(definitions: dict[str, str]):
    """A Humble typestore with these types (complete ros2msg or ros2idl texts) registered."""
    from rosbags.typesys import get_types_from_idl, get_types_from_msg

    store = get_typestore(Stores.ROS2_HUMBLE)
    for name, text in definitions.items():
        if text.startswith(SEPARATOR + "IDL: "):
            for section in text.split(SEPARATOR)[1:]:
                store.register(get_types_from_idl(section.split("\n", 1)[1]))
        else:
            store.register(get_types_from_msg(text, name))
    return store


def add_defined_connection(writer, store, topic: str, msgtype: str, definition: str):
    """A connection that stores ``definition`` verbatim (and its RIHS01 hash)."""
    return writer.add_connection(
        topic, msgtype, msgdef=definition, rihs01=store.hash_rihs01(msgtype)
    )


def _time(stamp: int):
    return T["builtin_interfaces/msg/Time"](sec=stamp // NS, nanosec=stamp % NS)


def cloud_message(points: np.ndarray, names: tuple[str, ...], header):
    """A sensor_msgs/PointCloud2 of float32 points (height, width, one value per name)."""
    height, width, count = points.shape
    assert count == len(names)
    return T["sensor_msgs/msg/PointCloud2"](
        header=header,
        height=height,
        width=width,
        fields=[
            T["sensor_msgs/msg/PointField"](name=n, offset=4 * i, datatype=7, count=1)
            for i, n in enumerate(names)
        ],
        is_bigendian=False,
        point_step=4 * count,
        row_step=4 * count * width,
        data=np.ascontiguousarray(points, np.float32).view(np.uint8).reshape(-1),
        is_dense=True,
    )


def foxglove_compressed_message(store, frame: np.ndarray, fmt: str, stamp: int):
    """A foxglove_msgs/CompressedImage of a BGR frame (``fmt``: jpeg or png)."""
    _, data = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", frame)
    return store.types[FOXGLOVE_COMPRESSED](
        timestamp=_time(stamp), frame_id="camera", data=data.reshape(-1), format=fmt
    )


def foxglove_raw_message(store, frame: np.ndarray, encoding: str, stamp: int, pad: int = 0):
    """A foxglove_msgs/RawImage of a BGR frame (bgr8, rgb8, mono8), rows padded by ``pad``."""
    like = image_message(frame, encoding, stamp)
    rows = np.asarray(like.data).reshape(like.height, like.step)
    padded = np.pad(rows, ((0, 0), (0, pad)), constant_values=7)
    return store.types[FOXGLOVE_RAW](
        timestamp=_time(stamp),
        frame_id="camera",
        width=like.width,
        height=like.height,
        encoding=encoding,
        step=like.step + pad,
        data=padded.reshape(-1),
    )


# -- Bags as ROS 2 Humble writes them ------------------------------------------------------------

#: rosbag2 0.15 (Humble) sqlite3 schema: version 3, no message definitions, no type hashes.
HUMBLE_SQLITE_SCHEMA = """
CREATE TABLE schema(schema_version INTEGER PRIMARY KEY,ros_distro TEXT NOT NULL);
INSERT INTO schema VALUES(3,'humble');
CREATE TABLE metadata(id INTEGER PRIMARY KEY,metadata_version INTEGER NOT NULL,
                      metadata TEXT NOT NULL);
CREATE TABLE topics(id INTEGER PRIMARY KEY,name TEXT NOT NULL,type TEXT NOT NULL,
                    serialization_format TEXT NOT NULL,offered_qos_profiles TEXT NOT NULL);
CREATE TABLE messages(id INTEGER PRIMARY KEY,topic_id INTEGER NOT NULL,
                      timestamp INTEGER NOT NULL,data BLOB NOT NULL);
CREATE INDEX timestamp_idx ON messages (timestamp ASC);
"""

#: Humble's offered_qos_profiles: a YAML string with the enums as numbers.
HUMBLE_QOS = (
    "- history: 3\n  depth: 0\n  reliability: 1\n  durability: 2\n  deadline:\n"
    "    sec: 9223372036\n    nsec: 854775807\n  lifespan:\n    sec: 9223372036\n"
    "    nsec: 854775807\n  liveliness: 1\n  liveliness_lease_duration:\n"
    "    sec: 9223372036\n    nsec: 854775807\n  avoid_ros_namespace_conventions: false"
)


def write_humble_bag(
    path, storage: str, topics: list[tuple[str, str, list[tuple[int, bytes]]]], defined=()
) -> None:
    """A rosbag2 folder as ROS 2 Humble records it: metadata.yaml version 5 (QoS as a YAML
    string, no type hashes, no ros_distro). sqlite3: schema version 3, no message definitions.
    mcap: the definitions of the types in ``defined`` (Humble's mcap plugin stores those it
    finds), an empty schema (no encoding, no text) for the others. ``topics``: (name, type,
    [(timestamp, serialized message)])."""
    import sqlite3
    from pathlib import Path

    import yaml

    path = Path(path)
    data_file = f"{path.name}_0.{'db3' if storage == 'sqlite3' else 'mcap'}"
    if storage == "sqlite3":
        path.mkdir()
        db = sqlite3.connect(path / data_file)
        db.executescript(HUMBLE_SQLITE_SCHEMA)
        for index, (topic, msgtype, messages) in enumerate(topics, 1):
            db.execute(
                "INSERT INTO topics VALUES(?, ?, ?, 'cdr', ?)", (index, topic, msgtype, HUMBLE_QOS)
            )
            db.executemany(
                "INSERT INTO messages (topic_id, timestamp, data) VALUES(?, ?, ?)",
                [(index, stamp, raw) for stamp, raw in messages],
            )
        db.commit()
        db.close()
    else:
        _write_humble_mcap(path, data_file, topics, set(defined))
    stamps = [stamp for _, _, messages in topics for stamp, _ in messages]
    count = len(stamps)
    start, duration = min(stamps), max(stamps) - min(stamps)
    info = {
        "version": 5,
        "storage_identifier": storage,
        "duration": {"nanoseconds": duration},
        "starting_time": {"nanoseconds_since_epoch": start},
        "message_count": count,
        "topics_with_message_count": [
            {
                "topic_metadata": {
                    "name": topic,
                    "type": msgtype,
                    "serialization_format": "cdr",
                    "offered_qos_profiles": HUMBLE_QOS,
                },
                "message_count": len(messages),
            }
            for topic, msgtype, messages in topics
        ],
        "compression_format": "",
        "compression_mode": "",
        "relative_file_paths": [data_file],
        "files": [
            {
                "path": data_file,
                "starting_time": {"nanoseconds_since_epoch": start},
                "duration": {"nanoseconds": duration},
                "message_count": count,
            }
        ],
    }
    (path / "metadata.yaml").write_text(
        yaml.safe_dump({"rosbag2_bagfile_information": info}, sort_keys=False)
    )


def _write_humble_mcap(path, data_file: str, topics, defined: set[str]) -> None:
    """The mcap file of a Humble recording (rosbags' writer, with empty schemas where Humble
    found no definition, and QoS in Humble's numeric form)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.rosbag2.metadata import parse_qos
    from rosbags.rosbag2.storage_mcap import Schema, write_schema

    scratch = path.with_name(path.name + ".scratch")
    with Writer(scratch, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        storage = writer.storage
        for topic, msgtype, messages in topics:
            if msgtype not in defined and msgtype not in writer.added_types:
                schema = Schema(len(storage.schemas) + 1, msgtype, "", "")
                storage.schemas.append(schema)
                write_schema(storage.chunk.bio, schema)
                writer.added_types.add(msgtype)
            qos = parse_qos(HUMBLE_QOS)
            if msgtype in defined:
                conn = writer.add_connection(
                    topic, msgtype, typestore=STORE, offered_qos_profiles=qos
                )
            else:  # the hash goes nowhere: Humble's metadata (rewritten below) has none
                conn = writer.add_connection(
                    topic, msgtype, msgdef="", rihs01="none", offered_qos_profiles=qos
                )
            for stamp, raw in messages:
                writer.write(conn, stamp, raw)
    path.mkdir()
    (scratch / f"{scratch.name}.mcap").rename(path / data_file)
    for leftover in scratch.iterdir():
        leftover.unlink()
    scratch.rmdir()


def write_face_bag(path, face: np.ndarray, frames: int = 3, storage: str = "mcap") -> np.ndarray:
    """A bag of ``frames`` 320x240 bgr8 images on /cam/image, each the same canvas with
    ``face`` (200x200) in it; returns the canvas (its face box: ``FACE_BOX``)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    canvas = np.full((240, 320, 3), 80, np.uint8)
    canvas[20:220, 60:260] = face
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        image = writer.add_connection("/cam/image", "sensor_msgs/msg/Image", typestore=STORE)
        for i in range(frames):
            stamp = 1_700_000_000 * NS + i * 100_000_000
            msg = image_message(canvas, "bgr8", stamp)
            writer.write(image, stamp, STORE.serialize_cdr(msg, image.msgtype))
    return canvas


#: The middle of the face in every frame of ``write_face_bag`` (x0, y0, x1, y1).
FACE_BOX = (130, 50, 190, 125)


# -- Reading and judging ------------------------------------------------------------------------


def read_bag(path) -> dict:
    """Per topic: the connection, [(timestamp, raw bytes)] and the messages decoded (None for
    a type the bag does not define; Humble's standard types for a bag that defines none)."""
    from pathlib import Path

    from rosbags.highlevel import AnyReader

    out: dict = {}
    with AnyReader([Path(path)], default_typestore=STORE) as reader:
        for connection, timestamp, raw in reader.messages():
            entry = out.setdefault(connection.topic, {"conn": connection, "msgs": []})
            entry["msgs"].append((timestamp, bytes(raw)))
        for entry in out.values():
            msgtype = entry["conn"].msgtype
            known = msgtype in reader.typestore.fielddefs
            entry["decoded"] = [
                reader.deserialize(raw, msgtype) if known else None for _, raw in entry["msgs"]
            ]
    return out


def first_frame(path) -> np.ndarray:
    """The first image of a bag (sensor_msgs/Image, bgr8), as a frame."""
    from pathlib import Path

    from rosbags.highlevel import AnyReader

    with AnyReader([Path(path)]) as reader:
        _, _, raw = next(iter(reader.messages()))
        msg = reader.deserialize(raw, "sensor_msgs/msg/Image")
    return np.asarray(msg.data, np.uint8).reshape(msg.height, msg.width, 3)


def message_frame(msg) -> np.ndarray:
    """The BGR/gray frame of an image message: sensor_msgs or foxglove_msgs, raw or compressed."""
    from ciagan_ros.image_codec import message_to_frame

    return message_to_frame(msg)


def unchanged_share(after: np.ndarray, before: np.ndarray, box, tolerance: int = 0) -> float:
    """The share of the face (``box`` less a 10 px margin) whose pixels still equal the input's,
    within ``tolerance`` per channel (for a lossy re-encoding)."""
    x0, y0, x1, y1 = np.asarray(box).astype(int)
    inner = (slice(y0 + 10, y1 - 10), slice(x0 + 10, x1 - 10))
    diff = np.abs(after[inner].astype(int) - before[inner].astype(int))
    same = diff <= tolerance
    return float((same if same.ndim == 2 else same.all(-1)).mean())


def moving_face(photo: np.ndarray, box: np.ndarray, count: int):
    """``count`` 272x320 frames of a face moving 2 px a frame to the right, and its boxes."""
    frames, boxes = [], []
    for i in range(count):
        canvas = np.full((272, 320, 3), 90, np.uint8)
        dx = 2 * i
        canvas[: photo.shape[0], dx : dx + photo.shape[1]] = photo[:, : 320 - dx]
        frames.append(canvas)
        boxes.append(box + np.array([dx, 0, dx, 0]))
    return frames, boxes
