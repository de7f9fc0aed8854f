"""16-bit frames whose white point (the 99.9th percentile) saturates a bright face: a small lit
face in a dark frame lies wholly above it and came out of ``ciagan anonymize`` untouched. Every
such face must be searched in a rendering where it is not saturated, and the common frames must
still get one rendering only."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from conftest import ROOT, celeba_image, hog_box
from test_pipeline import touched_area

from ciagan_core.cli import main
from ciagan_core.detection import create_detector
from ciagan_core.frames import to_working
from ciagan_core.pipeline import Anonymizer, AnonymizerConfig

FACE = 42  # px: 0.09% of a 1920x1080 frame
ORIGIN = (900, 500)  # the lit face's top-left corner


def lit_face_frame(shared_dir, row, lamp: bool = False, hot_pixels: int = 0):
    """A dark 12-bit 1920x1080 scene (values 50-350) with one real CelebA face, scaled to 42 px
    and lit (800-4000), as its only bright region; its (y, x) slices. ``lamp`` adds a large
    lamp at 30000 (1% of the frame: it sets the white point); ``hot_pixels`` scatters hot
    pixels at full scale."""
    gray = cv2.cvtColor(celeba_image(shared_dir, row), cv2.COLOR_BGR2GRAY)
    box = hog_box(row)
    factor = FACE / (box[2] - box[0])
    small = cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    bx, by = (box[:2] * factor).round().astype(int)
    face = small[by : by + FACE, bx : bx + FACE].astype(np.float64)
    rng = np.random.default_rng(0)
    noise = cv2.GaussianBlur(rng.uniform(0, 1, (1080, 1920)), (9, 9), 3)
    frame = (50 + 300 * (noise - noise.min()) / (noise.max() - noise.min())).astype(np.uint16)
    x, y = ORIGIN
    region = (slice(y, y + face.shape[0]), slice(x, x + face.shape[1]))
    frame[region] = (800 + face / 255.0 * 3200).astype(np.uint16)
    if lamp:
        frame[100:200, 100:300] = 30000
    if hot_pixels:
        ys = rng.integers(0, 1080, hot_pixels)
        xs = rng.integers(0, 1920, hot_pixels)
        frame[ys, xs] = 65535
    return frame, region


@pytest.fixture(scope="module")
def detector():
    return create_detector("centerface")


@pytest.fixture(scope="module")
def blur(detector):
    return Anonymizer(AnonymizerConfig(method="blur"), detector=detector)


def _unchanged(image: np.ndarray, frame: np.ndarray, region) -> float:
    return float((image[region] == frame[region]).mean())


@pytest.mark.parametrize("index", [0, 20, 80])
def test_a_small_lit_face_in_a_dark_12_bit_frame_is_anonymized(
    blur, shared_dir, celeba_rows, index
):
    frame, region = lit_face_frame(shared_dir, celeba_rows[index])
    assert (frame[region] > np.percentile(frame, 99.9)).mean() > 0.9  # wholly above the white
    result = blur.process(frame)
    unchanged = _unchanged(result.image, frame, region)
    assert unchanged < 0.1, f"{unchanged:.0%} of the lit face kept its 16-bit input values"
    # The write-back rule holds: outside every replaced region and its feather, bit-identical.
    outside = ~touched_area(result.faces, frame.shape)
    np.testing.assert_array_equal(result.image[outside], frame[outside])


@pytest.mark.parametrize(
    ("lamp", "hot_pixels"), [(True, 0), (False, 60)], ids=["lamp-sets-the-white", "hot-pixels"]
)
def test_a_lit_face_is_found_beside_a_lamp_or_hot_pixels(
    blur, shared_dir, celeba_rows, lamp, hot_pixels
):
    """A lamp (1% of the frame) puts the white point at 30000: the face is dark there and
    saturated in the bulk's rendering. Hot pixels above the face must not set its white."""
    frame, region = lit_face_frame(shared_dir, celeba_rows[0], lamp=lamp, hot_pixels=hot_pixels)
    result = blur.process(frame)
    unchanged = _unchanged(result.image, frame, region)
    assert unchanged < 0.1, f"{unchanged:.0%} of the lit face kept its 16-bit input values"


def test_ciagan_anonymize_replaces_a_small_lit_face_in_a_16_bit_png(
    shared_dir, celeba_rows, tmp_path
):
    frame, region = lit_face_frame(shared_dir, celeba_rows[0])
    check_cli_anonymizes_16_bit_png(frame, region, tmp_path, "lit")


