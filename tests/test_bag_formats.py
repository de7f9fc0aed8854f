"""``ciagan bag`` on the recordings beyond sensor_msgs: Foxglove's image types, images inside
other types (msg and IDL definitions), bags without definitions (ROS 2 Humble), and damaged
metadata. Built from the shared faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import celeba_image, hog_box

from ciagan_core.cli import main
from ciagan_core.pipeline import AnonymizerConfig
from ciagan_ros.bag_tool import BagError, BagSettings, anonymize_bag

rosbags = pytest.importorskip("rosbags")
from rosbag_messages import (  # noqa: E402
    FOXGLOVE_COMPRESSED,
    FOXGLOVE_DEFINITIONS,
    FOXGLOVE_RAW,
    FOXGLOVE_VIDEO,
    NS,
    SEPARATOR,
    STORE,
    T,
    add_defined_connection,
    foxglove_compressed_message,
    foxglove_raw_message,
    image_message,
    message_frame,
    moving_face,
    read_bag,
    store_with,
    unchanged_share,
    write_humble_bag,
)
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402

STORAGES = ["mcap", "sqlite3"]
PLUGINS = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
#: The most of a face that may still show the input after anonymization: lossless topics
#: compare exactly, JPEG ones within a re-encoding's error.
MAX_UNCHANGED = 0.1
JPEG_TOLERANCE = 6


@pytest.fixture(scope="module")
def scene(shared_dir, celeba_rows):
    row = celeba_rows[0]
    return moving_face(celeba_image(shared_dir, row), hog_box(row), 3)


def _stamp(i: int) -> int:
    return 1_700_000_000 * NS + i * 100_000_000


# -- 1. Foxglove image types -----------------------------------------------------------------

FOXGLOVE_TOPICS = {
    "/cam/foxglove/jpeg": (FOXGLOVE_COMPRESSED, "jpeg"),
    "/cam/foxglove/png": (FOXGLOVE_COMPRESSED, "png"),
    "/cam/foxglove/raw": (FOXGLOVE_RAW, "rgb8"),
    "/cam/foxglove/mono": (FOXGLOVE_RAW, "mono8"),
}


@pytest.mark.parametrize("storage", STORAGES)
def test_foxglove_image_topics_are_anonymized_like_their_sensor_msgs_twins(
    scene, tmp_path, storage
):
    frames, boxes = scene
    definitions = {t: FOXGLOVE_DEFINITIONS[t] for t in (FOXGLOVE_COMPRESSED, FOXGLOVE_RAW)}
    store = store_with(definitions)
    source, target = tmp_path / "in", tmp_path / "out"
    with Writer(source, version=9, storage_plugin=PLUGINS[storage]) as writer:
        conns = {
            topic: add_defined_connection(writer, store, topic, msgtype, definitions[msgtype])
            for topic, (msgtype, _) in FOXGLOVE_TOPICS.items()
        }
        for i, frame in enumerate(frames):
            for topic, (msgtype, kind) in FOXGLOVE_TOPICS.items():
                if msgtype == FOXGLOVE_COMPRESSED:
                    msg = foxglove_compressed_message(store, frame, kind, _stamp(i))
                else:
                    msg = foxglove_raw_message(store, frame, kind, _stamp(i), pad=4)
                writer.write(conns[topic], _stamp(i) + 5, store.serialize_cdr(msg, msgtype))

    report = anonymize_bag(source, target, AnonymizerConfig(), BagSettings())

    before, after = read_bag(source), read_bag(target)
    for topic, (msgtype, kind) in FOXGLOVE_TOPICS.items():
        old_conn, new_conn = before[topic]["conn"], after[topic]["conn"]
        assert (new_conn.msgtype, new_conn.msgdef.data, new_conn.digest) == (
            msgtype,
            definitions[msgtype],
            old_conn.digest,
        )
        assert [t for t, _ in after[topic]["msgs"]] == [t for t, _ in before[topic]["msgs"]]
        for i, (old, new) in enumerate(
            zip(before[topic]["decoded"], after[topic]["decoded"], strict=True)
        ):
            assert (new.timestamp.sec, new.timestamp.nanosec, new.frame_id) == (
                old.timestamp.sec,
                old.timestamp.nanosec,
                old.frame_id,
            )
            if msgtype == FOXGLOVE_COMPRESSED:
                assert new.format == old.format == kind
            else:
                assert (new.width, new.height, new.encoding, new.step) == (
                    old.width,
                    old.height,
                    old.encoding,
                    old.step,
                )
                # the row padding is written as zeros, like sensor_msgs' (never the input's)
                rows = np.asarray(new.data).reshape(new.height, new.step)
                assert (rows[:, -4:] == 0).all()
            tolerance = JPEG_TOLERANCE if kind == "jpeg" else 0
            share = unchanged_share(message_frame(new), message_frame(old), boxes[i], tolerance)
            assert share < MAX_UNCHANGED, f"{topic} frame {i}: {share:.0%} of the face unchanged"
        stats = report["topics"][topic]
        assert stats["msgtype"] == msgtype and not stats["kept_raw"]
        assert stats["messages"] == len(frames) and stats["faces"] == len(frames)


# -- 2. Images inside other types, judged from the parsed definition -------------------------

FRAME_IDL = (
    SEPARATOR
    + "IDL: my_msgs/msg/Frame\n"
    + "// generated from rosidl_adapter/resource/msg.idl.em\n"
    + "module my_msgs {\n  module msg {\n    struct Frame {\n"
    + "      string camera_name;\n      sensor_msgs::msg::Image image;\n    };\n  };\n};\n"
    + SEPARATOR
    + "IDL: sensor_msgs/msg/Image\n"
    + "module sensor_msgs {\n  module msg {\n    struct Image {\n"
    + "      std_msgs::msg::Header header;\n      uint32 height;\n      uint32 width;\n"
    + "      string encoding;\n      uint8 is_bigendian;\n      uint32 step;\n"
    + "      sequence<uint8> data;\n    };\n  };\n};\n"
    + SEPARATOR
    + "IDL: std_msgs/msg/Header\n"
    + "module std_msgs {\n  module msg {\n    struct Header {\n"
    + "      builtin_interfaces::msg::Time stamp;\n      string frame_id;\n    };\n  };\n};\n"
    + SEPARATOR
    + "IDL: builtin_interfaces/msg/Time\n"
    + "module builtin_interfaces {\n  module msg {\n    struct Time {\n"
    + "      int32 sec;\n      uint32 nanosec;\n    };\n  };\n};\n"
)
_HEADER = (
    SEPARATOR
    + "MSG: std_msgs/Header\nbuiltin_interfaces/Time stamp\nstring frame_id\n"
    + SEPARATOR
    + "MSG: builtin_interfaces/Time\nint32 sec\nuint32 nanosec\n"
)
TILES_MSG = (
    "# tiles of a panorama\nuint32 columns\nfoxglove_msgs/CompressedImage[] tiles\n"
    + SEPARATOR
    + "MSG: foxglove_msgs/CompressedImage\n"
    + FOXGLOVE_DEFINITIONS[FOXGLOVE_COMPRESSED]
)
CLIP_MSG = (
    "string label\nfoxglove_msgs/CompressedVideo video\n"
    + SEPARATOR
    + "MSG: foxglove_msgs/CompressedVideo\n"
    + FOXGLOVE_DEFINITIONS[FOXGLOVE_VIDEO]
)
THEORA_MSG = (
    "string camera\ntheora_image_transport/Packet packet\n"
    + SEPARATOR
    + "MSG: theora_image_transport/Packet\nstd_msgs/Header header\nuint8[] data\n"
    + "int32 b_o_s\nint32 e_o_s\nint64 granulepos\nint64 packetno\n"
    + _HEADER
)

#: topic: (type, complete definition, a message of it made from a frame)
EMBEDDING = {
    "/cam/frame": (
        "my_msgs/msg/Frame",
        FRAME_IDL,
        lambda store, frame: store.types["my_msgs/msg/Frame"](
            camera_name="front", image=image_message(frame, "bgr8", _stamp(0))
        ),
    ),
    "/cam/tiles": (
        "my_msgs/msg/Tiles",
        TILES_MSG,
        lambda store, frame: store.types["my_msgs/msg/Tiles"](
            columns=1, tiles=[foxglove_compressed_message(store, frame, "jpeg", _stamp(0))]
        ),
    ),
    "/cam/clip": (
        "my_msgs/msg/Clip",
        CLIP_MSG,
        lambda store, frame: store.types["my_msgs/msg/Clip"](
            label="front",
            video=store.types[FOXGLOVE_VIDEO](
                timestamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=0),
                frame_id="camera",
                data=np.frombuffer(b"\x00\x00\x00\x01\x67h264", np.uint8),
                format="h264",
            ),
        ),
    ),
    "/cam/theora": (
        "my_msgs/msg/Theora",
        THEORA_MSG,
        lambda store, frame: store.types["my_msgs/msg/Theora"](
            camera="front",
            packet=store.types["theora_image_transport/msg/Packet"](
                header=image_message(frame, "bgr8", _stamp(0)).header,
                data=np.frombuffer(b"theora-packet", np.uint8),
                b_o_s=1,
                e_o_s=0,
                granulepos=0,
                packetno=0,
            ),
        ),
    ),
}


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("topic", sorted(EMBEDDING))
def test_a_type_embedding_images_stops_the_run_whatever_its_definition_format(
    scene, tmp_path, topic, storage
):
    msgtype, definition, build = EMBEDDING[topic]
    store = store_with({msgtype: definition})
    source, target = tmp_path / "in", tmp_path / "out"
    with Writer(source, version=9, storage_plugin=PLUGINS[storage]) as writer:
        conn = add_defined_connection(writer, store, topic, msgtype, definition)
        writer.write(conn, 5, store.serialize_cdr(build(store, scene[0][0]), msgtype))
    with pytest.raises(BagError, match=f"{topic}.*carry images"):
        anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    report = anonymize_bag(source, target, AnonymizerConfig(), BagSettings(keep_topics=(topic,)))
    assert report["topics"][topic]["kept_raw"] is True
    assert read_bag(target)[topic]["msgs"] == read_bag(source)[topic]["msgs"]


def test_a_type_that_only_mentions_an_image_type_in_a_comment_is_copied(tmp_path):
    definition = "# the camera's sensor_msgs/Image is published elsewhere\nstring note\n"
    store = store_with({"my_msgs/msg/Note": definition})
    source, target = tmp_path / "in", tmp_path / "out"
    with Writer(source, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = add_defined_connection(writer, store, "/notes", "my_msgs/msg/Note", definition)
        msg = store.types["my_msgs/msg/Note"](note="calibrated")
        writer.write(conn, 5, store.serialize_cdr(msg, conn.msgtype))
    report = anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    assert report["copied_messages"] == 1
    assert read_bag(target)["/notes"]["msgs"] == read_bag(source)["/notes"]["msgs"]


# -- 5. Topics the metadata omits ------------------------------------------------------------


def _small_bag(path: Path, frames, storage: str) -> None:
    with Writer(path, version=9, storage_plugin=PLUGINS[storage]) as writer:
        cam = writer.add_connection("/cam", "sensor_msgs/msg/Image", typestore=STORE)
        tf = writer.add_connection("/tf", "tf2_msgs/msg/TFMessage", typestore=STORE)
        for i, frame in enumerate(frames):
            msg = image_message(frame, "bgr8", _stamp(i))
            writer.write(cam, _stamp(i), STORE.serialize_cdr(msg, cam.msgtype))
            empty = T["tf2_msgs/msg/TFMessage"](transforms=[])
            writer.write(tf, _stamp(i) + 1, STORE.serialize_cdr(empty, tf.msgtype))


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("omitted", ["/tf", "/cam"])
def test_topics_that_metadata_yaml_omits_stop_the_run(scene, tmp_path, storage, omitted):
    source, target = tmp_path / "in", tmp_path / "out"
    _small_bag(source, scene[0][:2], storage)
    metadata = source / "metadata.yaml"
    data = yaml.safe_load(metadata.read_text())
    info = data["rosbag2_bagfile_information"]
    info["topics_with_message_count"] = [
        t for t in info["topics_with_message_count"] if t["topic_metadata"]["name"] != omitted
    ]
    metadata.write_text(yaml.safe_dump(data))
    with pytest.raises(BagError, match=f"metadata.yaml.*{omitted}"):
        anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


# -- 6. Bags as ROS 2 Humble records them (no stored definitions) ----------------------------


def _status_store():
    return store_with({"acme_msgs/msg/Status": "string state\nuint32 code\n"})


def _humble_topics(frames, image_like_unknown: bool = False):
    """A camera, an IMU, a status of a type no distro knows (and, optionally, a camera topic
    of such a type)."""
    imu = T["sensor_msgs/msg/Imu"](
        header=image_message(frames[0], "bgr8", 0).header,
        orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
        orientation_covariance=np.arange(9, dtype=np.float64),
        angular_velocity=T["geometry_msgs/msg/Vector3"](x=0.1, y=0.0, z=0.0),
        angular_velocity_covariance=np.zeros(9),
        linear_acceleration=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=9.81),
        linear_acceleration_covariance=np.zeros(9),
    )
    store = _status_store()
    status = store.types["acme_msgs/msg/Status"](state="ok", code=7)
    topics = [
        (
            "/cam",
            "sensor_msgs/msg/Image",
            [
                (
                    _stamp(i),
                    bytes(
                        STORE.serialize_cdr(
                            image_message(f, "bgr8", _stamp(i)), "sensor_msgs/msg/Image"
                        )
                    ),
                )
                for i, f in enumerate(frames)
            ],
        ),
        (
            "/imu",
            "sensor_msgs/msg/Imu",
            [
                (_stamp(i) + 3, bytes(STORE.serialize_cdr(imu, "sensor_msgs/msg/Imu")))
                for i in range(4)
            ],
        ),
        (
            "/acme/status",
            "acme_msgs/msg/Status",
            [
                (_stamp(i) + 7, bytes(store.serialize_cdr(status, "acme_msgs/msg/Status")))
                for i in range(2)
            ],
        ),
    ]
    if image_like_unknown:
        raw = bytes(
            STORE.serialize_cdr(image_message(frames[0], "bgr8", 0), "sensor_msgs/msg/Image")
        )
        topics.append(("/acme/camera", "acme_msgs/msg/CameraFrame", [(_stamp(0) + 9, raw)]))
    return topics


@pytest.mark.parametrize("storage", STORAGES)
def test_a_humble_bag_without_definitions_is_anonymized_with_the_distros_types(
    scene, tmp_path, storage
):
    frames, boxes = scene
    source, target = tmp_path / "in", tmp_path / "out"
    write_humble_bag(
        source,
        storage,
        _humble_topics(frames),
        defined={"sensor_msgs/msg/Image", "sensor_msgs/msg/Imu"},
    )
    # a type nothing defines cannot be checked: it passes only when kept explicitly
    settings = BagSettings(keep_topics=("/acme/status",))
    report = anonymize_bag(source, target, AnonymizerConfig(), settings)
    assert report["distro"] == "humble"
    before, after = read_bag(source), read_bag(target)
    assert set(after) == {"/cam", "/imu", "/acme/status"}
    for topic in ("/imu", "/acme/status"):  # copied byte for byte, known type or not
        assert after[topic]["msgs"] == before[topic]["msgs"]
        assert after[topic]["conn"].msgtype == before[topic]["conn"].msgtype
    assert after["/acme/status"]["conn"].msgdef.data == ""  # no definition is made up
    assert report["copied_messages"] == 6
    assert [t for t, _ in after["/cam"]["msgs"]] == [t for t, _ in before["/cam"]["msgs"]]
    for i, (old, new) in enumerate(
        zip(before["/cam"]["decoded"], after["/cam"]["decoded"], strict=True)
    ):
        assert (new.header.stamp.sec, new.header.stamp.nanosec, new.header.frame_id) == (
            old.header.stamp.sec,
            old.header.stamp.nanosec,
            old.header.frame_id,
        )
        assert (new.encoding, new.step, new.data.size) == (old.encoding, old.step, old.data.size)
        share = unchanged_share(message_frame(new), message_frame(old), boxes[i])
        assert share < MAX_UNCHANGED, f"frame {i}: {share:.0%} of the face unchanged"
    assert report["topics"]["/cam"]["faces"] == len(frames)
    # what passed through unanonymized, for an auditor: every topic, with its type
    assert [
        (t["topic"], t["msgtype"], t["messages"], t["kept"]) for t in report["copied_topics"]
    ] == [
        ("/acme/status", "acme_msgs/msg/Status", 2, True),
        ("/imu", "sensor_msgs/msg/Imu", 4, False),
    ]


@pytest.mark.parametrize("storage", STORAGES)
def test_an_image_like_topic_of_a_type_the_bag_does_not_define_stops_the_run(
    scene, tmp_path, storage
):
    source, target = tmp_path / "in", tmp_path / "out"
    write_humble_bag(source, storage, _humble_topics(scene[0][:1], image_like_unknown=True))
    with pytest.raises(BagError, match=r"\['/acme/camera', '/acme/status'\].*--keep-topic"):
        anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    settings = BagSettings(keep_topics=("/acme/camera", "/acme/status"))
    report = anonymize_bag(source, target, AnonymizerConfig(), settings)
    assert report["topics"]["/acme/camera"]["kept_raw"] is True
    assert read_bag(target)["/acme/camera"]["msgs"] == read_bag(source)["/acme/camera"]["msgs"]


def test_the_distro_comes_from_the_bag_else_from_distro(scene, tmp_path):
    frames = scene[0][:1]
    humble = tmp_path / "humble"
    write_humble_bag(humble, "mcap", _humble_topics(frames))  # no definitions, no distro named
    keep = ["--keep-topic", "/acme/status"]  # a type no distro defines
    assert (
        main(["bag", str(humble), str(tmp_path / "a"), "--no-progress", "--distro", "iron", *keep])
        == 0
    )
    assert yaml.safe_load((tmp_path / "a.report.json").read_text())["distro"] == "iron"
    # a newer bag names its distro in metadata.yaml: that one is used
    metadata = humble / "metadata.yaml"
    data = yaml.safe_load(metadata.read_text())
    data["rosbag2_bagfile_information"]["ros_distro"] = "jazzy"
    metadata.write_text(yaml.safe_dump(data))
    assert (
        main(["bag", str(humble), str(tmp_path / "b"), "--no-progress", "--distro", "iron", *keep])
        == 0
    )
    assert yaml.safe_load((tmp_path / "b.report.json").read_text())["distro"] == "jazzy"


# -- 6b. Foxglove's image types in bags without definitions --------------------------------


@pytest.mark.parametrize("storage", STORAGES)
def test_foxglove_topics_of_a_bag_without_definitions_are_anonymized(scene, tmp_path, storage):
    """ROS 2 Humble's sqlite3 bags store no definitions, nor does its mcap plugin for types it
    finds none of: the tool reads Foxglove's image types with Foxglove's published ones."""
    frames, boxes = scene
    store = store_with({t: FOXGLOVE_DEFINITIONS[t] for t in (FOXGLOVE_COMPRESSED, FOXGLOVE_RAW)})
    topics = []
    for topic, (msgtype, kind) in FOXGLOVE_TOPICS.items():
        messages = []
        for i, frame in enumerate(frames):
            if msgtype == FOXGLOVE_COMPRESSED:
                msg = foxglove_compressed_message(store, frame, kind, _stamp(i))
            else:
                msg = foxglove_raw_message(store, frame, kind, _stamp(i))
            messages.append((_stamp(i), bytes(store.serialize_cdr(msg, msgtype))))
        topics.append((topic, msgtype, messages))
    source, target = tmp_path / "in", tmp_path / "out"
    write_humble_bag(source, storage, topics)

    report = anonymize_bag(source, target, AnonymizerConfig(), BagSettings())

    assert report["types_from_foxglove"] == [FOXGLOVE_COMPRESSED, FOXGLOVE_RAW]
    after = read_bag(target)
    for topic, (msgtype, kind) in FOXGLOVE_TOPICS.items():
        conn = after[topic]["conn"]
        assert conn.msgtype == msgtype and conn.msgdef.data  # written with its definition
        for i, (stamp, raw) in enumerate(after[topic]["msgs"]):
            new = store.deserialize_cdr(raw, msgtype)
            old = store.deserialize_cdr(
                topics[list(FOXGLOVE_TOPICS).index(topic)][2][i][1], msgtype
            )
            assert stamp == _stamp(i) and new.frame_id == old.frame_id
            tolerance = JPEG_TOLERANCE if kind == "jpeg" else 0
            share = unchanged_share(message_frame(new), message_frame(old), boxes[i], tolerance)
            assert share < MAX_UNCHANGED, f"{topic} frame {i}: {share:.0%} of the face unchanged"
        stats = report["topics"][topic]
        assert stats["messages"] == len(frames) and stats["faces"] == len(frames)


def test_refusals_say_what_cannot_be_done_before_how_to_copy_faces_raw(scene, tmp_path):
    """A Foxglove video topic cannot be anonymized: the refusal says so first, and names
    --keep-topic only as a way to copy the topic raw, faces included."""
    store = store_with({FOXGLOVE_VIDEO: FOXGLOVE_DEFINITIONS[FOXGLOVE_VIDEO]})
    video = store.types[FOXGLOVE_VIDEO](
        timestamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=0),
        frame_id="camera",
        data=np.frombuffer(b"\x00\x00\x00\x01\x67h264", np.uint8),
        format="h264",
    )
    source, target = tmp_path / "in", tmp_path / "out"
    raw = bytes(store.serialize_cdr(video, FOXGLOVE_VIDEO))
    write_humble_bag(source, "sqlite3", [("/cam/video", FOXGLOVE_VIDEO, [(_stamp(0), raw)])])
    with pytest.raises(BagError) as error:
        anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    text = str(error.value)
    assert "/cam/video" in text and "video" in text
    assert text.index("cannot be anonymized") < text.index("--keep-topic")
    assert "faces included" in text.split("--keep-topic", 1)[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


# -- 7. A malformed metadata.yaml ------------------------------------------------------------


@pytest.mark.parametrize("options", [[], ["--storage", "mcap"]])
def test_a_malformed_metadata_yaml_is_one_line_naming_the_file(tmp_path, capsys, options):
    source = tmp_path / "in"
    source.mkdir()
    (source / "metadata.yaml").write_text(
        "rosbag2_bagfile_information:\n  version: 5\n  relative_file_paths: [in_0.db3\n"
        "  storage_identifier: sqlite3\n"
    )
    assert main(["bag", str(source), str(tmp_path / "out"), "--no-progress", *options]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert str(source / "metadata.yaml") in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
