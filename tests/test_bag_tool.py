"""``ciagan bag`` on real rosbag2 files (mcap and sqlite3) built from the shared faces."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import celeba_image, hog_box

from ciagan_core.cli import main
from ciagan_core.pipeline import AnonymizerConfig
from ciagan_ros.bag_tool import BagError, BagSettings, anonymize_bag

rosbags = pytest.importorskip("rosbags")
from rosbag_messages import NS, STORE, T, compressed_message, image_message  # noqa: E402
from rosbags.highlevel import AnyReader  # noqa: E402
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402

FRAMES = 10
GAP = 5  # the frame where the face is darkened until the detector misses it
DARKEN = 0.03


def _frames(shared_dir, row) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A face moving across a 320x272 frame, and its box per frame; frame GAP is darkened."""
    photo = celeba_image(shared_dir, row)
    box = hog_box(row)
    frames, boxes = [], []
    for i in range(FRAMES):
        canvas = np.full((272, 320, 3), 90, np.uint8)
        dx = 2 * i
        canvas[: photo.shape[0], dx : dx + photo.shape[1]] = photo[:, : 320 - dx]
        moved = box + np.array([dx, 0, dx, 0])
        if i == GAP:
            x0, y0, x1, y1 = moved.astype(int)
            canvas[y0:y1, x0:x1] = (canvas[y0:y1, x0:x1] * DARKEN).astype(np.uint8)
        frames.append(canvas)
        boxes.append(moved)
    return frames, boxes


IMAGE_TOPICS = {
    "/front/image": ("sensor_msgs/msg/Image", "bgr8"),
    "/rear/image": ("sensor_msgs/msg/Image", "rgb8"),
    "/ir/image": ("sensor_msgs/msg/Image", "mono8"),
    "/front/image/compressed": ("sensor_msgs/msg/CompressedImage", "jpeg"),
    "/rear/image/compressed": ("sensor_msgs/msg/CompressedImage", "png"),
}


def _write_bag(path: Path, frames: list[np.ndarray], storage: str) -> None:
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {
            topic: writer.add_connection(topic, msgtype, typestore=STORE)
            for topic, (msgtype, _) in IMAGE_TOPICS.items()
        }
        imu = writer.add_connection("/imu", "sensor_msgs/msg/Imu", typestore=STORE)
        tf = writer.add_connection("/tf", "tf2_msgs/msg/TFMessage", typestore=STORE)
        for i, frame in enumerate(frames):
            stamp = 1_700_000_000 * NS + i * 100_000_000
            for topic, (msgtype, kind) in IMAGE_TOPICS.items():
                msg = (
                    image_message(frame, kind, stamp)
                    if msgtype.endswith("/Image")
                    else compressed_message(frame, kind, stamp)
                )
                writer.write(conns[topic], stamp + 1, STORE.serialize_cdr(msg, msgtype))
            for k in range(3):  # the IMU runs faster than the cameras
                imu_msg = T["sensor_msgs/msg/Imu"](
                    header=T["std_msgs/msg/Header"](
                        stamp=T["builtin_interfaces/msg/Time"](sec=i, nanosec=k), frame_id="imu"
                    ),
                    orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
                    orientation_covariance=np.arange(9, dtype=np.float64),
                    angular_velocity=T["geometry_msgs/msg/Vector3"](x=0.1 * k, y=0.0, z=0.0),
                    angular_velocity_covariance=np.zeros(9),
                    linear_acceleration=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=9.81),
                    linear_acceleration_covariance=np.zeros(9),
                )
                writer.write(imu, stamp + k * 1000, STORE.serialize_cdr(imu_msg, imu.msgtype))
            tf_msg = T["tf2_msgs/msg/TFMessage"](transforms=[])
            writer.write(tf, stamp + 7, STORE.serialize_cdr(tf_msg, tf.msgtype))


def _read(path: Path) -> dict:
    """Per topic: the connection and [(timestamp, raw bytes)]."""
    out = {}
    with AnyReader([path]) as reader:
        for connection, timestamp, raw in reader.messages():
            entry = out.setdefault(connection.topic, {"conn": connection, "msgs": []})
            entry["msgs"].append((timestamp, bytes(raw)))
        for entry in out.values():
            entry["decoded"] = [
                reader.deserialize(raw, entry["conn"].msgtype) for _, raw in entry["msgs"]
            ]
    return out


