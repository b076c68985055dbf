"""INT8 (and FP8): explicit Q/DQ graphs calibrated with `onnxruntime.quantization`, gated on accuracy.

Forms from the same calibration ranges (rows of `folder/artifacts.QUANT_FORMS`, which `qdq.quantize`
reads; a precision names its form and quantized type in the precision table):

- ``tensorrt`` (`model.int8.onnx`): placed by TensorRT's explicit-quantization rules (see
  `placement`): int8 only, zero point 0 (symmetric), per-channel weights on the output-channel
  axis, per-tensor activations, float bias (no int32 bias); Q/DQ on the inputs of every Conv
  (depth-wise focal convolutions and the 1x1 `h` included), MatMul and Gemm, on no GEMM output,
  none on LayerNormalization, none on the residual Adds (measured: below); stem and head left in
  float. The same graph with FLOAT8E4M3FN Q/DQ is `model.fp8.onnx` (`fp8.py`).
- ``cpu`` (`model.int8.cpu.onnx`): what ONNX Runtime's CPU kernels run fastest (measured, see
  benchmarks/README.md): uint8 activations (asymmetric), int8 per-channel weights, on MatMul and
  Gemm only, outputs left in float (ONNX Runtime fuses each into MatMulIntegerToFloat); the
  depth-wise convolutions stay fp32, where quantizing them measured slower.

`build_int8` quantizes, then runs the accuracy gate (`gate.py`) on images held back from the
calibration source: logit SQNR and cosine against the fp32 graph, top-1 agreement on the images
whose fp32 prediction is decided; where the target is missed, single GEMM/Conv nodes go back to
float, the largest measured SQNR gain first, and a fallback is kept only when it measurably helps.

Calibration ranges: `ranges.py`; the Q/DQ graphs and the gate's graph edits: `qdq.py`.

Q/DQ on the residual Adds of the TensorRT form: none, by measurement. focalnet-tiny with
realistic statistics (benchmarks/int8_vs_modelopt.py with benchmarks/residual_qdq.py, fp32 float
parts, 100 held-back images): logit SQNR 14.6 dB with Q/DQ on both inputs (the placement before
issue 11), 14.6 dB on the skip input alone (TensorRT's/ModelOpt's rule for fusing the Add into a
Conv epilogue), 29.9 dB with none; the trained demo: 30.2 dB skip, 30.9 dB none. Quantizing the
carried hidden state per tensor is what costs: its range grows with depth and its outlier channels
set the scale. The sums feed LayerNorm in float, so TensorRT runs no int8 add in any of these forms,
and "none" adds no quantize kernel of its own on a tensor that LayerNorm also reads.
"""


from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx

from ..errors import ConfigError, InputError
from ..folder.artifacts import (
    FLOAT_PARTS,
    INT8_MIN_AGREEMENT,
    INT8_MIN_COSINE,
    INT8_MIN_SQNR_DB,
    PRECISIONS,
    QTYPES,
    QUANT_FORMS,
    quantized_precision,
)
from ..folder.onnx_io import load_onnx, read_metadata, save_onnx, set_metadata
from . import gate
from .fp8 import int8_to_fp8
from .fp16 import activation_ranges, nodes_to_keep_fp32, to_float16
from .placement import PlacementReport, float_by_default, gemm_flops, placement_report
from .qdq import FORMS, quantizable_nodes, quantize, to_float

log = logging.getLogger(__name__)

SENSITIVITY_IMAGES = 16  #: held-back images the per-node sensitivity pass runs on
OVERFLOW_IMAGES = 16  #: calibration images the fp16 float parts' overflow is measured on
#: nodes measured end to end by it (None: every candidate; a number: those with the most local
#: quantization noise, a proxy that can miss a hostile node, see `gate`)
SENSITIVITY_NODES = None
#: ONNX element type of the Q/DQ (`artifacts.QTYPES`) -> what re-types the int8 graph to it
RETYPE: dict[str, Callable[[onnx.ModelProto, onnx.ModelProto], onnx.ModelProto]] = {"FLOAT8E4M3FN": int8_to_fp8}
#: what makes the first Q/DQ graph: (fp32 path, ranges, form, nodes left in float) -> graph
Quantizer = Callable[[Path, dict, str, list], onnx.ModelProto]


