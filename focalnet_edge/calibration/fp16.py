"""FP16: the fp32 graph converted to float16, overflow-prone nodes kept in fp32 by measurement.

Conversion is onnxruntime's float16 tool. Before converting, the fp32 graph runs on
calibration inputs with the maximum |value| of every intermediate tensor computed in the graph
(`absmax_probe`); a node is kept in fp32 when its
output comes near the float16 limit (65504), and a LayerNormalization when its input is large
enough for the squares of its variance to overflow in float16.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx.version_converter

from ..folder.io import temporary_path
from ..folder.onnx_io import input_batches, load_onnx, ort_session, read_metadata, save_onnx, set_metadata, static_batch
from .placement import QDQ_OPS

log = logging.getLogger(__name__)

FP16_MAX = 65504.0
OUTPUT_LIMIT = FP16_MAX / 4  #: keep a node in fp32 when |output| exceeds this
LAYERNORM_INPUT_LIMIT = 2**8 / 2  #: x**2 of 128 is a quarter of the float16 range


@dataclass
class Fp16Result:
    path: Path
    kept_fp32: list[str] = field(default_factory=list)
    keep_io_types: bool = True


def float_tensors(model: onnx.ModelProto) -> list[str]:
    """Names of the float32 tensors the nodes of `model` output (shape inference on the graph), in node order."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.output]}
    return [o for n in model.graph.node for o in n.output if o and types.get(o) == onnx.TensorProto.FLOAT]


def absmax_probe(model: onnx.ModelProto, tensors: list[str],
                 channels: dict[str, int] | None = None) -> tuple[onnx.ModelProto, dict[str, str]]:
    """A copy of the graph of `model` whose outputs are max |t| of each tensor in `tensors`: a
    scalar, or one value per channel of the last axis for the tensors in `channels` (name -> channels).

    Each tensor is reduced right after the node that makes it (Abs -> ReduceMax), so ONNX
    Runtime frees it as in a plain inference: a run holds one inference's activations, not
    every intermediate tensor of the batch (which took gigabytes for focalnet-tiny at 16
    images). Call on a graph whose weights are external (cheap to copy). Returns the probe and
    the output name of each tensor's maximum.
    """
    from onnx import TensorProto, helper

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    channels = channels or {}
    opset = next((o.version for o in probe.opset_import if o.domain in ("", "ai.onnx")), 17)
    wanted = set(tensors)
    names: dict[str, str] = {}
    nodes = []
    for node in probe.graph.node:
        nodes.append(node)
        for t in node.output:
            if t in wanted and t not in names:
                names[t] = out = f"{t}__absmax"
                nodes.append(helper.make_node("Abs", [t], [f"{t}__abs"], name=f"{t}__abs"))
                if t not in channels:
                    nodes.append(helper.make_node("ReduceMax", [f"{t}__abs"], [out], name=out, keepdims=0))
                    continue
                shape = helper.make_tensor(f"{t}__shape", TensorProto.INT64, [2], [-1, channels[t]])
                nodes += [helper.make_node("Constant", [], [f"{t}__shape"], value=shape),
                          helper.make_node("Reshape", [f"{t}__abs", f"{t}__shape"], [f"{t}__2d"], name=f"{t}__2d")]
                if opset >= 18:  # axes became an input
                    axes = helper.make_tensor(f"{t}__axes", TensorProto.INT64, [1], [0])
                    nodes += [helper.make_node("Constant", [], [f"{t}__axes"], value=axes),
                              helper.make_node("ReduceMax", [f"{t}__2d", f"{t}__axes"], [out], name=out, keepdims=0)]
                else:
                    nodes.append(helper.make_node("ReduceMax", [f"{t}__2d"], [out], name=out, axes=[0], keepdims=0))
    del probe.graph.node[:]
    probe.graph.node.extend(nodes)
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_tensor_value_info(out, TensorProto.FLOAT, [channels[t]] if t in channels else [])
                              for t, out in names.items())
    return probe, names


