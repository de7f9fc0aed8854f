"""The face mesh landmarker: converted faithfully, close to dlib, aligned as CIAGAN expects."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from ciagan_core.alignment import render_landmark_image, render_mask_image
from ciagan_core.detection import create_detector
from ciagan_core.errors import ModelFileError
from ciagan_core.evaluation.dataset import holdout_identity
from ciagan_core.faces import FaceBox, box_iou
from ciagan_core.landmarks import create_landmarker
from ciagan_core.landmarks.mesh import (
    MODEL_DIR,
    MeshLandmarker,
    PointMap,
    box_roi,
    cut_crop,
    roi_transform,
)
from ciagan_core.pipeline import Anonymizer, AnonymizerConfig, anonymize_together
from tests.conftest import celeba_image, hog_box, sample_rows

REFERENCE = Path(__file__).parent / "data" / "face_mesh_reference.npz"


@pytest.fixture(scope="module")
def centerface():
    return create_detector("centerface")


@pytest.fixture(scope="module")
def mesh() -> MeshLandmarker:
    return MeshLandmarker()


def _matched_box(detector, image: np.ndarray, truth: np.ndarray) -> FaceBox | None:
    boxes = detector.detect(image)
    if not boxes:
        return None
    ious = box_iou(truth, np.stack([b.as_array() for b in boxes]))[0]
    return boxes[int(ious.argmax())] if ious.max() >= 0.3 else None


def _errors(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    eye = np.linalg.norm(ref[:, 36] - ref[:, 45], axis=-1)
    return np.linalg.norm(pred - ref, axis=-1).mean(-1) / eye


def test_onnx_conversion_matches_the_tflite_model_on_shared_faces(
    shared_dir, celeba_rows, centerface, mesh
):
    # The reference holds the .tflite's outputs on the first-pass crops of the first 24
    # held-out faces (scripts/fit_mesh68.py --crops, scripts/convert_face_mesh.py --crops).
    reference = np.load(REFERENCE)
    crops = []
    for row in celeba_rows:
        if not holdout_identity(row["celeba_identity"]):
            continue
        boxes = centerface.detect(celeba_image(shared_dir, row))
        if boxes:
            forward = roi_transform(*box_roi(boxes[0]))[0]
            crops.append(cut_crop(celeba_image(shared_dir, row), forward))
        if len(crops) == len(reference["landmarks"]):
            break
    points, logits = mesh.session.run(None, {"image": np.stack(crops)})
    assert np.abs(points - reference["landmarks"]).max() < 0.05  # px of the 192 px crop
    assert np.abs(logits - reference["face_logit"]).max() < 0.01
    assert (1 / (1 + np.exp(-logits)) > 0.9).all()  # all real faces


def test_shipped_model_records_its_source(mesh):
    from ciagan_core.landmarks.mesh import model_provenance

    info = model_provenance()
    assert info["source"].endswith("face_landmark.tflite")
    assert len(info["source_sha256"]) == 64
    assert info["parity_vs_tflite"]["max_abs_px"] < 0.01
    assert str(np.load(REFERENCE)["tflite_sha256"]) == info["source_sha256"]


def test_a_batch_gives_the_points_each_face_gets_alone(shared_dir, celeba_rows, centerface, mesh):
    rows = sample_rows(celeba_rows, 6)
    images = [celeba_image(shared_dir, r) for r in rows]
    # Six faces side by side in one frame, so that one call holds them all.
    height = max(i.shape[0] for i in images)
    frame = np.hstack([cv2.copyMakeBorder(i, 0, height - i.shape[0], 0, 0, 0) for i in images])
    boxes = centerface.detect(frame)
    assert len(boxes) >= 6
    together = mesh.landmarks(frame, boxes)
    alone = [mesh.landmarks(frame, [b])[0] for b in boxes]
    for a, b in zip(together, alone, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert np.abs(a - b).max() < 0.01


def test_68_points_agree_with_dlib_on_held_out_identities(shared_dir, celeba_rows, centerface):
    dlib = create_landmarker("dlib")
    fitted, table = MeshLandmarker(), MeshLandmarker(mapping="table")
    held = [r for r in celeba_rows if holdout_identity(r["celeba_identity"])]
    ours, indexed, theirs = [], [], []
    for row in sample_rows(held, 150):
        image, truth = celeba_image(shared_dir, row), hog_box(row)
        box = _matched_box(centerface, image, truth)
        if box is None:
            continue
        points = fitted.landmarks(image, [box])[0]
        if points is None:
            continue
        ours.append(points)
        indexed.append(table.landmarks(image, [box])[0])
        theirs.append(dlib.landmarks(image, [FaceBox(*truth, 1.0, "dlib")])[0])
    assert len(ours) >= 130
    ours, indexed, theirs = np.array(ours), np.array(indexed), np.array(theirs)
    # scripts/fit_mesh68.py measured 0.027 on all 2,664 held-out faces (index table: 0.048).
    assert np.median(_errors(ours, theirs)) < 0.032
    assert np.median(_errors(ours, theirs)) < 0.7 * np.median(_errors(indexed, theirs))


def test_alignment_on_ciagan_sample_matches_the_published_masks_and_drawings(shared_dir, mesh):
    detector = create_detector("centerface")
    ious, precision, recall = [], [], []
    near = np.ones((5, 5), np.uint8)
    for path in sorted((shared_dir / "data" / "ciagan_sample" / "clr").glob("*/*.jpg")):
        image = cv2.imread(str(path))
        points = mesh.landmarks(image, detector.detect(image)[:1])[0]
        assert points is not None, path
        ours = render_mask_image(points) < 128
        theirs = cv2.imread(str(path).replace("/clr/", "/msk/"), cv2.IMREAD_GRAYSCALE) < 128
        ious.append((ours & theirs).sum() / (ours | theirs).sum())
        drawing = render_landmark_image(points)
        lines = (drawing[..., 2] == 255) & (drawing[..., 0] == 0)
        ref = cv2.imread(str(path).replace("/clr/", "/lndm/"))[..., ::-1].astype(int)
        published = ref[..., 2] - ref[..., 0] > 80
        grown_published = cv2.dilate(published.astype(np.uint8), near).astype(bool)
        grown_lines = cv2.dilate(lines.astype(np.uint8), near).astype(bool)
        precision.append((lines & grown_published).sum() / lines.sum())
        recall.append((published & grown_lines).sum() / published.sum())
    assert len(ious) == 150
    # Measured 0.924 (dlib on the same CenterFace boxes: 0.943; the masks were made by dlib).
    assert np.mean(ious) >= 0.915
    assert np.mean(precision) >= 0.8 and np.mean(recall) >= 0.8


def test_the_map_commutes_with_moving_scaling_and_turning_the_face(mesh, shared_dir, celeba_rows):
    row = celeba_rows[0]
    image = celeba_image(shared_dir, row)
    box = create_detector("centerface").detect(image)[0]
    points = mesh.mesh(image, [box])[0].points[:, :2]
    angle, scale, shift = 0.4, 1.7, np.array([31.0, -12.0])
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = points @ turn.T * scale + shift
    assert np.allclose(mesh.map68(moved), mesh.map68(points) @ turn.T * scale + shift, atol=1e-6)


def test_a_turned_face_gets_turned_landmarks(shared_dir, celeba_rows, centerface, mesh):
    errors = []
    for row in sample_rows(celeba_rows, 10):
        image = celeba_image(shared_dir, row)
        box = _matched_box(centerface, image, hog_box(row))
        upright = mesh.landmarks(image, [box])[0] if box else None
        if upright is None:
            continue
        h, w = image.shape[:2]
        turn = cv2.getRotationMatrix2D((w / 2, h / 2), 35, 1.0)
        turned = cv2.warpAffine(image, turn, (w, h), borderMode=cv2.BORDER_REFLECT)
        expected = upright @ turn[:, :2].T + turn[:, 2]
        boxes = centerface.detect(turned)
        found = [b for b in boxes if box_iou(expected_box(expected), b.as_array())[0, 0] > 0.3]
        assert found, row["file"]
        points = mesh.landmarks(turned, found[:1])[0]
        assert points is not None
        errors.append(_errors(points[None], expected[None])[0])
    assert len(errors) >= 8
    assert np.median(errors) < 0.05


def expected_box(points: np.ndarray) -> np.ndarray:
    return np.array([*points.min(0), *points.max(0)])


def test_a_box_without_a_face_gets_no_landmarks_and_the_fallback(no_face_image, mesh):
    h, w = no_face_image.shape[:2]
    box = FaceBox(w * 0.05, h * 0.05, w * 0.3, h * 0.35, 0.9, "centerface")
    assert mesh.mesh(no_face_image, [box])[0].score < 0.5
    assert mesh.landmarks(no_face_image, [box]) == [None]
    anonymizer = Anonymizer(
        AnonymizerConfig(method="blur", region="mask", landmarks="mesh"), landmarker=mesh
    )
    [result] = anonymize_together([(anonymizer, no_face_image)], detections=[[box]])
    [face] = result.faces
    assert face.fallback_reason == "landmarker failed" and face.region == "box"
    x0, y0, x1, y1 = (int(v) for v in box.as_array())
    assert not np.array_equal(result.image[y0:y1, x0:x1], no_face_image[y0:y1, x0:x1])


def test_missing_or_damaged_model_files_are_clear_errors(tmp_path):
    with pytest.raises(ModelFileError, match="face mesh model not found"):
        MeshLandmarker(tmp_path)
    (tmp_path / "face_mesh.onnx").write_bytes(b"\x08\x07garbage")
    with pytest.raises(ModelFileError, match="not a usable ONNX model"):
        MeshLandmarker(tmp_path)
    shutil.copy(MODEL_DIR / "face_mesh.onnx", tmp_path / "face_mesh.onnx")
    with pytest.raises(ModelFileError, match="468-to-68 map unreadable"):
        MeshLandmarker(tmp_path)
    np.savez(tmp_path / "mesh68_map.npz", weights=np.zeros((68, 468)), bias=np.zeros(136))
    with pytest.raises(ModelFileError, match="not a 468-to-68 map"):
        MeshLandmarker(tmp_path)
    table = PointMap.table()
    np.savez(tmp_path / "mesh68_map.npz", weights=table.weights, bias=table.bias)
    assert MeshLandmarker(tmp_path).map68.weights.shape == (936, 136)


def test_pipeline_warns_when_the_model_was_trained_on_other_landmarks(model_file, caplog):
    config = AnonymizerConfig(method="ciagan", model=str(model_file), landmarks="mesh")
    with caplog.at_level("WARNING"):
        anonymizer = Anonymizer(config)
    assert "trained on dlib landmarks" in anonymizer.landmarker_warning
    assert "--landmarks dlib" in caplog.text
    same = Anonymizer(AnonymizerConfig(method="ciagan", model=str(model_file)))
    assert same.landmarker_warning == ""


def test_a_truncated_map_or_a_model_of_another_shape_is_refused_at_load(tmp_path):
    shutil.copy(MODEL_DIR / "face_mesh.onnx", tmp_path / "face_mesh.onnx")
    data = (MODEL_DIR / "mesh68_map.npz").read_bytes()
    (tmp_path / "mesh68_map.npz").write_bytes(data[: len(data) // 5])
    with pytest.raises(ModelFileError, match="468-to-68 map unreadable"):
        MeshLandmarker(tmp_path)

    import onnx
    from onnx import TensorProto, helper

    # Right names, wrong size: 478 points per face, as MediaPipe's attention mesh has.
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["image"], ["flat"]),
            helper.make_node("Slice", ["flat", "s", "e"], ["landmarks"]),
            helper.make_node("Slice", ["flat", "s", "one"], ["face_logit"]),
        ],
        "mesh478",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 192, 192, 3])],
        [
            helper.make_tensor_value_info("landmarks", TensorProto.FLOAT, ["n", 1434]),
            helper.make_tensor_value_info("face_logit", TensorProto.FLOAT, ["n", 1]),
        ],
        [
            helper.make_tensor("s", TensorProto.INT64, [1], [0]),
            helper.make_tensor("e", TensorProto.INT64, [1], [1434]),
            helper.make_tensor("one", TensorProto.INT64, [1], [1]),
        ],
    )
    onnx.save(helper.make_model(graph), str(tmp_path / "face_mesh.onnx"))
    shutil.copy(MODEL_DIR / "mesh68_map.npz", tmp_path / "mesh68_map.npz")
    with pytest.raises(ModelFileError, match="not the converted 468-point face mesh"):
        MeshLandmarker(tmp_path)


def test_cuda_without_a_cuda_onnxruntime_runs_on_the_cpu(caplog):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with caplog.at_level("WARNING"):
        mesh = MeshLandmarker(device="cuda")
    assert mesh.session.get_providers() == ["CPUExecutionProvider"]
    assert "runs on the CPU" in caplog.text


def test_large_faces_are_cropped_where_the_transform_says():
    # A smooth spot at a known frame point must land where ``forward`` maps it, also when
    # the region is shrunk before the warp (regions over 384 px): the shrink once moved it by
    # 0.2 crop pixels.
    for side in (300, 1200, 2600):
        ys, xs = np.mgrid[0 : side + 200, 0 : side + 200]
        point = np.array([side * 0.37 + 100.3, side * 0.61 + 100.7])
        spot = np.exp(-((xs - point[0]) ** 2 + (ys - point[1]) ** 2) / (2 * (side / 60) ** 2))
        frame = np.repeat((255 * spot).astype(np.uint8)[..., None], 3, axis=2)
        forward = roi_transform(((side + 200) / 2, (side + 200) / 2), side, 0.0)[0]
        crop = cut_crop(frame, forward)[..., 0]
        cy, cx = np.mgrid[0:192, 0:192]
        found = np.array([(cx * crop).sum(), (cy * crop).sum()]) / crop.sum()
        assert np.abs(found - forward @ np.array([*point, 1.0])).max() < 0.03, side


def test_many_faces_are_sent_in_batches_of_at_most_max_batch(shared_dir, celeba_rows):
    mesh = MeshLandmarker(max_batch=4)
    image = celeba_image(shared_dir, celeba_rows[0])
    box = create_detector("centerface").detect(image)[0]
    alone = mesh.landmarks(image, [box])[0]
    many = mesh.landmarks(image, [box] * 11)
    assert len(many) == 11
    assert all(np.abs(points - alone).max() < 0.01 for points in many)


def test_models_imported_before_landmarkers_were_recorded_count_as_dlib(model_file, tmp_path):
    from ciagan_core.model_file import load_model_file, model_landmarker, save_model_file

    legacy = tmp_path / "legacy.safetensors"
    save_model_file(
        legacy, load_model_file(model_file).state_dict, {"source": "official-checkpoint"}
    )
    assert model_landmarker(legacy) == "dlib"
    anonymizer = Anonymizer(AnonymizerConfig(method="ciagan", model=str(legacy), landmarks="mesh"))
    assert "trained on dlib landmarks" in anonymizer.landmarker_warning
