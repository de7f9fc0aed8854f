"""``ciagan bag`` fails closed on topics it cannot anonymize: a type that can carry pixels (a
byte array at any depth, msg or IDL), a type nothing defines (ROS 2 Humble bags store no
definitions), and bytes that hold an encoded image stop the run, naming the topic, until it is
kept explicitly; whatever passes through raw is listed in the report. Real faces: a run that
goes through where it must not is measured by how much of the face it wrote unchanged."""

from __future__ import annotations

import base64
import re

import cv2
import numpy as np
import pytest
from conftest import celeba_image, hog_box

from ciagan_core.pipeline import AnonymizerConfig
from ciagan_ros.bag_tool import BagError, BagSettings, anonymize_bag

rosbags = pytest.importorskip("rosbags")
from rosbag_messages import (  # noqa: E402
    FOXGLOVE_DEFINITIONS,
    FOXGLOVE_RAW,
    NS,
    SEPARATOR,
    STORE,
    T,
    cloud_message,
    image_message,
    read_bag,
    store_with,
    unchanged_share,
    write_humble_bag,
)
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402

PLUGINS = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


@pytest.fixture(scope="module")
def face(shared_dir, celeba_rows):
    row = celeba_rows[0]
    return celeba_image(shared_dir, row), hog_box(row)


