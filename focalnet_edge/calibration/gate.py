"""The INT8/FP8 accuracy gate: measure a quantized graph against fp32, return nodes to float.

A quantized graph is judged on images held back from calibration against the fp32 graph,
with `metrics` (the same functions as `verify`): logit SQNR in dB and mean cosine, the primary
criteria (stable on a few dozen images), and top-1 agreement counted only on the images whose
fp32 prediction is decided (its top-1/top-2 margin above what the measured noise can flip,
`metrics.top1_judgement`); every flip is reported with its fp32 margin. Where the target is
not met, nodes go back to float (a GEMM or Conv with the Q/DQ of its inputs), the largest
measured SQNR gain first (`rank`), until the target is met or `max_fallback` nodes were
returned. A fallback is kept only when it measurably improves the criterion (`improves`);
otherwise the graph is written as first quantized and the shortfall is reported.

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
may carry as much error as an MLP GEMM. Every candidate is measured (for the TensorRT form as
for the CPU form), not only those a cheap proxy picks: the proxy this gate used before (the
noise of a node's own input Q/DQ relative to the input's power) ranks a hostile fc2 low, since
the few outlier channels that crush the other channels' int8 levels also dominate that power.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx

from ..verify.metrics import cosine, sqnr_db, top1_judgement, topk_agreement
from ..folder.onnx_io import input_batches, ort_session, run_rows, static_batch
from .placement import module_block
from .qdq import float_sources

log = logging.getLogger(__name__)

MIN_HOLDOUT = 100  #: held-back images below which one disagreement is more than 1%
#: a fallback is kept only when it raises the logit SQNR by this much (or meets the target the first
#: graph missed): on 48-100 held-back images the SQNR of one graph moves by a few tenths of a dB
#: with the images drawn, so smaller gains are not told apart from noise
MIN_GAIN_DB = 0.5
MIN_NODE_GAIN_DB = 0.05  #: a node whose float return gains less than this (dB) is not a candidate
#: a node is suspected hostile to int8 when its own Q/DQ leave its output under 20 dB (`local_noise`
#: >= 1e-2) and 10x noisier than the median candidate's: one per-tensor scale crushing most of its
#: input (outlier channels), which a target met elsewhere would hide. Checked on every gated graph
#: (one run of the graph with float twins); a suspect goes back to float when that gains
#: `HOSTILE_GAIN_DB` end to end and the written graph measurably improves.
HOSTILE_NSR = 1e-2
HOSTILE_RATIO = 10.0
HOSTILE_GAIN_DB = 3.0


@dataclass
class GateScore:
    """How close a graph's outputs are to fp32's on the held-back images.

    The primary measures are the logit SQNR and the mean cosine: stable on a few dozen images.
    Top-1 agreement is judged on the decided images only (`metrics.top1_judgement`: the fp32
    top-1/top-2 margin above what the measured noise can flip); `top1` over every image and the
    flips with their fp32 margins are reported beside it.
    """

    sqnr_db: float
    cosine: float
    top1: float | None  #: over every image (reported); None for heads that are not classifiers
    top5: float | None
    images: int
    top1_decided: float | None = None  #: over the decided images (judged); None when none is decided
    decided: int | None = None  #: images whose fp32 prediction the measured noise cannot flip
    flip_margin: float | None = None  #: the fp32 top-1 margin above which an image is decided
    flips: list[dict] = field(default_factory=list)  #: {"image", "fp32_margin", "decided"} per disagreement

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        s = f"SQNR {self.sqnr_db:.1f} dB, cosine {self.cosine:.5f}"
        if self.top1 is not None:
            s += f", top-1 {self.top1:.4f}, top-5 {self.top5:.4f}"
        if self.decided is not None:
            d = "-" if self.top1_decided is None else f"{self.top1_decided:.4f}"
            s += f" (top-1 {d} on {self.decided} decided)"
        if self.flips:
            s += "; flips (fp32 margin): " + ", ".join(f"#{f['image']} {f['fp32_margin']:.3g}" + ("" if f["decided"] else " near-tie")
                                                     for f in self.flips[:6]) + (" ..." if len(self.flips) > 6 else "")
        return s + f" on {self.images} images"


def score(ref: np.ndarray, out: np.ndarray, classify: bool) -> GateScore:
    top1 = topk_agreement(ref, out, 1) if classify else None
    top5 = topk_agreement(ref, out, min(5, ref.shape[-1])) if classify else None
    s = GateScore(sqnr_db(ref, out), cosine(ref, out), top1, top5, len(ref))
    judged = top1_judgement(ref, out) if classify else None
    if judged is not None:
        s.top1_decided, s.decided, s.flip_margin, s.flips = judged["agreement"], judged["decided"], judged["flip_margin"], judged["flips"]
    return s


@dataclass(frozen=True)
class GateTarget:
    """What a quantized graph must reach against fp32: SQNR and cosine; top-1 agreement (classifiers)
    on the decided images (all images when the score has no decided count)."""

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
        top1 = s.top1 if s.decided is None else s.top1_decided
        if top1 is not None and not top1 >= self.min_top1:
            where = "" if s.decided is None else f" on the {s.decided} decided images (fp32 margin > {s.flip_margin:.3g})"
            out.append(f"top-1 agreement {top1:.4f}{where} is {self.min_top1 - top1:.4f} under {self.min_top1:g}")
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
    return (f"only {images} held-back images (fewer than {MIN_HOLDOUT}): the SQNR and cosine rest on fewer images, and top-1 "
            f"is judged on the decided ones only (one flip there is over {100 / max(images, 1):.1f}%); give more calibration "
            "images for a finer gate")


def blocks_of(names: list[str]) -> dict[str, list[str]]:
    """The nodes `names` by the checkpoint module (block) they belong to ("encoder.stages.2.layers.1": [...])."""
    out: dict[str, list[str]] = {}
    for n in names:
        out.setdefault(module_block(n) or "?", []).append(n)
    return out


# -- sensitivity and fallback ----------------------------------------------------------------------
def suspects(noise: dict[str, float]) -> list[str]:
    """The nodes whose `local_noise` marks them hostile to int8 (`HOSTILE_NSR`, `HOSTILE_RATIO`), noisiest first."""
    if not noise:
        return []
    median = float(np.median(list(noise.values())))
    return sorted((n for n, v in noise.items() if v >= HOSTILE_NSR and v >= HOSTILE_RATIO * median), key=noise.get, reverse=True)


def local_noise(qmodel: onnx.ModelProto, fp32: onnx.ModelProto, candidates: list[str], inputs: np.ndarray) -> dict[str, float]:
    """Noise over signal power of each candidate's *output* that its own Q/DQ makes (one run).

    Each candidate is computed twice in one graph, as quantized and on the float tensors its
    Q/DQ read (`float_sources`), and the two outputs are reduced to sums of squares inside the
    graph (memory: one inference's activations). Measured at the output, where an outlier-
    dominated input hides its damage (a few channels near 300 hold the input's power while the
    rest lose their int8 levels: small noise relative to the input, most of the output's signal
    gone). A cheap proxy that picks which nodes to measure end to end (`sensitivity_nodes`).
    """
    from onnx import TensorProto, helper

    model = onnx.ModelProto()
    model.CopyFrom(qmodel)
    floats: dict[str, dict[int, str]] = {}
    for node, k, source in float_sources(model, fp32, candidates):
        floats.setdefault(node.name, {})[k] = source
    extra, outs = [], []
    for node in model.graph.node:
        if node.name not in floats or not node.output:
            continue
        twin = onnx.NodeProto()
        twin.CopyFrom(node)
        twin.name = f"{node.name}__float_twin"
        for k, source in floats[node.name].items():
            twin.input[k] = source
        y, yf = node.output[0], f"{node.output[0]}__float_twin"
        del twin.output[:]
        twin.output.append(yf)
        diff, noise, signal = f"{y}__twin_diff", f"{y}__twin_noise", f"{y}__twin_signal"
        extra.append((node.name, [twin, helper.make_node("Sub", [y, yf], [diff], name=diff),
                                  helper.make_node("ReduceSumSquare", [diff], [noise], name=noise, keepdims=0),
                                  helper.make_node("ReduceSumSquare", [yf], [signal], name=signal, keepdims=0)]))
        outs.append((node.name, noise, signal))
    after = dict(extra)
    nodes = list(model.graph.node)
    del model.graph.node[:]
    for n in nodes:
        model.graph.node.append(n)
        model.graph.node.extend(after.get(n.name, []))
    del model.graph.output[:]
    model.graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, []) for _, a, b in outs for t in (a, b))
    sess = ort_session(model, optimize=False)
    name = sess.get_inputs()[0].name
    sums = np.zeros(2 * len(outs))
    for chunk, _ in input_batches(inputs, 16, static_batch(sess)):  # a static batch's padding rows count again: a proxy only
        sums += np.asarray(sess.run(None, {name: chunk}), np.float64)
    noise = {n: float(sums[2 * j] / max(sums[2 * j + 1], 1e-30)) for j, (n, _, _) in enumerate(outs)}
    return {n: noise.get(n, 0.0) for n in candidates}


class Switchboard:
    """One ONNX Runtime session over Q/DQ graph `qmodel` in which any set of `candidates` runs in float.

    Every dequantized input of a candidate is replaced by `Where(switch, float input, DQ output)`,
    with one boolean scalar graph input per candidate (activations: the tensor before its Q;
    weights: the fp32 graph's initializer), so that `outputs(names, x)` is the graph with `names`
    returned to float, as `qdq.to_float` would make it, without copying the graph or making a new
    session. The Q/DQ run as float arithmetic (ONNX's definition of Q/DQ, not int8 kernels).
    """

    PREFIX = "focalnet_edge_fallback_"

    def __init__(self, qmodel: onnx.ModelProto, fp32: onnx.ModelProto, candidates: list[str]) -> None:
        from onnx import TensorProto, helper

        model = onnx.ModelProto()
        model.CopyFrom(qmodel)
        self.switch = {name: f"{self.PREFIX}{i}" for i, name in enumerate(candidates)}
        wheres: dict[str, list[onnx.NodeProto]] = {}
        for node, k, source in float_sources(model, fp32, candidates):
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
    """SQNR gain (dB) of returning each candidate alone to float, and the candidates in `rank` order.

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
    return gain, rank(gain, flops)


def rank(gain: dict[str, float], flops: dict[str, int]) -> list[str]:
    """The nodes whose float return measurably raises the SQNR (> `MIN_NODE_GAIN_DB`), the largest gain
    first; gains equal to 0.1 dB the cheaper node first.

    By gain, not gain per FLOP: a hostile node (one GEMM whose per-tensor input scale crushes
    most of its input) wins tens of dB and must come first, where per FLOP a dozen depth-wise
    convolutions winning a tenth of a dB each would fill the fallback budget before it.
    """
    useful = [n for n, g in gain.items() if g > MIN_NODE_GAIN_DB]
    return sorted(useful, key=lambda n: (-round(gain[n], 1), flops.get(n, 0), n))


def fallback_search(order: list[str], judge, target: GateTarget, max_fallback: int,
                    progress: bool = False) -> tuple[list[str], GateScore | None, list[int]]:
    """The shortest prefix of `order` (at most `max_fallback` nodes) whose `judge(prefix)` meets `target`.

    Prefixes of 1, 2, 4, ... nodes are judged until one meets the target, then the length is
    bisected between the last miss and the hit: about 2 log2(n) judgements instead of n. Returns
    the prefix (when none meets the target, the shortest within `MIN_GAIN_DB` of the best SQNR
    judged), its score, and the lengths judged.
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
    if hit is not None:
        n = hit
    elif judged:  # not met: the best measured prefix, the shortest of those within MIN_GAIN_DB of the best
        top = max(s.sqnr_db for s in judged.values())
        n = min(k for k, s in judged.items() if s.sqnr_db >= top - MIN_GAIN_DB)
    else:
        n = 0
    return order[:n], judged.get(n), sorted(judged)


def improves(new: GateScore, old: GateScore, target: GateTarget) -> bool:
    """Whether `new` is measurably better than `old`: it meets `target` where `old` did not, or
    raises the SQNR by `MIN_GAIN_DB` or more without losing the target. A fallback that does not
    is not kept: it costs int8 FLOPs for nothing the measurement can tell apart from noise."""
    if target.met(new) != target.met(old):
        return target.met(new)
    return new.sqnr_db >= old.sqnr_db + MIN_GAIN_DB
