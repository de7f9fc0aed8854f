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
