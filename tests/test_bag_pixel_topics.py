"""``ciagan bag`` fails closed on topics that carry a camera's (or a ToF camera's, or a
thermal camera's) image as plain numbers or text: a type shaped like an image (integer width
and height, or rows and cols, at any depth or from an embedded CameraInfo, with an array of
numbers or of pixel-like messages), a MultiArray laid out like an image (or a list of pixels),
an organized point cloud with an intensity field (or varying padding), a JPEG or PNG written in
hex or base64 (behind decoys, or cut into pieces over several messages), and a Foxy marker
with a color per point. Each bag holds the
512x512 example portrait (examples/astronaut.png); a run that goes through where it must not
fails the test with how much of the portrait it copied unchanged. Ordinary robot data (scans,
IMU, joints, odometry, paths, maps, TF, 1-D arrays, lidar clouds, depth clouds) still goes
through, and ``--keep-topic`` still copies such a topic raw on purpose."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from ciagan_core.cli import main
from ciagan_core.pipeline import AnonymizerConfig
from ciagan_ros.bag_tool import BagError, BagSettings, anonymize_bag

rosbags = pytest.importorskip("rosbags")
from rosbag_messages import (  # noqa: E402
    NS,
    SEPARATOR,
    STORE,
    T,
    cloud_message,
    read_bag,
    store_with,
    write_humble_bag,
)
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

PORTRAIT = Path(__file__).resolve().parents[1] / "examples" / "astronaut.png"
CHECKED = "no images: checked by type and content"


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    image = cv2.imread(str(PORTRAIT))
    assert image is not None and image.shape == (512, 512, 3), PORTRAIT
    return image


def _time(stamp: int = NS):
    return T["builtin_interfaces/msg/Time"](sec=stamp // NS, nanosec=stamp % NS)


def _header(frame_id: str = "sensor"):
    return T["std_msgs/msg/Header"](stamp=_time(), frame_id=frame_id)


def _dim(label: str, size: int, stride: int):
    return T["std_msgs/msg/MultiArrayDimension"](label=label, size=size, stride=stride)


def _float_array(values: np.ndarray, dims: list):
    return T["std_msgs/msg/Float32MultiArray"](
        layout=T["std_msgs/msg/MultiArrayLayout"](dim=dims, data_offset=0),
        data=np.ascontiguousarray(values, np.float32).reshape(-1),
    )


def _cloud(points: np.ndarray, names: tuple[str, ...]):
    return cloud_message(points, names, _header())


def _packed_cloud(points: np.ndarray, fields: list, point_step: int):
    """A sensor_msgs/PointCloud2 of a structured array of points (height, width), declaring
    ``fields``: (name, offset, datatype, count)."""
    height, width = points.shape
    return T["sensor_msgs/msg/PointCloud2"](
        header=_header(),
        height=height,
        width=width,
        fields=[
            T["sensor_msgs/msg/PointField"](name=n, offset=o, datatype=d, count=c)
            for n, o, d, c in fields
        ],
        is_bigendian=False,
        point_step=point_step,
        row_step=point_step * width,
        data=np.ascontiguousarray(points).view(np.uint8).reshape(-1),
        is_dense=True,
    )


XYZ = [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1)]


def _grid(height: int, width: int) -> np.ndarray:
    """x, y (meters) of a grid, and z = 1."""
    points = np.ones((height, width, 3), np.float32)
    points[..., 0], points[..., 1] = np.meshgrid(np.arange(width), np.arange(height))
    points[..., :2] *= 0.01
    return points


# -- The four leaks, and their close relatives -------------------------------------------------

#: Custom types shaped like an image: (type, its definition as the bag stores it).
THERMAL = "my_msgs/msg/ThermalFrame"
DEFINITIONS = {
    THERMAL: "std_msgs/Header header\nuint32 width\nuint32 height\nuint16[] pixels\n"
    + SEPARATOR
    + "MSG: std_msgs/Header\nbuiltin_interfaces/Time stamp\nstring frame_id\n"
    + SEPARATOR
    + "MSG: builtin_interfaces/Time\nint32 sec\nuint32 nanosec\n",
    "my_msgs/msg/DepthGrid": "uint32 rows\nuint32 cols\nfloat32[] data\n",
    "my_msgs/msg/Shot": "my_msgs/Size size\nmy_msgs/Plane plane\n"
    + SEPARATOR
    + "MSG: my_msgs/Size\nuint32 width\nuint32 height\n"
    + SEPARATOR
    + "MSG: my_msgs/Plane\nstring unit\nfloat64[] values\n",
    "my_msgs/msg/GrayPixels": "uint32 width\nuint32 height\nmy_msgs/Gray16[] pixels\n"
    + SEPARATOR
    + "MSG: my_msgs/Gray16\nuint16 value\n",
    "my_msgs/msg/Frames": "string camera\nmy_msgs/DepthGrid[] frames\n"
    + SEPARATOR
    + "MSG: my_msgs/DepthGrid\nuint32 rows\nuint32 cols\nfloat32[] data\n",
    "my_msgs/msg/Tensor": "string name\nstd_msgs/Float32MultiArray array\n",
    # Its size from an embedded (allow-listed) CameraInfo.
    "my_msgs/msg/InfoFrame": "std_msgs/Header header\nsensor_msgs/CameraInfo info\n"
    "uint16[] pixels\n",
    # Its size two levels down.
    "my_msgs/msg/DeepFrame": "my_msgs/Meta meta\nfloat32[] data\n"
    + SEPARATOR
    + "MSG: my_msgs/Meta\nstring encoding\nmy_msgs/Size size\n"
    + SEPARATOR
    + "MSG: my_msgs/Size\nuint32 width\nuint32 height\n",
    # Pixels of five numbers; pixels that hold a std_msgs/ColorRGBA.
    "my_msgs/msg/RgbdFrame": "uint32 width\nuint32 height\nmy_msgs/Rgbd[] pixels\n"
    + SEPARATOR
    + "MSG: my_msgs/Rgbd\nuint8 b\nuint8 g\nuint8 r\nuint8 a\nfloat32 depth\n",
    "my_msgs/msg/ColorFrame": "uint32 width\nuint32 height\nmy_msgs/Pixel[] pixels\n"
    + SEPARATOR
    + "MSG: my_msgs/Pixel\nstd_msgs/ColorRGBA color\n",
    "my_msgs/msg/IdlFrame": SEPARATOR
    + "IDL: my_msgs/msg/IdlFrame\n"
    + "module my_msgs {\n  module msg {\n    struct IdlFrame {\n"
    + "      unsigned long width;\n      unsigned long height;\n      sequence<float> data;\n"
    + "    };\n  };\n};\n",
}
CUSTOM = store_with(DEFINITIONS)


def _leaks(photo: np.ndarray) -> dict:
    """topic: (type, the message holding the portrait, how to get the portrait's gray pixels
    back from such a message, what the refusal says). The first four are the review's."""
    gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    h, w = gray.shape
    flat = gray.reshape(-1)
    types = CUSTOM.types
    _, jpeg = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 95])
    _, png = cv2.imencode(".png", photo)

    def from_hex(text: str) -> np.ndarray:
        raw = bytes.fromhex("".join(text.split()))
        return cv2.cvtColor(cv2.imdecode(np.frombuffer(raw, np.uint8), 1), cv2.COLOR_BGR2GRAY)

    def wrapped(data: bytes) -> str:  # as `xxd -p -u` would print it, 32 bytes a line
        return "\n".join(data[i : i + 32].hex(" ").upper() for i in range(0, len(data), 32))

    def levels(values) -> np.ndarray:
        return np.asarray(values, np.float64).reshape(h, w)

    points = _grid(h, w)
    tof = np.concatenate([points, gray[..., None].astype(np.float32)], axis=-1)
    shaped = "shaped like an image"
    return {
        "/thermal/image": (  # 1. a custom type: width, height and a uint16[] of pixels
            THERMAL,
            types[THERMAL](
                header=_header("thermal"),
                width=w,
                height=h,
                pixels=flat.astype(np.uint16) * 257,
            ),
            lambda m: levels(m.pixels) / 257,
            (shaped, "width and height, and numbers in pixels (uint16[])"),
        ),
        "/features/image": (  # 2. a Float32MultiArray laid out as 512 x 512
            "std_msgs/msg/Float32MultiArray",
            _float_array(gray / 255.0, [_dim("height", h, h * w), _dim("width", w, w)]),
            lambda m: levels(m.data) * 255,
            ("an array of 512 (height) x 512 (width)", "MultiArrayLayout"),
        ),
        "/tof/points": (  # 3. a ToF camera's organized cloud with its intensity image
            "sensor_msgs/msg/PointCloud2",
            _cloud(tof, ("x", "y", "z", "intensity")),
            lambda m: np.asarray(m.data).view(np.float32).reshape(h, w, 4)[..., 3],
            ("organized point cloud of 512x512 points with field 'intensity'",),
        ),
        "/ui/frame_hex": (  # 4. the JPEG as a hex string
            "std_msgs/msg/String",
            T["std_msgs/msg/String"](data=jpeg.tobytes().hex()),
            lambda m: from_hex(m.data),
            ("a JPEG image of 512x512 pixels (hex)",),
        ),
        # Relatives of the four.
        "/ui/frame_hex_dump": (  # a hex dump: upper case, bytes apart, lines of 32
            "std_msgs/msg/String",
            T["std_msgs/msg/String"](data="snapshot:\n" + wrapped(png.tobytes())),
            lambda m: from_hex(m.data.split(":", 1)[1]),
            ("a PNG image of 512x512 pixels (hex)",),
        ),
        "/tof/grid": (  # rows and cols
            "my_msgs/msg/DepthGrid",
            types["my_msgs/msg/DepthGrid"](rows=h, cols=w, data=flat.astype(np.float32)),
            lambda m: levels(m.data),
            (shaped, "rows and cols, and numbers in data (float32[])"),
        ),
        "/thermal/shot": (  # the shape and the pixels in fields of their own
            "my_msgs/msg/Shot",
            types["my_msgs/msg/Shot"](
                size=types["my_msgs/msg/Size"](width=w, height=h),
                plane=types["my_msgs/msg/Plane"](unit="K", values=flat.astype(np.float64)),
            ),
            lambda m: levels(m.plane.values),
            (shaped, "size.width and size.height, and numbers in plane.values (float64[])"),
        ),
        "/thermal/pixels": (  # an array of one-number pixels
            "my_msgs/msg/GrayPixels",
            types["my_msgs/msg/GrayPixels"](
                width=w,
                height=h,
                pixels=[types["my_msgs/msg/Gray16"](value=int(v)) for v in gray.reshape(-1)],
            ),
            lambda m: levels([p.value for p in m.pixels]),
            (shaped, "numbers in pixels (my_msgs/msg/Gray16[])"),
        ),
        "/tof/frames": (  # such a type inside another one's array
            "my_msgs/msg/Frames",
            types["my_msgs/msg/Frames"](
                camera="front",
                frames=[types["my_msgs/msg/DepthGrid"](rows=h, cols=w, data=flat.astype("f4"))],
            ),
            lambda m: levels(m.frames[0].data),
            (shaped, "my_msgs/msg/Frames.frames[]: rows and cols"),
        ),
        "/thermal/idl": (  # IDL alike
            "my_msgs/msg/IdlFrame",
            types["my_msgs/msg/IdlFrame"](width=w, height=h, data=flat.astype(np.float32)),
            lambda m: levels(m.data),
            (shaped, "numbers in data (float32[])"),
        ),
        "/features/tensor": (  # a MultiArray inside a type of the bag's own
            "my_msgs/msg/Tensor",
            types["my_msgs/msg/Tensor"](
                name="frame",
                array=_float_array(gray, [_dim("", h, h * w), _dim("", w, w), _dim("", 1, 1)]),
            ),
            lambda m: levels(m.array.data),
            ("an array of 512 x 512 x 1",),
        ),
        "/camera/camera_info": (  # a calibration whose distortion coefficients hold pixels
            "sensor_msgs/msg/CameraInfo",
            _camera_info(h, w, flat.astype(np.float64)),
            lambda m: levels(m.d),
            ("a CameraInfo with 262144 distortion coefficients",),
        ),
        **_later_leaks(photo, points),
    }


