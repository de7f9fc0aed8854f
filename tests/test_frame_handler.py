"""The node's frame handler without ROS: fail closed, latest frame only, shared engine."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest
from conftest import celeba_image, sample_rows

from ciagan_core.detection import create_detector
from ciagan_core.engines import create_engine
from ciagan_core.pipeline import Anonymizer, AnonymizerConfig
from ciagan_ros.frame_handler import FrameHandler, InFrame, OutFrame


@pytest.fixture(scope="module")
def detector():
    return create_detector("centerface")


@pytest.fixture(scope="module")
def photos(shared_dir, celeba_rows) -> list[np.ndarray]:
    return [celeba_image(shared_dir, row) for row in sample_rows(celeba_rows, 4)]


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _handler(cameras, clock=None, **kwargs) -> tuple[FrameHandler, list[OutFrame]]:
    published: list[OutFrame] = []
    handler = FrameHandler(cameras, published.append, clock=clock or time.monotonic, **kwargs)
    return handler, published


def _is_pixelated_whole(image: np.ndarray, raw: np.ndarray) -> bool:
    """Coarse blocks everywhere: few distinct colours, and far from the raw frame."""
    distinct = len(np.unique(image.reshape(-1, image.shape[-1]), axis=0))
    return distinct <= 64 and np.abs(image.astype(int) - raw.astype(int)).mean() > 5


class _RaisingDetector:
    name = "broken"

    def detect(self, frame):
        raise RuntimeError("detector crashed")


def test_a_raising_pipeline_publishes_the_frame_pixelated_never_raw(photos, caplog):
    handler, published = _handler(["cam"])
    anonymizer = Anonymizer(AnonymizerConfig(), detector=_RaisingDetector())
    handler.set_anonymizers({"cam": anonymizer})
    header, context = object(), object()
    handler.submit(InFrame("cam", photos[0], header, time.monotonic(), context))
    with caplog.at_level(logging.ERROR, logger="ciagan_ros.frame_handler"):
        assert handler.process_pending() == 1
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("ciagan_ros.frame_handler", "anonymization failed for a frame of cam: detector crashed")
    ]
    [out] = published
    assert out.status == "error" and "detector crashed" in out.reason
    assert out.header is header  # the header travels unchanged
    assert out.context is context  # the node encodes the output like its input message
    assert out.image.shape == photos[0].shape and _is_pixelated_whole(out.image, photos[0])
    assert handler.stats["cam"].failures == {"error": 1}


def test_no_pipeline_yet_publishes_pixelated_frames(photos):
    handler, published = _handler(["cam"])
    handler.submit(InFrame("cam", photos[1], "h", time.monotonic()))
    handler.process_pending()
    assert published[0].status == "no pipeline"
    assert _is_pixelated_whole(published[0].image, photos[1])


def test_on_failure_drop_publishes_nothing(photos):
    handler, published = _handler(["cam"], on_failure="drop")
    handler.submit(InFrame("cam", photos[1], "h", time.monotonic()))
    handler.process_pending()
    assert published == [] and handler.stats["cam"].failures == {"no pipeline": 1}


def test_a_frame_later_than_max_latency_is_pixelated(photos, detector):
    clock = _Clock()
    handler, published = _handler(["cam"], clock=clock, max_latency_ms=50)
    anonymizer = Anonymizer(AnonymizerConfig(), detector=detector)
    handler.set_anonymizers({"cam": anonymizer})
    handler.submit(InFrame("cam", photos[2], "h", received=clock.now - 0.2))  # 200 ms old
    handler.process_pending()
    assert published[0].status == "late"
    assert _is_pixelated_whole(published[0].image, photos[2])


def test_a_timely_frame_is_anonymized_with_its_header(photos, detector):
    handler, published = _handler(["cam"], max_latency_ms=60000)
    handler.set_anonymizers({"cam": Anonymizer(AnonymizerConfig(), detector=detector)})
    handler.submit(InFrame("cam", photos[2], {"stamp": 7}, time.monotonic(), context="msg"))
    handler.process_pending()
    [out] = published
    assert out.status == "ok" and out.faces and out.header == {"stamp": 7}
    assert out.context == "msg" and not _is_pixelated_whole(out.image, photos[2])
    for face in out.faces:  # each face's centre replaced, not a pixel here and there
        x0, y0, x1, y1 = (int(v) for v in np.rint(face.box.scaled(0.5).as_array()))
        centre = (slice(max(y0, 0), y1), slice(max(x0, 0), x1))
        assert (out.image[centre] == photos[2][centre]).all(axis=-1).mean() <= 0.05


def test_stale_frames_are_dropped_and_counted(photos, detector):
    handler, published = _handler(["cam"], max_latency_ms=60000)
    handler.set_anonymizers({"cam": Anonymizer(AnonymizerConfig(), detector=detector)})
    for i in range(3):
        handler.submit(InFrame("cam", photos[i], i, time.monotonic()))
    handler.process_pending()
    assert [o.header for o in published] == [2]  # only the newest
    stats = handler.stats["cam"]
    assert stats.received == 3 and stats.dropped_stale == 2 and stats.published == 1


class _CountingEngine:
    def __init__(self, inner):
        self.inner = inner
        self.name, self.max_batch = inner.name, inner.max_batch
        self.num_identities = inner.num_identities
        self.batches: list[int] = []

    def run(self, inputs, identities):
        self.batches.append(len(inputs))
        return self.inner.run(inputs, identities)


def test_two_cameras_share_one_engine_call(photos, detector, model_file):
    engine = _CountingEngine(create_engine("onnxruntime", str(model_file)))
    config = AnonymizerConfig(method="ciagan", model=str(model_file))
    anonymizers = {cam: Anonymizer(config, detector=detector, engine=engine) for cam in "ab"}
    handler, published = _handler(["a", "b"], max_latency_ms=60000)
    handler.set_anonymizers(anonymizers)
    handler.submit(InFrame("a", photos[0], "ha", time.monotonic()))
    handler.submit(InFrame("b", photos[3], "hb", time.monotonic()))
    assert handler.process_pending() == 2
    generated = [o for o in published if any(f.method == "ciagan" for f in o.faces)]
    assert {o.header for o in generated} == {"ha", "hb"}
    assert len(engine.batches) == 1 and engine.batches[0] >= 2


def test_the_worker_thread_publishes_without_blocking_the_caller(photos, detector):
    done = threading.Event()
    published: list[OutFrame] = []

    def publish(out):
        published.append(out)
        done.set()

    handler = FrameHandler(["cam"], publish, max_latency_ms=60000)
    handler.set_anonymizers({"cam": Anonymizer(AnonymizerConfig(), detector=detector)})
    handler.start()
    try:
        start = time.perf_counter()
        handler.submit(InFrame("cam", photos[0], "h", time.monotonic()))
        assert time.perf_counter() - start < 0.05  # submit only fills the slot
        assert done.wait(30)
    finally:
        handler.stop()
    assert published[0].status == "ok"


def test_a_publisher_that_raises_does_not_stop_the_camera(photos):
    calls = []

    def publish(out):
        calls.append(out.header)
        if len(calls) == 1:
            raise RuntimeError("encoder failed")

    handler = FrameHandler(["cam"], publish)
    handler.submit(InFrame("cam", photos[0], 1, time.monotonic()))
    handler.process_pending()
    handler.submit(InFrame("cam", photos[1], 2, time.monotonic()))
    handler.process_pending()
    assert calls == [1, 2] and handler.stats["cam"].failures.get("error") == 1


def test_a_frame_waiting_at_deactivate_is_dropped_not_published_later(photos, detector):
    """stop() (deactivate) drops what waits in the slots: after the next start (activate) the
    frame would come out with its old stamp."""
    handler, published = _handler(["cam"])
    handler.set_anonymizers({"cam": Anonymizer(AnonymizerConfig(), detector=detector)})
    handler.submit(InFrame("cam", photos[0], "old", time.monotonic()))  # worker not running
    handler.stop()
    assert handler.snapshot("cam").dropped_stale == 1
    handler.start()
    try:
        time.sleep(0.5)
        assert published == []
        handler.submit(InFrame("cam", photos[1], "new", time.monotonic()))
        deadline = time.monotonic() + 30
        while not published and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        handler.stop()
    assert [out.header for out in published] == ["new"]


def test_one_cameras_bad_frame_does_not_fail_the_other_cameras_frame(photos, detector):
    """Frames of all cameras are anonymized together; a frame the pipeline refuses fails
    closed alone, and the other camera's frame is anonymized (not pixelated whole)."""
    handler, published = _handler(["front", "rear"])
    handler.set_anonymizers(
        {c: Anonymizer(AnonymizerConfig(), detector=detector) for c in ("front", "rear")}
    )
    too_wide = np.zeros((4, 16400), np.uint8)  # decodes, but the pipeline refuses it
    handler.submit(InFrame("rear", too_wide, "rear", time.monotonic()))
    handler.submit(InFrame("front", photos[0], "front", time.monotonic()))
    assert handler.process_pending() == 2
    by_camera = {out.camera: out for out in published}
    assert by_camera["front"].status == "ok" and by_camera["front"].faces
    assert not _is_pixelated_whole(by_camera["front"].image, photos[0])
    assert handler.stats["rear"].failures and not handler.stats["front"].failures


