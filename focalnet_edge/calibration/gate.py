"""The INT8/FP8 accuracy gate: measure a quantized graph against fp32, return nodes to float.

A quantized graph is judged on images held back from calibration against the fp32 graph,
with `metrics` (the same functions as `verify`): logit SQNR in dB, mean cosine, top-1 and
top-5 agreement. Where the target is not met, nodes go back to float one at a time (a GEMM or
Conv with the Q/DQ of its inputs), the one with the largest measured SQNR gain per FLOP
returned to float first, until the target is met or `max_fallback` nodes were tried.

Why per node and measured end to end: quantization error in FocalNet is spread over every
block (it compounds along the residual stream), so whole-block fallback spends most of the
int8 FLOPs to win little; a depth-wise focal convolution costs 1-2% of a block's FLOPs and
may carry as much error as an MLP GEMM.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx

from ..metrics import cosine, sqnr_db, topk_agreement
from ..onnx_io import ort_session
from .placement import QDQ_OPS

log = logging.getLogger(__name__)

MIN_HOLDOUT = 100  #: held-back images below which one disagreement is more than 1%


@dataclass
class GateScore:
    """How close a graph's outputs are to fp32's on the held-back images."""

    sqnr_db: float
    cosine: float
    top1: float | None  #: None for heads that are not classifiers
    top5: float | None
    images: int

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        s = f"SQNR {self.sqnr_db:.1f} dB, cosine {self.cosine:.5f}"
        if self.top1 is not None:
            s += f", top-1 {self.top1:.4f}, top-5 {self.top5:.4f}"
        return s + f" on {self.images} images"


def score(ref: np.ndarray, out: np.ndarray, classify: bool) -> GateScore:
    top1 = topk_agreement(ref, out, 1) if classify else None
    top5 = topk_agreement(ref, out, min(5, ref.shape[-1])) if classify else None
    return GateScore(sqnr_db(ref, out), cosine(ref, out), top1, top5, len(ref))


@dataclass(frozen=True)
class GateTarget:
    """What a quantized graph must reach against fp32 (top-1 only counts for classifiers)."""

    min_sqnr_db: float
    min_top1: float
    min_cosine: float

    def shortfalls(self, s: GateScore) -> list[str]:
        """What is missed and by how much (empty: the target is met)."""
        out = []
        if not s.sqnr_db >= self.min_sqnr_db:
            out.append(f"SQNR {s.sqnr_db:.2f} dB is {self.min_sqnr_db - s.sqnr_db:.2f} dB under {self.min_sqnr_db:g} dB")
        if not s.cosine >= self.min_cosine:
            out.append(f"cosine {s.cosine:.5f} is {self.min_cosine - s.cosine:.5f} under {self.min_cosine:g}")
        if s.top1 is not None and not s.top1 >= self.min_top1:
            out.append(f"top-1 agreement {s.top1:.4f} is {self.min_top1 - s.top1:.4f} under {self.min_top1:g}")
        return out

    def met(self, s: GateScore) -> bool:
        return not self.shortfalls(s)


def outputs(model: onnx.ModelProto | str, inputs: np.ndarray, batch: int = 32) -> np.ndarray:
    """The first output of `model` (ONNX Runtime CPU) on `inputs`, float32."""
    sess = ort_session(model)
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: inputs[i : i + batch]})[0] for i in range(0, len(inputs), batch)]).astype(np.float32)


def holdout_note(images: int) -> str | None:
    """A warning when too few images are held back for the gate's top-1 figure to mean much."""
    if images >= MIN_HOLDOUT:
        return None
    return (f"only {images} held-back images (fewer than {MIN_HOLDOUT}): one disagreement moves top-1 by "
            f"{100 / max(images, 1):.1f}%; give more calibration images for a finer gate")


