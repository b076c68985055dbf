"""The INT8/FP8 accuracy gate: measure a quantized graph against fp32, return nodes to float.

A quantized graph is judged on images held back from calibration against the fp32 graph,
with `metrics` (the same functions as `verify`): logit SQNR in dB, mean cosine, top-1 and
top-5 agreement. Where the target is not met, nodes go back to float (a GEMM or Conv with the
Q/DQ of its inputs), those with the largest measured SQNR gain per FLOP first, until the target
is met or `max_fallback` nodes were returned.

How it stays fast on a 28 M-parameter model on two cores: one ONNX Runtime session (a
`Switchboard`: the Q/DQ graph with fp32 float parts in which a boolean feed per candidate node
routes its inputs around their Q/DQ) serves every per-node measurement and every candidate set,
with no graph copy or session per candidate; the measurements run on the held-back images most
at risk (`risky_images`: top-1 disagreements first, then the smallest fp32 top-1 margin for the
error), the others keeping the first graph's outputs; the number of nodes returned grows 1, 2,
4, ... and is then bisected; and the written form (fp16 float parts) is judged on every held-back
image once at the end.

Why per node and measured end to end: quantization error in FocalNet is spread over every
block (it compounds along the residual stream), so whole-block fallback spends most of the
int8 FLOPs to win little; a depth-wise focal convolution costs 1-2% of a block's FLOPs and
may carry as much error as an MLP GEMM.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import onnx

from ..metrics import cosine, sqnr_db, topk_agreement
from ..onnx_io import ort_session, run_rows
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
    return run_rows(ort_session(model), inputs, batch)[0].astype(np.float32)


def holdout_note(images: int, held_out: bool = True) -> str | None:
    """A warning when too few images are held back for the gate's top-1 figure to mean much, or none
    was (`held_out` False: the gate ran on the images that calibrated)."""
    if not held_out:
        return (f"the gate was judged on the {images} calibration image{'s' if images != 1 else ''} that set the ranges, "
                f"not on held-back images: pass --calib-data with at least 2 images ({2 * MIN_HOLDOUT} for a gate to 1%)")
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
    values = dict(zip(names, run_rows(sess, inputs, len(inputs))))
    noise = {}
    for name in candidates:
        total = weight_noise.get(name, 0.0)
        for t, scale in wanted.get(name, []):
            x = values[t].astype(np.float64)
            xq = np.clip(np.round(x / scale), -127, 127) * scale
            total += float(((x - xq) ** 2).sum() / max((x**2).sum(), 1e-30))
        noise[name] = total
    return noise


class Switchboard:
    """One ONNX Runtime session over Q/DQ graph `qmodel` in which any set of `candidates` runs in float.

    Every dequantized input of a candidate is replaced by `Where(switch, float input, DQ output)`,
    with one boolean scalar graph input per candidate (activations: the tensor before its Q;
    weights: the fp32 graph's initializer), so that `outputs(names, x)` is the graph with `names`
    returned to float, as `to_float` would make it, without copying the graph or making a new
    session. The Q/DQ run as float arithmetic (ONNX's definition of Q/DQ, not int8 kernels).
    """

    PREFIX = "focalnet_edge_fallback_"

    def __init__(self, qmodel: onnx.ModelProto, fp32: onnx.ModelProto, candidates: list[str]) -> None:
        from onnx import TensorProto, helper

        model = onnx.ModelProto()
        model.CopyFrom(qmodel)
        self.switch = {name: f"{self.PREFIX}{i}" for i, name in enumerate(candidates)}
        fp32_nodes = {n.name: n for n in fp32.graph.node if n.name in self.switch}
        fp32_inits = {i.name: i for i in fp32.graph.initializer}
        have = {i.name for i in model.graph.initializer}
        wheres: dict[str, list[onnx.NodeProto]] = {}
        for node, k, _dq, q in list(dequantized_inputs(model, candidates)):
            if q is not None:
                source = q.input[0]
            else:
                source = fp32_nodes[node.name].input[k] if node.name in fp32_nodes else ""
                if source not in fp32_inits:
                    continue
                if source not in have:
                    model.graph.initializer.append(fp32_inits[source])
                    have.add(source)
            out = f"{node.input[k]}__or_float_{self.switch[node.name]}_{k}"
            wheres.setdefault(node.name, []).append(
                helper.make_node("Where", [self.switch[node.name], source, node.input[k]], [out], name=out))
            node.input[k] = out
        nodes = list(model.graph.node)
        del model.graph.node[:]
        for n in nodes:
            model.graph.node.extend(wheres.get(n.name, []))
            model.graph.node.append(n)
        model.graph.input.extend(helper.make_tensor_value_info(v, TensorProto.BOOL, []) for v in self.switch.values())
        self.session = ort_session(model)
        self.input = self.session.get_inputs()[0].name

    def outputs(self, names: set[str] | list[str], inputs: np.ndarray, batch: int = 32) -> np.ndarray:
        """The first output with the nodes `names` in float (the others quantized) on `inputs`."""
        names = set(names)
        feed = {v: np.array(k in names) for k, v in self.switch.items()}
        return run_rows(self.session, inputs, batch, feed)[0].astype(np.float32)


def risky_images(ref: np.ndarray, out: np.ndarray, count: int, classify: bool) -> np.ndarray:
    """Indices of the `count` held-back images whose result the quantization endangers most.

    Classifiers: top-1 disagreements first, then the largest ratio of the output error to the
    fp32 margin between the top two classes (where a disagreement comes next); other heads: the
    largest relative error. These are where returning nodes to float decides the gate.
    """
    err = np.abs(out - ref).reshape(len(ref), -1)
    if classify and ref.ndim == 2 and ref.shape[1] > 1:
        top2 = np.sort(ref, axis=1)[:, -2:]
        risk = err.max(1) / np.maximum(top2[:, 1] - top2[:, 0], 1e-12)
        risk = np.where(ref.argmax(1) != out.argmax(1), np.inf, risk)
    else:
        risk = (err**2).sum(1) / np.maximum((ref.reshape(len(ref), -1) ** 2).sum(1), 1e-30)
    return np.sort(np.argsort(-risk, kind="stable")[: max(1, count)])


def sensitivity_pass(  # noqa: PLR0913 - the gate's graphs, candidates, FLOPs, data and budgets; an options object comes with the calibration redesign (issue 28)
    qmodel: onnx.ModelProto,
    fp32: onnx.ModelProto,
    candidates: list[str],
    flops: dict[str, int],
    ref: np.ndarray,
    inputs: np.ndarray,
    limit: int | None = None,
    progress: bool = False,
    proxy: onnx.ModelProto | None = None,
    board: Switchboard | None = None,
) -> tuple[dict[str, float], list[str]]:
    """SQNR gain (dB) of returning each candidate alone to float, and the candidates by gain per FLOP.

    Measured end to end on `inputs` (a few held-back images) with the float parts in fp32, all
    through one `Switchboard` session (`board`, made over `qmodel` if not given). With `limit`,
    only the `limit` nodes with the most `local_noise` (of the graph `proxy`, default `qmodel`)
    are measured: on focalnet-tiny one measurement is a pass of a 28 M-parameter graph.
    """
    from tqdm import tqdm

    if limit is not None and len(candidates) > limit:
        noise = local_noise(proxy if proxy is not None else qmodel, fp32, candidates, inputs)
        candidates = sorted(candidates, key=noise.get, reverse=True)[:limit]
    if board is None:
        board = Switchboard(qmodel, fp32, candidates)
    base = sqnr_db(ref, board.outputs(set(), inputs))
    gain: dict[str, float] = {}
    for name in tqdm(candidates, desc="quantization sensitivity", unit="node", disable=None if progress else True):
        gain[name] = sqnr_db(ref, board.outputs({name}, inputs)) - base
    useful = [n for n in candidates if gain[n] > 0]
    order = sorted(useful, key=lambda n: gain[n] / max(flops.get(n, 0), 1), reverse=True)
    return gain, order


def fallback_search(order: list[str], judge, target: GateTarget, max_fallback: int,
                    progress: bool = False) -> tuple[list[str], GateScore | None, list[int]]:
    """The shortest prefix of `order` (at most `max_fallback` nodes) whose `judge(prefix)` meets `target`.

    Prefixes of 1, 2, 4, ... nodes are judged until one meets the target, then the length is
    bisected between the last miss and the hit: about 2 log2(n) judgements instead of n. Returns
    the prefix (the longest tried when none meets the target), its score, and the lengths judged.
    """
    from tqdm import tqdm

    limit = min(max_fallback, len(order))
    sizes, k = [], 1
    while k < limit:
        sizes.append(k)
        k *= 2
    if limit:
        sizes.append(limit)
    judged: dict[int, GateScore] = {}
    bar = tqdm(total=len(sizes), desc="quantization fallback", unit="set", disable=None if progress else True)

    def run(n: int) -> GateScore:
        judged[n] = judge(order[:n])
        log.info("quantization gate: %d nodes back to float -> %s", n, judged[n])
        bar.update()
        return judged[n]

    lo, hit = 0, None
    for n in sizes:
        if target.met(run(n)):
            hit = n
            break
        lo = n
    while hit is not None and hit - lo > 1:
        mid = (lo + hit) // 2
        bar.total += 1
        if target.met(run(mid)):
            hit = mid
        else:
            lo = mid
    bar.close()
    n = hit if hit is not None else (sizes[-1] if sizes else 0)
    return order[:n], judged.get(n), sorted(judged)