def _later_leaks(photo: np.ndarray, points: np.ndarray) -> dict:
    """The second review's leaks, in ``_leaks``' form."""
    gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    h, w = gray.shape
    types = CUSTOM.types
    jpeg = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    png = cv2.imencode(".png", photo)[1].tobytes()
    shaped = "shaped like an image"

    def levels(values) -> np.ndarray:
        return np.asarray(values, np.float64).reshape(h, w)

    def decoded(raw: bytes) -> np.ndarray:
        image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)

    def of_cloud(dtype, name: str):
        return lambda m: np.asarray(m.data).view(dtype).reshape(h, w)[name]

    colored = np.zeros((h, w), [("xyz", "<f4", 3), ("bgr", "u1", 3), ("pad", "u1")])
    colored["xyz"], colored["bgr"] = points, photo
    intensity = np.zeros((h, w), [("xyz", "<f4", 3), ("i", "<f4")])
    intensity["xyz"], intensity["i"] = points, gray
    bgr = photo.reshape(-1, 3)
    organized = "organized point cloud of 512x512 points"
    loose = "bytes besides x, y and z (padding fields, bytes of point_step no field declares"
    decoys = " ".join(["/9j/AAAA"] * 40)
    return {
        "/thermal/with_info": (  # its size from an embedded CameraInfo
            "my_msgs/msg/InfoFrame",
            types["my_msgs/msg/InfoFrame"](
                header=_header("thermal"),
                info=_camera_info(h, w, np.zeros(5)),
                pixels=gray.reshape(-1).astype(np.uint16),
            ),
            lambda m: levels(m.pixels),
            (shaped, "info.width and info.height, and numbers in pixels (uint16[])"),
        ),
        "/thermal/deep": (  # its size two levels down
            "my_msgs/msg/DeepFrame",
            types["my_msgs/msg/DeepFrame"](
                meta=types["my_msgs/msg/Meta"](
                    encoding="mono", size=types["my_msgs/msg/Size"](width=w, height=h)
                ),
                data=gray.reshape(-1).astype(np.float32),
            ),
            lambda m: levels(m.data),
            (shaped, "meta.size.width and meta.size.height, and numbers in data (float32[])"),
        ),
        "/rgbd/frame": (  # pixels of five numbers: b, g, r, a, depth
            "my_msgs/msg/RgbdFrame",
            types["my_msgs/msg/RgbdFrame"](
                width=w,
                height=h,
                pixels=[
                    types["my_msgs/msg/Rgbd"](b=int(b), g=int(g), r=int(r), a=255, depth=1.0)
                    for b, g, r in bgr
                ],
            ),
            lambda m: cv2.cvtColor(
                np.array([[p.b, p.g, p.r] for p in m.pixels], np.uint8).reshape(h, w, 3),
                cv2.COLOR_BGR2GRAY,
            ),
            (shaped, "numbers in pixels (my_msgs/msg/Rgbd[])"),
        ),
        "/camera/colors": (  # pixels that each hold a std_msgs/ColorRGBA
            "my_msgs/msg/ColorFrame",
            types["my_msgs/msg/ColorFrame"](
                width=w,
                height=h,
                pixels=[
                    types["my_msgs/msg/Pixel"](
                        color=T["std_msgs/msg/ColorRGBA"](
                            r=float(r), g=float(g), b=float(b), a=1.0
                        )
                    )
                    for b, g, r in bgr
                ],
            ),
            lambda m: cv2.cvtColor(
                np.array([[p.color.b, p.color.g, p.color.r] for p in m.pixels], np.uint8).reshape(
                    h, w, 3
                ),
                cv2.COLOR_BGR2GRAY,
            ),
            (shaped, "numbers in pixels (my_msgs/msg/Pixel[])"),
        ),
        "/tof/padding_field": (  # the colors in a padding field "_"
            "sensor_msgs/msg/PointCloud2",
            _packed_cloud(colored, [*XYZ, ("_", 12, 2, 3)], 16),
            lambda m: cv2.cvtColor(of_cloud(colored.dtype, "bgr")(m), cv2.COLOR_BGR2GRAY),
            (organized, loose),
        ),
        "/tof/upper_case_x": (  # the intensity in a field "X" beside "x"
            "sensor_msgs/msg/PointCloud2",
            _packed_cloud(intensity, [*XYZ, ("X", 12, 7, 1)], 16),
            of_cloud(intensity.dtype, "i"),
            (f"{organized} with field 'X'",),
        ),
        "/tof/second_x": (  # the intensity in a second field "x"
            "sensor_msgs/msg/PointCloud2",
            _packed_cloud(intensity, [*XYZ, ("x", 12, 7, 1)], 16),
            of_cloud(intensity.dtype, "i"),
            (f"{organized} with field 'x' declared more than once",),
        ),
        "/tof/undeclared_bytes": (  # the intensity in bytes of point_step no field declares
            "sensor_msgs/msg/PointCloud2",
            _packed_cloud(intensity, XYZ, 16),
            of_cloud(intensity.dtype, "i"),
            (organized, loose),
        ),
        "/features/pixels": (  # a Float32MultiArray of pixels by channels: [262144, 3]
            "std_msgs/msg/Float32MultiArray",
            _float_array(photo, [_dim("pixels", h * w, h * w * 3), _dim("bgr", 3, 3)]),
            lambda m: cv2.cvtColor(m.data.reshape(h, w, 3).astype(np.uint8), cv2.COLOR_BGR2GRAY),
            ("an array of 262144 (pixels) x 3 (bgr)", "a dimension of 4096 or more"),
        ),
        "/ui/base64url": (  # a PNG in base64url (RFC 4648 section 5), unpadded
            "std_msgs/msg/String",
            T["std_msgs/msg/String"](data=base64.urlsafe_b64encode(png).decode().rstrip("=")),
            lambda m: decoded(base64.urlsafe_b64decode(m.data + "=" * (-len(m.data) % 4))),
            ("a PNG image of 512x512 pixels (base64)",),
        ),
        "/ui/decoys": (  # 40 decoy JPEG starts before the real one
            "std_msgs/msg/String",
            T["std_msgs/msg/String"](data=f"{decoys} {base64.b64encode(jpeg).decode()}"),
            lambda m: decoded(base64.b64decode(m.data.split(" ")[-1])),
            ("a JPEG image of 512x512 pixels (base64)",),
        ),
        "/ui/escaped_hex": (  # as C's or Python's byte literals print it
            "std_msgs/msg/String",
            T["std_msgs/msg/String"](data="".join(f"\\x{b:02x}" for b in jpeg)),
            lambda m: decoded(bytes.fromhex(m.data.replace("\\x", ""))),
            ("a JPEG image of 512x512 pixels (hex)",),
        ),
        "/ui/dashed_hex": (  # as .NET's BitConverter.ToString prints it
            "std_msgs/msg/String",
            T["std_msgs/msg/String"](data=png.hex("-").upper()),
            lambda m: decoded(bytes.fromhex(m.data.replace("-", ""))),
            ("a PNG image of 512x512 pixels (hex)",),
        ),
    }


