"""The node as users run it outside the unit tests: built with colcon in a ROS 2 workspace and
started from the install tree (what ``ros2 run`` resolves), and fed a recorded bag at its
recorded rate while its output is recorded (rosbag replay anonymization, without ``ros2 bag``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ros_node import (
    ROOT,
    face_scene,
    image_message,
    outside,
    pixels_of,
    require_ros,
    unchanged_share,
)

require_ros()

from sensor_msgs.msg import Image  # noqa: E402
from test_node_ros import Running  # noqa: E402

pytestmark = pytest.mark.ros

#: What a colcon build of the package needs from the source tree.
SOURCES = (
    "setup.py",
    "setup.cfg",
    "pyproject.toml",
    "package.xml",
    "README.md",
    "resource",
    "launch",
    "config",
    "ciagan_core",
    "ciagan_ros",
)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """``colcon build`` of this package in a fresh workspace."""
    colcon = Path(sys.executable).parent / "colcon"
    if not colcon.exists():
        message = "colcon is not installed (pip install -e '.[dev]')"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    ws = tmp_path_factory.mktemp("ws")
    source = ws / "src" / "ciagan_ros"
    source.mkdir(parents=True)
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    env = {**os.environ, "PATH": f"{colcon.parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [str(colcon), "build", "--packages-select", "ciagan_ros"],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return ws


def test_colcon_installs_the_ament_layout(workspace):
    prefix = workspace / "install" / "ciagan_ros"
    assert (prefix / "lib" / "ciagan_ros" / "anonymizer_node").is_file()
    share = prefix / "share" / "ciagan_ros"
    for name in (
        "package.xml",
        "launch/anonymizer.launch.py",
        "launch/multi_camera.launch.py",
        "launch/bag_replay.launch.py",
        "config/anonymizer.yaml",
        "config/identities.yaml",
        "config/fastdds.xml",
    ):
        assert (share / name).is_file(), name
    index = workspace / "install" / "ciagan_ros" / "share" / "ament_index" / "resource_index"
    assert (index / "packages" / "ciagan_ros").is_file()


def test_the_installed_node_runs_with_the_installed_parameters(workspace, tmp_path):
    """``. install/setup.sh`` then ``lib/ciagan_ros/anonymizer_node --params-file
    share/ciagan_ros/config/anonymizer.yaml``: the installed code, not the source tree."""
    prefix = workspace / "install" / "ciagan_ros"
    wrapper = tmp_path / "ros2_run.sh"
    wrapper.write_text(
        "#!/bin/bash\n"
        f"cd {tmp_path}\n"  # not the source tree
        f". {workspace}/install/setup.sh\n"
        "python -c \"import ciagan_ros; print('ciagan_ros from', ciagan_ros.__file__)\"\n"
        f'exec {prefix}/lib/ciagan_ros/anonymizer_node "$@"\n'
    )
    wrapper.chmod(0o755)
    params = prefix / "share" / "ciagan_ros" / "config" / "anonymizer.yaml"
    extra = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    running = Running(
        tmp_path,
        ["--params-file", str(params), "-p", "max_latency_ms:=30000.0"],
        executable=wrapper,
        extra_env=extra,
    )
    try:
        assert running.client.wait_state("/anonymizer", "active"), running.node.log()
        assert f"ciagan_ros from {prefix}" in running.node.log()
        frame, box = face_scene()
        sent = image_message(frame, "bgr8")
        out = running.client.collect(Image, "/image_anonymized")
        received = running.client.send_until(running.client.publisher(Image, "/image"), sent, out)
        assert received is not None, running.node.log()
        assert unchanged_share(frame, pixels_of(received), box) <= 0.05
    finally:
        assert running.close() == 0


FRAMES = 20
RATE_HZ = 10.0


def _write_recording(path: Path) -> list[np.ndarray]:
    """A 640x480 mcap recording at 10 Hz: one face moving across a real background."""
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    base, _ = face_scene()
    frames = []
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection(
            "/camera/image", "sensor_msgs/msg/Image", typestore=store
        )
        for i in range(FRAMES):
            frame = np.roll(base, 4 * i, axis=1)
            frames.append(frame)
            msg = image_message(frame, "bgr8")
            stamp = 1_700_000_000 * 10**9 + int(i * 1e9 / RATE_HZ)
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
            writer.write(connection, stamp, serialize_message(msg))
    return frames


def test_a_replayed_recording_comes_out_anonymized_with_its_headers(tmp_path):
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    recording = tmp_path / "recording"
    frames = _write_recording(recording)
    # As bag_replay.launch.py runs it: reliable in and out, a deep queue.
    running = Running(
        tmp_path,
        [
            "-p",
            "input_topics:=[camera/image]",
            "-p",
            "input_qos_reliability:=reliable",
            "-p",
            "qos_depth:=100",
            "-p",
            "max_latency_ms:=30000.0",
        ],
    )
    client = running.client
    try:
        assert client.wait_state("/anonymizer", "active"), running.node.log()
        recorded = client.collect(Image, "/camera/image_anonymized", raw=True, depth=100)
        player = client.publisher(Image, "/camera/image", reliable=True, depth=100)
        assert client.spin_until(lambda: player.get_subscription_count() > 0, 30)
        client.spin_for(1.0)
        with Reader(recording) as reader:
            messages = list(reader.messages())
        start, first = time.monotonic(), messages[0][1]
        for _, timestamp, raw in messages:  # at the recorded rate
            client.spin_until(lambda t=timestamp: time.monotonic() - start >= (t - first) / 1e9, 5)
            player.publish(deserialize_message(raw, Image))
        client.spin_until(lambda: len(recorded) >= FRAMES, 30)
        client.spin_for(1.0)
    finally:
        assert running.close() == 0
    # Record what arrived, as `ros2 bag record` would, and check the recording.
    store = get_typestore(Stores.ROS2_KILTED)
    output = tmp_path / "anonymized"
    with Writer(output, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection(
            "/camera/image_anonymized", "sensor_msgs/msg/Image", typestore=store
        )
        for i, raw in enumerate(recorded):
            writer.write(connection, i + 1, bytes(raw))
    sent = {}
    with Reader(recording) as reader:
        for _, _, raw in reader.messages():
            msg = deserialize_message(raw, Image)
            sent[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = msg
    with Reader(output) as reader:
        outputs = [deserialize_message(raw, Image) for _, _, raw in reader.messages()]
    assert len(outputs) >= 0.9 * FRAMES, f"{len(outputs)} of {FRAMES} frames came back"
    for out in outputs:
        key = (out.header.stamp.sec, out.header.stamp.nanosec)
        assert key in sent, "an output with a header that was never sent"
        original = sent[key]
        assert out.header.frame_id == original.header.frame_id
        before, after = pixels_of(original), pixels_of(out)
        shift = 4 * list(sent).index(key)
        x0, y0, x1, y1 = 280 + shift, 200, 360 + shift, 280
        face = unchanged_share(before, after, (x0, y0, min(x1, 640), y1))
        assert face <= 0.05, f"frame {key}: {face:.0%} of the face untouched"
        far = outside(before.shape, (200 + shift, 120, 440 + shift, 360), 30)
        far[:, :shift] = False  # the part of the photo that wrapped around
        assert (before == after).all(axis=2)[far].mean() == 1.0
    assert len(frames) == FRAMES
