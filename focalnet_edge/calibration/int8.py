"""INT8 (and FP8): explicit Q/DQ graphs calibrated with `onnxruntime.quantization`, gated on accuracy.

Forms from the same calibration ranges:

- ``tensorrt`` (`model.int8.onnx`): placed by TensorRT's explicit-quantization rules (see
  `placement`): int8 only, zero point 0 (symmetric), per-channel weights on the output-channel
  axis, per-tensor activations, float bias (no int32 bias); Q/DQ on the inputs of every Conv
  (depth-wise focal convolutions and the 1x1 `h` included), MatMul and Gemm, on no GEMM output,
  none on LayerNormalization, none on the residual Adds (`RESIDUAL_QDQ`); stem and head left in
  float. The same graph with FLOAT8E4M3FN Q/DQ is `model.fp8.onnx` (`fp8.py`).
- ``cpu`` (`model.int8.cpu.onnx`): what ONNX Runtime's CPU kernels run fastest (measured, see
  benchmarks/README.md): uint8 activations (asymmetric), int8 per-channel weights, on MatMul and
  Gemm only, outputs left in float (ONNX Runtime fuses each into MatMulIntegerToFloat); the
  depth-wise convolutions stay fp32, where quantizing them measured slower.

`build_int8` quantizes, then runs the accuracy gate (`gate.py`) on images held back from the
calibration source: logit SQNR and cosine against the fp32 graph, top-1 agreement on the images
whose fp32 prediction is decided; where the target is missed, single GEMM/Conv nodes go back to
float, the largest measured SQNR gain first, and a fallback is kept only when it measurably helps.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx

from ..folder.artifacts import INT8_MIN_AGREEMENT, INT8_MIN_COSINE, INT8_MIN_SQNR_DB
from ..errors import ConfigError, InputError
from ..folder.io import atomic_write_text
from ..folder.onnx_io import input_batches, read_metadata, save_onnx, set_metadata, static_batch
from . import gate
from .placement import (
    WEIGHTED_OPS,
    PlacementReport,
    float_by_default,
    gemm_flops,
    node_group,
    placement_report,
    residual_adds,
    skip_input,
    stem_and_head,
)

log = logging.getLogger(__name__)

METHODS = ("max", "entropy", "percentile", "distribution")
FORMS = ("tensorrt", "cpu")
QTYPES = ("int8", "fp8")
QUANTIZED_OPS = WEIGHTED_OPS
RESIDUAL_FORMS = ("none", "skip", "branch", "both")  #: "both": the placement before issue 11, kept to measure against
#: Q/DQ on the residual Adds of the TensorRT form: none, by measurement. focalnet-tiny with
#: realistic statistics (benchmarks/int8_vs_modelopt.py, fp32 float parts, 100 held-back images):
#: logit SQNR 14.6 dB with Q/DQ on both inputs (the placement before issue 11), 14.6 dB on the
#: skip input alone (TensorRT's/ModelOpt's rule for fusing the Add into a Conv epilogue), 29.9 dB
#: with none; the trained demo: 30.2 dB skip, 30.9 dB none. Quantizing the carried hidden state
#: per tensor is what costs: its range grows with depth and its outlier channels set the scale.
#: The sums feed LayerNorm in float, so TensorRT runs no int8 add in any of these forms, and
#: "none" adds no quantize kernel of its own on a tensor that LayerNorm also reads.
RESIDUAL_QDQ = "none"
#: Range method, by measurement (`benchmarks/int8_calibration.py`, focalnet-tiny with realistic
#: statistics, 220 images, 100 held back): max 29.9 dB, percentile 99.999 31.6 dB, 99.99 31.5 dB
#: with the subject's outlier LayerNorm channels, max 35.9 dB without them; top-1 agreement
#: unchanged (0.96-0.98) and percentile costs ~1.7x the CPU of max. Kept: max; percentile 99.999
#: is the option for models with outlier channels.
DEFAULT_METHOD = "max"
RECALIBRATE = "delete it, or name another --calib-cache, to calibrate again"
SCALE_LIMITS = (1e-4, 1e4)  #: smoothing factors a cache may hold (computed ones stay within 1e-2..1e2 before normalising)
SENSITIVITY_IMAGES = 16  #: held-back images the per-node sensitivity pass runs on
OVERFLOW_IMAGES = 16  #: calibration images the fp16 float parts' overflow is measured on
#: nodes measured end to end by it (None: every candidate; a number: those with the most local
#: quantization noise, a proxy that can miss a hostile node, see `gate`)
SENSITIVITY_NODES = None

__all__ = [
    "FORMS", "METHODS", "QTYPES", "RESIDUAL_QDQ", "Int8Result", "PlacementReport", "build_fp8", "build_int8",
    "compute_ranges", "load_ranges", "node_group", "qdq_form_problems", "quantize", "residual_adds",
    "save_ranges", "stem_and_head",
]


def quantizable_nodes(model: onnx.ModelProto, form: str) -> list[str]:
    """The GEMM/Conv nodes a form quantizes (before stem/head and gate exclusions)."""
    ops = QUANTIZED_OPS if form == "tensorrt" else ("MatMul", "Gemm")
    return [n.name for n in model.graph.node if n.op_type in ops]


# -- calibration ranges ----------------------------------------------------------------------------
class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over an array of inputs."""

    def __init__(self, name: str, inputs: np.ndarray, batch: int = 16, fixed: int | None = None) -> None:
        self.name = name
        self.chunks = [chunk for chunk, _ in input_batches(inputs, batch, fixed)]  # a static batch: padded by repeats

    def get_next(self):
        return {self.name: self.chunks.pop(0)} if self.chunks else None

    def __len__(self) -> int:
        return len(self.chunks)

    def __iter__(self):
        while (item := self.get_next()) is not None:
            yield item


