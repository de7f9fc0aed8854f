"""The real node under launch_testing: runs where ROS 2 is installed, skips cleanly elsewhere.

Run in a sourced ROS 2 workspace after `colcon build`: `python -m pytest tests/test_node_launch.py`
(or `launch_test tests/test_node_launch.py`).
"""

from __future__ import annotations

import os
import time
import unittest
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="needs ROS 2 (rclpy)")
launch_testing = pytest.importorskip("launch_testing", reason="needs ROS 2 (launch_testing)")

import cv2  # noqa: E402
import launch  # noqa: E402
import launch_ros.actions  # noqa: E402
import numpy as np  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

SHARED = Path(os.environ.get("CIAGAN_SHARED") or Path(__file__).resolve().parents[2] / "shared")
PHOTO = SHARED / "data" / "celeba_faces" / "images" / "001085.jpg"  # one clear face


@pytest.mark.launch_test
def generate_test_description():
    node = launch_ros.actions.Node(
        package="ciagan_ros",
        executable="anonymizer_node",
        name="anonymizer",
        parameters=[
            {
                "input_topics": ["image"],
                "input_qos_reliability": "reliable",
                "max_latency_ms": 30000.0,
            }
        ],
    )
    return launch.LaunchDescription([node, launch_testing.actions.ReadyToTest()])


class TestAnonymizerNode(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("ciagan_test_client")

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def _call(self, client, request, timeout=30.0):
        self.assertTrue(client.wait_for_service(timeout_sec=timeout))
        future = client.call_async(request)
        rclpy.spin_until_future_complete(self.node, future, timeout_sec=timeout)
        return future.result()

    def _state(self) -> str:
        client = self.node.create_client(GetState, "/anonymizer/get_state")
        return self._call(client, GetState.Request()).current_state.label

    def _wait_active(self):
        deadline = time.monotonic() + 120  # the int8 detector may be built on first start
        while time.monotonic() < deadline:
            if self._state() == "active":
                return
            time.sleep(0.5)
        self.fail("the node never became active")

    def test_1_a_face_comes_back_anonymized_with_the_same_header(self):
        self._wait_active()
        photo = cv2.imread(str(PHOTO))
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        received = []
        self.node.create_subscription(Image, "/image_anonymized", received.append, qos)
        publisher = self.node.create_publisher(Image, "/image", qos)
        msg = Image(
            height=photo.shape[0], width=photo.shape[1], encoding="bgr8", step=photo.shape[1] * 3
        )
        msg.header.frame_id = "camera_optical"
        msg.header.stamp.sec, msg.header.stamp.nanosec = 1700000000, 42
        msg.data = photo.tobytes()
        deadline = time.monotonic() + 60
        while not received and time.monotonic() < deadline:
            publisher.publish(msg)
            rclpy.spin_once(self.node, timeout_sec=0.5)
        self.assertTrue(received, "no anonymized image")
        out = received[0]
        self.assertEqual(out.header.frame_id, "camera_optical")
        self.assertEqual((out.header.stamp.sec, out.header.stamp.nanosec), (1700000000, 42))
        self.assertEqual((out.height, out.width, out.encoding), (msg.height, msg.width, "bgr8"))
        image = np.frombuffer(bytes(out.data), np.uint8).reshape(photo.shape)
        face = (slice(70, 150), slice(110, 190))  # inside the labelled box of this photo
        self.assertGreater(np.abs(image[face].astype(int) - photo[face].astype(int)).mean(), 5)

    def test_2_lifecycle_transitions(self):
        self._wait_active()
        client = self.node.create_client(ChangeState, "/anonymizer/change_state")
        request = ChangeState.Request()
        request.transition.id = Transition.TRANSITION_DEACTIVATE
        self.assertTrue(self._call(client, request).success)
        self.assertEqual(self._state(), "inactive")
        request.transition.id = Transition.TRANSITION_ACTIVATE
        self.assertTrue(self._call(client, request).success)
        self.assertEqual(self._state(), "active")

    def test_3_a_valid_parameter_change_is_taken_and_an_invalid_one_rejected(self):
        self._wait_active()
        client = self.node.create_client(SetParameters, "/anonymizer/set_parameters")
        request = SetParameters.Request()
        request.parameters = [Parameter("blur_kernel", value=17).to_parameter_msg()]
        self.assertTrue(self._call(client, request).results[0].successful)
        request.parameters = [Parameter("method", value="sharpen").to_parameter_msg()]
        result = self._call(client, request).results[0]
        self.assertFalse(result.successful)
        self.assertIn("method", result.reason)