def _to_frame(msg) -> np.ndarray:
    from ciagan_ros.image_codec import message_to_frame

    return message_to_frame(msg)


@pytest.fixture(scope="module")
def scene(shared_dir, celeba_rows):
    return _frames(shared_dir, celeba_rows[0])


@pytest.fixture(scope="module", params=["mcap", "sqlite3"])
def anonymized(request, scene, tmp_path_factory):
    frames, _ = scene
    folder = tmp_path_factory.mktemp(request.param)
    source, target = folder / "in", folder / "out"
    _write_bag(source, frames, request.param)
    report = anonymize_bag(source, target, AnonymizerConfig(), BagSettings(max_gap=3))
    return source, target, report, request.param


def test_other_messages_are_copied_byte_for_byte_with_their_connections(anonymized):
    source, target, report, storage = anonymized
    before, after = _read(source), _read(target)
    assert set(before) == set(after)
    for topic in ("/imu", "/tf"):
        assert after[topic]["msgs"] == before[topic]["msgs"]  # timestamps and bytes
    for topic in before:
        a, b = before[topic]["conn"], after[topic]["conn"]
        assert (a.msgtype, a.msgdef.data, a.digest) == (b.msgtype, b.msgdef.data, b.digest)
        assert a.ext.serialization_format == b.ext.serialization_format
        assert a.ext.offered_qos_profiles == b.ext.offered_qos_profiles
        assert [t for t, _ in before[topic]["msgs"]] == [t for t, _ in after[topic]["msgs"]]
    assert (target / "metadata.yaml").read_text().count(storage) >= 1
    assert report["copied_messages"] == FRAMES * 4


def test_image_messages_keep_header_size_and_encoding_and_lose_the_face(anonymized, scene):
    _, boxes = scene
    source, target, report, _ = anonymized
    before, after = _read(source), _read(target)
    for topic in IMAGE_TOPICS:
        for i, (old, new) in enumerate(
            zip(before[topic]["decoded"], after[topic]["decoded"], strict=True)
        ):
            stamp = (new.header.stamp.sec, new.header.stamp.nanosec, new.header.frame_id)
            assert stamp == (old.header.stamp.sec, old.header.stamp.nanosec, old.header.frame_id)
            if hasattr(old, "format"):
                assert new.format == old.format
            else:
                assert (new.height, new.width, new.encoding, new.step) == (
                    old.height,
                    old.width,
                    old.encoding,
                    old.step,
                )
            x0, y0, x1, y1 = boxes[i].astype(int)
            face = (slice(y0 + 10, y1 - 10), slice(x0 + 10, x1 - 10))
            change = np.abs(_to_frame(new)[face].astype(int) - _to_frame(old)[face].astype(int))
            threshold = 0.5 if i == GAP else 5  # the gap frame is nearly black to begin with
            assert change.mean() > threshold, f"{topic} frame {i}: face unchanged"
        stats = report["topics"][topic]
        assert stats["messages"] == FRAMES and stats["dropped_frames"] == 0
        assert stats["faces"] >= FRAMES and stats["failed_frames"] == 0


def test_a_face_the_detector_missed_is_covered_by_tracking(anonymized, scene):
    from ciagan_core.detection import create_detector

    frames, boxes = scene
    found = create_detector("centerface").detect(frames[GAP])
    assert not found, "the darkened face must be missed for this test to mean anything"
    _, target, report, _ = anonymized
    assert report["topics"]["/front/image"]["recovered_frames"] >= 1
    after = _read(target)["/front/image"]["decoded"][GAP]
    x0, y0, x1, y1 = boxes[GAP].astype(int)
    inner = (slice(y0 + 10, y1 - 10), slice(x0 + 10, x1 - 10))
    assert (_to_frame(after)[inner] != frames[GAP][inner]).mean() > 0.5