def probe_maxima(model: str | Path, inputs: np.ndarray, tensors: list[str] | None = None, channels: dict[str, int] | None = None,
                 input_name: str | None = None, batch: int = 16, optimize: bool = False) -> dict[str, float | np.ndarray]:
    """max |value| of `tensors` (None: every float tensor a node outputs) over `inputs`, by
    `absmax_probe` (per channel for the tensors in `channels`: float64 arrays; else floats).

    `optimize`: ONNX Runtime's graph optimizations (off by default: every tensor of the graph as
    written; on is ~1.4x faster where only tensors the probe reads matter).

    `model` is the path of an ONNX file; the probe is written beside it, referring to the same
    external data, so no copy of the weights is made in Python.
    """
    import gc

    model = Path(model)
    graph = load_onnx(model, external_data=False)
    input_name = input_name or graph.graph.input[0].name
    probe, names = absmax_probe(graph, float_tensors(graph) if tensors is None else tensors, channels)
    del graph
    peak: dict[str, float | np.ndarray] = {}
    with temporary_path(model, "absmax-probe") as tmp:  # beside `model`: its external data resolves
        onnx.save(probe, str(tmp))
        del probe
        sess = ort_session(tmp, optimize=optimize, priority_order=True)  # each tensor freed once reduced
        back = {v: k for k, v in names.items()}
        outs = [back[o.name] for o in sess.get_outputs()]
        for chunk, _ in input_batches(inputs, batch, static_batch(sess)):  # maxima: padding rows repeat real ones
            for name, value in zip(outs, sess.run(None, {input_name: chunk})):
                value = value.astype(np.float64) if value.ndim else float(value)
                peak[name] = value if name not in peak else np.maximum(peak[name], value)
        del sess
        gc.collect()
    return peak


def activation_ranges(model: str | Path, inputs: np.ndarray, input_name: str | None = None, batch: int = 16) -> dict[str, float]:
    """max |value| of every float tensor a node outputs, over `inputs` (fp32 graph, ONNX Runtime CPU;
    `model` is the path of an ONNX file: see `probe_maxima`)."""
    return {k: float(v) for k, v in probe_maxima(model, inputs, input_name=input_name, batch=batch).items()}


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


QDQ_FP16_OPSET = 19  #: QuantizeLinear takes float16 inputs from opset 19


def to_float16(
    model: onnx.ModelProto,
    calibration_inputs: np.ndarray | None = None,
    keep_io_types: bool = True,
    keep_fp32: list[str] | None = None,
) -> tuple[onnx.ModelProto, list[str]]:
    """The float16 version of `model` and the nodes kept in fp32 (measured on `calibration_inputs`).

    A Q/DQ graph keeps its int8 tensors: only its float parts (and the Q/DQ scales) become
    float16, after raising the opset to 19 where QuantizeLinear takes float16. `model` is left
    as it was (a copy is converted; `convert_fp16` converts a file without that copy).
    """
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return _to_float16(copy, calibration_inputs, keep_io_types, keep_fp32, None)


def _to_float16(
    model: onnx.ModelProto,
    calibration_inputs: np.ndarray | None,
    keep_io_types: bool,
    keep_fp32: list[str] | None,
    work_parent: Path | None,
) -> tuple[onnx.ModelProto, list[str]]:
    """`to_float16` of a model this function may consume (its tensors are converted in place).

    Memory: the weights go to a work file first (external data, moved not copied), so the
    overflow probe and shape inference handle the graph alone, and ONNX Runtime's probe
    session is closed before they come back: one copy of the weights at a time besides the
    float16 ones being made.
    """
    from onnx.external_data_helper import load_external_data_for_model
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    keep = list(keep_fp32 or [])
    with tempfile.TemporaryDirectory(prefix=".fp16-work-", suffix=".partial", dir=work_parent) as work:
        path = Path(work) / "fp32.onnx"
        save_onnx(model, path, external=True)  # `model` now refers to the file: a graph without weights
        if calibration_inputs is not None and len(calibration_inputs):
            peak = activation_ranges(path, calibration_inputs[:64], model.graph.input[0].name)
            keep += [n for n in nodes_to_keep_fp32(model, peak) if n not in keep]
        model = onnx.shape_inference.infer_shapes(model)  # types for the converter, on the graph alone
        load_external_data_for_model(model, work)
    if keep:
        log.info("fp16: keeping %d nodes in fp32: %s", len(keep), ", ".join(keep[:6]) + (" ..." if len(keep) > 6 else ""))
    if any(n.op_type in QDQ_OPS for n in model.graph.node):
        opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        if opset < QDQ_FP16_OPSET:
            model = onnx.version_converter.convert_version(model, QDQ_FP16_OPSET)
    block = [op for op in DEFAULT_OP_BLOCK_LIST if op not in QDQ_OPS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp16 = convert_float_to_float16(model, keep_io_types=keep_io_types, node_block_list=keep or None, op_block_list=block,
                                        disable_shape_infer=True)
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
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fp16, keep = _to_float16(load_onnx(fp32_path), calibration_inputs, keep_io_types, keep_fp32, output.parent)
    meta = read_metadata(fp16)
    if meta.get("input", {}).get("dtype") == "float32" and not keep_io_types:
        meta["input"]["dtype"] = "float16"
    set_metadata(fp16, {"precision": "fp16", "input": meta.get("input", {}), "fp16_kept_fp32": keep})
    save_onnx(fp16, output)  # with external data when large (or forced)
    return Fp16Result(output, keep, keep_io_types)
