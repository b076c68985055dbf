"""FP16: the fp32 graph converted to float16, overflow-prone nodes kept in fp32 by measurement.

Conversion is onnxruntime's float16 tool. Before converting, the fp32 graph runs on
calibration inputs with every intermediate tensor exposed; a node is kept in fp32 when its
output comes near the float16 limit (65504), and a LayerNormalization when its input is large
enough for the squares of its variance to overflow in float16.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx.version_converter

from ..onnx_io import ort_session, read_metadata, set_metadata
from ..io import atomic_path

log = logging.getLogger(__name__)

FP16_MAX = 65504.0
OUTPUT_LIMIT = FP16_MAX / 4  #: keep a node in fp32 when |output| exceeds this
LAYERNORM_INPUT_LIMIT = 2**8 / 2  #: x**2 of 128 is a quarter of the float16 range


@dataclass
class Fp16Result:
    path: Path
    kept_fp32: list[str] = field(default_factory=list)
    keep_io_types: bool = True


def activation_ranges(model: onnx.ModelProto, inputs: np.ndarray, input_name: str, batch: int = 16) -> dict[str, float]:
    """max |value| of every float tensor a node outputs, over `inputs` (fp32 graph, ONNX Runtime CPU)."""
    probe = onnx.shape_inference.infer_shapes(model)
    float_tensors = {v.name for v in probe.graph.value_info if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    known = {o.name for o in probe.graph.output}
    for node in probe.graph.node:
        for name in node.output:
            if name in float_tensors and name not in known:
                probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    sess = ort_session(probe, optimize=False)  # keep every tensor
    names = [o.name for o in sess.get_outputs()]
    peak: dict[str, float] = {}
    for i in range(0, len(inputs), batch):
        for name, value in zip(names, sess.run(None, {input_name: inputs[i : i + batch]})):
            if value.dtype.kind == "f" and value.size:
                peak[name] = max(peak.get(name, 0.0), float(np.abs(value).max()))
    return peak


def nodes_to_keep_fp32(model: onnx.ModelProto, peak: dict[str, float]) -> list[str]:
    keep = []
    for node in model.graph.node:
        out_peak = max((peak.get(o, 0.0) for o in node.output), default=0.0)
        if out_peak > OUTPUT_LIMIT:
            keep.append(node.name)
        elif node.op_type == "LayerNormalization" and peak.get(node.input[0], 0.0) > LAYERNORM_INPUT_LIMIT:
            keep.append(node.name)
    return keep


def remove_cast_round_trips(model: onnx.ModelProto) -> int:
    """Drop the fp32 -> fp16 -> fp32 Cast pairs the converter puts between nodes kept in fp32.

    Such a pair rounds through float16 exactly the values the nodes were kept in fp32 for (an
    output over 65504 becomes inf). Returns the number of pairs removed.
    """
    producer = {o: n for n in model.graph.node for o in n.output}
    to = lambda n: next(a.i for a in n.attribute if a.name == "to")  # noqa: E731
    rewired: dict[str, str] = {}
    for n in model.graph.node:
        if n.op_type != "Cast" or to(n) != onnx.TensorProto.FLOAT:
            continue
        first = producer.get(n.input[0])
        if first is not None and first.op_type == "Cast" and to(first) == onnx.TensorProto.FLOAT16:
            rewired[n.output[0]] = first.input[0]
    for n in model.graph.node:
        for k, name in enumerate(n.input):
            if name in rewired:
                n.input[k] = rewired[name]
    for _ in range(2):  # the Cast pairs themselves, once unused
        used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
        for n in [n for n in model.graph.node if n.op_type == "Cast" and not any(o in used for o in n.output)]:
            model.graph.node.remove(n)
    return len(rewired)


QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
QDQ_FP16_OPSET = 19  #: QuantizeLinear takes float16 inputs from opset 19


def to_float16(
    model: onnx.ModelProto,
    calibration_inputs: np.ndarray | None = None,
    keep_io_types: bool = True,
    keep_fp32: list[str] | None = None,
) -> tuple[onnx.ModelProto, list[str]]:
    """The float16 version of `model` and the nodes kept in fp32 (measured on `calibration_inputs`).

    A Q/DQ graph keeps its int8 tensors: only its float parts (and the Q/DQ scales) become
    float16, after raising the opset to 19 where QuantizeLinear takes float16.
    """
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    keep = list(keep_fp32 or [])
    if calibration_inputs is not None and len(calibration_inputs):
        peak = activation_ranges(model, calibration_inputs[:64], model.graph.input[0].name)
        keep += [n for n in nodes_to_keep_fp32(model, peak) if n not in keep]
    if keep:
        log.info("fp16: keeping %d nodes in fp32: %s", len(keep), ", ".join(keep[:6]) + (" ..." if len(keep) > 6 else ""))
    if any(n.op_type in QDQ_OPS for n in model.graph.node):
        opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        if opset < QDQ_FP16_OPSET:
            model = onnx.version_converter.convert_version(model, QDQ_FP16_OPSET)
    block = [op for op in DEFAULT_OP_BLOCK_LIST if op not in QDQ_OPS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp16 = convert_float_to_float16(model, keep_io_types=keep_io_types, node_block_list=keep or None, op_block_list=block)
    remove_cast_round_trips(fp16)
    return fp16, keep


def convert_fp16(
    fp32_path: str | Path,
    output: str | Path,
    calibration_inputs: np.ndarray | None = None,
    keep_io_types: bool = True,
    keep_fp32: list[str] | None = None,
) -> Fp16Result:
    """Write the float16 version of `fp32_path` to `output` (atomically)."""
    fp16, keep = to_float16(onnx.load(str(fp32_path)), calibration_inputs, keep_io_types, keep_fp32)
    meta = read_metadata(fp16)
    if meta.get("input", {}).get("dtype") == "float32" and not keep_io_types:
        meta["input"]["dtype"] = "float16"
    set_metadata(fp16, {"precision": "fp16", "input": meta.get("input", {}), "fp16_kept_fp32": keep})
    output = Path(output)
    with atomic_path(output) as tmp:
        onnx.save(fp16, str(tmp))
    return Fp16Result(output, keep, keep_io_types)
