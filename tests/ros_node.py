"""The anonymizer node as its own process, and a test client that talks to it over DDS.

Every process started here keeps DDS on this machine: ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``,
a test-unique ``ROS_DOMAIN_ID``, and the shipped Fast DDS profile with its UDP transport limited
to the loopback interface (shared memory carries the frames).
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NODE = Path(sys.executable).parent / "anonymizer_node"
_DOMAINS = itertools.count()
_CLIENTS = itertools.count()


def require_ros() -> None:
    """Skip where rclpy is not installed; in CI (which installs the ros extra) fail instead, so
    that the node's tests can never be skipped there unnoticed."""
    import pytest

    if os.environ.get("CI"):
        import rclpy  # noqa: F401  (an ImportError fails the module)
    else:
        pytest.importorskip("rclpy", reason="needs rclpy: pip install -e '.[ros]'")


def fresh_domain() -> int:
    """A ROS domain for one test's processes (1..100), unlikely to meet another run's."""
    return 1 + (os.getpid() * 13 + next(_DOMAINS) * 7) % 100


def loopback_profile(folder: Path) -> Path:
    """The shipped Fast DDS profile with UDP limited to the loopback interface."""
    text = (ROOT / "config" / "fastdds.xml").read_text()
    anchor = "<receiveBufferSize>8388608</receiveBufferSize>"
    assert anchor in text
    text = text.replace(
        anchor,
        anchor
        + '\n        <interfaces><allowlist><interface name="lo"/></allowlist></interfaces>',
    )
    path = folder / "fastdds_loopback.xml"
    path.write_text(text)
    return path


def dds_environment(domain: int, profile: Path) -> dict[str, str]:
    """The environment variables that keep a process's DDS on this machine."""
    return {
        "ROS_DOMAIN_ID": str(domain),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
        "FASTDDS_DEFAULT_PROFILES_FILE": str(profile),
    }


class NodeProcess:
    """``anonymizer_node --ros-args ...`` in its own process, its output in a log file."""

    def __init__(
        self,
        ros_args: list[str],
        env: dict[str, str],
        log: Path,
        executable: str | Path = NODE,
        extra_env: dict[str, str] | None = None,
    ):
        self.log_path = log
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
        full_env.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "0")
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [str(executable), "--ros-args", *ros_args],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait; the exit status (killed after ``timeout``: -9)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def wait(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


class RosClient:
    """A test's own rclpy context, node and executor on the node's domain. ``env`` (DDS
    settings: discovery range, Fast DDS profile) applies to its participant, which reads the
    environment when it is created; the process's environment is left as it was."""

    def __init__(
        self,
        domain: int,
        name: str = "ciagan_test_client",
        env: dict[str, str] | None = None,
        unset: tuple[str, ...] = (),
    ):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        self.rclpy = rclpy
        self.context = Context()
        env = env or {}
        saved = {k: os.environ.get(k) for k in (*env, *unset)}
        for key in unset:
            os.environ.pop(key, None)
        os.environ.update(env)
        try:
            rclpy.init(context=self.context, domain_id=domain)
            self.node = rclpy.create_node(
                f"{name}_{os.getpid()}_{next(_CLIENTS)}", context=self.context
            )
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)

    def spin_until(self, done: Callable[[], Any], timeout: float) -> bool:
        """Spin until ``done()`` is truthy; False after ``timeout`` seconds."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if done():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return bool(done())

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 30.0) -> Any:
        """Call a service; the response (AssertionError when there is none in time)."""
        client = self.node.create_client(srv_type, name)
        try:
            assert self.spin_until(client.service_is_ready, timeout), f"no service {name}"
            future = client.call_async(request)
            assert self.spin_until(future.done, timeout), f"{name}: no response"
            return future.result()
        finally:
            self.node.destroy_client(client)

    # -- lifecycle and parameters -----------------------------------------------------------

    def state(self, node: str, timeout: float = 60.0) -> str:
        from lifecycle_msgs.srv import GetState

        return self.call(
            GetState, f"{node}/get_state", GetState.Request(), timeout
        ).current_state.label

    def wait_state(self, node: str, label: str, timeout: float = 90.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.state(node, timeout=max(1.0, end - time.monotonic())) == label:
                return True
            self.spin_for(0.2)
        return False

    def change_state(self, node: str, transition: str, timeout: float = 90.0) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        request = ChangeState.Request()
        request.transition = Transition(id=getattr(Transition, f"TRANSITION_{transition.upper()}"))
        return self.call(ChangeState, f"{node}/change_state", request, timeout).success

    def set_parameters(self, node: str, **values: Any) -> list[Any]:
        """Set parameters through the node's service; one SetParametersResult each."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request()
        request.parameters = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        return list(self.call(SetParameters, f"{node}/set_parameters", request).results)

    def get_parameters(self, node: str, *names: str) -> dict[str, Any]:
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        request = GetParameters.Request(names=list(names))
        response = self.call(GetParameters, f"{node}/get_parameters", request)
        return {
            n: parameter_value_to_python(v) for n, v in zip(names, response.values, strict=True)
        }

    # -- topics -----------------------------------------------------------------------------

    def publisher(self, msg_type: Any, topic: str, reliable: bool = False, depth: int = 5):
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=depth,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        )
        return self.node.create_publisher(msg_type, topic, qos)

    def collect(
        self, msg_type: Any, topic: str, reliable: bool = True, depth: int = 50, raw: bool = False
    ) -> list[Any]:
        """Every message received on ``topic`` from now on, in a list that grows."""
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=depth,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        )
        received: list[Any] = []
        self.node.create_subscription(msg_type, topic, received.append, qos, raw=raw)
        return received

    def send_until(
        self, publisher: Any, msg: Any, received: list[Any], timeout: float = 60.0
    ) -> Any | None:
        """Publish ``msg`` (again every second: a best-effort subscription may not have
        matched yet) until a message with its header stamp arrives; that message, or None."""
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)

        def found():
            return next(
                (m for m in received if (m.header.stamp.sec, m.header.stamp.nanosec) == stamp),
                None,
            )

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            publisher.publish(msg)
            if self.spin_until(found, min(1.0, end - time.monotonic())):
                return found()
        return None


