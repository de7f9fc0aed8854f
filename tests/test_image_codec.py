"""The image codec on real CDR bytes: rosbags' sensor_msgs types, serialized and read back."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import celeba_image

from ciagan_core.errors import InputError
from ciagan_ros.image_codec import (
    UnsupportedEncodingError,
    compressed_to_frame,
    frame_to_compressed_data,
    frame_to_image_data,
    image_to_frame,
)

rosbags_typesys = pytest.importorskip("rosbags.typesys")
STORE = rosbags_typesys.get_typestore(rosbags_typesys.Stores.ROS2_HUMBLE)
Image = STORE.types["sensor_msgs/msg/Image"]
CompressedImage = STORE.types["sensor_msgs/msg/CompressedImage"]
Header = STORE.types["std_msgs/msg/Header"]
Time = STORE.types["builtin_interfaces/msg/Time"]


def _header() -> object:
    return Header(stamp=Time(sec=1700000000, nanosec=123456789), frame_id="camera_optical")


def _over_the_wire(msg, msgtype: str):
    """Serialize to CDR and read back, as a bag or a DDS transport would."""
    return STORE.deserialize_cdr(STORE.serialize_cdr(msg, msgtype), msgtype)


@pytest.fixture(scope="module")
def photo(shared_dir, celeba_rows) -> np.ndarray:
    image = celeba_image(shared_dir, celeba_rows[11])
    return np.ascontiguousarray(image[:, : image.shape[1] // 2 * 2])  # even width for 4:2:2


def _pack(photo: np.ndarray, encoding: str, pad: int, bigendian: bool = False) -> object:
    """A message made the way a camera driver makes it, with ``pad`` bytes of row padding."""
    bgr = photo
    pixels = {
        "bgr8": bgr,
        "8UC3": bgr,
        "rgb8": cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
        "bgra8": cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA),
        "rgba8": cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA),
        "mono8": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY),
        "mono16": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 4,  # 10-bit data
        "16UC1": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257,
    }.get(encoding)
    if pixels is None:  # packed 4:2:2 straight from a camera: random but valid bytes
        rng = np.random.default_rng(0)
        pixels = rng.integers(16, 235, (bgr.shape[0], bgr.shape[1], 2), dtype=np.uint8)
    if pixels.dtype == np.uint16:
        pixels = pixels.astype(">u2" if bigendian else "<u2")
    raw = pixels.view(np.uint8).reshape(pixels.shape[0], -1)
    rows = np.concatenate([raw, np.full((raw.shape[0], pad), 0xAB, np.uint8)], axis=1)
    msg = Image(
        header=_header(),
        height=raw.shape[0],
        width=bgr.shape[1],
        encoding=encoding,
        is_bigendian=int(bigendian),
        step=rows.shape[1],
        data=rows.reshape(-1),
    )
    return _over_the_wire(msg, Image.__msgtype__)


ENCODINGS = [
    "bgr8",
    "8UC3",
    "rgb8",
    "bgra8",
    "rgba8",
    "mono8",
    "mono16",
    "16UC1",
    "yuv422",
    "uyvy",
    "yuv422_yuy2",
    "yuyv",
]


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("pad", [0, 7])
def test_an_untouched_image_is_re_encoded_byte_for_byte(photo, encoding, pad):
    """Every pixel byte is the input's; row padding comes back zeroed."""
    msg = _pack(photo, encoding, pad)
    frame = image_to_frame(msg)
    assert frame.shape[:2] == photo.shape[:2]
    data = frame_to_image_data(frame.copy(), msg, original=frame)
    rows, before = data.reshape(msg.height, msg.step), np.asarray(msg.data).reshape(msg.height, -1)
    pixel_bytes = msg.step - pad
    np.testing.assert_array_equal(rows[:, :pixel_bytes], before[:, :pixel_bytes])
    assert not rows[:, pixel_bytes:].any()


def test_padding_and_bytes_past_the_image_never_carry_the_input(photo):
    """A driver that publishes the left half of its sensor as an ROI (step of the full row)
    or fewer rows than its buffer holds leaves raw pixels past the image: none go out."""
    full = _pack(photo, "bgr8", 0)
    half = photo.shape[1] // 2
    for width, height in ((half, photo.shape[0]), (photo.shape[1], 40)):
        roi = Image(
            header=full.header,
            height=height,
            width=width,
            encoding="bgr8",
            is_bigendian=0,
            step=full.step,
            data=full.data,
        )
        frame = image_to_frame(roi)
        data = frame_to_image_data(frame, roi, original=frame)
        assert data.size == np.asarray(full.data).size  # the message's size is kept
        rows = data.reshape(photo.shape[0], full.step)
        assert not rows[:height, width * 3 :].any() and not rows[height:].any()


@pytest.mark.parametrize("encoding", ["bgr8", "rgb8", "bgra8", "rgba8", "mono8"])
def test_decoded_frames_are_in_the_pipelines_layout(photo, encoding):
    frame = image_to_frame(_pack(photo, encoding, 3))
    gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    expected = {"mono8": gray, "bgra8": cv2.cvtColor(photo, cv2.COLOR_BGR2BGRA)}
    expected["rgba8"] = expected["bgra8"]
    np.testing.assert_array_equal(frame, expected.get(encoding, photo))


def test_big_endian_16_bit_images_decode_to_their_values(photo):
    little, big = _pack(photo, "mono16", 2), _pack(photo, "mono16", 2, bigendian=True)
    assert bytes(little.data) != bytes(big.data)
    np.testing.assert_array_equal(image_to_frame(little), image_to_frame(big))
    frame = image_to_frame(big)
    assert frame.max() <= 1023 and frame.dtype == np.uint16
    rows = frame_to_image_data(frame, big, original=frame).reshape(big.height, big.step)
    before = np.asarray(big.data).reshape(big.height, big.step)
    np.testing.assert_array_equal(rows[:, :-2], before[:, :-2])  # the 2 padding bytes zeroed