def compute_ranges(fp32_path: str | Path, inputs: np.ndarray, method: str = DEFAULT_METHOD, percentile: float = 99.99,
                   progress: bool = False, batch: int = 16, residual: bool = RESIDUAL_QDQ != "none") -> dict[str, tuple[float, float]]:
    """Ranges of the activations read by Conv/MatMul/Gemm (and, with `residual`, by the residual
    Adds) by `method`, computed by onnxruntime's calibrators on the CPU.

    `max`: the largest magnitude seen; `percentile`: that percentile of the magnitudes (a
    2048-bin histogram); `entropy`: the threshold minimising the KL divergence between the
    float histogram (2048 bins) and its 128-level quantized copy (TensorRT's entropy
    calibration); `distribution`: onnxruntime's histogram edges (made for FP8 scales; as int8
    ranges they are the histogram's full span).

    Two things keep this cheap on a 28 M-parameter model: only the tensors a Q/DQ will read are
    calibrated (onnxruntime's calibrators take every input and output of the chosen op types:
    3x the tensors, and the histogram methods spend their time in numpy on each), and the data
    go to the calibrator one batch at a time (onnxruntime keeps every tensor of every image it
    is given in one call until the call ends: 8 GB for 156 focalnet-tiny images).
    """
    import contextlib
    import io

    from tqdm import tqdm

    if method not in METHODS:
        raise ConfigError(f"calibration method {method!r} not supported; expected one of {', '.join(METHODS)}")
    if not 0 < percentile <= 100:
        raise ConfigError(f"calibration percentile {percentile} not accepted: expected a value in (0, 100]")
    model = onnx.load(str(fp32_path))
    name, fixed = model.graph.input[0].name, static_batch(model)
    consts = {i.name for i in model.graph.initializer} | {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    wanted = {i for n in model.graph.node if n.op_type in QUANTIZED_OPS for i in n.input if i and i not in consts}
    if residual:
        adds = set(residual_adds(model))
        wanted |= {i for n in model.graph.node if n.name in adds for i in n.input}
    del model
    with tempfile.TemporaryDirectory(prefix="focalnet-edge-calib.") as tmp:
        calibrator = _calibrator(method, Path(fp32_path), wanted, Path(tmp) / "augmented.onnx", percentile)
        starts = range(0, len(inputs), batch)
        for i in tqdm(starts, desc=f"int8 calibration ({method})", unit="batch", disable=None if progress else True):
            with contextlib.redirect_stdout(io.StringIO()):  # onnxruntime prints a line per call
                calibrator.collect_data(_Reader(name, inputs[i : i + batch], batch, fixed))
        with contextlib.redirect_stdout(io.StringIO()):
            data = calibrator.compute_data()
    out = {}
    for key in data:
        lo, hi = data[key].range_value
        out[key] = (float(np.asarray(lo).min()), float(np.asarray(hi).max()))
    return out


def _calibrator(method: str, path: Path, wanted: set[str], augmented: Path, percentile: float):
    """onnxruntime's calibrator for `method` (as `create_calibrator` makes it), limited to the tensors `wanted`."""
    from onnxruntime.quantization import calibrate as c

    base, kwargs = {
        "max": (c.MinMaxCalibrater, {}),
        "entropy": (c.EntropyCalibrater, {"symmetric": True, "num_bins": 2048, "num_quantized_bins": 128}),
        "percentile": (c.PercentileCalibrater, {"symmetric": True, "num_bins": 2048, "percentile": percentile}),
        "distribution": (c.DistributionCalibrater, {"num_bins": 2048, "scenario": "same"}),
    }[method]

    class Only(base):
        def select_tensors_to_calibrate(self, model):
            tensors, infos = super().select_tensors_to_calibrate(model)
            return tensors & wanted, infos

    calibrator = Only(path, list(QUANTIZED_OPS) + ["Add"], str(augmented), **kwargs)
    calibrator.augment_graph()
    calibrator.create_inference_session()
    return calibrator


def save_ranges(path: str | Path, ranges: dict[str, tuple[float, float]], method: str, percentile: float, images: int, model_sha256: str,
                smoothing: dict[str, np.ndarray] | None = None, alpha: float | None = None) -> None:
    """Write a calibration cache: the ranges and, when the graph was smoothed first, the smoothing
    factors per LayerNorm output (the ranges are those of the smoothed graph)."""
    doc = {"format": 1, "method": method, "percentile": percentile, "images": images, "model_sha256": model_sha256,
           "ranges": {k: list(v) for k, v in ranges.items()}}
    if alpha:  # smoothed with this alpha (no factors: the graph had no LayerNorm to fold)
        doc["smoothing"] = {"alpha": alpha, "scales": {k: [float(x) for x in v] for k, v in (smoothing or {}).items()}}
    atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")


def load_ranges(path: str | Path, model_sha256: str | None = None) -> tuple[dict[str, tuple[float, float]], dict]:
    """The ranges of a calibration cache; `InputError` when empty, non-finite, lo > hi, or (given
    `model_sha256`, the fp32 model's) made for another model."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        ranges = {str(k): (float(v[0]), float(v[1])) for k, v in doc["ranges"].items()}
    except FileNotFoundError:
        raise InputError(f"{path}: no such calibration cache") from None
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a focalnet-edge calibration cache ({e.__class__.__name__})") from None
    bad = next((k for k, (lo, hi) in ranges.items() if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi)), None)
    if not ranges or bad is not None:
        raise InputError(f"{path}: calibration cache " + (f"range of {bad!r} is {list(ranges[bad])}, expected finite lo <= hi"
                         if bad is not None else "holds no ranges") + f"; {RECALIBRATE}")
    if model_sha256 is not None and doc.get("model_sha256") != model_sha256:
        raise InputError(f"{path}: calibration cache was made for another model (sha256 {str(doc.get('model_sha256'))[:12]}...); "
                         f"{RECALIBRATE}")
    return ranges, doc


def cached_smoothing(path: str | Path, doc: dict) -> tuple[dict[str, np.ndarray], float]:
    """The smoothing factors and alpha of a calibration cache (({}, 0.0) for caches written without smoothing)."""
    block = doc.get("smoothing")
    if block is None:
        return {}, 0.0
    try:
        items = block.get("scales", {}).items()
        if not all(isinstance(v, list) and v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
                   for _, v in items):
            raise TypeError
        scales = {str(k): np.asarray(v, np.float32) for k, v in items}
    except (TypeError, ValueError, AttributeError, OverflowError):
        raise InputError(f"{path}: calibration cache has unreadable smoothing factors (lists of numbers expected); {RECALIBRATE}") from None
    bad = next((k for k, v in scales.items() if not np.all(np.isfinite(v)) or np.any(v < SCALE_LIMITS[0]) or np.any(v > SCALE_LIMITS[1])), None)
    if bad is not None:
        raise InputError(f"{path}: calibration cache smoothing factors of {bad!r} are not numbers in [{SCALE_LIMITS[0]:g}, "
                         f"{SCALE_LIMITS[1]:g}]; {RECALIBRATE}")
    alpha = block.get("alpha")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0 < alpha <= 1:
        raise InputError(f"{path}: calibration cache smoothing alpha is {alpha!r}, expected a number in (0, 1]; {RECALIBRATE}")
    return scales, float(alpha)


def missing_ranges(model: onnx.ModelProto, ranges: dict[str, tuple[float, float]], exclude: list[str] | None = None) -> list[str]:
    """The activations a Q/DQ of `model` would read (inputs of its GEMM/Conv nodes) that `ranges` lacks."""
    skip = set(exclude or [])
    consts = {i.name for i in model.graph.initializer} | {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    for n in model.graph.node:  # exporters pass shared weights through Identity
        if n.op_type == "Identity" and n.input[0] in consts:
            consts.add(n.output[0])
    wanted = {i for n in model.graph.node if n.op_type in QUANTIZED_OPS and n.name not in skip for i in n.input if i and i not in consts}
    return sorted(wanted - set(ranges))


# -- quantization ----------------------------------------------------------------------------------
def quantize(
    fp32_path: str | Path,
    ranges: dict[str, tuple[float, float]],
    form: str = "tensorrt",
    exclude: list[str] | None = None,
    residual: str = RESIDUAL_QDQ,
) -> onnx.ModelProto:
    """The int8 Q/DQ graph of `fp32_path` in `form`, with the nodes in `exclude` left in float.

    `residual` (TensorRT form): "none" leaves the residual Adds without Q/DQ; "skip" puts one
    Q/DQ on each Add's skip input (TensorRT's and ModelOpt's form for fusing the Add into the
    GEMM epilogue); "branch" on the other input (the block's output); "both" on both inputs (the
    earlier placement). All but "none" are kept for measuring against (benchmarks/).
    """
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

    if form not in FORMS:
        raise ConfigError(f"int8 form {form!r} not supported; expected one of {', '.join(FORMS)}")
    if residual not in RESIDUAL_FORMS:
        raise ConfigError(f"residual Q/DQ {residual!r} not supported; expected one of {', '.join(RESIDUAL_FORMS)}")
    model = load_model_with_shape_infer(Path(fp32_path))
    tensors = TensorsData(CalibrationMethod.MinMax, {k: (np.float32(lo), np.float32(hi)) for k, (lo, hi) in ranges.items()})
    exclude = list(exclude or [])
    nodes = [n for n in quantizable_nodes(model, form) if n not in exclude]
    common = {"QuantizeBias": False, "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1}, "WeightSymmetric": True}
    if form == "tensorrt":  # inputs of GEMM/Conv only: their outputs stay float
        act = QuantType.QInt8
        extra = {**common, "ActivationSymmetric": True, "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS)}
        ops = list(QUANTIZED_OPS)
    else:  # measured fastest on ONNX Runtime's CPU kernels: int8 matrix products, float elsewhere
        act = QuantType.QUInt8
        extra = {**common, "ActivationSymmetric": False, "OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm"]}
        ops = ["MatMul", "Gemm"]
    quantizer = _qdq_quantizer(QDQQuantizer, model=model, per_channel=True, reduce_range=False, weight_qType=QuantType.QInt8,
                               activation_qType=act, tensors_range=tensors, nodes_to_quantize=nodes,
                               nodes_to_exclude=exclude, op_types_to_quantize=ops, extra_options=extra)
    quantizer.quantize_model()
    q = float_inputs_for_float_nodes(quantizer.model.model, set(nodes))
    if form == "tensorrt" and residual != "none":
        fp32 = onnx.load(str(fp32_path))
        adds = [n for n in fp32.graph.node if n.name in set(residual_adds(fp32)) - set(exclude)]
        pick = {"skip": lambda a: [skip_input(fp32, a)], "both": lambda a: list(a.input),
                "branch": lambda a: [i for i in a.input if i != skip_input(fp32, a)]}[residual]
        edges = [(a.name, i) for a in adds for i in pick(a)]
        _qdq_on_inputs(q, edges, ranges)
    return q


def _qdq_quantizer(cls, **kwargs):
    """QDQQuantizer across onnxruntime releases: before 1.18 it also took `mode` and `static`."""
    import inspect

    params = inspect.signature(cls.__init__).parameters
    if "mode" in params:
        from onnxruntime.quantization import QuantizationMode

        kwargs.update(mode=QuantizationMode.QLinearOps, static=True)
    return cls(**kwargs)


def _qdq_on_inputs(model: onnx.ModelProto, edges: list[tuple[str, str]], ranges: dict[str, tuple[float, float]]) -> None:
    """Insert a symmetric int8 Q/DQ pair on input `tensor` of node `node` for each (node, tensor)."""
    from onnx import helper, numpy_helper

    nodes = {n.name: n for n in model.graph.node}
    missing = sorted({t for _, t in edges if t not in ranges})
    if missing:
        raise ConfigError(f"the calibration ranges lack residual Add input {missing[0]!r} ({len(missing)} in all): "
                          "compute them with compute_ranges(..., residual=True)")
    for node_name, tensor in edges:
        if node_name not in nodes:
            continue
        amax = max(abs(ranges[tensor][0]), abs(ranges[tensor][1])) or 1.0
        base = f"{tensor}_{node_name}_qdq".replace("/", "_")
        model.graph.initializer.extend([numpy_helper.from_array(np.array(amax / 127.0, np.float32), base + "_scale"),
                                        numpy_helper.from_array(np.array(0, np.int8), base + "_zero_point")])
        q = helper.make_node("QuantizeLinear", [tensor, base + "_scale", base + "_zero_point"], [base + "_q"], name=base + "_Q")
        dq = helper.make_node("DequantizeLinear", [base + "_q", base + "_scale", base + "_zero_point"], [base + "_dq"], name=base + "_DQ")
        target = nodes[node_name]
        target.input[list(target.input).index(tensor)] = base + "_dq"
        index = list(model.graph.node).index(target)
        model.graph.node.insert(index, dq)
        model.graph.node.insert(index, q)


def float_inputs_for_float_nodes(model: onnx.ModelProto, quantized: set[str]) -> onnx.ModelProto:
    """Let nodes that are not quantized read the original float tensor, not its Q/DQ copy.

    onnxruntime's quantizer routes *every* consumer of a quantized activation through the DQ;
    a LayerNormalization or a bias Add sharing the tensor with a MatMul would then see the
    quantization noise (and TensorRT a Q/DQ on LayerNormalization).
    """
    producer = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") or node.name in quantized:
            continue
        for k, name in enumerate(node.input):
            dq = producer.get(name)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[k] = q.input[0]
    return gate.prune_qdq(model)


def qdq_form_problems(model: onnx.ModelProto) -> list[str]:
    """What keeps a Q/DQ graph from TensorRT's form (empty: none): int8/fp8, zero point 0, no int32 bias."""
    inits = {i.name: i for i in model.graph.initializer}
    problems = []
    for n in model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zp = inits.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if zp is not None:
            arr = onnx.numpy_helper.to_array(zp)
            if arr.dtype.name not in ("int8", "float8_e4m3fn"):
                problems.append(f"{n.name}: {arr.dtype} zero point (TensorRT takes int8 or float8e4m3fn)")
            elif np.any(arr.astype(np.float32) != 0):
                problems.append(f"{n.name}: non-zero zero point")
        x = inits.get(n.input[0])
        if n.op_type == "DequantizeLinear" and x is not None and x.data_type == onnx.TensorProto.INT32:
            problems.append(f"{n.name}: int32 (quantized) bias")
    return problems


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
    """The written form of a Q/DQ graph (fp32 float parts, int8): FP8 re-typed, float parts fp16."""
    from .fp16 import to_float16
    from .fp8 import int8_to_fp8

    if qtype == "fp8":
        model = int8_to_fp8(model, fp32)
    if float_type == "fp16":
        model, keep_fp32 = to_float16(model, calibration_inputs if keep_fp32 is None else None, True, keep_fp32)
    return model, keep_fp32


