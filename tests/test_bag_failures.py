"""What ``ciagan bag`` writes when a frame cannot be anonymized: the frame pixelated whole, or
(when it cannot even be read) nothing; never the raw frame."""

from __future__ import annotations

import numpy as np
from ros_node import face_scene, unchanged_share
from rosbag_messages import STORE, image_message

from ciagan_core.pipeline import AnonymizerConfig
from ciagan_ros import bag_tool
from ciagan_ros.bag_tool import BagSettings, anonymize_bag
from ciagan_ros.image_codec import image_to_frame

NS = 10**8


def _write(path, frames) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer

    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection("/cam/image", "sensor_msgs/msg/Image", typestore=STORE)
        for i, frame in enumerate(frames):
            msg = image_message(frame, "bgr8", 1_000 + i * NS)
            writer.write(connection, 1_000 + i * NS, STORE.serialize_cdr(msg, msg.__msgtype__))


def _read(path) -> dict[int, np.ndarray]:
    from rosbags.rosbag2 import Reader

    with Reader(path) as reader:
        return {
            (timestamp - 1_000) // NS: image_to_frame(STORE.deserialize_cdr(raw, c.msgtype))
            for c, timestamp, raw in reader.messages()
        }


def test_a_frame_the_pipeline_fails_on_is_written_pixelated_whole(tmp_path, monkeypatch):
    frame, box = face_scene()
    _write(tmp_path / "in", [frame, frame, frame])
    real = bag_tool.anonymize_together
    calls = []

    def failing_once(items, *args, **kwargs):  # an internal error on the first batch
        calls.append(len(items))
        if len(calls) == 1:
            raise RuntimeError("injected failure")
        return real(items, *args, **kwargs)

    monkeypatch.setattr(bag_tool, "anonymize_together", failing_once)
    report = anonymize_bag(tmp_path / "in", tmp_path / "out", AnonymizerConfig(), BagSettings())
    assert report["topics"]["/cam/image"]["failed_frames"] == calls[0] >= 1
    for index, out in _read(tmp_path / "out").items():
        assert unchanged_share(frame, out, box) <= 0.02, index
        if index < calls[0]:  # the failed batch: the whole frame coarse, nothing recognisable
            assert len(np.unique(out.reshape(-1, 3), axis=0)) <= 8 * 6


def test_a_frame_that_cannot_be_read_is_dropped_never_written_raw(tmp_path):
    frame, box = face_scene()
    wide = np.random.default_rng(0).integers(0, 255, (4, 16400, 3), np.uint8)  # over 16384 px
    _write(tmp_path / "in", [frame, wide, frame])
    report = anonymize_bag(tmp_path / "in", tmp_path / "out", AnonymizerConfig(), BagSettings())
    assert report["topics"]["/cam/image"]["dropped_frames"] == 1
    written = _read(tmp_path / "out")
    assert sorted(written) == [0, 2]
    for out in written.values():
        assert unchanged_share(frame, out, box) <= 0.02