def _header(stamp: int = NS):
    return T["std_msgs/msg/Header"](
        stamp=T["builtin_interfaces/msg/Time"](sec=stamp // NS, nanosec=stamp % NS),
        frame_id="camera",
    )


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _refused(source, target, leaked) -> str:
    """The run's refusal; a run that goes through instead fails the test with how much of the
    face it wrote unchanged (``leaked``: the output bag read -> that share)."""
    try:
        anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    except BagError as exc:
        assert "\n" not in str(exc)
        assert _names(source.parent) == ["in"], "something was written"
        return str(exc)
    pytest.fail(f"the run went through: {leaked(read_bag(target)):.0%} of the face unchanged")


def _kept_as_is(source, target, topic: str, msgtype: str) -> None:
    """Kept explicitly, the topic is copied byte for byte and listed as kept in the report."""
    report = anonymize_bag(source, target, AnonymizerConfig(), BagSettings(keep_topics=(topic,)))
    assert read_bag(target)[topic]["msgs"] == read_bag(source)[topic]["msgs"]
    listed = [t for t in report["copied_topics"] if t["topic"] == topic]
    assert listed == [
        {
            "topic": topic,
            "msgtype": msgtype,
            "messages": len(read_bag(source)[topic]["msgs"]),
            "kept": True,
            "why": "kept (--keep-topic)",
        }
    ]


# -- 1. Defined types that can carry raw pixels ----------------------------------------------

_RAW_FRAME = (
    "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint32 step\n"
    "uint8[] data\n"
    + SEPARATOR
    + "MSG: std_msgs/Header\nbuiltin_interfaces/Time stamp\nstring frame_id\n"
    + SEPARATOR
    + "MSG: builtin_interfaces/Time\nint32 sec\nuint32 nanosec\n"
)
_OBSERVATION = "uint32 rows\nuint32 cols\nuint8[] bgr\n"
_NESTED = (
    "string camera\nacme_msgs/Crop[] crops\n"
    + SEPARATOR
    + "MSG: acme_msgs/Crop\nuint32 width\nuint32 height\nacme_msgs/Blob blob\n"
    + SEPARATOR
    + "MSG: acme_msgs/Blob\nbyte[] bytes\n"
)
_PIXELS = (
    "uint32 width\nuint32 height\nacme_msgs/Pixel[] pixels\n"
    + SEPARATOR
    + "MSG: acme_msgs/Pixel\nuint8 b\nuint8 g\nuint8 r\n"
)
#: Pixels as a flat list of byte structs, no shape given: only the byte-struct rule sees it.
_STRIP = (
    "acme_msgs/Pixel[] pixels\n" + SEPARATOR + "MSG: acme_msgs/Pixel\nuint8 b\nuint8 g\nuint8 r\n"
)
_IDL = (
    SEPARATOR
    + "IDL: acme_msgs/msg/Shot\n"
    + "module acme_msgs {\n  module msg {\n    struct Shot {\n"
    + "      uint32 width;\n      uint32 height;\n      sequence<octet> pixels;\n"
    + "    };\n  };\n};\n"
)
#: A camera's raw frame under a name the old name rule knew nothing of: Foxglove's RawImage
#: layout in another package.
_FOXGLOVE_LIKE = FOXGLOVE_DEFINITIONS[FOXGLOVE_RAW]


def _pixel_messages(store, photo: np.ndarray) -> dict:
    """topic: (type, its definition (None: the distro's), the message holding ``photo``, and
    how to get the pixels back from such a message)."""
    h, w = photo.shape[:2]
    flat = photo.reshape(-1)
    types = store.types

    def frame(data) -> np.ndarray:
        return np.asarray(data, np.uint8).reshape(h, w, 3)

    def pixels() -> list:
        """The photo as acme_msgs/Pixel structs."""
        return [types["acme_msgs/msg/Pixel"](b=b, g=g, r=r) for b, g, r in photo.reshape(-1, 3)]

    def from_pixels(m) -> np.ndarray:
        return frame([(p.b, p.g, p.r) for p in m.pixels])

    return {
        "/cam/frame": (
            "acme_msgs/msg/CameraFrame",
            _RAW_FRAME,
            lambda: types["acme_msgs/msg/CameraFrame"](
                header=_header(), height=h, width=w, encoding="bgr8", step=w * 3, data=flat
            ),
            lambda m: frame(m.data),
        ),
        "/perception/obs": (
            "acme_msgs/msg/Observation",
            _OBSERVATION,
            lambda: types["acme_msgs/msg/Observation"](rows=h, cols=w, bgr=flat),
            lambda m: frame(m.bgr),
        ),
        "/camera/image_raw": (
            "std_msgs/msg/UInt8MultiArray",
            None,
            lambda: types["std_msgs/msg/UInt8MultiArray"](
                layout=types["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0), data=flat
            ),
            lambda m: frame(m.data),
        ),
        "/viz/raw": (
            "acme_viz/msg/RawImage",
            _FOXGLOVE_LIKE,
            lambda: types["acme_viz/msg/RawImage"](
                timestamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=0),
                frame_id="camera",
                width=w,
                height=h,
                encoding="bgr8",
                step=w * 3,
                data=flat,
            ),
            lambda m: frame(m.data),
        ),
        "/perception/crops": (
            "acme_msgs/msg/Crops",
            _NESTED,
            lambda: types["acme_msgs/msg/Crops"](
                camera="front",
                crops=[
                    types["acme_msgs/msg/Crop"](
                        width=w, height=h, blob=types["acme_msgs/msg/Blob"](bytes=flat)
                    )
                ],
            ),
            lambda m: frame(m.crops[0].blob.bytes),
        ),
        "/perception/pixels": (
            "acme_msgs/msg/PixelArray",
            _PIXELS,
            lambda: types["acme_msgs/msg/PixelArray"](width=w, height=h, pixels=pixels()),
            from_pixels,
        ),
        "/perception/strip": (
            "acme_msgs/msg/PixelStrip",
            _STRIP,
            lambda: types["acme_msgs/msg/PixelStrip"](pixels=pixels()),
            from_pixels,
        ),
        "/perception/shot": (
            "acme_msgs/msg/Shot",
            _IDL,
            lambda: types["acme_msgs/msg/Shot"](width=w, height=h, pixels=flat),
            lambda m: frame(m.pixels),
        ),
    }


PIXEL_TOPICS = [
    "/cam/frame",
    "/perception/obs",
    "/camera/image_raw",
    "/viz/raw",
    "/perception/crops",
    "/perception/pixels",
    "/perception/strip",
    "/perception/shot",
]


def _pixel_store():
    return store_with(
        {
            "acme_msgs/msg/CameraFrame": _RAW_FRAME,
            "acme_msgs/msg/Observation": _OBSERVATION,
            "acme_viz/msg/RawImage": _FOXGLOVE_LIKE,
            "acme_msgs/msg/Crops": _NESTED,
            "acme_msgs/msg/PixelArray": _PIXELS,
            "acme_msgs/msg/PixelStrip": _STRIP,
            "acme_msgs/msg/Shot": _IDL,
        }
    )


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("topic", PIXEL_TOPICS)
def test_a_defined_type_with_a_byte_array_stops_the_run_unless_kept(
    face, tmp_path, topic, storage
):
    photo, box = face
    store = _pixel_store()
    msgtype, definition, build, pixels_of = _pixel_messages(store, photo)[topic]
    source, target = tmp_path / "in", tmp_path / "out"
    with Writer(source, version=9, storage_plugin=PLUGINS[storage]) as writer:
        if definition is None:
            conn = writer.add_connection(topic, msgtype, typestore=store)
        else:
            conn = writer.add_connection(
                topic, msgtype, msgdef=definition, rihs01=store.hash_rihs01(msgtype)
            )
        writer.write(conn, NS, store.serialize_cdr(build(), msgtype))

    def leaked(bag) -> float:
        msg = store.deserialize_cdr(bag[topic]["msgs"][0][1], msgtype)
        return unchanged_share(pixels_of(msg), photo, box)

    error = _refused(source, target, leaked)
    assert topic in error and "byte arrays that can hold camera pixels" in error
    assert error.index("cannot") < error.index("--keep-topic") and "faces included" in error
    _kept_as_is(source, target, topic, msgtype)


def test_standard_types_with_bytes_that_are_no_pixels_are_copied(tmp_path):
    """A lidar's point cloud (x, y, z), a map, a map's update (a type no distro has: the bag
    defines it) and a parameter event hold byte arrays of other things: copied byte for byte,
    and listed with their types in the report."""
    update = "map_msgs/msg/OccupancyGridUpdate"
    grid_update = "std_msgs/Header header\nint32 x\nint32 y\nuint32 width\nuint32 height\n"
    store = store_with({update: grid_update + "int8[] data\n"})
    source, target = tmp_path / "in", tmp_path / "out"
    points = np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32)
    cloud = T["sensor_msgs/msg/PointCloud2"](
        header=_header(),
        height=1,
        width=len(points),
        fields=[
            T["sensor_msgs/msg/PointField"](name=n, offset=4 * i, datatype=7, count=1)
            for i, n in enumerate("xyz")
        ],
        is_bigendian=False,
        point_step=12,
        row_step=12 * len(points),
        data=points.view(np.uint8).reshape(-1),
        is_dense=True,
    )
    grid = T["nav_msgs/msg/OccupancyGrid"](
        header=_header(),
        info=T["nav_msgs/msg/MapMetaData"](
            map_load_time=T["builtin_interfaces/msg/Time"](sec=0, nanosec=0),
            resolution=0.05,
            width=20,
            height=10,
            origin=T["geometry_msgs/msg/Pose"](
                position=T["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
                orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
            ),
        ),
        data=np.resize(np.array([-1, 0, 100], np.int8), 200),
    )
    messages = {
        "/points": ("sensor_msgs/msg/PointCloud2", cloud),
        "/map": ("nav_msgs/msg/OccupancyGrid", grid),
        "/map_updates": (
            update,
            store.types[update](
                header=_header(), x=2, y=3, width=4, height=2, data=np.zeros(8, np.int8)
            ),
        ),
        "/parameter_events": ("rcl_interfaces/msg/ParameterEvent", _parameter_event(b"\x01\x02")),
        # text that merely contains what starts a base64 JPEG is no image
        "/notes": (
            "std_msgs/msg/String",
            T["std_msgs/msg/String"](data="see /9j/ and iVBORw0KGgo"),
        ),
    }
    with Writer(source, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        for topic, (msgtype, msg) in messages.items():
            conn = writer.add_connection(topic, msgtype, typestore=store)
            writer.write(conn, NS, store.serialize_cdr(msg, msgtype))
    report = anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    before, after = read_bag(source), read_bag(target)
    for topic in messages:
        assert after[topic]["msgs"] == before[topic]["msgs"]
    assert report["copied_topics"] == [
        {
            "topic": topic,
            "msgtype": messages[topic][0],
            "messages": 1,
            "kept": False,
            "why": "no images: checked by type and content",
        }
        for topic in sorted(messages)
    ]


def _parameter_event(blob: bytes):
    value = T["rcl_interfaces/msg/ParameterValue"](
        type=5,
        bool_value=False,
        integer_value=0,
        double_value=0.0,
        string_value="",
        byte_array_value=np.frombuffer(blob, np.uint8),
        bool_array_value=np.zeros(0, bool),
        integer_array_value=np.zeros(0, np.int64),
        double_array_value=np.zeros(0, np.float64),
        string_array_value=[],
    )
    return T["rcl_interfaces/msg/ParameterEvent"](
        stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=0),
        node="/face_recognizer",
        new_parameters=[T["rcl_interfaces/msg/Parameter"](name="known_face", value=value)],
        changed_parameters=[],
        deleted_parameters=[],
    )


# -- 1b. Encoded images and colored clouds inside types that pass by type ---------------------


def _cloud_of(photo: np.ndarray):
    """An organized XYZRGB cloud of a depth camera: the photo's colors, packed as PCL does."""
    h, w = photo.shape[:2]
    points = np.zeros((h, w, 4), np.float32)
    points[..., 0], points[..., 1] = np.meshgrid(np.arange(w), np.arange(h))
    points[..., 2] = 1.0
    rgb = np.zeros((h, w, 4), np.uint8)
    rgb[..., :3] = photo  # b, g, r, 0: PCL's packed "rgb" float, little-endian
    points[..., 3] = rgb.view(np.float32)[..., 0]
    return cloud_message(points, ("x", "y", "z", "rgb"), _header())


#: A type of the bag's own holding a point cloud (judged at any depth).
SCENE_STORE = store_with(
    {
        "acme_msgs/msg/Scene": "string label\nsensor_msgs/PointCloud2 cloud\n",
        "acme_msgs/msg/Snapshot": "string label\nsensor_msgs/Image image\n",
    }
)


def _hidden(photo: np.ndarray) -> dict:
    """topic: (type, a message holding the photo, how to get the photo back from it)."""
    _, jpeg = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 95])
    data_url = "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode()
    return {
        "/ui/snapshot": (  # a web UI's data URL
            "std_msgs/msg/String",
            T["std_msgs/msg/String"](data=data_url),
            lambda m: cv2.imdecode(
                np.frombuffer(base64.b64decode(m.data.split(",", 1)[1]), np.uint8), 1
            ),
        ),
        "/parameter_events": (  # a face recognizer's reference face, set as a parameter
            "rcl_interfaces/msg/ParameterEvent",
            _parameter_event(jpeg.tobytes()),
            lambda m: cv2.imdecode(np.asarray(m.new_parameters[0].value.byte_array_value), 1),
        ),
        "/depth/points": (  # a depth camera's organized XYZRGB cloud
            "sensor_msgs/msg/PointCloud2",
            _cloud_of(photo),
            lambda m: np.asarray(m.data).reshape(m.height, m.width, 16)[..., 12:15].copy(),
        ),
        "/perception/scene": (
            "acme_msgs/msg/Scene",
            SCENE_STORE.types["acme_msgs/msg/Scene"](label="desk", cloud=_cloud_of(photo)),
            lambda m: (
                np.asarray(m.cloud.data)
                .reshape(m.cloud.height, m.cloud.width, 16)[..., 12:15]
                .copy()
            ),
        ),
    }


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize(
    "topic", ["/ui/snapshot", "/parameter_events", "/depth/points", "/perception/scene"]
)
def test_an_image_found_in_the_bytes_of_a_topic_stops_the_run(face, tmp_path, topic, storage):
    photo, box = face
    msgtype, msg, photo_of = _hidden(photo)[topic]
    source, target = tmp_path / "in", tmp_path / "out"
    with Writer(source, version=9, storage_plugin=PLUGINS[storage]) as writer:
        cam = writer.add_connection("/cam", "sensor_msgs/msg/Image", typestore=STORE)
        writer.write(cam, NS, STORE.serialize_cdr(image_message(photo, "bgr8", NS), cam.msgtype))
        conn = writer.add_connection(topic, msgtype, typestore=SCENE_STORE)
        writer.write(conn, NS + 1, SCENE_STORE.serialize_cdr(msg, msgtype))

    def leaked(bag) -> float:
        return unchanged_share(photo_of(bag[topic]["decoded"][0]), photo_of(msg), box)

    error = _refused(source, target, leaked)
    assert f"topic {topic} ({msgtype})" in error
    cloud = topic in ("/depth/points", "/perception/scene")
    assert ("carry color" in error) if cloud else ("JPEG image" in error)
    assert error.index("cannot be anonymized") < error.index("--keep-topic")
    _kept_as_is(source, target, topic, msgtype)