def check_cli_anonymizes_16_bit_png(frame: np.ndarray, region, tmp_path, what: str) -> None:
    """``ciagan anonymize`` on ``frame`` saved as a 16-bit PNG writes a 16-bit PNG whose face
    ``region`` keeps under 10% of its values, and counts the face."""
    source, out = tmp_path / f"{what}12.png", tmp_path / "out.png"
    assert cv2.imwrite(str(source), frame)
    assert main(["anonymize", str(source), "-o", str(out), "--no-progress"]) == 0
    written = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert written.dtype == np.uint16 and written.shape == frame.shape
    unchanged = _unchanged(written, frame, region)
    assert unchanged < 0.1, f"{unchanged:.0%} of the {what} face was written unchanged"
    assert json.loads(out.with_suffix(".summary.json").read_text())["faces"] >= 1


def _views(frame: np.ndarray) -> int:
    return len(to_working(frame).detection_views)


def test_common_frames_still_get_one_rendering(shared_dir, celeba_rows):
    photo = celeba_image(shared_dir, celeba_rows[7])
    gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    astronaut = cv2.imread(str(ROOT / "examples" / "astronaut.png"))
    for frame in (
        photo.astype(np.uint16) * 257 + 3,
        photo.astype(np.uint16) << 4,
        gray.astype(np.uint16) * 4,
        astronaut.astype(np.uint16) * 257,
        (((astronaut / 255.0) ** 2.2) * 4095).astype(np.uint16),  # linear light, 12 bits
    ):
        assert _views(frame) == 0
    dark, _ = lit_face_frame(shared_dir, celeba_rows[0])
    dark[400:600, 800:1100] = 200  # the same dark scene without its lit face
    assert _views(dark) == 0
    hot = gray.astype(np.uint16) * 4
    hot[np.arange(0, 200, 10), np.arange(0, 200, 10)] = 65535  # a few hot pixels
    assert _views(hot) == 0
    banner = gray.astype(np.uint16) * 4
    banner[:12] = 65535  # the full-scale timestamp: the bulk's rendering, as before
    assert _views(banner) == 1


def test_a_lit_face_adds_one_rendering_scaled_near_its_maximum(shared_dir, celeba_rows):
    frame, region = lit_face_frame(shared_dir, celeba_rows[0])
    work = to_working(frame)
    # Its linear rendering, then the two tone-mapped ones (test_review3_deep_frames.py): by its
    # values, a lit face in a dark frame may as well be the lit half of a face.
    assert len(work.detection_views) == 3
    view = work.detection_views[0]
    assert view[region].max() == 255 and (view[region] == 255).mean() < 0.05
    assert (work.bgr[region] == 255).mean() > 0.9  # the white point's own rendering: flat


def test_ciagan_bag_replaces_a_small_lit_face_in_a_mono16_topic(shared_dir, celeba_rows, tmp_path):
    pytest.importorskip("rosbags")
    from rosbag_messages import STORE, T, image_message
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import StoragePlugin, Writer

    from ciagan_ros.bag_tool import BagSettings, anonymize_bag
    from ciagan_ros.image_codec import message_to_frame

    frame, region = lit_face_frame(shared_dir, celeba_rows[0])
    source, target = tmp_path / "in", tmp_path / "out"
    with Writer(source, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/ir", "sensor_msgs/msg/Image", typestore=STORE)
        header = image_message(np.zeros((2, 2, 3), np.uint8), "mono8", 0).header
        msg = T["sensor_msgs/msg/Image"](
            header=header,
            height=frame.shape[0],
            width=frame.shape[1],
            encoding="mono16",
            is_bigendian=0,
            step=frame.shape[1] * 2,
            data=frame.view(np.uint8).reshape(-1),
        )
        writer.write(conn, 1, STORE.serialize_cdr(msg, conn.msgtype))
    anonymize_bag(source, target, AnonymizerConfig(), BagSettings())
    with AnyReader([target]) as reader:
        [(connection, _, raw)] = list(reader.messages())
        written = message_to_frame(reader.deserialize(raw, connection.msgtype))
    assert written.dtype == np.uint16
    unchanged = _unchanged(written.reshape(frame.shape), frame, region)
    assert unchanged < 0.1, f"{unchanged:.0%} of the lit face was written unchanged"