# -- the build: quantize, gate, write ----------------------------------------------------------------
@dataclass
class Int8Result:
    """What `build_int8`/`build_fp8` wrote and how it measured (the manifest's `int8`/`fp8` entry)."""

    path: Path
    form: str
    agreement: float  #: top-1 agreement (classifiers; cosine otherwise) on the held-back images
    min_agreement: float
    gate_passed: bool | None  #: None: the gate was off (--no-gate)
    kept_float: list[str] = field(default_factory=list)  #: GEMM/Conv nodes the gate returned to float
    sensitivity: dict[str, float] = field(default_factory=dict)  #: node -> SQNR gain (dB) back in float
    holdout_images: int = 0
    qtype: str = "int8"  #: int8 | fp8
    score: gate.GateScore | None = None  #: the written graph against fp32
    first_score: gate.GateScore | None = None  #: before the gate returned anything to float
    target: gate.GateTarget | None = None
    placement: PlacementReport | None = None  #: of the written graph
    shortfall: list[str] = field(default_factory=list)  #: what the target still misses, and by how much
    tried: list[str] = field(default_factory=list)  #: nodes the gate returned to float, in order tried
    holdout_note: str | None = None  #: set when fewer than gate.MIN_HOLDOUT images were held back, or none
    held_out: bool = True  #: False: the gate ran on the images that calibrated (too few to hold any back)
    timings: dict[str, float] = field(default_factory=dict)  #: seconds per phase
    user_float: list[str] = field(default_factory=list)  #: GEMM/Conv nodes the user kept in float (--keep-float)
    rejected: list[str] = field(default_factory=list)  #: a fallback measured and not kept: it did not measurably help

    @property
    def int8_flop_share(self) -> float:
        """Share of GEMM/Conv FLOPs that run quantized (int8 or fp8) in the written graph."""
        return self.placement.int8_flop_share if self.placement else 0.0

    def to_manifest(self) -> dict:
        """The facts the pipeline records for this artifact (JSON-ready)."""
        return {
            "form": self.form, "qtype": self.qtype, "gate_passed": self.gate_passed,
            "gate": {**(self.score.to_dict() if self.score else {}), "target": asdict(self.target) if self.target else None,
                     "before_fallback": self.first_score.to_dict() if self.first_score else None,
                     "shortfall": self.shortfall, "note": self.holdout_note},
            "holdout_images": self.holdout_images, "held_out": self.held_out, "kept_float": self.kept_float, "tried": self.tried,
            "gate_enabled": self.gate_passed is not None, "user_float": self.user_float, "rejected": self.rejected,
            "float_blocks": gate.blocks_of(self.placement.float_nodes) if self.placement else {},
            "kept_float_blocks": gate.blocks_of(self.kept_float),
            "placement": self.placement.to_dict() if self.placement else None, "timings_s": self.timings,
        }


def _finalize(model: onnx.ModelProto, fp32: onnx.ModelProto, qtype: str, float_type: str,
              calibration_inputs: np.ndarray | None, keep_fp32: list[str] | None) -> tuple[onnx.ModelProto, list[str] | None]:
    """The written form of a Q/DQ graph (fp32 float parts, int8): re-typed to its quantized type (FP8), float parts fp16."""
    if QTYPES[qtype] is not None:
        model = RETYPE[QTYPES[qtype]](model, fp32)
    if FLOAT_PARTS[float_type]:
        model, keep_fp32 = to_float16(model, calibration_inputs if keep_fp32 is None else None, True, keep_fp32)
    return model, keep_fp32


def fp16_overflow_nodes(fp32_path: str | Path, qmodel: onnx.ModelProto, inputs: np.ndarray) -> list[str]:
    """Nodes of Q/DQ graph `qmodel` that overflow float16, from the activations of the fp32 graph (a file).

    The Q/DQ graph keeps the fp32 graph's node and tensor names, and quantization does not move
    the peaks that matter (65504, LayerNorm inputs), so the fp32 graph is measured with the fp16
    stage's probe (each tensor reduced to max |t| inside the graph), unlike the Q/DQ graph with
    every tensor exposed, which on focalnet-tiny took 200 s of a 700 s gate on 64 images (2 cores, loaded).
    """
    return nodes_to_keep_fp32(qmodel, activation_ranges(fp32_path, inputs))


