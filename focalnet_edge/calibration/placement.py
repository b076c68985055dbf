"""Where Q/DQ goes, by TensorRT's explicit-quantization rules, and a report of what was placed.

TensorRT's developer guide ("Q/DQ Layer-Placement Recommendations") and NVIDIA's TensorRT
Model Optimizer (ModelOpt, `modelopt.onnx.quantization`, the reference implementation) agree:

- quantize all inputs of the weighted operations (Conv incl. depth-wise, MatMul, Gemm): the DQs
  fuse into the GEMM/Conv kernel, which then reads int8;
- do not quantize their outputs by default: a Q after a GEMM makes it write int8, and a
  separate kernel dequantize it for the float consumer;
- keep a tensor float when all its consumers are float: no Q whose only readers are float;
- a residual Add runs in int8 only when its output is quantized too; otherwise TensorRT may
  fuse the Add into the GEMM's epilogue when the *skip* input (the carried hidden state, the
  input on the shorter path to the common ancestor: ModelOpt's `build_non_residual_input_map`)
  is quantized. Which form is best for FocalNet is decided by measurement in `int8.py`
  (measured: `int8.py`).

This module reads graphs only: which inputs are weighted, which Adds are skip connections,
the GEMM/Conv FLOPs, and the `PlacementReport` of a Q/DQ graph.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx

from ..errors import InputError

WEIGHTED_OPS = ("Conv", "MatMul", "Gemm")  #: the GEMM/Conv operations whose inputs are quantized
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
_GROUP = re.compile(r"/(embeddings|encoder/stages\.\d+/layers\.\d+|encoder/stages\.\d+/downsample|layernorm|classifier|decoder)/")


def node_group(name: str) -> str | None:
    """The block a node belongs to: 'embeddings', 'encoder/stages.2/layers.1', 'classifier', ..."""
    m = _GROUP.search(name)
    return m.group(1) if m else None


def module_block(name: str) -> str | None:
    """The checkpoint module path of the block a node belongs to: 'embeddings', 'encoder.stages.2.layers.1',
    'encoder.stages.0.downsample', 'layernorm', 'classifier' (None outside every block)."""
    group = node_group(name)
    return group.replace("/", ".") if group else None


def module_path(name: str) -> str:
    """The checkpoint module path of a node from its exporter scope ('' when the name has none):
    '/model/encoder/stages.2/layers.1/mlp/fc2/MatMul' -> 'encoder.stages.2.layers.1.mlp.fc2'.

    The scope has one segment per module below the head wrapper ('model'), named from the last
    non-container module ('focal_layers.0' then 'focal_layers.0.0': the second replaces the first)."""
    segments = name.split("/")[1:-1]
    if segments[:1] == ["model"]:
        segments = segments[1:]
    path: list[str] = []
    for seg in segments:
        if path and seg.startswith(path[-1] + "."):
            path[-1] = seg
        else:
            path.append(seg)
    return ".".join(path)


def match_nodes(model: onnx.ModelProto, patterns: list[str], ops: tuple[str, ...] | None = None) -> dict[str, list[str]]:
    """The nodes (of op types `ops`, default any) each pattern names: a node name, a module path and
    everything below it ('encoder.stages.2.layers.1.mlp.fc2', 'encoder.stages.3'), or a shell-style
    pattern (`*`, `?`, `[...]`) on either. A pattern naming none of them is an `InputError`."""
    import fnmatch

    nodes = [(n.name, module_path(n.name)) for n in model.graph.node if n.name and (ops is None or n.op_type in ops)]
    out: dict[str, list[str]] = {}
    for p in patterns:
        glob = any(c in p for c in "*?[")
        hits = [name for name, mod in nodes if name == p or (mod and (mod == p or mod.startswith(p + ".")))
                or (glob and (fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(mod, p)))]
        if not hits:
            what = "GEMM/Conv node" if ops else "node"
            raise InputError(f"--keep-float {p}: no {what} of the graph matches (give a node name, a module path such as "
                             "encoder.stages.2.layers.1.mlp.fc2, or a pattern with *)")
        out[p] = hits
    return out


def constants(model: onnx.ModelProto) -> set[str]:
    """Names of initializers and Constant outputs."""
    names = {i.name for i in model.graph.initializer}
    names |= {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    return names


def consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def residual_adds(model: onnx.ModelProto) -> list[str]:
    """Adds of two activations where one is also read elsewhere: the skip connections."""
    consts, readers = constants(model), consumers(model)
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "Add"
        and len(n.input) == 2
        and not any(i in consts for i in n.input)
        and any(len(readers.get(i, [])) >= 2 for i in n.input)
    ]


def skip_input(model: onnx.ModelProto, add: onnx.NodeProto) -> str:
    """The skip (carried) input of a residual Add: the one read elsewhere too; else the earlier one."""
    readers = consumers(model)
    shared = [i for i in add.input if len(readers.get(i, [])) >= 2]
    if len(shared) == 1:
        return shared[0]
    order = {o: k for k, n in enumerate(model.graph.node) for o in n.output}
    return min(add.input, key=lambda i: order.get(i, -1))


def stem_and_head(model: onnx.ModelProto) -> list[str]:
    """The nodes kept in float by default: the patch-embedding convolution and the head."""
    return [
        n.name
        for n in model.graph.node
        if n.op_type in WEIGHTED_OPS and node_group(n.name) in ("classifier", "decoder")
        or (n.op_type == "Conv" and "patch_embeddings" in n.name and node_group(n.name) == "embeddings")
    ]


def downsampling(model: onnx.ModelProto) -> list[str]:
    """FocalNet's downsampling Convs (patch merging between stages): the GEMM/Conv nodes that read
    the residual stream itself, not through a LayerNorm."""
    return [n.name for n in model.graph.node if n.op_type == "Conv" and (node_group(n.name) or "").endswith("/downsample")]


def float_by_default(model: onnx.ModelProto) -> list[str]:
    """The GEMM/Conv nodes the TensorRT form leaves in float: stem, head and the downsampling Convs.

    The downsampling Convs read the residual stream, which carries the outlier channels of the
    embedding's and the downsampling LayerNorms (large weights in a few channels, as in trained
    transformers) on every position: one per-tensor int8 scale for it leaves the other channels
    a few levels. Unlike a LayerNorm output read by a MatMul, the stream cannot be smoothed (its
    LayerNorm readers are not invariant to a per-channel scale). Measured on focalnet-tiny with
    realistic statistics (benchmarks/int8_calibration.py --smoothing, 220 images, 100 held back):
    logit SQNR 30.3 dB with them in int8, 38.5 dB in float, at 99.7% -> 95.7% of the GEMM/Conv
    FLOPs in int8 (smoothing on in both).
    """
    return [*stem_and_head(model), *downsampling(model)]


def gemm_flops(model: onnx.ModelProto) -> dict[str, int]:
    """Multiply-add FLOPs (2 per MAC) per image of every Conv/MatMul/Gemm, from inferred shapes.

    Works on fp32 and Q/DQ graphs alike (a weight read through a DequantizeLinear has the shape
    of its int8 initializer). A symbolic dimension (the batch) counts as 1.
    """
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes: dict[str, list[int]] = {}
    for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = v.type.tensor_type.shape.dim
        shapes[v.name] = [d.dim_value if d.HasField("dim_value") else 1 for d in dims]
    for i in inferred.graph.initializer:
        shapes[i.name] = list(i.dims)
    producer = {o: n for n in inferred.graph.node for o in n.output}

    def shape(name: str) -> list[int] | None:
        if name in shapes:
            return shapes[name]
        p = producer.get(name)  # a weight behind its DequantizeLinear
        return shape(p.input[0]) if p is not None and p.op_type in QDQ_OPS else None

    flops: dict[str, int] = {}
    for n in inferred.graph.node:
        if n.op_type not in WEIGHTED_OPS:
            continue
        a, b, y = shape(n.input[0]), shape(n.input[1]), shape(n.output[0])
        if n.op_type == "Conv" and b is not None and y is not None:
            flops[n.name] = 2 * int(np.prod(y[1:])) * int(np.prod(b[1:]))
        elif n.op_type == "Gemm" and b is not None:  # one row per image
            flops[n.name] = 2 * int(np.prod(b))
        elif n.op_type == "MatMul" and a is not None and b is not None:
            rows = int(np.prod(a[1:-1])) if len(a) > 2 else 1
            flops[n.name] = 2 * rows * int(np.prod(b[-2:])) * (int(np.prod(b[:-2])) if len(b) > 2 else 1)
        else:
            flops[n.name] = 0
    return flops


def quantized_nodes(model: onnx.ModelProto) -> dict[str, str]:
    """Nodes (name -> op type) that read at least one input through a DequantizeLinear."""
    producer = {o: n for n in model.graph.node for o in n.output}
    return {
        n.name: n.op_type
        for n in model.graph.node
        if n.op_type not in QDQ_OPS and any(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in n.input)
    }


@dataclass
class PlacementReport:
    """What a Q/DQ graph quantizes, and where TensorRT will run separate (un-fused) Q/DQ kernels."""

    quantized_by_type: dict[str, int]  #: op type -> nodes with a dequantized input
    float_by_type: dict[str, int]  #: op type -> GEMM/Conv nodes left in float
    int8_flop_share: float  #: share of the GEMM/Conv FLOPs whose inputs are quantized
    gemm_flops: int  #: GEMM/Conv FLOPs per image, all of them
    qdq_pairs: int  #: activation Q -> DQ pairs
    #: activation Q/DQ TensorRT cannot fuse into a GEMM/Conv: "<tensor>: <why>"
    unfused: list[str] = field(default_factory=list)
    float_nodes: list[str] = field(default_factory=list)  #: GEMM/Conv nodes left in float

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        q = ", ".join(f"{k} {v}" for k, v in sorted(self.quantized_by_type.items()))
        return (f"quantized: {q or 'none'}; int8 share of GEMM/Conv FLOPs {100 * self.int8_flop_share:.1f}%; "
                f"{self.qdq_pairs} activation Q/DQ pairs, {len(self.unfused)} not fusable by TensorRT")


def placement_report(model: onnx.ModelProto, flops: dict[str, int] | None = None) -> PlacementReport:
    """The `PlacementReport` of a Q/DQ graph (`flops`: `gemm_flops` of it, computed if not given).

    A pair is counted as not fusable where TensorRT has to run the Q or the DQ as a kernel of
    its own: a DQ read by an operation that is not a GEMM/Conv (that operation does not run in
    int8 unless its output is quantized too), or a Q of a tensor that float operations also
    read (its producer cannot write int8 alone, so the quantization is a separate pass).
    """
    flops = gemm_flops(model) if flops is None else flops
    consts, readers = constants(model), consumers(model)
    quantized = quantized_nodes(model)
    weighted = [n for n in model.graph.node if n.op_type in WEIGHTED_OPS]
    in_float = [n for n in weighted if n.name not in quantized]
    total = sum(flops.get(n.name, 0) for n in weighted)
    int8 = sum(flops.get(n.name, 0) for n in weighted if n.name in quantized)
    unfused, pairs = [], 0
    for q in model.graph.node:
        if q.op_type != "QuantizeLinear" or q.input[0] in consts:
            continue
        dqs = [c for c in readers.get(q.output[0], []) if c.op_type == "DequantizeLinear"]
        pairs += len(dqs)
        float_readers = [c.op_type for c in readers.get(q.input[0], []) if c.op_type != "QuantizeLinear"]
        if float_readers:
            unfused.append(f"{q.input[0]}: also read in float by {', '.join(sorted(set(float_readers)))}")
        for dq in dqs:
            ops = sorted({c.op_type for c in readers.get(dq.output[0], []) if c.op_type not in WEIGHTED_OPS})
            if ops:
                unfused.append(f"{q.input[0]}: dequantized into {', '.join(ops)}")
    return PlacementReport(
        quantized_by_type=dict(Counter(quantized.values())),
        float_by_type=dict(Counter(n.op_type for n in in_float)),
        int8_flop_share=int8 / total if total else 0.0,
        gemm_flops=total,
        qdq_pairs=pairs,
        unfused=unfused,
        float_nodes=[n.name for n in in_float],
    )