@pytest.fixture(scope="module")
def leaks(photo) -> dict:
    return _leaks(photo)


#: The review's four leaks.
REVIEWED = ["/thermal/image", "/features/image", "/tof/points", "/ui/frame_hex"]
RELATIVES = [
    "/ui/frame_hex_dump",
    "/tof/grid",
    "/thermal/shot",
    "/thermal/pixels",
    "/tof/frames",
    "/thermal/idl",
    "/features/tensor",
    "/camera/camera_info",
]
#: The second review's.
LATER = [
    "/thermal/with_info",
    "/thermal/deep",
    "/rgbd/frame",
    "/camera/colors",
    "/tof/padding_field",
    "/tof/upper_case_x",
    "/tof/second_x",
    "/tof/undeclared_bytes",
    "/features/pixels",
    "/ui/base64url",
    "/ui/decoys",
    "/ui/escaped_hex",
    "/ui/dashed_hex",
]


def _camera_info(height: int, width: int, d: np.ndarray):
    return T["sensor_msgs/msg/CameraInfo"](
        header=_header("camera"),
        height=height,
        width=width,
        distortion_model="plumb_bob",
        d=np.asarray(d, np.float64),
        k=np.array([500.0, 0, width / 2, 0, 500, height / 2, 0, 0, 1]),
        r=np.eye(3).reshape(-1),
        p=np.array([500.0, 0, width / 2, 0, 0, 500, height / 2, 0, 0, 0, 1, 0]),
        binning_x=0,
        binning_y=0,
        roi=T["sensor_msgs/msg/RegionOfInterest"](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        ),
    )


