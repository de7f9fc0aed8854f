"""Raw camera encodings anonymized in place: Bayer mosaics (8 and 16 bit, every pattern) and
NV12/NV21, in the codec the node and the bag tool share, and through ``ciagan bag``."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from ros_node import face_scene, outside, unchanged_share

from ciagan_core.detection import create_detector
from ciagan_core.pipeline import Anonymizer, AnonymizerConfig
from ciagan_ros.image_codec import frame_to_image_data, image_to_frame

rosbags_typesys = pytest.importorskip("rosbags.typesys")
STORE = rosbags_typesys.get_typestore(rosbags_typesys.Stores.ROS2_HUMBLE)
Image = STORE.types["sensor_msgs/msg/Image"]
Header = STORE.types["std_msgs/msg/Header"]
Time = STORE.types["builtin_interfaces/msg/Time"]

B, G, R = 0, 1, 2
#: ROS's pattern names read the 2x2 cell row by row.
PATTERNS = {"rggb": (R, G, G, B), "bggr": (B, G, G, R), "gbrg": (G, B, R, G), "grbg": (G, R, B, G)}
BAYER = [f"bayer_{p}{bits}" for p in PATTERNS for bits in (8, 16)]
RAW = [*BAYER, "nv12", "nv21"]
#: The pasted photo (tests/ros_node.face_scene); the grown box and feather stay within 30 px.
PASTED = (200, 120, 440, 360)


def mosaic(frame: np.ndarray, pattern: str) -> np.ndarray:
    """What a sensor with that colour filter records: each pixel one channel (independent of
    the codec under test)."""
    out = np.empty(frame.shape[:2], frame.dtype)
    for (dy, dx), colour in zip(((0, 0), (0, 1), (1, 0), (1, 1)), PATTERNS[pattern], strict=True):
        out[dy::2, dx::2] = frame[dy::2, dx::2, colour]
    return out


def semiplanar(frame: np.ndarray, kind: str) -> np.ndarray:
    """NV12/NV21 as a hardware encoder writes it: Y, then interleaved half-size chroma."""
    h, w = frame.shape[:2]
    b, g, r = (frame[:, :, i].astype(np.float64) for i in range(3))
    # BT.601 in video range, as cameras and hardware encoders write it.
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    cb = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    cr = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255

    def plane(values, size=None):
        values = cv2.resize(values, size, interpolation=cv2.INTER_AREA) if size else values
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)

    y, u, v = plane(y), plane(cb, (w // 2, h // 2)), plane(cr, (w // 2, h // 2))
    chroma = np.empty((h // 2, w), np.uint8)
    chroma[:, 0::2], chroma[:, 1::2] = (u, v) if kind == "nv12" else (v, u)
    return np.concatenate([y, chroma])


def raw_message(frame: np.ndarray, encoding: str, pad: int = 0):
    """An Image in ``encoding`` made from a BGR frame, ``pad`` bytes of padding per row."""
    if encoding.startswith("bayer_"):
        pixels = mosaic(frame, encoding[6:10])
        if encoding.endswith("16"):
            pixels = pixels.astype("<u2") * 16  # 12-bit data
    else:
        pixels = semiplanar(frame, encoding)
    raw = pixels.view(np.uint8).reshape(pixels.shape[0], -1)
    rows = np.concatenate([raw, np.full((raw.shape[0], pad), 0xCD, np.uint8)], axis=1)
    return Image(
        header=Header(stamp=Time(sec=1_700_000_000, nanosec=5), frame_id="camera"),
        height=frame.shape[0],
        width=frame.shape[1],
        encoding=encoding,
        is_bigendian=0,
        step=rows.shape[1],
        data=rows.reshape(-1),
    )


def with_data(msg, data):
    return Image(
        header=msg.header,
        height=msg.height,
        width=msg.width,
        encoding=msg.encoding,
        is_bigendian=msg.is_bigendian,
        step=msg.step,
        data=np.asarray(data, np.uint8).reshape(-1),
    )


@pytest.fixture(scope="module")
def scene(shared_dir):
    return face_scene()


@pytest.fixture(scope="module")
def anonymizer():
    return Anonymizer(AnonymizerConfig())


@pytest.mark.parametrize("encoding", RAW)
@pytest.mark.parametrize("pad", [0, 6])
def test_an_untouched_raw_image_is_re_encoded_byte_for_byte(scene, encoding, pad):
    msg = raw_message(scene[0], encoding, pad)
    frame = image_to_frame(msg)
    assert frame.shape == (480, 640, 3)
    assert frame.dtype == (np.uint16 if encoding.endswith("16") else np.uint8)
    data = frame_to_image_data(frame.copy(), msg, original=frame).reshape(-1, msg.step)
    before = np.asarray(msg.data).reshape(-1, msg.step)
    np.testing.assert_array_equal(data[:, : msg.step - pad], before[:, : msg.step - pad])
    assert not data[:, msg.step - pad :].any()  # padding zeroed


@pytest.mark.parametrize("encoding", RAW)
def test_decoding_gives_the_scene_in_colour(scene, encoding):
    frame = image_to_frame(raw_message(scene[0], encoding))
    if frame.dtype == np.uint16:
        frame = (frame // 16).astype(np.uint8)
    # Demosaicking and 4:2:0 chroma lose detail, not colour: close to the scene on average.
    assert np.abs(frame.astype(int) - scene[0].astype(int)).mean() < 6


@pytest.mark.parametrize("encoding", RAW)
def test_a_face_is_anonymized_in_place_and_demosaicking_does_not_bring_it_back(
    scene, anonymizer, encoding
):
    """The output keeps encoding, size and step; decoded again (demosaicked, or 4:2:0 to
    colour) the face is no more present than on the bgr8 path, a detector finds no face where
    it was, and pixels far from it keep their bytes."""
    image, box = scene
    msg = raw_message(image, encoding, pad=4)
    frame = image_to_frame(msg)
    result = anonymizer.process(frame)
    assert result.faces, "the face was not found in the decoded frame"
    out = with_data(msg, frame_to_image_data(result.image, msg, original=frame))
    again = image_to_frame(out)
    bgr8 = anonymizer.process(image).image
    share = unchanged_share(frame, again, box)
    assert share <= unchanged_share(image, bgr8, box) + 0.01 and share <= 0.02
    view = (again // 16).astype(np.uint8) if again.dtype == np.uint16 else again
    x0, y0, x1, y1 = box
    for face in create_detector("centerface").detect(view):
        fx0, fy0, fx1, fy1 = face.as_array()
        overlap = max(0, min(fx1, x1) - max(fx0, x0)) * max(0, min(fy1, y1) - max(fy0, y0))
        assert overlap < 0.3 * (x1 - x0) * (y1 - y0), f"a face found again: {face}"
    # Far from the face, every byte is the input's: the Y plane and mosaic rows there, and
    # for 4:2:0 the chroma of the same pixels.
    rows_before = np.asarray(msg.data).reshape(-1, msg.step)
    rows_after = np.asarray(out.data).reshape(-1, msg.step)
    far = outside((480, 640), PASTED, 32)
    width_bytes = 640 * (2 if encoding.endswith("16") else 1)
    far_bytes = np.repeat(far, width_bytes // 640, axis=1)
    assert (rows_before[:480, :width_bytes] == rows_after[:480, :width_bytes])[far_bytes].all()
    if encoding.startswith("nv"):
        chroma_far = far[0::2, :]  # a chroma row pair covers two pixel columns
        assert (rows_before[480:, :640] == rows_after[480:, :640])[chroma_far].all()
    assert not rows_after[:, width_bytes:].any()  # padding zeroed


def test_odd_sizes_are_a_clear_error(scene):
    from ciagan_core.errors import InputError

    msg = raw_message(scene[0][:, :638], "nv12")
    odd = Image(
        header=msg.header,
        height=msg.height,
        width=637,
        encoding="nv12",
        is_bigendian=0,
        step=msg.step,
        data=msg.data,
    )
    with pytest.raises(InputError, match="even width and height"):
        image_to_frame(odd)


def test_a_truncated_nv12_image_is_a_clear_error(scene):
    from ciagan_core.errors import InputError

    msg = raw_message(scene[0], "nv12")
    short = with_data(msg, np.asarray(msg.data)[: 640 * 480])  # the Y plane only
    with pytest.raises(InputError, match="truncated"):
        image_to_frame(short)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_the_bag_tool_anonymizes_every_raw_encoding(scene, tmp_path, storage):
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    from ciagan_ros.bag_tool import BagSettings, anonymize_bag

    image, box = scene
    source = tmp_path / "raw"
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    sent = {}
    with Writer(source, version=9, storage_plugin=plugin) as writer:
        for encoding in RAW:
            topic = f"/{encoding}/image_raw"
            connection = writer.add_connection(topic, "sensor_msgs/msg/Image", typestore=STORE)
            for i in range(3):
                msg = raw_message(image, encoding)
                sent[(topic, i)] = msg
                raw = STORE.serialize_cdr(msg, "sensor_msgs/msg/Image")
                writer.write(connection, 1_000 + i * 100_000_000, raw)
    target = tmp_path / "anonymized"
    anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    seen = {}
    with Reader(target) as reader:
        for connection, timestamp, raw in reader.messages():
            msg = STORE.deserialize_cdr(raw, connection.msgtype)
            seen[(connection.topic, (timestamp - 1_000) // 100_000_000)] = msg
    assert set(seen) == set(sent)
    for key, out in seen.items():
        before = sent[key]
        assert (out.encoding, out.step, out.height, out.width) == (
            before.encoding,
            before.step,
            before.height,
            before.width,
        )
        share = unchanged_share(image_to_frame(before), image_to_frame(out), box)
        assert share <= 0.02, f"{key}: {share:.0%} of the face kept"


def _encoded(frame: np.ndarray, encoding: str):
    """An Image in ``encoding`` as the codec writes it (packed 4:2:2 has no helper above)."""
    h, w = frame.shape[:2]
    like = raw_message(frame, "nv12")
    like = Image(
        header=like.header,
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=w * 2,
        data=np.zeros(h * w * 2, np.uint8),
    )
    return with_data(like, frame_to_image_data(frame, like))


#: Where each encoding keeps chroma, and the pixels sharing one chroma sample.
CHROMA = {
    "nv12": ("semiplanar", [(0, 0), (0, 1), (1, 0), (1, 1)]),
    "nv21": ("semiplanar", [(0, 0), (0, 1), (1, 0), (1, 1)]),
    "yuv422": ("uyvy", [(0, 0), (0, 1)]),
    "yuv422_yuy2": ("yuyv", [(0, 0), (0, 1)]),
}


@pytest.mark.parametrize("encoding", list(CHROMA))
def test_chroma_shared_with_a_changed_pixel_is_never_kept_from_the_input(encoding):
    """Neighbours share chroma (a pixel pair in 4:2:2, a 2x2 block in NV12/NV21). The input's
    chroma bytes may be kept only where every pixel sharing them is unchanged: one changed
    pixel of the pair or block (any of them) is enough for new chroma; its unchanged
    neighbours keep their own luma bytes."""
    rng = np.random.default_rng(3)
    frame = rng.integers(40, 215, (16, 24, 3), dtype=np.uint8)
    kind, members = CHROMA[encoding]
    msg = raw_message(frame, encoding) if kind == "semiplanar" else _encoded(frame, encoding)
    decoded = image_to_frame(msg)
    original = np.asarray(msg.data, np.uint8)
    h, w = frame.shape[:2]
    replaced = []
    for dy, dx in members:
        anonymized = decoded.copy()
        rows = slice(dy, None, 2) if kind == "semiplanar" else slice(None)  # 4:2:2: every row
        anonymized[rows, dx::2] = 255 - anonymized[rows, dx::2]  # one pixel of every group
        out = frame_to_image_data(anonymized, msg, original=decoded)
        fresh = frame_to_image_data(anonymized, msg)  # every byte from the anonymized frame
        if kind == "semiplanar":
            chroma = slice(h * w, None)
            luma_kept = np.ones((h, w), bool)
            luma_kept[dy::2, dx::2] = False
            assert (out[: h * w][luma_kept.ravel()] == original[: h * w][luma_kept.ravel()]).all()
        else:
            start = 0 if kind == "uyvy" else 1
            chroma = np.zeros(out.size, bool)
            chroma[start::2] = True
        assert (out[chroma] == fresh[chroma]).all(), (encoding, dy, dx)
        replaced.append((out[chroma] != original[chroma]).mean())
    # The encoder may take a group's chroma from some of its pixels only; with those changed,
    # the input's chroma is gone (so keeping it would show).
    assert max(replaced) > 0.5


@pytest.mark.parametrize(
    ("encoding", "to_bgr"), [("nv12", cv2.COLOR_YUV2BGR_NV12), ("nv21", cv2.COLOR_YUV2BGR_NV21)]
)
def test_semiplanar_frames_are_written_in_their_chroma_order(scene, encoding, to_bgr):
    """Every pixel changed: OpenCV's own NV12/NV21 reader (not the codec's) reads the written
    frame back with its colours, so U and V are in the order the encoding names."""
    frame = np.ascontiguousarray(scene[0][:, :638])
    data = frame_to_image_data(frame, raw_message(frame, encoding)).reshape(-1, frame.shape[1])

    def error(code) -> float:
        return np.abs(cv2.cvtColor(data, code).astype(int) - frame.astype(int)).mean()

    other = {cv2.COLOR_YUV2BGR_NV12: cv2.COLOR_YUV2BGR_NV21}.get(to_bgr, cv2.COLOR_YUV2BGR_NV12)
    assert error(to_bgr) < 4, f"{error(to_bgr):.1f} levels off on average"
    assert error(other) > 3 * error(to_bgr)  # the scene's colours tell the two orders apart