@pytest.mark.parametrize("encoding", ["bgr8", "rgb8", "mono16", "yuv422", "yuyv"])
def test_changed_pixels_are_written_and_the_rest_keep_their_bytes(photo, encoding):
    msg = _pack(photo, encoding, 5)
    frame = image_to_frame(msg)
    changed = frame.copy()
    changed[10:40, 20:60] = 0
    data = frame_to_image_data(changed, msg, original=frame)
    back = image_to_frame(
        Image(
            header=msg.header,
            height=msg.height,
            width=msg.width,
            encoding=msg.encoding,
            is_bigendian=msg.is_bigendian,
            step=msg.step,
            data=data,
        )
    )
    assert np.abs(back[10:40, 20:60].astype(int)).max() <= 2  # black, up to chroma rounding
    rows = data.reshape(msg.height, msg.step)
    before = np.asarray(msg.data).reshape(msg.height, msg.step)
    pixel_bytes = msg.step - 5
    np.testing.assert_array_equal(rows[60:, :pixel_bytes], before[60:, :pixel_bytes])
    assert not rows[:, pixel_bytes:].any()  # padding zeroed
    assert (rows[10:40] != before[10:40]).any()


@pytest.mark.parametrize(
    "encoding", ["bayer_rggb32", "32FC1", "16UC3", "64FC1", "nv24", "unknown"]
)
def test_unsupported_encodings_name_themselves(photo, encoding):
    msg = _pack(photo, "bgr8", 0)
    msg = Image(
        header=msg.header,
        height=msg.height,
        width=msg.width,
        encoding=encoding,
        is_bigendian=0,
        step=msg.step,
        data=msg.data,
    )
    with pytest.raises(UnsupportedEncodingError, match=f"unsupported image encoding '{encoding}'"):
        image_to_frame(msg)


def test_a_truncated_image_is_a_clear_error(photo):
    msg = _pack(photo, "bgr8", 4)
    short = Image(
        header=msg.header,
        height=msg.height,
        width=msg.width,
        encoding="bgr8",
        is_bigendian=0,
        step=msg.step,
        data=np.asarray(msg.data)[:-500],
    )
    with pytest.raises(InputError, match="truncated"):
        image_to_frame(short)


@pytest.mark.parametrize(
    ("format_string", "suffix"),
    [
        ("jpeg", ".jpg"),
        ("png", ".png"),
        ("bgr8; jpeg compressed bgr8", ".jpg"),
        ("rgb8; jpeg compressed bgr8", ".jpg"),
        ("mono8; png compressed mono8", ".png"),
        ("mono16; png compressed mono16", ".png"),
    ],
)
def test_compressed_images_decode_and_re_encode_in_their_format(photo, format_string, suffix):
    image = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY) if "mono" in format_string else photo
    if "mono16" in format_string:
        image = image.astype(np.uint16) * 16
    _, encoded = cv2.imencode(suffix, image)
    msg = _over_the_wire(
        CompressedImage(header=_header(), format=format_string, data=encoded.reshape(-1)),
        CompressedImage.__msgtype__,
    )
    frame = compressed_to_frame(msg)
    assert frame.dtype == image.dtype and frame.shape == image.shape
    again = frame_to_compressed_data(frame, format_string, jpeg_quality=95)
    assert again[:2].tobytes() == encoded[:2].tobytes()  # same container (JPEG or PNG magic)
    decoded = cv2.imdecode(again, cv2.IMREAD_UNCHANGED)
    if suffix == ".png":
        np.testing.assert_array_equal(decoded, image)
    else:
        assert np.abs(decoded.astype(int) - frame.astype(int)).mean() < 2.0


@pytest.mark.parametrize(
    "format_string", ["16UC1; compressedDepth png", "32FC1; compressedDepth", "theora", "webp"]
)
def test_unsupported_compressed_formats_are_refused(format_string):
    msg = CompressedImage(header=_header(), format=format_string, data=np.zeros(4, np.uint8))
    with pytest.raises(UnsupportedEncodingError, match="unsupported compressed format"):
        compressed_to_frame(msg)


def test_a_corrupt_compressed_image_is_a_clear_error(photo):
    _, encoded = cv2.imencode(".jpg", photo)
    msg = CompressedImage(header=_header(), format="jpeg", data=encoded.reshape(-1)[:50])
    with pytest.raises(InputError, match="cannot decode"):
        compressed_to_frame(msg)


def test_packed_422_of_odd_width_is_a_clear_error(photo):
    msg = _pack(photo, "yuyv", 0)
    odd = Image(
        header=msg.header,
        height=msg.height,
        width=msg.width - 1,
        encoding="yuyv",
        is_bigendian=0,
        step=msg.step,
        data=msg.data,
    )
    with pytest.raises(InputError, match="odd width"):
        image_to_frame(odd)


def test_the_last_row_may_come_without_its_padding(photo):
    """Drivers differ: some send height * step bytes, some stop after the last row's pixels.
    Both decode, and the output keeps the message's own length."""
    padded = _pack(photo, "bgr8", 6)
    short = Image(
        header=padded.header,
        height=padded.height,
        width=padded.width,
        encoding="bgr8",
        is_bigendian=0,
        step=padded.step,
        data=np.asarray(padded.data)[:-6],
    )
    frame = image_to_frame(short)
    np.testing.assert_array_equal(frame, image_to_frame(padded))
    data = frame_to_image_data(frame, short, original=frame)
    assert data.size == np.asarray(short.data).size