def _write(source: Path, topic: str, msgtype: str, msg) -> None:
    """An mcap bag (ROS 2 Jazzy's layout: definitions stored) of one message on ``topic``."""
    with Writer(source, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        if DEFINITIONS.get(msgtype, "").startswith(SEPARATOR + "IDL: "):
            conn = writer.add_connection(
                topic, msgtype, msgdef=DEFINITIONS[msgtype], rihs01=CUSTOM.hash_rihs01(msgtype)
            )
        else:
            conn = writer.add_connection(topic, msgtype, typestore=CUSTOM)
        writer.write(conn, NS, CUSTOM.serialize_cdr(msg, msgtype))


def _unchanged(copied: np.ndarray, photo: np.ndarray) -> float:
    """The share of the portrait's gray pixels a copied topic gives back (within 8 levels)."""
    gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY).astype(np.float64)
    return float((np.abs(np.asarray(copied, np.float64) - gray) <= 8).mean())


def _refusal(source: Path, target: Path, topic: str, msgtype: str, photo_of, photo) -> str:
    """The run's refusal, with nothing written; a run that goes through fails the test with
    how much of the portrait it copied."""
    try:
        anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    except BagError as exc:
        assert not target.exists(), "OUT was written"
        assert sorted(p.name for p in source.parent.iterdir()) == ["in"], "something was written"
        assert "\n" not in str(exc)
        return str(exc)
    msg = CUSTOM.deserialize_cdr(read_bag(target)[topic]["msgs"][0][1], msgtype)
    pytest.fail(
        f"the run went through: {topic} copied with {_unchanged(photo_of(msg), photo):.0%} of "
        "the portrait unchanged"
    )