def test_the_report_is_written_beside_the_output(anonymized):
    _, target, report, _ = anonymized
    saved = json.loads(target.with_name(target.name + ".report.json").read_text())
    assert saved["complete"] is True and set(saved["topics"]) == set(IMAGE_TOPICS)
    assert saved == json.loads(json.dumps(report))


def test_a_kept_topic_is_copied_raw_and_listed(scene, tmp_path):
    frames, _ = scene
    source, target = tmp_path / "in", tmp_path / "out"
    _write_bag(source, frames[:3], "mcap")
    report = anonymize_bag(
        source, target, AnonymizerConfig(), BagSettings(keep_topics=("/ir/image",))
    )
    assert report["topics"]["/ir/image"]["kept_raw"] is True
    assert _read(target)["/ir/image"]["msgs"] == _read(source)["/ir/image"]["msgs"]


def test_an_existing_output_is_refused_unless_overwrite(scene, tmp_path, capsys):
    frames, _ = scene
    source, target = tmp_path / "in", tmp_path / "out"
    _write_bag(source, frames[:2], "sqlite3")
    target.mkdir()
    (target / "precious.txt").write_text("keep me")
    assert main(["bag", str(source), str(target), "--no-progress"]) == 1
    assert "exists" in capsys.readouterr().err
    assert (target / "precious.txt").read_text() == "keep me"
    assert main(["bag", str(source), str(target), "--overwrite", "--no-progress"]) == 1
    assert (target / "precious.txt").read_text() == "keep me"  # not a bag: never replaced
    bag = tmp_path / "bag_out"
    assert main(["bag", str(source), str(bag), "--no-progress"]) == 0
    first = bag.with_name("bag_out.report.json").read_text()
    assert main(["bag", str(source), str(bag), "--overwrite", "--no-progress"]) == 0
    assert (bag / "metadata.yaml").is_file()
    assert bag.with_name("bag_out.report.json").read_text() != first  # the new run's report
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bag_out",
        "bag_out.report.json",
        "in",
        "out",
    ]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_truncated_bag_is_refused_with_no_output(scene, tmp_path, storage):
    frames, _ = scene
    source, target = tmp_path / "in", tmp_path / "out"
    _write_bag(source, frames[:4], storage)
    [data] = [p for p in source.iterdir() if p.suffix in (".mcap", ".db3")]
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(BagError):
        anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # no output, no temporary


