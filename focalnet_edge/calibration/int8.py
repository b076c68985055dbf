"""INT8: explicit Q/DQ graphs calibrated with `onnxruntime.quantization`, gated on accuracy.

Two forms from the same calibration ranges:

- ``tensorrt`` (`model.int8.onnx`): what TensorRT's ONNX parser builds strongly typed and fuses:
  int8 only, zero point 0 (symmetric), per-channel weights on the output-channel axis,
  per-tensor activations, float bias (no int32 bias), Q/DQ on the inputs of Conv, MatMul, Gemm
  and of residual Adds, none on LayerNormalization; stem and head left in float.
- ``cpu`` (`model.int8.cpu.onnx`): what ONNX Runtime's CPU kernels run fastest (measured, see
  benchmarks/README.md): uint8 activations (asymmetric), int8 per-channel weights, on MatMul and
  Gemm only, outputs left in float (ONNX Runtime fuses each into MatMulIntegerToFloat); the
  depth-wise convolutions stay fp32, where quantizing them measured slower.

The accuracy gate compares the INT8 graph with the fp32 graph on images held back from the
calibration source, and moves the most sensitive block (measured one block at a time) back to
float until top-1 agreement reaches the target or the limit of blocks is reached.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from ..errors import ConfigError, InputError
from ..onnx_io import ort_session, read_metadata, set_metadata
from ..io import atomic_path, atomic_write_text
from ..metrics import cosine, topk_agreement

log = logging.getLogger(__name__)

METHODS = ("max", "entropy", "percentile")
FORMS = ("tensorrt", "cpu")
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
_GROUP = re.compile(r"/(embeddings|encoder/stages\.\d+/layers\.\d+|encoder/stages\.\d+/downsample|layernorm|classifier|decoder)/")


# -- graph structure -----------------------------------------------------------------------------
def node_group(name: str) -> str | None:
    """The block a node belongs to: 'embeddings', 'encoder/stages.2/layers.1', 'classifier', ..."""
    m = _GROUP.search(name)
    return m.group(1) if m else None


def _initializers(model: onnx.ModelProto) -> set[str]:
    names = {i.name for i in model.graph.initializer}
    names |= {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    return names


def residual_adds(model: onnx.ModelProto) -> list[str]:
    """Adds of two activations where one is also read elsewhere: the skip connections."""
    consts = _initializers(model)
    consumers: dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "Add"
        and len(n.input) == 2
        and not any(i in consts for i in n.input)
        and any(consumers.get(i, 0) >= 2 for i in n.input)
    ]


def stem_and_head(model: onnx.ModelProto) -> list[str]:
    """The nodes kept in float by default: the patch-embedding convolution and the head."""
    return [
        n.name
        for n in model.graph.node
        if n.op_type in QUANTIZED_OPS and node_group(n.name) in ("classifier", "decoder")
        or (n.op_type == "Conv" and "patch_embeddings" in n.name and node_group(n.name) == "embeddings")
    ]


def quantizable_nodes(model: onnx.ModelProto, form: str) -> list[str]:
    ops = QUANTIZED_OPS if form == "tensorrt" else ("MatMul", "Gemm")
    nodes = [n.name for n in model.graph.node if n.op_type in ops]
    if form == "tensorrt":
        nodes += residual_adds(model)
    return nodes


# -- calibration ranges ----------------------------------------------------------------------------
class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over an array of inputs."""

    def __init__(self, name: str, inputs: np.ndarray, batch: int = 16) -> None:
        self.name, self.inputs, self.batch, self.i = name, inputs, batch, 0

    def get_next(self):
        if self.i >= len(self.inputs):
            return None
        chunk = self.inputs[self.i : self.i + self.batch]
        self.i += self.batch
        return {self.name: chunk}

    def __len__(self) -> int:
        return (len(self.inputs) + self.batch - 1) // self.batch

    def __iter__(self):
        while (item := self.get_next()) is not None:
            yield item