@pytest.mark.parametrize("topic", REVIEWED + RELATIVES + LATER)
def test_a_topic_that_carries_the_portrait_as_numbers_or_text_stops_the_run(
    photo, leaks, tmp_path, topic
):
    msgtype, msg, photo_of, reasons = leaks[topic]
    assert _unchanged(photo_of(msg), photo) > 0.99  # the message does hold the portrait
    source, target = tmp_path / "in", tmp_path / "out"
    _write(source, topic, msgtype, msg)
    error = _refusal(source, target, topic, msgtype, photo_of, photo)
    assert topic in error
    for reason in reasons:
        assert reason in error
    assert "cannot be anonymized" in error
    assert error.index("cannot be anonymized") < error.index("--keep-topic TOPIC copies")
    assert "for a topic that shows no people" in error


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_standard_types_read_with_the_distros_definitions_stop_the_run_too(
    leaks, tmp_path, storage
):
    """A ROS 2 Humble recording stores no definitions: the standard ones judge it alike."""
    topics = ["/features/image", "/tof/points", "/ui/frame_hex", "/camera/camera_info"]
    for topic in topics:
        source, target = tmp_path / topic.replace("/", "_") / "in", tmp_path / "out"
        source.parent.mkdir()
        msgtype, msg, _, reasons = leaks[topic]
        raw = bytes(STORE.serialize_cdr(msg, msgtype))
        write_humble_bag(source, storage, [(topic, msgtype, [(NS, raw)])])
        with pytest.raises(BagError) as caught:
            anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
        assert f"topic {topic} ({msgtype})" in str(caught.value)
        assert all(reason in str(caught.value) for reason in reasons)
        assert sorted(p.name for p in source.parent.iterdir()) == ["in"]
        assert not target.exists()