def test_frames_without_a_pipeline_say_why(photos):
    handler, published = _handler(["cam"])
    handler.set_anonymizers(None, "cannot build the pipeline: model.safetensors not found")
    handler.submit(InFrame("cam", photos[0], "h", time.monotonic()))
    handler.process_pending()
    assert published[0].status == "no pipeline" and "not found" in published[0].reason


def test_a_failed_frame_the_pipeline_cannot_read_is_dropped_and_says_so():
    """A frame that cannot even be pixelated (a layout the pipeline does not read) is dropped;
    the reason keeps the failure and adds why nothing was published."""
    handler, published = _handler(["cam"])
    bad = np.zeros((4, 4, 7), np.uint8)  # seven channels: no pipeline layout
    handler.submit(InFrame("cam", bad, "h", time.monotonic(), "ctx"))
    handler.process_pending()
    assert published == []
    out = handler._failed(InFrame("cam", bad, "h", time.monotonic(), "ctx"), "error", "boom")
    assert out.image is None and out.context == "ctx"
    assert out.reason.startswith("boom; frame dropped:")


def test_a_frame_pixelated_whole_has_area_mean_cells_in_its_own_shape():
    """Each of the 8 cells across is the mean of the pixels it covers (not a sample of one
    pixel), and every layout comes back in its own shape and type."""
    from ciagan_ros.frame_handler import pixelate_whole

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
    out = pixelate_whole(frame)
    assert out.shape == frame.shape and out.dtype == frame.dtype
    cells = frame.reshape(4, 16, 8, 16, 3).mean(axis=(1, 3))  # 16x16 px cells, 8 across
    assert np.abs(out[::16, ::16].astype(float) - cells).max() <= 1
    for shape in ((64, 128, 1), (64, 128), (64, 128, 4)):
        layered = rng.integers(0, 65535, shape, dtype=np.uint16)
        assert pixelate_whole(layered).shape == shape
    # Frames far wider or taller than 8 cells still get one cell across the short side.
    wide = rng.integers(0, 256, (6, 1000, 3), dtype=np.uint8)
    assert (pixelate_whole(wide) == pixelate_whole(wide)[0]).all()
    tall = rng.integers(0, 256, (1000, 6, 3), dtype=np.uint8)
    assert (pixelate_whole(tall) == pixelate_whole(tall)[:, :1]).all()