@dataclass
class _Gating:
    """What every phase of the gate reads: the graphs, the data, the target, and what it decided so far."""

    fp32: onnx.ModelProto
    first: onnx.ModelProto  #: the Q/DQ graph as first quantized (fp32 float parts, int8)
    qtype: str
    float_type: str
    keep_fp32: list[str] | None  #: nodes the written form keeps in fp32 (fp16 overflow)
    holdout: np.ndarray
    ref: np.ndarray  #: the fp32 graph's outputs on `holdout`
    first_out: np.ndarray  #: the written form's outputs on `holdout`, before any fallback
    classify: bool
    target: gate.GateTarget
    candidates: list[str]  #: the GEMM/Conv nodes the gate may return to float
    model: onnx.ModelProto  #: the graph to write so far
    score: gate.GateScore  #: its score
    kept: list[str] = field(default_factory=list)
    tried: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    sensitivity: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def probe(self) -> onnx.ModelProto:
        """The first graph with fp32 float parts: the form the sensitivity measurements run on."""
        return _finalize(self.first, self.fp32, self.qtype, "fp32", None, None)[0]

    def written(self, names: list[str]) -> onnx.ModelProto:
        """The written form of the first graph with `names` returned to float."""
        return _finalize(to_float(self.first, self.fp32, names), self.fp32, self.qtype, self.float_type, None, self.keep_fp32)[0]

    def offer(self, names: list[str], why: str) -> None:
        """Judge the written form with `names` back in float on every held-back image; keep it only when it measurably improves."""
        candidate = self.written(names)
        s = gate.score(self.ref, gate.outputs(candidate, self.holdout), self.classify)
        log.info("%s gate, %s: %s", self.qtype, why, s)
        if gate.improves(s, self.score, self.target):
            self.model, self.score, self.kept = candidate, s, names
        else:
            self.rejected = names
            log.info("%s gate: returning %s to float did not measurably improve the graph (%s against %s); not kept",
                     self.qtype, ", ".join(names), s, self.score)


def _hostile_check(g: _Gating, sensitivity_images: int, max_fallback: int) -> None:
    """The target is met: still return a node hostile to int8 (`gate.suspects`), when that measurably helps."""
    t0 = time.perf_counter()
    risky = gate.risky_images(g.ref, g.first_out, sensitivity_images, g.classify)
    suspects = gate.suspects(gate.local_noise(g.first, g.fp32, g.candidates, g.holdout[risky]))[:max_fallback]
    if suspects:
        probe = g.probe()
        g.sensitivity, _ = gate.sensitivity_pass(probe, g.fp32, suspects, gemm_flops(g.fp32), g.ref[risky], g.holdout[risky],
                                                 board=gate.Switchboard(probe, g.fp32, suspects))
        hostile = [n for n in suspects if g.sensitivity[n] >= gate.HOSTILE_GAIN_DB]
        g.tried = hostile
        if hostile:
            g.offer(hostile, f"{', '.join(hostile)} hostile to int8 (target met, but back to float)")
    g.timings["hostile_check"] = time.perf_counter() - t0


def _risky_judge(g: _Gating, board: gate.Switchboard, risky: np.ndarray):
    """A judge of candidate sets on the risky images, the others keeping the first outputs (they agreed already):
    top-1/top-5 and cosine over every image; SQNR with the others' noise scaled by the risky images' drop.
    Kept at their first outputs, the others' noise would hold the SQNR down and the search return more
    nodes than the target needs (seen on a small foreign model: 7 nodes where 1 met it); the risky images
    alone would hold it down too (they are picked for their error)."""
    ref, first_out = g.ref, g.first_out
    err_first = ((first_out.astype(np.float64) - ref) ** 2).reshape(len(ref), -1).sum(axis=1)
    others = np.ones(len(ref), bool)
    others[risky] = False
    signal = float((ref.astype(np.float64) ** 2).sum())

    def judge(names: list[str]) -> gate.GateScore:
        sub = board.outputs(names, g.holdout[risky])
        out = first_out.copy()
        out[risky] = sub
        new = float(((sub.astype(np.float64) - ref[risky]) ** 2).sum())
        old = float(err_first[risky].sum())
        noise = new + float(err_first[others].sum()) * (new / old if old > 0 else 1.0)
        sqnr = float(10 * np.log10(max(signal, 1e-300) / noise)) if noise > 0 else float("inf")
        return replace(gate.score(ref, out, g.classify), sqnr_db=sqnr)

    return judge