def test_the_command_line_says_why_and_exits_1(leaks, tmp_path, capsys):
    msgtype, msg, _, _ = leaks["/thermal/image"]
    source, target = tmp_path / "in", tmp_path / "out"
    _write(source, "/thermal/image", msgtype, msg)
    assert main(["bag", str(source), str(target), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ciagan bag: error: topics ['/thermal/image'] have types shaped")
    assert "--keep-topic TOPIC copies a topic raw" in err
    assert not target.exists()


def _write_all(source: Path, topic: str, msgtype: str, msgs: list, store=CUSTOM) -> None:
    """An mcap bag of ``msgs`` on ``topic``, one after another."""
    with Writer(source, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(topic, msgtype, typestore=store)
        for i, msg in enumerate(msgs):
            writer.write(conn, NS * (i + 1), store.serialize_cdr(msg, msgtype))


def _stops(source: Path, target: Path) -> str:
    with pytest.raises(BagError) as caught:
        anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    assert not target.exists()
    assert sorted(p.name for p in source.parent.iterdir()) == ["in"]
    return str(caught.value)


def test_an_image_cut_into_pieces_over_several_messages_stops_the_run(photo, tmp_path):
    """No message holds the whole image, but the first holds its start: a well-formed header
    and more. As base64 in strings, and as raw bytes in a map's cells (a safe byte holder)."""
    png = cv2.imencode(".png", photo)[1].tobytes()
    jpeg = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    text = base64.b64encode(png).decode()
    size = len(text) // 4 // 4 * 4
    chunks = [text[i : i + size] for i in range(0, len(text), size)]
    half = len(jpeg) // 2
    pieces = [jpeg[:half], jpeg[half:]]

    def grid(piece: bytes):
        return T["nav_msgs/msg/OccupancyGrid"](
            header=_header("map"),
            info=T["nav_msgs/msg/MapMetaData"](
                map_load_time=_time(),
                resolution=0.05,
                width=len(piece),
                height=1,
                origin=_pose(),
            ),
            data=np.frombuffer(piece, np.int8),
        )

    cases = {
        "/ui/snapshot": (
            "std_msgs/msg/String",
            [T["std_msgs/msg/String"](data=chunk) for chunk in chunks],
            lambda ms: base64.b64decode("".join(m.data for m in ms)),
            "its message 0 holds the start of a PNG image of 512x512 pixels",
            "(base64)",
        ),
        "/map": (
            "nav_msgs/msg/OccupancyGrid",
            [grid(piece) for piece in pieces],
            lambda ms: b"".join(m.data.tobytes() for m in ms),
            "its message 0 holds the start of a JPEG image of 512x512 pixels",
            "a well-formed header",
        ),
    }
    for topic, (msgtype, msgs, joined, *reasons) in cases.items():
        assert len(msgs) > 1
        whole = cv2.imdecode(np.frombuffer(joined(msgs), np.uint8), cv2.IMREAD_COLOR)
        assert _unchanged(cv2.cvtColor(whole, cv2.COLOR_BGR2GRAY), photo) > 0.99
        folder = tmp_path / topic.strip("/").replace("/", "_")
        source, target = folder / "in", folder / "out"
        source.parent.mkdir()
        _write_all(source, topic, msgtype, msgs)
        error = _stops(source, target)
        assert f"topic {topic} ({msgtype})" in error
        assert all(reason in error for reason in reasons), error


def _foxy_marker(foxy, points: np.ndarray, colors: np.ndarray, kind: int):
    """A ROS 2 Foxy visualization_msgs/Marker (no texture field) of ``kind`` with a color per
    point (BGR, 0..255)."""
    types = foxy.types
    return types["visualization_msgs/msg/Marker"](
        header=types["std_msgs/msg/Header"](
            stamp=types["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="camera"
        ),
        ns="cloud",
        id=0,
        type=kind,
        action=0,
        pose=types["geometry_msgs/msg/Pose"](
            position=types["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
            orientation=types["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
        ),
        scale=types["geometry_msgs/msg/Vector3"](x=0.01, y=0.01, z=0.0),
        color=types["std_msgs/msg/ColorRGBA"](r=1.0, g=1.0, b=1.0, a=1.0),
        lifetime=types["builtin_interfaces/msg/Duration"](sec=0, nanosec=0),
        frame_locked=False,
        points=[
            types["geometry_msgs/msg/Point"](x=float(x), y=float(y), z=float(z))
            for x, y, z in points
        ],
        colors=[
            types["std_msgs/msg/ColorRGBA"](r=r / 255, g=g / 255, b=b / 255, a=1.0)
            for b, g, r in colors
        ],
        text="",
        mesh_resource="",
        mesh_use_embedded_materials=False,
    )


def test_a_foxy_marker_with_a_color_per_point_stops_the_run(photo, tmp_path):
    """Foxy's Marker has no texture, so its type passes; a POINTS marker with a color for each
    of 1024 or more points is a colored point cloud: the portrait, pixel for pixel, and so are
    the markers of an array, each with fewer. Markers with fewer colors in all (a path colored
    by speed) are copied."""
    foxy = get_typestore(Stores.ROS2_FOXY)
    msgtype = "visualization_msgs/msg/MarkerArray"
    array = foxy.types[msgtype]
    portrait = _foxy_marker(foxy, _grid(512, 512).reshape(-1, 3), photo.reshape(-1, 3), 8)
    bgr = np.array([[c.b, c.g, c.r] for c in portrait.colors]) * 255
    back = np.rint(bgr).astype(np.uint8).reshape(photo.shape)
    assert _unchanged(cv2.cvtColor(back, cv2.COLOR_BGR2GRAY), photo) > 0.99
    pieces = [  # the same, as markers of fewer than 1024 points each
        replace(portrait, id=i, points=portrait.points[at : at + 1000], colors=colors)
        for i, at in enumerate(range(0, len(portrait.colors), 1000))
        if (colors := portrait.colors[at : at + 1000])
    ]
    for name, markers in (("whole", [portrait]), ("pieces", pieces)):
        source, target = tmp_path / name / "in", tmp_path / name / "out"
        source.parent.mkdir()
        _write_all(source, "/viz/cloud", msgtype, [array(markers=markers)], foxy)
        error = _stops(source, target)
        assert "topic /viz/cloud (visualization_msgs/msg/MarkerArray)" in error
        assert "markers with 262144 colors (colors), one per point: a colored point" in error

    rng = np.random.default_rng(0)
    path = _foxy_marker(foxy, rng.normal(size=(500, 3)), rng.integers(0, 256, (500, 3)), 4)
    source, target = tmp_path / "path" / "in", tmp_path / "path" / "out"
    source.parent.mkdir()
    _write_all(source, "/viz/path", msgtype, [array(markers=[path])], foxy)
    anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    assert read_bag(target)["/viz/path"]["msgs"] == read_bag(source)["/viz/path"]["msgs"]


@pytest.mark.parametrize("topic", REVIEWED)
def test_keep_topic_copies_such_a_topic_raw_on_purpose(leaks, tmp_path, topic):
    msgtype, msg, _, _ = leaks[topic]
    source, target = tmp_path / "in", tmp_path / "out"
    _write(source, topic, msgtype, msg)
    args = ["bag", str(source), str(target), "--keep-topic", topic, "--no-progress"]
    assert main(args) == 0
    assert read_bag(target)[topic]["msgs"] == read_bag(source)[topic]["msgs"]
    report = json.loads((tmp_path / "out.report.json").read_text())
    assert report["copied_topics"] == [
        {
            "topic": topic,
            "msgtype": msgtype,
            "messages": 1,
            "kept": True,
            "why": "kept (--keep-topic)",
        }
    ]


# -- Ordinary robot data still goes through ----------------------------------------------------


def _vector(x: float = 0.0, y: float = 0.0, z: float = 0.0, kind: str = "Vector3"):
    return T[f"geometry_msgs/msg/{kind}"](x=x, y=y, z=z)


def _quaternion():
    return T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)


def _pose(x: float = 0.0, y: float = 0.0):
    return T["geometry_msgs/msg/Pose"](
        position=_vector(x, y, kind="Point"), orientation=_quaternion()
    )


def _ordinary(photo: np.ndarray) -> dict:
    """topic: (type, message): what a mobile robot records besides its cameras."""
    rng = np.random.default_rng(0)
    twist = T["geometry_msgs/msg/Twist"](linear=_vector(0.5), angular=_vector(z=0.1))
    depth = _grid(512, 512)
    depth[..., 2] = 0.5 + cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY) / 255.0  # a depth camera's
    pcl = np.zeros((512, 512), [("xyz", "<f4", 3), ("pad", "<f4")])  # PCL's PointXYZ
    pcl["xyz"], pcl["pad"] = depth, 1.0
    padded = np.zeros((512, 512), [("xyz", "<f4", 3), ("pad", "u1", 4)])  # a "_" field
    padded["xyz"] = depth
    png = cv2.imencode(".png", photo)[1].tobytes()
    lidar = rng.normal(size=(1, 30000, 4)).astype(np.float32)  # a lidar scan, unorganized
    lidar[..., 3] = rng.integers(0, 255, 30000)
    transform = T["geometry_msgs/msg/TransformStamped"](
        header=_header("odom"),
        child_frame_id="base_link",
        transform=T["geometry_msgs/msg/Transform"](
            translation=_vector(1.0, 2.0), rotation=_quaternion()
        ),
    )
    return {
        "/scan": (
            "sensor_msgs/msg/LaserScan",
            T["sensor_msgs/msg/LaserScan"](
                header=_header("laser"),
                angle_min=-3.14,
                angle_max=3.14,
                angle_increment=0.0087,
                time_increment=0.0,
                scan_time=0.1,
                range_min=0.1,
                range_max=30.0,
                ranges=rng.uniform(0.1, 30, 720).astype(np.float32),
                intensities=rng.uniform(0, 255, 720).astype(np.float32),
            ),
        ),
        "/imu": (
            "sensor_msgs/msg/Imu",
            T["sensor_msgs/msg/Imu"](
                header=_header("imu"),
                orientation=_quaternion(),
                orientation_covariance=np.zeros(9),
                angular_velocity=_vector(z=0.1),
                angular_velocity_covariance=np.zeros(9),
                linear_acceleration=_vector(z=9.81),
                linear_acceleration_covariance=np.zeros(9),
            ),
        ),
        "/joint_states": (
            "sensor_msgs/msg/JointState",
            T["sensor_msgs/msg/JointState"](
                header=_header(),
                name=["wheel_left", "wheel_right"],
                position=np.array([0.1, 0.2]),
                velocity=np.array([1.0, 1.0]),
                effort=np.zeros(2),
            ),
        ),
        "/odom": (
            "nav_msgs/msg/Odometry",
            T["nav_msgs/msg/Odometry"](
                header=_header("odom"),
                child_frame_id="base_link",
                pose=T["geometry_msgs/msg/PoseWithCovariance"](
                    pose=_pose(1.0, 2.0), covariance=np.eye(6).reshape(-1)
                ),
                twist=T["geometry_msgs/msg/TwistWithCovariance"](
                    twist=twist, covariance=np.eye(6).reshape(-1)
                ),
            ),
        ),
        "/plan": (
            "nav_msgs/msg/Path",
            T["nav_msgs/msg/Path"](
                header=_header("map"),
                poses=[
                    T["geometry_msgs/msg/PoseStamped"](header=_header("map"), pose=_pose(i, i))
                    for i in range(2000)
                ],
            ),
        ),
        "/map": (
            "nav_msgs/msg/OccupancyGrid",
            T["nav_msgs/msg/OccupancyGrid"](
                header=_header("map"),
                info=T["nav_msgs/msg/MapMetaData"](
                    map_load_time=_time(),
                    resolution=0.05,
                    width=384,
                    height=384,
                    origin=_pose(-10.0, -10.0),
                ),
                data=rng.choice(np.array([-1, 0, 100], np.int8), 384 * 384),
            ),
        ),
        "/tf": ("tf2_msgs/msg/TFMessage", T["tf2_msgs/msg/TFMessage"](transforms=[transform])),
        "/wheel_speeds": (  # 1-D
            "std_msgs/msg/Float32MultiArray",
            _float_array(np.ones(4), [_dim("wheels", 4, 4)]),
        ),
        "/controller/output": (  # no layout at all
            "std_msgs/msg/Float32MultiArray",
            _float_array(rng.normal(size=300_000), []),
        ),
        "/tracker/points": (  # 2-D, but 3 x N: points, not an image
            "std_msgs/msg/Float32MultiArray",
            _float_array(
                rng.normal(size=(3, 1000)), [_dim("xyz", 3, 3000), _dim("n", 1000, 1000)]
            ),
        ),
        "/velodyne_points": (
            "sensor_msgs/msg/PointCloud2",
            _cloud(lidar, ("x", "y", "z", "intensity")),
        ),
        "/depth/points": ("sensor_msgs/msg/PointCloud2", _cloud(depth, ("x", "y", "z"))),
        "/depth/points_pcl": (  # point_step 16, its last 4 bytes 1.0f in every point
            "sensor_msgs/msg/PointCloud2",
            _packed_cloud(pcl, XYZ, 16),
        ),
        "/depth/points_padded": (  # a padding field "_" of zeros
            "sensor_msgs/msg/PointCloud2",
            _packed_cloud(padded, [*XYZ, ("_", 12, 2, 4)], 16),
        ),
        "/trajectory": (  # 100 points by x, y, z
            "std_msgs/msg/Float32MultiArray",
            _float_array(rng.normal(size=(100, 3)), [_dim("n", 100, 300), _dim("xyz", 3, 3)]),
        ),
        "/covariance": (  # 6 x 6
            "std_msgs/msg/Float32MultiArray",
            _float_array(np.eye(6), [_dim("rows", 6, 36), _dim("cols", 6, 6)]),
        ),
        "/camera/camera_info": (
            "sensor_msgs/msg/CameraInfo",
            _camera_info(480, 640, np.array([0.1, -0.2, 0.0, 0.0, 0.05])),
        ),
        "/footprint": (  # an array of small all-number structs with no byte in them
            "geometry_msgs/msg/PolygonStamped",
            T["geometry_msgs/msg/PolygonStamped"](
                header=_header("base_link"),
                polygon=T["geometry_msgs/msg/Polygon"](
                    points=[
                        T["geometry_msgs/msg/Point32"](x=float(x), y=float(y), z=0.0)
                        for x, y in rng.normal(size=(2000, 2))
                    ]
                ),
            ),
        ),
        "/notes": (  # text about the magic numbers is no image
            "std_msgs/msg/String",
            T["std_msgs/msg/String"](data="a JPEG starts ffd8ffe0, a PNG 89 50 4E 47 0D 0A 1A 0A"),
        ),
        "/log": (  # decoys alone, and a PNG's first 64 bytes printed: no image
            "std_msgs/msg/String",
            T["std_msgs/msg/String"](
                data=" ".join(["/9j/AAAA"] * 20) + f" header {png[:64].hex()} _9j_ iVBORw0KGgo="
            ),
        ),
    }


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_ordinary_robot_data_is_copied(photo, tmp_path, storage):
    messages = _ordinary(photo)
    source, target = tmp_path / "in", tmp_path / "out"
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(source, version=9, storage_plugin=plugin) as writer:
        for topic, (msgtype, msg) in messages.items():
            conn = writer.add_connection(topic, msgtype, typestore=STORE)
            writer.write(conn, NS, STORE.serialize_cdr(msg, msgtype))
    report = anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    before, after = read_bag(source), read_bag(target)
    for topic in messages:
        assert after[topic]["msgs"] == before[topic]["msgs"], topic
    assert report["copied_topics"] == [
        {"topic": t, "msgtype": messages[t][0], "messages": 1, "kept": False, "why": CHECKED}
        for t in sorted(messages)
    ]


def test_a_jpeg_in_a_checked_type_stops_the_run_even_when_its_shape_passes(photo, tmp_path):
    """A lidar-like cloud (height 1: its own check passes) whose bytes are a JPEG of the
    portrait: the byte scan's finding stands; the content check must not overwrite it."""
    ok, jpeg = cv2.imencode(".jpg", photo)
    assert ok
    data = np.frombuffer(jpeg.tobytes() + b"\0" * (-len(jpeg) % 12), np.uint8)
    points = data.view([("x", "<f4"), ("y", "<f4"), ("z", "<f4")]).reshape(1, -1)
    cloud = _packed_cloud(points, XYZ, 12)
    source = tmp_path / "in"
    _write(source, "/lidar/points", "sensor_msgs/msg/PointCloud2", cloud)
    assert "holds a JPEG image of 512x512 pixels" in _stops(source, tmp_path / "out")


def test_an_image_is_found_whatever_follows_it():
    """Each start of the magic bytes is checked: a decoy after the image (or a thumbnail's
    header inside it) does not hide it; unpadded base64 of any length decodes."""
    from ciagan_ros.bag_tool import _embedded_image, _encoded_image

    image = cv2.imencode(".png", np.full((40, 40, 3), 90, np.uint8))[1].tobytes()
    assert _encoded_image(image + b"\xff\xd8\xff\xe0" + b"\0" * 8).startswith("a PNG image")
    jpeg = cv2.imencode(".jpg", np.full((40, 40, 3), 90, np.uint8))[1].tobytes()
    assert _encoded_image(jpeg + b"\xff\xd8\xff\xe0" + b"\0" * 8).startswith("a JPEG image")
    for cut in range(3):  # unpadded base64 whose length is 0, 2 or 3 modulo 4
        payload = cv2.imencode(".png", np.full((40, 40 + cut, 3), 90, np.uint8))[1]
        text = base64.b64encode(payload.tobytes()).rstrip(b"=")
        assert "PNG image" in (_embedded_image(b"data:" + text + b" end") or ""), len(text) % 4


def test_a_cut_off_image_counts_from_its_first_256_bytes_wherever_it_lies():
    """A well-formed header that does not decode whole (the rest cut off) is an image from
    IMAGE_START bytes of its own on, wherever in the message it starts; one byte fewer is not
    (a header printed into a log is no image)."""
    from ciagan_ros.bag_tool import IMAGE_START, _encoded_image

    noise = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    png = cv2.imencode(".png", noise)[1].tobytes()
    assert len(png) > 4 * IMAGE_START
    for before in (b"", b"\0" * 1000):
        found = _encoded_image(before + png[:IMAGE_START])
        assert found is not None and found.startswith("the start of a PNG image of 64x64")
        assert f"(a well-formed header and {IMAGE_START} bytes;" in found
        assert _encoded_image(before + png[: IMAGE_START - 1]) is None


def test_an_image_is_found_between_decoys_raw_and_in_base64():
    """Magic bytes that start no image, before and after a real one, hide nothing; in base64,
    a decoy at the start of a run whose image lies at another offset in the same run does
    not hide it either."""
    from ciagan_ros.bag_tool import _embedded_image, _encoded_image

    png = cv2.imencode(".png", np.full((40, 48, 3), 90, np.uint8))[1].tobytes()  # 48 wide
    decoy = b"\x89PNG\r\n\x1a\n" + b"\0" * 40  # the magic, then no header
    assert _encoded_image(decoy + decoy + png + decoy).startswith("a PNG image of 48x40")
    # A decoy's base64, one more digit, then the image: its digits lie 1 off the decoy's.
    shifted = base64.b64encode(decoy[:48]) + b"x" + base64.b64encode(png)
    assert _embedded_image(b"data:" + shifted + b" end") == "a PNG image of 48x40 pixels (base64)"


def test_a_cut_off_image_in_base64_with_line_breaks_is_found_wherever_it_is_cut():
    """Base64 in 76-digit lines (MIME), cut off after any number of digits (the rest in the
    next message): the line breaks are not digits, and a last digit that cannot complete a
    byte is dropped."""
    from ciagan_ros.bag_tool import _embedded_image

    noise = np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    png = cv2.imencode(".png", noise)[1].tobytes()
    for newline in (b"\n", b"\r\n"):
        lines = base64.encodebytes(png).replace(b"\n", newline)
        digits = [i for i, byte in enumerate(lines) if byte not in b"\r\n"]
        # digits kept: every remainder modulo 4, after an odd and an even number of lines
        for cut in [*range(1400, 1404), *range(1480, 1484)]:
            found = _embedded_image(b"log: " + lines[: digits[cut - 1] + 1])
            assert found and found.startswith("the start of a PNG image of 64x64"), cut