# -- returning nodes to float ----------------------------------------------------------------------
def to_float(qmodel: onnx.ModelProto, fp32: onnx.ModelProto, names: set[str] | list[str]) -> onnx.ModelProto:
    """A copy of Q/DQ graph `qmodel` with the nodes `names` reading float inputs again.

    Activations are read before their Q/DQ; weights are the fp32 graph's own initializers (the
    node keeps its name through quantization). Q/DQ nodes and int8 weights nothing reads any
    more are removed. Cheap: no re-quantization, so the gate can try many nodes.
    """
    names = set(names)
    model = onnx.ModelProto()
    model.CopyFrom(qmodel)
    fp32_nodes = {n.name: n for n in fp32.graph.node if n.name in names}
    fp32_inits = {i.name: i for i in fp32.graph.initializer}
    have = {i.name for i in model.graph.initializer}
    for node, k, _dq, q in dequantized_inputs(model, names):
        if q is not None:
            node.input[k] = q.input[0]
        elif node.name in fp32_nodes:  # a weight: the fp32 graph's initializer
            orig = fp32_nodes[node.name].input[k]
            if orig in fp32_inits and orig not in have:
                model.graph.initializer.append(fp32_inits[orig])
                have.add(orig)
            node.input[k] = orig
    return prune_qdq(model)


def dequantized_inputs(model: onnx.ModelProto, names: set[str] | list[str]):
    """(node, input index, its DequantizeLinear, the QuantizeLinear before that or None for a weight)
    for every input of the nodes `names` that a DequantizeLinear produces."""
    names = set(names)
    producer = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.name not in names:
            continue
        for k, name in enumerate(list(node.input)):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            yield node, k, dq, (q if q is not None and q.op_type == "QuantizeLinear" else None)


def prune_qdq(model: onnx.ModelProto) -> onnx.ModelProto:
    """Remove Q/DQ nodes and initializers that nothing reads (in place; returns `model`)."""
    while True:
        used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
        dead = [n for n in model.graph.node if n.op_type in QDQ_OPS and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            model.graph.node.remove(n)
    used = {i for n in model.graph.node for i in n.input}
    for init in [i for i in model.graph.initializer if i.name not in used]:
        model.graph.initializer.remove(init)
    return model


# -- sensitivity and fallback ----------------------------------------------------------------------
@dataclass
class Fallback:
    """What the gate did: the nodes it measured, returned to float, and the score after."""

    sensitivity: dict[str, float] = field(default_factory=dict)  #: node -> SQNR gain (dB) back in float
    order: list[str] = field(default_factory=list)  #: nodes by SQNR gain per FLOP, the best first
    kept_float: list[str] = field(default_factory=list)  #: nodes returned to float, in order
    tried: list[str] = field(default_factory=list)  #: every node the loop returned (kept or not)


def local_noise(qmodel: onnx.ModelProto, fp32: onnx.ModelProto, candidates: list[str], inputs: np.ndarray) -> dict[str, float]:
    """Relative quantization noise each candidate's own Q/DQ adds to its inputs (one run, no re-quantization).

    The activation tensors read through a Q/DQ are taken from one run of `qmodel` on `inputs`
    and rounded as an int8 Q/DQ with their own scales, in numpy; weights compare their
    dequantized int8 values with the fp32 graph's. Returns noise power over signal power per
    node (activation plus weight), a cheap proxy that picks which nodes to measure end to end.
    """
    from onnx import numpy_helper

    inits = {i.name: i for i in qmodel.graph.initializer}
    fp32_inits = {i.name: i for i in fp32.graph.initializer}
    fp32_nodes = {n.name: n for n in fp32.graph.node}
    wanted: dict[str, list[tuple[str, float]]] = {}
    weight_noise: dict[str, float] = {}
    for node, k, dq, q in dequantized_inputs(qmodel, candidates):
        scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float64)
        if q is not None:
            wanted.setdefault(node.name, []).append((q.input[0], float(scale.ravel()[0])))
        elif dq.input[0] in inits and node.name in fp32_nodes and fp32_nodes[node.name].input[k] in fp32_inits:
            w = numpy_helper.to_array(fp32_inits[fp32_nodes[node.name].input[k]]).astype(np.float64)
            wq = numpy_helper.to_array(inits[dq.input[0]]).astype(np.float64)
            axis = next((a.i for a in dq.attribute if a.name == "axis"), 1) % w.ndim
            shape = [1] * w.ndim
            shape[axis] = -1
            deq = wq * scale.reshape(shape) if scale.ndim else wq * scale
            weight_noise[node.name] = float(((w - deq) ** 2).sum() / max((w**2).sum(), 1e-30))
    tensors = sorted({t for pairs in wanted.values() for t, _ in pairs})
    probe = onnx.ModelProto()
    probe.CopyFrom(qmodel)
    known = {o.name for o in probe.graph.output}
    for t in tensors:
        if t not in known:
            probe.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    sess = ort_session(probe, optimize=False)
    names = [o.name for o in sess.get_outputs()]
    values = dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: inputs})))
    noise = {}
    for name in candidates:
        total = weight_noise.get(name, 0.0)
        for t, scale in wanted.get(name, []):
            x = values[t].astype(np.float64)
            xq = np.clip(np.round(x / scale), -127, 127) * scale
            total += float(((x - xq) ** 2).sum() / max((x**2).sum(), 1e-30))
        noise[name] = total
    return noise


