"""The generator as a small inference graph, restructured to do ~37% fewer multiply-adds.

Built from a folded state_dict, it computes exactly what ``Generator`` computes (to float32
rounding) with three rewrites that hold for these linear layers:

- residual *down* block: ``avgpool2(conv3x3(reflectpad(h)))`` is one 4x4 stride-2 convolution
  whose kernel is the 3x3 kernel averaged over the four pooling offsets (2.25x fewer MACs), and
  ``avgpool2(conv1x1(x)) == conv1x1(avgpool2(x))`` (4x fewer);
- residual *up* block: ``conv3x3(reflectpad(upsample2(h)))`` equals, for each of the four output
  phases, a 2x2 convolution of the edge-padded low-resolution ``h`` (reflecting a nearest-
  upsampled image is replicating the original); one 2x2 convolution produces all four phases,
  which are then interleaved (2.25x fewer MACs), and ``conv1x1(upsample2(x)) ==
  upsample2(conv1x1(x))`` (4x fewer);
- the first identity layer is a table lookup: one-hot times W plus b is row ``id`` of W^T + b.

The same graph runs in PyTorch (``GraphModule``, the torch engine) and is written to ONNX
(``engines.onnx_export``), so every engine computes the same network.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ciagan_core.models.generator import EMBED_WIDTHS

IN_EPS = 1e-5  # torch InstanceNorm2d default, as trained


@dataclass
class Node:
    """One operation: ``output = op(inputs, params, attrs)``."""

    op: str
    inputs: list[str]
    output: str
    params: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, object] = field(default_factory=dict)


@dataclass
class InferenceGraph:
    """Inputs ``image`` [B, 6, 128, 128] float and ``identity`` [B] int; output ``output``."""

    nodes: list[Node]
    num_identities: int
    output: str = "output"

    def spatial_sizes(self) -> dict[str, int]:
        """Height (= width) of every feature map; 0 for the [B, features] vectors."""
        size = {"image": 128, "identity": 0}
        for node in self.nodes:
            hw = size[node.inputs[0]]
            if node.op == "conv":
                k = node.params["weight"].shape[2]
                hw = (hw + 2 * node.attrs.get("pads", 0) - k) // node.attrs.get("stride", 1) + 1
            elif node.op == "pad":
                hw += 2
            elif node.op == "avgpool2":
                hw //= 2
            elif node.op == "upsample2":
                hw *= 2
            elif node.op == "subpixel":
                hw = 2 * (hw - 1)
            elif node.op == "reshape":
                hw = 4
            size[node.output] = hw
        return size

    def fp32_head(self) -> int:
        """Nodes [0, fp32_head) stay float32 in half-precision runs: the first encoder block.

        Rounding the [0, 1] image and the full-resolution features to fp16 is where most of the
        half-precision error comes from; this block is 17% of the work.
        """
        return next(i for i, n in enumerate(self.nodes) if n.op == "instance_norm") + 1

    def macs_per_face(self) -> int:
        """Multiply-accumulates of one face (convolutions and dense layers)."""
        size = self.spatial_sizes()
        total = 0
        for node in self.nodes:
            if node.op == "conv":
                total += size[node.output] ** 2 * node.params["weight"].size
            elif node.op == "linear":
                total += node.params["weight"].size
        return total


class _Builder:
    def __init__(self, state: dict[str, torch.Tensor]):
        self.state = {k: v.detach().to(torch.float64).cpu().numpy() for k, v in state.items()}
        self.nodes: list[Node] = []
        self.count = 0

    def add(self, op: str, inputs: list[str], params=None, **attrs) -> str:
        self.count += 1
        name = f"{op}_{self.count}"
        params = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in (params or {}).items()}
        self.nodes.append(Node(op, list(inputs), name, params, attrs))
        return name

    def w(self, key: str) -> np.ndarray:
        return self.state[key]

    def conv(
        self, x: str, prefix: str, pad: str | None = "reflect", stride: int = 1, zero_pad: int = 0
    ) -> str:
        if pad:
            x = self.add("pad", [x], mode=pad)
        return self.add(
            "conv",
            [x],
            {"weight": self.w(f"{prefix}.weight"), "bias": self.w(f"{prefix}.bias")},
            stride=stride,
            pads=zero_pad,
        )

    def norm(self, x: str, prefix: str) -> str:
        return self.add(
            "instance_norm",
            [x],
            {"scale": self.w(f"{prefix}.weight"), "bias": self.w(f"{prefix}.bias")},
        )

    def down(self, x: str, prefix: str) -> str:
        h = self.add("relu", [x])
        h = self.conv(h, f"{prefix}.conv_r1.conv2d")
        h = self.add("relu", [h])
        w3, b = self.w(f"{prefix}.conv_r2.conv2d.weight"), self.w(f"{prefix}.conv_r2.conv2d.bias")
        w4 = np.zeros((*w3.shape[:2], 4, 4))
        for dy in (0, 1):
            for dx in (0, 1):
                w4[:, :, dy : dy + 3, dx : dx + 3] += w3 / 4.0
        h = self.add("pad", [h], mode="reflect")
        h = self.add("conv", [h], {"weight": w4, "bias": b}, stride=2, pads=0)
        left = self.add("avgpool2", [x])
        left = self.conv(left, f"{prefix}.conv_l.conv2d", pad=None)
        return self.add("add", [left, h])

    def up(self, x: str, prefix: str) -> str:
        h = self.add("relu", [self.norm(x, f"{prefix}.norm_r1")])
        w3, b = self.w(f"{prefix}.conv_r1.conv2d.weight"), self.w(f"{prefix}.conv_r1.conv2d.bias")
        # Per axis, phase 0 taps (x[i], x[i+1]) with (k0, k1 + k2); phase 1 taps (x[i+1],
        # x[i+2]) with (k0 + k1, k2). Put phase p's 2-tap kernel at offset p of a 3-tap window
        # so one 2x2 conv over edge-padded x, read at offset (a, b), gives phase (a, b).
        taps = (np.array([[1, 0, 0], [0, 1, 1]]), np.array([[1, 1, 0], [0, 0, 1]]))
        blocks = [
            np.einsum("py,qx,oiyx->oipq", taps[row], taps[col], w3)
            for row in (0, 1)
            for col in (0, 1)
        ]
        w2 = np.concatenate(blocks, axis=0)  # [4 * out, in, 2, 2], phase-major
        h = self.add("pad", [h], mode="edge")
        h = self.add("conv", [h], {"weight": w2, "bias": np.tile(b, 4)}, stride=1, pads=0)
        h = self.add("subpixel", [h], channels=w3.shape[0])
        h = self.add("relu", [self.norm(h, f"{prefix}.norm_r2")])
        h = self.conv(h, f"{prefix}.conv_r2.conv2d")
        left = self.conv(x, f"{prefix}.conv_l.conv2d", pad=None)
        left = self.add("upsample2", [left])
        return self.add("add", [left, h])


def build_inference_graph(state: dict[str, torch.Tensor], num_identities: int) -> InferenceGraph:
    """The restructured graph of a folded generator state_dict."""
    g = _Builder(state)
    x = "image"
    for i in range(5):
        x = g.norm(g.down(x, f"conv{i}"), f"in{i}_e")
    table = g.w("encode_one_hot.0.weight").T + g.w("encode_one_hot.0.bias")
    code = g.add("gather_rows", ["identity"], {"table": table})
    code = g.add("leaky_relu", [code], alpha=0.2)
    for i in range(1, len(EMBED_WIDTHS)):
        code = g.add(
            "linear",
            [code],
            {
                "weight": g.w(f"encode_one_hot.{2 * i}.weight"),
                "bias": g.w(f"encode_one_hot.{2 * i}.bias"),
            },
        )
        code = g.add("leaky_relu", [code], alpha=0.2)
    code = g.add("reshape", [code], shape=(-1, 32, 4, 4))
    for conv_i, norm_i in ((0, 2), (3, 5), (6, 8)):
        code = g.conv(code, f"encode_noise.{conv_i}.conv2d")
        code = g.norm(g.add("leaky_relu", [code], alpha=0.2), f"encode_noise.{norm_i}")
    x = g.add("concat", [x, code])
    x = g.norm(g.conv(x, "embed.0.conv2d"), "embed.1")
    for i in range(1, 5):
        h = g.norm(g.conv(x, f"res{i}.conv1.conv2d"), f"res{i}.in1")
        h = g.norm(g.conv(g.add("relu", [h]), f"res{i}.conv2.conv2d"), f"res{i}.in2")
        x = g.add("add", [x, h])
    for i in range(4, -1, -1):
        x = g.norm(g.up(x, f"deconv{i}"), f"in{i}_d")
    x = g.conv(x, "conv_end.0", pad=None, zero_pad=1)
    g.nodes[-1].output = "output"
    return InferenceGraph(g.nodes, num_identities)


class GraphModule(nn.Module):
    """Runs an ``InferenceGraph`` in PyTorch (the torch engine's network).

    ``half=True`` computes in float16 after ``graph.fp32_head()``, like the fp16 ONNX; inputs
    and output stay float32.
    """

    def __init__(self, graph: InferenceGraph, half: bool = False):
        super().__init__()
        self.graph = graph
        self.num_identities = graph.num_identities
        head = graph.fp32_head() if half else len(graph.nodes)
        self._dtypes = [
            torch.float32 if n < head else torch.float16 for n in range(len(graph.nodes))
        ]
        for n, node in enumerate(graph.nodes):
            for key, value in node.params.items():
                tensor = torch.from_numpy(value.copy()).to(self._dtypes[n])
                self.register_buffer(f"p{n}_{key}", tensor)

    def forward(self, image: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        values = {"image": image.float(), "identity": identity.long()}
        for n, node in enumerate(self.graph.nodes):
            p = {k: getattr(self, f"p{n}_{k}") for k in node.params}
            wanted = self._dtypes[n]
            args = [
                v if not v.is_floating_point() or v.dtype == wanted else v.to(wanted)
                for v in (values[i] for i in node.inputs)
            ]
            values[node.output] = _run(node, args, p)
        return values[self.graph.output].float()


def _run(node: Node, args: list[torch.Tensor], p: dict[str, torch.Tensor]) -> torch.Tensor:
    op, a = node.op, node.attrs
    if op == "conv":
        return F.conv2d(
            args[0], p["weight"], p["bias"], stride=a.get("stride", 1), padding=a.get("pads", 0)
        )
    if op == "pad":
        return F.pad(
            args[0], (1, 1, 1, 1), mode="reflect" if a["mode"] == "reflect" else "replicate"
        )
    if op == "instance_norm":
        return F.instance_norm(args[0], weight=p["scale"], bias=p["bias"], eps=IN_EPS)
    if op == "relu":
        return F.relu(args[0])
    if op == "leaky_relu":
        return F.leaky_relu(args[0], a["alpha"])
    if op == "avgpool2":
        return F.avg_pool2d(args[0], 2)
    if op == "upsample2":
        return F.interpolate(args[0], scale_factor=2.0, mode="nearest")
    if op == "add":
        return args[0] + args[1]
    if op == "concat":
        return torch.cat(args, 1)
    if op == "subpixel":
        x, c = args[0], a["channels"]
        h, w = x.shape[2] - 1, x.shape[3] - 1
        phases = [
            x[:, k * c : (k + 1) * c, k // 2 : k // 2 + h, k % 2 : k % 2 + w] for k in range(4)
        ]
        # [B, C, H, 2 (row phase), W, 2 (column phase)] -> [B, C, 2H, 2W]
        stacked = torch.stack(phases, 2).view(x.shape[0], c, 2, 2, h, w)
        return stacked.permute(0, 1, 4, 2, 5, 3).reshape(x.shape[0], c, 2 * h, 2 * w)
    if op == "gather_rows":
        return F.embedding(args[0], p["table"])
    if op == "linear":
        return F.linear(args[0], p["weight"], p["bias"])
    if op == "reshape":
        return args[0].reshape(a["shape"])
    raise ValueError(f"unknown graph op {op!r}")