def fp16_overflow_nodes(fp32_path: str | Path, qmodel: onnx.ModelProto, inputs: np.ndarray) -> list[str]:
    """Nodes of Q/DQ graph `qmodel` that overflow float16, from the activations of the fp32 graph (a file).

    The Q/DQ graph keeps the fp32 graph's node and tensor names, and quantization does not move
    the peaks that matter (65504, LayerNorm inputs), so the fp32 graph is measured with the fp16
    stage's probe (each tensor reduced to max |t| inside the graph), unlike the Q/DQ graph with
    every tensor exposed, which on focalnet-tiny took 200 s of a 700 s gate on 64 images (2 cores, loaded).
    """
    from .fp16 import activation_ranges, nodes_to_keep_fp32

    return nodes_to_keep_fp32(qmodel, activation_ranges(fp32_path, inputs))


def build_int8(  # noqa: C901, PLR0913 - the two quantization forms as an if/else and the calibration flags as parameters; issue 28 makes them form rows and options
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
    residual: str = RESIDUAL_QDQ,
    qtype: str = "int8",
    sensitivity_images: int = SENSITIVITY_IMAGES,
    sensitivity_nodes: int | None = SENSITIVITY_NODES,
    progress: bool = False,
    reference: np.ndarray | None = None,
    held_out: bool = True,
    run_gate: bool = True,
    keep_float: list[str] | None = None,
) -> Int8Result:
    """Quantize, run the accuracy gate on `holdout` inputs, write the graph atomically to `output`.

    `float_type="fp16"` makes the parts left in float (and the Q/DQ scales) float16, so a
    strongly typed TensorRT engine runs them in fp16 too; nodes whose activations measurably
    overflow float16 on `calibration_inputs` stay fp32. `qtype="fp8"` writes FLOAT8E4M3FN Q/DQ
    (TensorRT form only). `reference`: the fp32 graph's outputs on `holdout`, when known.
    `held_out` False: `holdout` also calibrated (said in the result's note and manifest entry).

    The gate (`gate.py`): the graph as written is judged on every held-back image; when it
    misses the target, the `sensitivity_images` held-back images most at risk are picked, the
    candidates (the `sensitivity_nodes` with the most local quantization noise; None, the default:
    all) are measured one by one on them in a `gate.Switchboard` (fp32 float parts, one session),
    the nodes go back to float in batches by measured SQNR gain (`gate.rank`,
    `gate.fallback_search`, at most `max_fallback`), and the written form of the chosen graph is
    judged once more on every held-back image and kept only when it measurably beats the graph
    so far (`gate.improves`); when the target is then missed, the search runs once more judging
    every held-back image. `run_gate=False` (--no-gate): judged and reported, nothing returned to
    float, `gate_passed` None. `keep_float`: GEMM/Conv nodes the user keeps in float (--keep-float).
    Seconds per phase are in the result's `timings`.
    """
    if float_type not in ("fp32", "fp16"):
        raise ConfigError(f"int8 float type {float_type!r} not supported; expected fp32 or fp16")
    if qtype not in QTYPES:
        raise ConfigError(f"quantized type {qtype!r} not supported; expected one of {', '.join(QTYPES)}")
    if qtype == "fp8" and form != "tensorrt":
        raise ConfigError("fp8 is a TensorRT form only; ONNX Runtime's CPU form is int8")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    fp32 = onnx.load(str(fp32_path))
    meta = read_metadata(fp32)
    classify = meta.get("head", "logits") in ("logits", "probs")
    target = gate.GateTarget(min_sqnr_db, min_agreement, min_cosine)
    exclude = float_by_default(fp32) if keep_stem_and_head else []  # stem, head, downsampling Convs
    exclude += [n for n in keep_float or [] if n not in exclude]  # the user's --keep-float
    ref = gate.outputs(fp32, holdout) if reference is None else reference
    timings["reference"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    first = quantize(fp32_path, ranges, form, exclude, residual)
    keep_fp32: list[str] | None = None
    if float_type == "fp16" and calibration_inputs is not None and len(calibration_inputs):
        keep_fp32 = fp16_overflow_nodes(fp32_path, first, calibration_inputs[:OVERFLOW_IMAGES])
    model, keep_fp32 = _finalize(first, fp32, qtype, float_type, None, keep_fp32)
    timings["quantize"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    first_out = gate.outputs(model, holdout)
    first_score = score = gate.score(ref, first_out, classify)
    timings["measure"] = time.perf_counter() - t0
    log.info("%s (%s form): %s", qtype, form, score)

    sensitivity: dict[str, float] = {}
    kept: list[str] = []
    tried: list[str] = []
    rejected: list[str] = []
    if run_gate and target.met(score) and max_fallback > 0:  # met: still look for a node hostile to int8
        t0 = time.perf_counter()
        candidates = [n for n in quantizable_nodes(fp32, form) if n not in exclude]
        risky = gate.risky_images(ref, first_out, sensitivity_images, classify)
        suspects = gate.suspects(gate.local_noise(first, fp32, candidates, holdout[risky]))[:max_fallback]
        if suspects:
            probe, _ = _finalize(first, fp32, qtype, "fp32", None, None)
            sensitivity, _ = gate.sensitivity_pass(probe, fp32, suspects, gemm_flops(fp32), ref[risky], holdout[risky],
                                                   board=gate.Switchboard(probe, fp32, suspects))
            hostile = [n for n in suspects if sensitivity[n] >= gate.HOSTILE_GAIN_DB]
            tried = hostile
            if hostile:
                candidate, _ = _finalize(gate.to_float(first, fp32, hostile), fp32, qtype, float_type, None, keep_fp32)
                s = gate.score(ref, gate.outputs(candidate, holdout), classify)
                log.info("%s gate: %s hostile to int8 (target met, but %s back to float): %s", qtype, ", ".join(hostile),
                         "they gain" if len(hostile) > 1 else "it gains", s)
                if gate.improves(s, score, target):
                    model, score, kept = candidate, s, hostile
                else:
                    rejected = hostile
        timings["hostile_check"] = time.perf_counter() - t0
    if run_gate and not target.met(score) and max_fallback > 0:
        t0 = time.perf_counter()
        flops = gemm_flops(fp32)
        candidates = [n for n in quantizable_nodes(fp32, form) if n not in exclude]
        probe, _ = _finalize(first, fp32, qtype, "fp32", None, None)  # fp32 float parts: the search's form
        risky = gate.risky_images(ref, first_out, sensitivity_images, classify)
        if sensitivity_nodes is not None and len(candidates) > sensitivity_nodes:
            noise = gate.local_noise(first, fp32, candidates, holdout[risky])
            candidates = sorted(candidates, key=noise.get, reverse=True)[:sensitivity_nodes]
        board = gate.Switchboard(probe, fp32, candidates)
        sensitivity, order = gate.sensitivity_pass(probe, fp32, candidates, flops, ref[risky], holdout[risky],
                                                   progress=progress, board=board)
        timings["sensitivity"] = time.perf_counter() - t0
        t0 = time.perf_counter()

        err_first = ((first_out.astype(np.float64) - ref) ** 2).reshape(len(ref), -1).sum(axis=1)
        others = np.ones(len(ref), bool)
        others[risky] = False
        signal = float((ref.astype(np.float64) ** 2).sum())

        def judge(names: list[str]) -> gate.GateScore:
            """The risky images re-run, the others keeping the first outputs (they agreed already):
            top-1/top-5 and cosine over every image; SQNR with the others' noise scaled by the
            risky images' drop. Kept at their first outputs, the others' noise would hold the SQNR
            down and the search return more nodes than the target needs (seen on a small foreign
            model: 7 nodes where 1 met it); the risky images alone would hold it down too (they are
            picked for their error)."""
            sub = board.outputs(names, holdout[risky])
            out = first_out.copy()
            out[risky] = sub
            new = float(((sub.astype(np.float64) - ref[risky]) ** 2).sum())
            old = float(err_first[risky].sum())
            noise = new + float(err_first[others].sum()) * (new / old if old > 0 else 1.0)
            sqnr = float(10 * np.log10(max(signal, 1e-300) / noise)) if noise > 0 else float("inf")
            return replace(gate.score(ref, out, classify), sqnr_db=sqnr)

        def judge_all(names: list[str]) -> gate.GateScore:  # every held-back image, fp32 float parts
            return gate.score(ref, board.outputs(names, holdout), classify)

        # First on the risky images; when the written form then misses on all images (the estimate
        # from the risky few was too kind: measured on focalnet-tiny's CPU form), once more on all.
        # A fallback's written form is kept only when it measurably beats the best so far (`gate.improves`).
        timings["fallback"] = timings["final_check"] = 0.0
        for judge_with in (judge, judge_all):
            names, _, lengths = gate.fallback_search(order, judge_with, target, max_fallback, progress)
            tried = list(dict.fromkeys([*tried, *order[: max(lengths, default=0)]]))
            timings["fallback"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            if names and names != kept:
                candidate, _ = _finalize(gate.to_float(first, fp32, names), fp32, qtype, float_type, None, keep_fp32)
                s = gate.score(ref, gate.outputs(candidate, holdout), classify)
                log.info("%s gate, written form with %d nodes back to float: %s", qtype, len(names), s)
                if gate.improves(s, score, target):
                    model, score, kept = candidate, s, names
                else:
                    rejected = names
                    log.info("%s gate: returning %s to float did not measurably improve the graph (%s against %s); not kept",
                             qtype, ", ".join(names), s, score)
            timings["final_check"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            if target.met(score) or len(tried) >= min(max_fallback, len(order)):
                break
        if not target.met(score):
            log.warning("%s gate: the target cannot be met with at most %d nodes back to float: best measured form %s; %s",
                        qtype, max_fallback, score, "; ".join(target.shortfalls(score)))
    passed = target.met(score) if run_gate else None
    report = placement_report(model, gemm_flops(fp32))
    note = gate.holdout_note(len(holdout), held_out)
    if note:
        log.warning("%s gate: %s", qtype, note)
    t0 = time.perf_counter()
    precision = "fp8" if qtype == "fp8" else ("int8" if form == "tensorrt" else "int8-cpu")
    set_metadata(model, {**{k: v for k, v in meta.items() if k != "precision"}, "precision": precision,
                         "int8_form": form, "int8_float": float_type, "int8_kept_float": kept, "qtype": qtype,
                         "int8_flop_share": round(report.int8_flop_share, 4)})
    output = Path(output)
    save_onnx(model, output)  # with external data (output.data) when large or forced
    timings["write"] = time.perf_counter() - t0
    timings["total"] = sum(timings.values())
    log.info("%s gate phases (s): %s", qtype, ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    agreement = score.top1 if score.top1 is not None else score.cosine
    return Int8Result(output, form, agreement, min_agreement, passed, kept, sensitivity, len(holdout), qtype, score,
                      first_score, target, report, target.shortfalls(score), tried, note,
                      held_out, {k: round(v, 2) for k, v in timings.items()}, list(keep_float or []), rejected)


def build_fp8(fp32_path: str | Path, output: str | Path, ranges: dict[str, tuple[float, float]], holdout: np.ndarray,
              **kwargs) -> Int8Result:
    """`build_int8` with FLOAT8E4M3FN Q/DQ (TensorRT form): for sm >= 8.9 GPUs and Jetson Thor."""
    return build_int8(fp32_path, output, ranges, holdout, "tensorrt", qtype="fp8", **kwargs)