def test_an_interrupted_run_leaves_nothing_that_looks_complete(scene, tmp_path):
    frames, _ = scene
    source, target = tmp_path / "in", tmp_path / "out"
    _write_bag(source, frames[:4], "sqlite3")

    def interrupt(done: int, total: int) -> None:
        if done > total * 0.7:  # in the writing pass
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        anonymize_bag(source, target, AnonymizerConfig(), BagSettings(), interrupt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_an_image_topic_in_an_unsupported_encoding_must_be_kept_explicitly(scene, tmp_path):
    source, target = tmp_path / "in", tmp_path / "out"
    with Writer(source, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/depth", "sensor_msgs/msg/Image", typestore=STORE)
        msg = image_message(scene[0][0], "mono8", 5)
        msg = T["sensor_msgs/msg/Image"](
            header=msg.header,
            height=4,
            width=4,
            encoding="32FC1",
            is_bigendian=0,
            step=16,
            data=np.zeros(64, np.uint8),
        )
        writer.write(conn, 5, STORE.serialize_cdr(msg, conn.msgtype))
    with pytest.raises(BagError, match=r"32FC1.*--keep-topic /depth"):
        anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    assert not target.exists()
    report = anonymize_bag(
        source, target, AnonymizerConfig(), BagSettings(keep_topics=("/depth",))
    )
    assert report["topics"]["/depth"]["kept_raw"] is True


def test_overwrite_never_touches_the_input_or_a_folder_that_is_not_a_bag(scene, tmp_path):
    frames, _ = scene
    parent = tmp_path / "parent"
    parent.mkdir()
    source = parent / "in"
    _write_bag(source, frames[:2], "sqlite3")
    (parent / "notes.txt").write_text("precious")
    for target in (parent, tmp_path):  # a folder holding the input
        with pytest.raises(BagError, match="apart from the input"):
            anonymize_bag(source, target, AnonymizerConfig(), BagSettings(overwrite=True))
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(BagError, match="not a rosbag2 folder"):
        anonymize_bag(source, other, AnonymizerConfig(), BagSettings(overwrite=True))
    assert (parent / "notes.txt").read_text() == "precious" and (source / "metadata.yaml").exists()
    assert (other / "keep.txt").read_text() == "mine"


def test_images_inside_other_message_types_stop_the_run_unless_kept(scene, tmp_path):
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    definition = "std_msgs/Header header\nsensor_msgs/Image image\n"
    store.register(get_types_from_msg(definition, "my_msgs/msg/StampedImage"))
    source, target = tmp_path / "in", tmp_path / "out"
    with Writer(source, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/cam/stamped", "my_msgs/msg/StampedImage", typestore=store)
        image = image_message(scene[0][0], "bgr8", 5)
        msg = store.types["my_msgs/msg/StampedImage"](header=image.header, image=image)
        writer.write(conn, 5, store.serialize_cdr(msg, conn.msgtype))
    with pytest.raises(BagError, match="carry images inside other message types"):
        anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    assert not target.exists()
    report = anonymize_bag(
        source, target, AnonymizerConfig(), BagSettings(keep_topics=("/cam/stamped",))
    )
    assert report["topics"]["/cam/stamped"]["kept_raw"] is True


def test_a_topic_with_an_image_and_another_connection_copies_the_other(scene, tmp_path):
    source, target = tmp_path / "in", tmp_path / "out"
    with Writer(source, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        image_conn = writer.add_connection("/cam", "sensor_msgs/msg/Image", typestore=STORE)
        text_conn = writer.add_connection("/cam", "std_msgs/msg/String", typestore=STORE)
        for i in range(3):
            msg = image_message(scene[0][i], "bgr8", i)
            writer.write(image_conn, 10 * i, STORE.serialize_cdr(msg, image_conn.msgtype))
            note = T["std_msgs/msg/String"](data=f"note {i}")
            writer.write(text_conn, 10 * i + 1, STORE.serialize_cdr(note, text_conn.msgtype))
    anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    with AnyReader([target]) as reader:
        notes = [
            bytes(raw) for c, _, raw in reader.messages() if c.msgtype == "std_msgs/msg/String"
        ]
    with AnyReader([source]) as reader:
        expected = [
            bytes(raw) for c, _, raw in reader.messages() if c.msgtype == "std_msgs/msg/String"
        ]
    assert notes == expected and len(notes) == 3


def test_the_data_file_is_named_after_the_output_bag(anonymized):
    _, target, _, _ = anonymized
    names = [p.name for p in target.iterdir() if p.suffix in (".mcap", ".db3")]
    assert names and all(n.startswith(target.name) for n in names)


def test_a_10_bit_mono16_topic_with_a_full_scale_banner_is_anonymized(scene, tmp_path):
    frames, boxes = scene
    source, target = tmp_path / "in", tmp_path / "out"
    with Writer(source, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/ir", "sensor_msgs/msg/Image", typestore=STORE)
        for i in range(3):
            deep = cv2.cvtColor(frames[i], cv2.COLOR_BGR2GRAY).astype(np.uint16) * 4
            deep[:10] = 65535  # a burned-in timestamp at full scale
            msg = image_message(frames[i], "mono8", i)
            msg = T["sensor_msgs/msg/Image"](
                header=msg.header,
                height=deep.shape[0],
                width=deep.shape[1],
                encoding="mono16",
                is_bigendian=0,
                step=deep.shape[1] * 2,
                data=deep.view(np.uint8).reshape(-1),
            )
            writer.write(conn, i, STORE.serialize_cdr(msg, conn.msgtype))
    report = anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    assert report["topics"]["/ir"]["faces"] >= 3
    before, after = _read(source)["/ir"]["decoded"], _read(target)["/ir"]["decoded"]
    x0, y0, x1, y1 = boxes[0].astype(int)
    face = (slice(y0 + 10, y1 - 10), slice(x0 + 10, x1 - 10))
    assert (_to_frame(after[0])[face] != _to_frame(before[0])[face]).mean() > 0.5