def test_bytes_that_only_start_like_an_image_are_no_image(tmp_path):
    """The magic bytes alone are no image: a cloud whose floats happen to hold them passes."""
    source, target = tmp_path / "in", tmp_path / "out"
    noise = np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8)
    for at in range(0, 4000, 400):
        noise[at : at + 4] = (0xFF, 0xD8, 0xFF, 0xE0)
        noise[at + 200 : at + 216] = np.frombuffer(
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", np.uint8
        )
    cloud = T["sensor_msgs/msg/PointCloud2"](
        header=_header(),
        height=1,
        width=1000,
        fields=[
            T["sensor_msgs/msg/PointField"](name=n, offset=4 * i, datatype=7, count=1)
            for i, n in enumerate(("x", "y", "z", "intensity"))
        ][:1],
        is_bigendian=False,
        point_step=4,
        row_step=4000,
        data=noise,
        is_dense=True,
    )
    with Writer(source, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/points", "sensor_msgs/msg/PointCloud2", typestore=STORE)
        writer.write(conn, NS, STORE.serialize_cdr(cloud, conn.msgtype))
    anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    assert read_bag(target)["/points"]["msgs"] == read_bag(source)["/points"]["msgs"]


# -- 2. Types nothing defines (ROS 2 Humble bags) ---------------------------------------------

UNDEFINED = {
    "/faces/crops": "acme_msgs/msg/FaceCrop",
    "/webcam/raw": "usb_driver/msg/Raw",
    "/driver/thumbnail": "dashcam_msgs/msg/Thumbnail",
    "/kamera/bild": "kamera_msgs/msg/Bild",
    "/acme/status": "acme_msgs/msg/Status",  # a name that says nothing: no safer for it
}


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("topic", sorted(UNDEFINED))
def test_a_type_nothing_defines_stops_the_run_whatever_its_name(face, tmp_path, topic, storage):
    photo, box = face
    msgtype = UNDEFINED[topic]
    raw = bytes(STORE.serialize_cdr(image_message(photo, "bgr8", NS), "sensor_msgs/msg/Image"))
    source, target = tmp_path / "in", tmp_path / "out"
    write_humble_bag(source, storage, [(topic, msgtype, [(NS, raw)])])

    def leaked(bag) -> float:
        msg = STORE.deserialize_cdr(bag[topic]["msgs"][0][1], "sensor_msgs/msg/Image")
        return unchanged_share(np.asarray(msg.data).reshape(photo.shape), photo, box)

    error = _refused(source, target, leaked)
    assert topic in error and msgtype in error and "cannot be checked" in error
    assert error.index("cannot") < error.index("--keep-topic") and "faces included" in error
    _kept_as_is(source, target, topic, msgtype)


# -- 3. One refusal for every topic refused ---------------------------------------------------

#: Numbers shaped like an image, in no byte array: (type, definition, numpy type of the values).
_SHAPED = {
    "/thermal/frame": (
        "acme_msgs/msg/Thermal",
        "uint32 width\nuint32 height\nfloat32[] kelvin\n",
        np.float32,
    ),
    "/tof/amplitude": (
        "acme_msgs/msg/Amplitude",
        "uint32 rows\nuint32 cols\nuint16[] values\n",
        np.uint16,
    ),
}


def _refused_topics(photo: np.ndarray) -> dict:
    """topic: (type, definition (None: SCENE_STORE's), message, its store); refused by type."""
    store = _pixel_store()
    entries = {
        topic: (msgtype, definition, build(), store)
        for topic, (msgtype, definition, build, _) in _pixel_messages(store, photo).items()
    }
    h, w = photo.shape[:2]
    for topic, (msgtype, definition, dtype) in _SHAPED.items():
        shaped = store_with({msgtype: definition})
        size, other, values = (line.split()[1] for line in definition.splitlines())
        sizes = {size: w, other: h} if size == "width" else {size: h, other: w}
        values_of = {values: photo[..., 1].reshape(-1).astype(dtype)}
        entries[topic] = (msgtype, definition, shaped.types[msgtype](**sizes, **values_of), shaped)
    image = image_message(photo, "bgr8", NS)
    window = T["sensor_msgs/msg/RegionOfInterest"](
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
    )
    disparity = T["stereo_msgs/msg/DisparityImage"](
        header=_header(), image=image, f=1.0, t=1.0, valid_window=window,
        min_disparity=0.0, max_disparity=1.0, delta_d=1.0,
    )  # fmt: skip
    snapshot = SCENE_STORE.types["acme_msgs/msg/Snapshot"](label="desk", image=image)
    entries["/stereo/disparity"] = ("stereo_msgs/msg/DisparityImage", None, disparity, None)
    entries["/ui/snapshot"] = ("acme_msgs/msg/Snapshot", None, snapshot, None)
    return entries


def _write(source, entries: dict) -> None:
    with Writer(source, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        for topic, (msgtype, definition, msg, store) in entries.items():
            if definition is None:
                store = SCENE_STORE
                conn = writer.add_connection(topic, msgtype, typestore=store)
            else:
                conn = writer.add_connection(
                    topic, msgtype, msgdef=definition, rihs01=store.hash_rihs01(msgtype)
                )
            writer.write(conn, NS, store.serialize_cdr(msg, msgtype))


def _why(error: str, topics: list[str]) -> str:
    """The reasons (the sentence's last parenthesized part) of the sentence that names exactly
    these topics."""
    named = f"topics {sorted(topics)} "
    assert named in error, error
    # The sentence ends where the next one (or the advice that ends every refusal) begins.
    sentence = re.split(r"; (?:topics \[|convert)", error[error.index(named) :])[0]
    end = sentence.rindex(")")
    depth, start = 1, end
    while depth:
        start -= 1
        depth += {")": 1, "(": -1}.get(sentence[start], 0)
    return sentence[start + 1 : end]


def test_one_refusal_names_every_topic_with_its_own_reason(face, tmp_path):
    """Several topics refused for the same cause: one sentence names them all, and gives each
    topic's reason as a run of that topic alone gives it, in topic order, "; " between."""
    entries = _refused_topics(face[0])
    errors = {}
    for number, (topic, entry) in enumerate(entries.items()):
        source = tmp_path / str(number) / "in"
        _write(source, {topic: entry})
        errors[topic] = _refused(source, source.parent / "out", lambda bag: 1.0)
    groups: dict[str, list[str]] = {}
    for topic, error in errors.items():
        groups.setdefault(error.split("] ", 1)[1].split(" (")[0], []).append(topic)
    assert len(groups) == 3, groups  # byte arrays, numbers shaped like an image, held images
    source = tmp_path / "all" / "in"
    _write(source, entries)
    error = _refused(source, source.parent / "out", lambda bag: 1.0)
    for topics in groups.values():
        assert _why(error, topics) == "; ".join(_why(errors[t], [t]) for t in sorted(topics))


def test_types_nothing_defines_are_named_with_the_type_they_hold(face, tmp_path):
    """A type of the bag's own that holds a type nothing defines is named with what it holds;
    a type nothing defines at all, by its own name."""
    photo, _ = face
    raw = bytes(STORE.serialize_cdr(image_message(photo, "bgr8", NS), "sensor_msgs/msg/Image"))
    source = tmp_path / "in"
    write_humble_bag(
        source,
        "mcap",
        [
            ("/faces/crops", "acme_msgs/msg/FaceCrop", [(NS, raw)]),
            ("/webcam/raw", "usb_driver/msg/Raw", [(NS, raw)]),
        ],
    )
    error = _refused(source, tmp_path / "out", lambda bag: 1.0)
    assert "define (acme_msgs/msg/FaceCrop, usb_driver/msg/Raw): they" in error


def test_an_image_deep_in_a_topic_is_found_whatever_topics_follow_it(face, tmp_path):
    """Which nested types get their messages looked into is gathered over every topic: a
    checked topic after the one holding a colored cloud (a camera calibration) must not
    narrow it."""
    photo, box = face
    msgtype, msg, photo_of = _hidden(photo)["/perception/scene"]
    info = T["sensor_msgs/msg/CameraInfo"](
        header=_header(), height=480, width=640, distortion_model="plumb_bob",
        d=np.zeros(5), k=np.eye(3).reshape(-1), r=np.eye(3).reshape(-1),
        p=np.eye(3, 4).reshape(-1), binning_x=0, binning_y=0,
        roi=T["sensor_msgs/msg/RegionOfInterest"](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        ),
    )  # fmt: skip
    source, target = tmp_path / "in", tmp_path / "out"
    with Writer(source, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/perception/scene", msgtype, typestore=SCENE_STORE)
        writer.write(conn, NS, SCENE_STORE.serialize_cdr(msg, msgtype))
        calib = writer.add_connection(
            "/camera/info", "sensor_msgs/msg/CameraInfo", typestore=STORE
        )
        writer.write(calib, NS + 1, STORE.serialize_cdr(info, calib.msgtype))

    def leaked(bag) -> float:
        return unchanged_share(photo_of(bag["/perception/scene"]["decoded"][0]), photo, box)

    error = _refused(source, target, leaked)
    assert "topic /perception/scene (acme_msgs/msg/Scene)" in error and "carry color" in error


def test_an_image_type_defined_with_only_its_image_fields_is_anonymized(face, tmp_path):
    """A bag's own CompressedImage with nothing but format and data (no header) is an image
    type all the same: anonymized, not refused."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    photo, box = face
    msgtype, definition = "sensor_msgs/msg/CompressedImage", "string format\nuint8[] data\n"
    store = get_typestore(Stores.EMPTY)
    store.register(get_types_from_msg(definition, msgtype))
    _, png = cv2.imencode(".png", photo)
    source, target = tmp_path / "in", tmp_path / "out"
    with Writer(source, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(
            "/cam/compressed", msgtype, msgdef=definition, rihs01=store.hash_rihs01(msgtype)
        )
        msg = store.types[msgtype](format="png", data=png.reshape(-1))
        writer.write(conn, NS, store.serialize_cdr(msg, msgtype))
    report = anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    assert report["topics"]["/cam/compressed"]["faces"] == 1
    out = store.deserialize_cdr(read_bag(target)["/cam/compressed"]["msgs"][0][1], msgtype)
    after = cv2.imdecode(np.asarray(out.data, np.uint8), cv2.IMREAD_COLOR)
    assert unchanged_share(after, photo, box) < 0.05


def test_a_definition_that_uses_a_type_it_does_not_define_stops_the_run(tmp_path):
    """A bag's stored definition that names an element type without defining it: the bag
    cannot be read (rosbags), and the refusal names the type; nothing is written."""
    msgtype = "acme_msgs/msg/Album"
    full = "string source\nacme_msgs/Blob[] blobs\n" + SEPARATOR + "MSG: acme_msgs/Blob\nuint8 b\n"
    store = store_with({msgtype: full})
    album = store.types[msgtype](source="front", blobs=[])
    source = tmp_path / "in"
    with Writer(source, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(
            "/album",
            msgtype,
            msgdef="string source\nacme_msgs/Blob[] blobs\n",  # Blob's section left out
            rihs01=store.hash_rihs01(msgtype),
        )
        writer.write(conn, NS, store.serialize_cdr(album, msgtype))
    error = _refused(source, tmp_path / "out", lambda bag: 1.0)
    assert error == (
        f"{source}: cannot read the bag: its stored definitions use acme_msgs/msg/Blob without "
        "defining it, so its topics cannot be checked for images"
    )
