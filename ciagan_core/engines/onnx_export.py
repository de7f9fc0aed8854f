"""ONNX export of the generator's inference graph (``models.inference_graph``).

Inputs: ``image`` float32 [B, 6, 128, 128] and ``identity`` int32 [B]; output ``output`` float32
[B, 3, 128, 128]; B is dynamic. Identities are integer ids and the one-hot product is a Gather
inside the graph: callers pass one int per face instead of a 1200-wide float vector, and the
first dense layer costs a row copy instead of a 1200x256 product. Only operators that TensorRT's
ONNX parser supports are used (Conv, Pad or Slice/Concat, InstanceNormalization, Relu,
LeakyRelu, AveragePool, Resize (nearest), DepthToSpace, Gather, Gemm, Reshape, Concat, Add, Cast).

``precision="fp16"`` stores weights and computes in float16 with float32 inputs and outputs (Casts
at both ends), the form TensorRT's strongly typed networks build from. The first encoder block
(full resolution, 17% of the work) stays float32: rounding the [0, 1] image and its first
features to half precision is where most of the fp16 error came from (max error on the parity
fixture 0.028 -> under 0.02). ``pad_ops="slice"`` writes
the 1-pixel reflect/edge paddings as Slice + Concat, which every TensorRT version parses;
``"pad"`` uses the Pad operator (faster on ONNX Runtime's CPU provider).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ciagan_core.errors import ConfigError
from ciagan_core.models.inference_graph import IN_EPS, InferenceGraph, build_inference_graph

OPSET = 17
PRECISIONS = ("fp32", "fp16")
PAD_OPS = ("pad", "slice")


def graph_to_onnx(
    graph: InferenceGraph,
    precision: str = "fp32",
    pad_ops: str = "pad",
    metadata: dict[str, str] | None = None,
):
    """The graph as an ``onnx.ModelProto`` (checked with ``onnx.checker``)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if pad_ops not in PAD_OPS:
        raise ConfigError(f"pad_ops must be one of {', '.join(PAD_OPS)}, got {pad_ops!r}")
    nodes, inits = [], []
    sizes = graph.spatial_sizes()
    fp32_nodes = set(range(graph.fp32_head() if precision == "fp16" else len(graph.nodes)))
    dtype = {"image": TensorProto.FLOAT, "identity": TensorProto.INT32}
    casts: dict[tuple[str, int], str] = {}

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def ints(name: str, values) -> str:
        return const(name, np.asarray(values, np.int64))

    def node(op: str, inputs: list[str], output: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def as_type(name: str, onnx_type: int) -> str:
        if dtype[name] in (onnx_type, TensorProto.INT32):
            return name
        key = (name, onnx_type)
        if key not in casts:
            casts[key] = node("Cast", [name], f"{name}.as{onnx_type}", to=onnx_type)
            dtype[casts[key]] = onnx_type
        return casts[key]

    names = {"image": "image", "identity": "identity"}
    for index, n in enumerate(graph.nodes):
        wide = index in fp32_nodes
        ftype = np.float32 if wide else np.float16
        onnx_type = TensorProto.FLOAT if wide else TensorProto.FLOAT16
        x = [as_type(names[i], onnx_type) for i in n.inputs]
        out = n.output if n.output != graph.output or wide else "output_fp16"
        dtype[out] = onnx_type
        p = {k: const(f"{n.output}.{k}", v.astype(ftype)) for k, v in n.params.items()}
        if n.op == "conv":
            s, pad = n.attrs.get("stride", 1), n.attrs.get("pads", 0)
            node(
                "Conv",
                [x[0], p["weight"], p["bias"]],
                out,
                strides=[s, s],
                pads=[pad] * 4,
                kernel_shape=list(n.params["weight"].shape[2:]),
            )
        elif n.op == "pad" and pad_ops == "pad":
            mode = "reflect" if n.attrs["mode"] == "reflect" else "edge"
            node("Pad", [x[0], ints(f"{out}.pads", [0, 0, 1, 1, 0, 0, 1, 1])], out, mode=mode)
        elif n.op == "pad":
            reflect = n.attrs["mode"] == "reflect"
            cur = x[0]
            for axis in (2, 3):
                first = (1, 2) if reflect else (0, 1)
                last = (-2, -1) if reflect else (-1, np.iinfo(np.int64).max)
                pieces = []
                for tag, (a, b) in (("lo", first), ("hi", last)):
                    pieces.append(
                        node(
                            "Slice",
                            [
                                cur,
                                ints(f"{out}.{axis}{tag}s", [a]),
                                ints(f"{out}.{axis}{tag}e", [b]),
                                ints(f"{out}.{axis}{tag}a", [axis]),
                            ],
                            f"{out}.{axis}{tag}",
                        )
                    )
                cur = node(
                    "Concat",
                    [pieces[0], cur, pieces[1]],
                    out if axis == 3 else f"{out}.rows",
                    axis=axis,
                )
        elif n.op == "instance_norm":
            node("InstanceNormalization", [x[0], p["scale"], p["bias"]], out, epsilon=IN_EPS)
        elif n.op == "relu":
            node("Relu", x, out)
        elif n.op == "leaky_relu":
            node("LeakyRelu", x, out, alpha=float(n.attrs["alpha"]))
        elif n.op == "avgpool2":
            node("AveragePool", x, out, kernel_shape=[2, 2], strides=[2, 2])
        elif n.op == "upsample2":
            scales = const(f"{out}.scales", np.array([1, 1, 2, 2], np.float32))
            node(
                "Resize",
                [x[0], "", scales],
                out,
                mode="nearest",
                coordinate_transformation_mode="asymmetric",
                nearest_mode="floor",
            )
        elif n.op == "add":
            node("Add", x, out)
        elif n.op == "concat":
            node("Concat", x, out, axis=1)
        elif n.op == "subpixel":
            c, hw = n.attrs["channels"], sizes[n.output] // 2
            phases = []
            for k in range(4):
                r, col = k // 2, k % 2
                phases.append(
                    node(
                        "Slice",
                        [
                            x[0],
                            ints(f"{out}.s{k}", [k * c, r, col]),
                            ints(f"{out}.e{k}", [(k + 1) * c, r + hw, col + hw]),
                            ints(f"{out}.a{k}", [1, 2, 3]),
                        ],
                        f"{out}.phase{k}",
                    )
                )
            joined = node("Concat", phases, f"{out}.phases", axis=1)
            node("DepthToSpace", [joined], out, blocksize=2, mode="DCR")
        elif n.op == "gather_rows":
            node("Gather", [p["table"], x[0]], out, axis=0)
        elif n.op == "linear":
            node("Gemm", [x[0], p["weight"], p["bias"]], out, transB=1)
        elif n.op == "reshape":
            node("Reshape", [x[0], ints(f"{out}.shape", list(n.attrs["shape"]))], out)
        else:
            raise ValueError(f"graph op {n.op!r} has no ONNX form")
        names[n.output] = out
    if dtype.get("output") != TensorProto.FLOAT:
        node("Cast", ["output_fp16"], "output", to=TensorProto.FLOAT)

    batch = "batch"
    model_graph = helper.make_graph(
        nodes,
        "ciagan_generator",
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 6, 128, 128]),
            helper.make_tensor_value_info("identity", TensorProto.INT32, [batch]),
        ],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 3, 128, 128])],
        initializer=inits,
    )
    model = helper.make_model(
        model_graph, producer_name="ciagan_core", opset_imports=[helper.make_opsetid("", OPSET)]
    )
    model.ir_version = 8  # readable by ONNX Runtime >= 1.14 and TensorRT 8.5+
    info = {
        "precision": precision,
        "pad_ops": pad_ops,
        "num_identities": str(graph.num_identities),
        **(metadata or {}),
    }
    helper.set_model_props(model, info)
    onnx.checker.check_model(model, full_check=True)
    return model


def export_onnx(model_path: str | Path, precision: str = "fp32", pad_ops: str = "pad"):
    """Load a model file and return its ONNX ``ModelProto``."""
    from ciagan_core.model_file import load_model_file

    loaded = load_model_file(model_path)
    graph = build_inference_graph(loaded.state_dict, loaded.info.num_identities)
    metadata = {"ciagan_weights_sha256": loaded.info.weights_sha256}
    if loaded.info.provenance.get("landmarker"):
        metadata["landmarker"] = str(loaded.info.provenance["landmarker"])
    return graph_to_onnx(graph, precision, pad_ops, metadata)


def onnx_sha256(model) -> str:
    """sha256 of the serialized ONNX model (the TensorRT engine cache key)."""
    return hashlib.sha256(model.SerializeToString()).hexdigest()