def compute_ranges(fp32_path: str | Path, inputs: np.ndarray, method: str = "max", percentile: float = 99.99) -> dict[str, tuple[float, float]]:
    """Ranges of every tensor read or written by Conv/MatMul/Gemm/Add, by `method`, on the CPU."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    if method not in METHODS:
        raise ConfigError(f"calibration method {method!r} not supported; expected one of {', '.join(METHODS)}")
    if not 0 < percentile <= 100:
        raise ConfigError(f"calibration percentile {percentile} not accepted: expected a value in (0, 100]")
    cal_method = {"max": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}[method]
    extra = {"percentile": percentile, "symmetric": True} if method == "percentile" else {}
    model = onnx.load(str(fp32_path))
    with tempfile.TemporaryDirectory(prefix="focalnet-edge-calib.") as tmp:
        calibrator = create_calibrator(
            Path(fp32_path), list(QUANTIZED_OPS) + ["Add"], augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=cal_method, extra_options=extra,
        )
        calibrator.collect_data(_Reader(model.graph.input[0].name, inputs))
        data = calibrator.compute_data()
    out = {}
    for name in data:
        lo, hi = data[name].range_value
        out[name] = (float(np.asarray(lo).min()), float(np.asarray(hi).max()))
    return out


def save_ranges(path: str | Path, ranges: dict[str, tuple[float, float]], method: str, percentile: float, images: int, model_sha256: str) -> None:
    doc = {"format": 1, "method": method, "percentile": percentile, "images": images, "model_sha256": model_sha256, "ranges": {k: list(v) for k, v in ranges.items()}}
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
                         if bad is not None else "holds no ranges") + "; recalibrate with --calib-data")
    if model_sha256 is not None and doc.get("model_sha256") != model_sha256:
        raise InputError(f"{path}: calibration cache was made for another model (sha256 {str(doc.get('model_sha256'))[:12]}...); "
                         "recalibrate with --calib-data")
    return ranges, doc


# -- quantization ----------------------------------------------------------------------------------
def quantize(
    fp32_path: str | Path,
    ranges: dict[str, tuple[float, float]],
    form: str = "tensorrt",
    exclude: list[str] | None = None,
) -> onnx.ModelProto:
    """The Q/DQ graph of `fp32_path` in `form`, with the nodes in `exclude` left in float."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

    if form not in FORMS:
        raise ConfigError(f"int8 form {form!r} not supported; expected one of {', '.join(FORMS)}")
    model = load_model_with_shape_infer(Path(fp32_path))
    tensors = TensorsData(CalibrationMethod.MinMax, {k: (np.float32(lo), np.float32(hi)) for k, (lo, hi) in ranges.items()})
    exclude = list(exclude or [])
    nodes = [n for n in quantizable_nodes(model, form) if n not in exclude]
    common = {"QuantizeBias": False, "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1}, "WeightSymmetric": True}
    if form == "tensorrt":
        act = QuantType.QInt8
        extra = {**common, "ActivationSymmetric": True, "OpTypesToExcludeOutputQuantization": ["Add", *QUANTIZED_OPS]}
        ops = [*QUANTIZED_OPS, "Add"]
    else:  # measured fastest on ONNX Runtime's CPU kernels: int8 matrix products, float elsewhere
        act = QuantType.QUInt8
        extra = {**common, "ActivationSymmetric": False, "OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm"]}
        ops = ["MatMul", "Gemm"]
    quantizer = _qdq_quantizer(QDQQuantizer, model=model, per_channel=True, reduce_range=False, weight_qType=QuantType.QInt8,
                               activation_qType=act, tensors_range=tensors, nodes_to_quantize=nodes,
                               nodes_to_exclude=exclude, op_types_to_quantize=ops, extra_options=extra)
    quantizer.quantize_model()
    return float_inputs_for_float_nodes(quantizer.model.model, set(nodes))


def _qdq_quantizer(cls, **kwargs):
    """QDQQuantizer across onnxruntime releases: before 1.18 it also took `mode` and `static`."""
    import inspect

    params = inspect.signature(cls.__init__).parameters
    if "mode" in params:
        from onnxruntime.quantization import QuantizationMode

        kwargs.update(mode=QuantizationMode.QLinearOps, static=True)
    return cls(**kwargs)


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
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    dead = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and not any(o in used for o in n.output)]
    for n in dead:
        model.graph.node.remove(n)
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    for n in [n for n in model.graph.node if n.op_type == "QuantizeLinear" and not any(o in used for o in n.output)]:
        model.graph.node.remove(n)
    return model


def qdq_form_problems(model: onnx.ModelProto) -> list[str]:
    """What keeps a Q/DQ graph from TensorRT's form (empty: none): int8, zero point 0, no int32 bias."""
    inits = {i.name: i for i in model.graph.initializer}
    problems = []
    for n in model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zp = inits.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if zp is not None:
            arr = onnx.numpy_helper.to_array(zp)
            if arr.dtype != np.int8:
                problems.append(f"{n.name}: {arr.dtype} zero point (TensorRT takes int8)")
            elif np.any(arr != 0):
                problems.append(f"{n.name}: non-zero zero point")
        x = inits.get(n.input[0])
        if n.op_type == "DequantizeLinear" and x is not None and x.data_type == onnx.TensorProto.INT32:
            problems.append(f"{n.name}: int32 (quantized) bias")
    return problems