def sensitivity_pass(
    qmodel: onnx.ModelProto,
    fp32: onnx.ModelProto,
    candidates: list[str],
    flops: dict[str, int],
    ref: np.ndarray,
    inputs: np.ndarray,
    limit: int | None = None,
    progress: bool = False,
    proxy: onnx.ModelProto | None = None,
) -> tuple[dict[str, float], list[str]]:
    """SQNR gain (dB) of returning each candidate alone to float, and the candidates by gain per FLOP.

    Measured end to end on `inputs` (a small subset of the held-back images) with the float
    parts in fp32: the ranking, not the figure, is used. With `limit`, only the `limit` nodes
    with the most `local_noise` (of the int8 graph `proxy`, default `qmodel`) are measured: on
    focalnet-tiny one measurement is a session of a 28 M-parameter graph, a few seconds each.
    """
    from tqdm import tqdm

    if limit is not None and len(candidates) > limit:
        noise = local_noise(proxy if proxy is not None else qmodel, fp32, candidates, inputs)
        candidates = sorted(candidates, key=noise.get, reverse=True)[:limit]
    base = sqnr_db(ref, outputs(qmodel, inputs))
    gain: dict[str, float] = {}
    for name in tqdm(candidates, desc="quantization sensitivity", unit="node", disable=None if progress else True):
        gain[name] = sqnr_db(ref, outputs(to_float(qmodel, fp32, {name}), inputs)) - base
    useful = [n for n in candidates if gain[n] > 0]
    order = sorted(useful, key=lambda n: gain[n] / max(flops.get(n, 0), 1), reverse=True)
    return gain, order


def fallback_loop(
    qmodel: onnx.ModelProto,
    fp32: onnx.ModelProto,
    order: list[str],
    judge,
    target: GateTarget,
    max_fallback: int,
) -> tuple[onnx.ModelProto, list[str], GateScore | None]:
    """Return the nodes of `order` to float one at a time until `judge(model)` meets `target`.

    `judge` maps a Q/DQ graph (fp32 float parts) to its final form's `GateScore`. Returns the
    last graph, the nodes returned, and its score (None when nothing was tried).
    """
    kept: list[str] = []
    model, last = qmodel, None
    for name in order[:max_fallback]:
        kept.append(name)
        model = to_float(qmodel, fp32, kept)
        last = judge(model)
        log.info("quantization gate: %s back to float -> %s", name, last)
        if target.met(last):
            break
    return model, kept, last