# -- messages and pixels ----------------------------------------------------------------------

_STAMPS = itertools.count(1)


def stamped_header(frame_id: str = "camera"):
    """A header with a stamp no other message of this run has."""
    from std_msgs.msg import Header

    header = Header(frame_id=frame_id)
    header.stamp.sec = 1_700_000_000 + next(_STAMPS)
    header.stamp.nanosec = 123_456_789
    return header


def image_message(frame: np.ndarray, encoding: str, header=None):
    """A sensor_msgs/Image of a BGR uint8 frame in ``encoding`` (bgr8, rgb8, mono8, or mono16
    with 12-bit data)."""
    from sensor_msgs.msg import Image

    pixels = {
        "bgr8": lambda: frame,
        "rgb8": lambda: cv2.cvtColor(frame, cv2.COLOR_BGR2RGB),
        "mono8": lambda: cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY),
        "mono16": lambda: cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 16,
    }[encoding]()
    pixels = np.ascontiguousarray(pixels)
    msg = Image(
        header=header or stamped_header(),
        height=frame.shape[0],
        width=frame.shape[1],
        encoding=encoding,
        is_bigendian=0,
        step=pixels.strides[0],
    )
    msg.data = pixels.tobytes()
    return msg


def compressed_message(frame: np.ndarray, fmt: str = "jpeg", header=None):
    from sensor_msgs.msg import CompressedImage

    ok, data = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", frame)
    assert ok
    msg = CompressedImage(header=header or stamped_header(), format=fmt)
    msg.data = data.tobytes()
    return msg


def pixels_of(msg: Any) -> np.ndarray:
    """The pixels of an Image (rows without padding, the encoding's channels) or a
    CompressedImage (decoded)."""
    if hasattr(msg, "format"):
        return cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_UNCHANGED)
    dtype = np.uint16 if msg.encoding in ("mono16", "16UC1") else np.uint8
    channels = {"mono8": 1, "mono16": 1, "16UC1": 1}.get(msg.encoding, 3)
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
    row_bytes = msg.width * channels * np.dtype(dtype).itemsize
    image = rows[:, :row_bytes].copy().view(dtype)
    return image.reshape(msg.height, msg.width, channels).squeeze()


def unchanged_share(before: np.ndarray, after: np.ndarray, box, tolerance: int = 0) -> float:
    """The share of pixels inside ``box`` (x0, y0, x1, y1) still equal to the input (within
    ``tolerance``): near 1 for an untouched face, near 0 for an anonymized one."""
    x0, y0, x1, y1 = box
    a = before[y0:y1, x0:x1].astype(np.int64)
    b = after[y0:y1, x0:x1].astype(np.int64)
    same = np.abs(a - b) <= tolerance
    if same.ndim == 3:
        same = same.all(axis=2)
    return float(same.mean())


def outside(shape, box, margin: int) -> np.ndarray:
    """A mask of the pixels farther than ``margin`` from ``box``."""
    mask = np.ones(shape[:2], bool)
    x0, y0, x1, y1 = box
    mask[max(0, y0 - margin) : y1 + margin, max(0, x0 - margin) : x1 + margin] = False
    return mask


from conftest import SHARED  # noqa: E402  (../shared, or CIAGAN_SHARED)

#: CelebA photos with one clear face each (shared/data/celeba_faces).
FACE_FILES = ("001085.jpg", "000093.jpg", "000114.jpg")


def face_scene(
    size: tuple[int, int] = (640, 480), face: str = FACE_FILES[0], side: int = 240, at=(200, 120)
):
    """A WxH frame: a real background with one real face photo pasted at ``at``, and the
    box (x0, y0, x1, y1) of the pasted face's central part (its eyes, nose and mouth)."""
    import csv

    import skimage.data

    width, height = size
    frame = cv2.resize(cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR), (width, height))
    with (SHARED / "data" / "celeba_faces" / "faces.csv").open() as handle:
        row = next(r for r in csv.DictReader(handle) if r["file"] == face)
    photo = cv2.imread(str(SHARED / "data" / "celeba_faces" / "images" / face))
    x0, y0, x1, y1 = (float(row[k]) for k in ("box_x0", "box_y0", "box_x1", "box_y1"))
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.9 * max(x1 - x0, y1 - y0)
    h, w = photo.shape[:2]
    a, b = int(max(cx - half, 0)), int(max(cy - half, 0))
    patch = photo[b : int(min(cy + half, h)), a : int(min(cx + half, w))]
    patch = cv2.resize(patch, (side, side), interpolation=cv2.INTER_AREA)
    px, py = at
    frame[py : py + side, px : px + side] = patch
    # The labelled box is the middle 1/1.8 of the patch; its central 60% is surely face.
    inner = int(side * 0.5 * 0.6 / 1.8)
    centre_x, centre_y = px + side // 2, py + side // 2
    return frame, (centre_x - inner, centre_y - inner, centre_x + inner, centre_y + inner)