# -- accuracy gate -----------------------------------------------------------------------------------
def _outputs(sess, inputs: np.ndarray, batch: int = 32) -> np.ndarray:
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: inputs[i : i + batch]})[0] for i in range(0, len(inputs), batch)]).astype(np.float32)


def agreement(ref: np.ndarray, out: np.ndarray, classify: bool) -> float:
    """Top-1 agreement for classifiers, else the mean cosine similarity of the first output."""
    return topk_agreement(ref, out, 1) if classify else cosine(ref, out)


def _error(ref: np.ndarray, out: np.ndarray) -> float:
    """1 - cosine similarity: a smooth sensitivity measure, finer than top-1 changes."""
    return 1.0 - cosine(ref, out)


@dataclass
class Int8Result:
    path: Path
    form: str
    agreement: float  #: on the held-back images, against the fp32 graph
    min_agreement: float
    gate_passed: bool
    kept_float: list[str] = field(default_factory=list)  #: blocks moved back to float by the gate
    excluded_nodes: list[str] = field(default_factory=list)
    sensitivity: dict[str, float] = field(default_factory=dict)
    holdout_images: int = 0


def build_int8(
    fp32_path: str | Path,
    output: str | Path,
    ranges: dict[str, tuple[float, float]],
    holdout: np.ndarray,
    form: str = "tensorrt",
    min_agreement: float = 0.99,
    max_fallback: int = 8,
    keep_stem_and_head: bool = True,
    progress: Callable[[str], None] | None = None,
    float_type: str = "fp32",
    calibration_inputs: np.ndarray | None = None,
) -> Int8Result:
    """Quantize, then run the accuracy gate on `holdout` inputs; write the result atomically.

    `float_type="fp16"` makes the parts left in float (and the Q/DQ scales) float16, so a
    strongly typed TensorRT engine runs them in fp16 too; nodes whose activations measurably
    overflow float16 on `calibration_inputs` stay fp32. The gate judges the final graph.
    """
    from .fp16 import to_float16

    if float_type not in ("fp32", "fp16"):
        raise ConfigError(f"int8 float type {float_type!r} not supported; expected fp32 or fp16")
    fp32 = onnx.load(str(fp32_path))
    classify = read_metadata(fp32).get("head", "logits") in ("logits", "probs")
    exclude = stem_and_head(fp32) if keep_stem_and_head else []
    ref = _outputs(ort_session(str(fp32_path)), holdout)
    keep_fp32: list[str] | None = None

    def measure(excluded: list[str]) -> tuple[onnx.ModelProto, np.ndarray]:
        nonlocal keep_fp32
        q = quantize(fp32_path, ranges, form, excluded)
        if float_type == "fp16":
            q, kept = to_float16(q, calibration_inputs if keep_fp32 is None else None, True, keep_fp32)
            keep_fp32 = kept  # measured once, on the first graph
        return q, _outputs(ort_session(q), holdout)

    model, out = measure(exclude)
    score = agreement(ref, out, classify)
    kept: list[str] = []
    sensitivity: dict[str, float] = {}
    if score < min_agreement and max_fallback > 0:
        groups: dict[str, list[str]] = {}
        for name in quantizable_nodes(fp32, form):
            if name not in exclude and node_group(name):
                groups.setdefault(node_group(name), []).append(name)
        everything = [n for names in groups.values() for n in names]
        for g, names in groups.items():  # one block quantized at a time
            if progress:
                progress(f"sensitivity of {g}")
            only = [n for n in everything if n not in names] + exclude
            sensitivity[g] = _error(ref, measure(only)[1])
        for g in sorted(sensitivity, key=sensitivity.get, reverse=True)[:max_fallback]:
            kept.append(g)
            exclude = exclude + groups[g]
            model, out = measure(exclude)
            score = agreement(ref, out, classify)
            log.info("int8 gate: %s back to float -> agreement %.4f", g, score)
            if score >= min_agreement:
                break
    passed = score >= min_agreement
    meta = read_metadata(fp32)
    set_metadata(model, {**{k: v for k, v in meta.items() if k != "precision"}, "precision": "int8" if form == "tensorrt" else "int8-cpu",
                         "int8_form": form, "int8_float": float_type, "int8_kept_float": kept})
    output = Path(output)
    with atomic_path(output) as tmp:
        onnx.save(model, str(tmp))
    return Int8Result(output, form, score, min_agreement, passed, kept, exclude, sensitivity, len(holdout))