def _fallback(g: _Gating, sensitivity_images: int, sensitivity_nodes: int | None, max_fallback: int, progress: bool) -> None:
    """The target is missed: measure every candidate, return the best few to float (`gate.fallback_search`)."""
    t0 = time.perf_counter()
    candidates = g.candidates
    probe = g.probe()  # fp32 float parts: the search's form
    risky = gate.risky_images(g.ref, g.first_out, sensitivity_images, g.classify)
    if sensitivity_nodes is not None and len(candidates) > sensitivity_nodes:
        noise = gate.local_noise(g.first, g.fp32, candidates, g.holdout[risky])
        candidates = sorted(candidates, key=noise.get, reverse=True)[:sensitivity_nodes]
    board = gate.Switchboard(probe, g.fp32, candidates)
    g.sensitivity, order = gate.sensitivity_pass(probe, g.fp32, candidates, gemm_flops(g.fp32), g.ref[risky], g.holdout[risky],
                                                 progress=progress, board=board)
    g.timings["sensitivity"] = time.perf_counter() - t0
    t0 = time.perf_counter()

    def judge_all(names: list[str]) -> gate.GateScore:  # every held-back image, fp32 float parts
        return gate.score(g.ref, board.outputs(names, g.holdout), g.classify)

    # First on the risky images; when the written form then misses on all images (the estimate
    # from the risky few was too kind: measured on focalnet-tiny's CPU form), once more on all.
    # A fallback's written form is kept only when it measurably beats the best so far (`gate.improves`).
    g.timings["fallback"] = g.timings["final_check"] = 0.0
    for judge_with in (_risky_judge(g, board, risky), judge_all):
        names, _, lengths = gate.fallback_search(order, judge_with, g.target, max_fallback, progress)
        g.tried = list(dict.fromkeys([*g.tried, *order[: max(lengths, default=0)]]))
        g.timings["fallback"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        if names and names != g.kept:
            g.offer(names, f"written form with {len(names)} nodes back to float")
        g.timings["final_check"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        if g.target.met(g.score) or len(g.tried) >= min(max_fallback, len(order)):
            break
    if not g.target.met(g.score):
        log.warning("%s gate: the target cannot be met with at most %d nodes back to float: best measured form %s; %s",
                    g.qtype, max_fallback, g.score, "; ".join(g.target.shortfalls(g.score)))


def _check_choices(form: str, qtype: str, float_type: str) -> str:
    """The precision that `form` quantized to `qtype` is (the table's row), or a `ConfigError` naming what is not supported."""
    if float_type not in FLOAT_PARTS:
        raise ConfigError(f"int8 float type {float_type!r} not supported; expected one of {', '.join(FLOAT_PARTS)}")
    if qtype not in QTYPES:
        raise ConfigError(f"quantized type {qtype!r} not supported; expected one of {', '.join(QTYPES)}")
    if form not in QUANT_FORMS:
        raise ConfigError(f"int8 form {form!r} not supported; expected one of {', '.join(FORMS)}")
    try:
        return quantized_precision(form, qtype).name  # fp8 is a TensorRT form only: ONNX Runtime's CPU form is int8
    except InputError as e:
        raise ConfigError(str(e)) from None


def build_int8(  # noqa: PLR0913 - the public keywords (tests, benchmarks, the pipeline call them by name); the form is a row, the phases are functions
    fp32_path: str | Path,
    output: str | Path,
    ranges: dict[str, tuple[float, float]],
    holdout: np.ndarray,
    form: str = "tensorrt",
    min_agreement: float = INT8_MIN_AGREEMENT,
    max_fallback: int = 8,
    keep_stem_and_head: bool = True,
    *,
    float_type: str = "fp32",
    calibration_inputs: np.ndarray | None = None,
    min_sqnr_db: float = INT8_MIN_SQNR_DB,
    min_cosine: float = INT8_MIN_COSINE,
    qtype: str = "int8",
    sensitivity_images: int = SENSITIVITY_IMAGES,
    sensitivity_nodes: int | None = SENSITIVITY_NODES,
    progress: bool = False,
    reference: np.ndarray | None = None,
    held_out: bool = True,
    run_gate: bool = True,
    keep_float: list[str] | None = None,
    quantizer: Quantizer | None = None,
) -> Int8Result:
    """Quantize, run the accuracy gate on `holdout` inputs, write the graph atomically to `output`.

    `form` (a `QUANT_FORMS` row) and `qtype` (a `QTYPES` row) name the precision written (the
    precision table's row quantized so). `float_type="fp16"` makes the parts left in float (and the
    Q/DQ scales) float16, so a strongly typed TensorRT engine runs them in fp16 too; nodes whose
    activations measurably overflow float16 on `calibration_inputs` stay fp32. `qtype="fp8"` writes
    FLOAT8E4M3FN Q/DQ (TensorRT form only). `reference`: the fp32 graph's outputs on `holdout`, when
    known. `held_out` False: `holdout` also calibrated (said in the result's note and manifest entry).
    `quantizer` makes the first Q/DQ graph (default `qdq.quantize`; benchmarks measure other placements).

    The gate (`gate.py`): the graph as written is judged on every held-back image; when it
    misses the target, the `sensitivity_images` held-back images most at risk are picked, the
    candidates (the `sensitivity_nodes` with the most local quantization noise; None, the default:
    all) are measured one by one on them in a `gate.Switchboard` (fp32 float parts, one session),
    the nodes go back to float in batches by measured SQNR gain (`gate.rank`,
    `gate.fallback_search`, at most `max_fallback`), and the written form of the chosen graph is
    judged once more on every held-back image and kept only when it measurably beats the graph
    so far (`gate.improves`); when the target is then missed, the search runs once more judging
    every held-back image. When the target is met, a node hostile to int8 is still looked for
    (`gate.suspects`). `run_gate=False` (--no-gate): judged and reported, nothing returned to
    float, `gate_passed` None. `keep_float`: GEMM/Conv nodes the user keeps in float (--keep-float).
    Seconds per phase are in the result's `timings`; a warning on `holdout` (too few images, or
    none held back) in its `holdout_note` (`pipeline.int8_stage` logs it once per build).
    """
    precision = _check_choices(form, qtype, float_type)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    fp32 = load_onnx(fp32_path)
    meta = read_metadata(fp32)
    classify = meta.get("head", "logits") in ("logits", "probs")
    target = gate.GateTarget(min_sqnr_db, min_agreement, min_cosine)
    exclude = float_by_default(fp32) if keep_stem_and_head else []  # stem, head, downsampling Convs
    exclude += [n for n in keep_float or [] if n not in exclude]  # the user's --keep-float
    ref = gate.outputs(fp32, holdout) if reference is None else reference
    timings["reference"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    first = (quantizer or quantize)(Path(fp32_path), ranges, form, exclude)
    keep_fp32: list[str] | None = None
    if FLOAT_PARTS[float_type] and calibration_inputs is not None and len(calibration_inputs):
        keep_fp32 = fp16_overflow_nodes(fp32_path, first, calibration_inputs[:OVERFLOW_IMAGES])
    model, keep_fp32 = _finalize(first, fp32, qtype, float_type, None, keep_fp32)
    timings["quantize"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    first_out = gate.outputs(model, holdout)
    first_score = gate.score(ref, first_out, classify)
    timings["measure"] = time.perf_counter() - t0
    log.info("%s (%s form): %s", qtype, form, first_score)

    g = _Gating(fp32, first, qtype, float_type, keep_fp32, holdout, ref, first_out, classify, target,
                [n for n in quantizable_nodes(fp32, form) if n not in exclude], model, first_score, timings=timings)
    if run_gate and target.met(g.score) and max_fallback > 0:  # met: still look for a node hostile to int8
        _hostile_check(g, sensitivity_images, max_fallback)
    if run_gate and not target.met(g.score) and max_fallback > 0:
        _fallback(g, sensitivity_images, sensitivity_nodes, max_fallback, progress)
    model, score, kept = g.model, g.score, g.kept
    passed = target.met(score) if run_gate else None
    report = placement_report(model, gemm_flops(fp32))
    note = gate.holdout_note(len(holdout), held_out)  # logged by the caller, once for the forms sharing `holdout`
    t0 = time.perf_counter()
    set_metadata(model, {**{k: v for k, v in meta.items() if k != "precision"}, "precision": precision,
                         "int8_form": form, "int8_float": float_type, "int8_kept_float": kept, "qtype": qtype,
                         "int8_flop_share": round(report.int8_flop_share, 4)})
    output = Path(output)
    save_onnx(model, output)  # with external data (output.data) when large or forced
    timings["write"] = time.perf_counter() - t0
    timings["total"] = sum(timings.values())
    log.info("%s gate phases (s): %s", qtype, ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    agreement = score.top1 if score.top1 is not None else score.cosine
    return Int8Result(output, form, agreement, min_agreement, passed, kept, g.sensitivity, len(holdout), qtype, score,
                      first_score, target, report, target.shortfalls(score), g.tried, note,
                      held_out, {k: round(v, 2) for k, v in timings.items()}, list(keep_float or []), g.rejected)


def build_fp8(fp32_path: str | Path, output: str | Path, ranges: dict[str, tuple[float, float]], holdout: np.ndarray,
              **kwargs) -> Int8Result:
    """`build_int8` with FLOAT8E4M3FN Q/DQ (TensorRT form): for sm >= 8.9 GPUs and Jetson Thor."""
    row = PRECISIONS["fp8"]
    return build_int8(fp32_path, output, ranges, holdout, row.form, qtype=row.qtype, **kwargs)
