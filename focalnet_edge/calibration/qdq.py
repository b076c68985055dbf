"""Q/DQ graphs: the quantization forms made with onnxruntime's QDQQuantizer, and the graph edits the gate makes.

A form is a row of `folder/artifacts.QUANT_FORMS` (activation and weight types, symmetry, per-channel
weights, the op types quantized): `quantize` reads the row, so a new form is a new row. The forms
and why they are what they are: `calibration/int8.py`'s docstring.
"""

from __future__ import annotations

import fnmatch

import inspect
from pathlib import Path

import numpy as np
import onnx

from ..errors import ConfigError
from ..folder.artifacts import QUANT_FORMS
from .placement import QDQ_OPS

FORMS = tuple(QUANT_FORMS)


def quantizable_nodes(model: onnx.ModelProto, form: str) -> list[str]:
    """The GEMM/Conv nodes a form quantizes (before stem/head and gate exclusions)."""
    row = QUANT_FORMS[form]
    return [n.name for n in model.graph.node
            if n.op_type in row.ops and not any(fnmatch.fnmatchcase(n.name, p) for p in row.float_nodes)]


def quantize(
    fp32_path: str | Path,
    ranges: dict[str, tuple[float, float]],
    form: str = "tensorrt",
    exclude: list[str] | None = None,
) -> onnx.ModelProto:
    """The int8 Q/DQ graph of `fp32_path` in `form` (a `QUANT_FORMS` row), with the nodes in `exclude` left in float.

    No Q/DQ on the residual Adds, by measurement (`calibration/int8.py`); benchmarks/residual_qdq.py
    adds them to this graph to measure the other placements against.
    """
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

    if form not in FORMS:
        raise ConfigError(f"int8 form {form!r} not supported; expected one of {', '.join(FORMS)}")
    model = load_model_with_shape_infer(Path(fp32_path))
    tensors = TensorsData(CalibrationMethod.MinMax, {k: (np.float32(lo), np.float32(hi)) for k, (lo, hi) in ranges.items()})
    row = QUANT_FORMS[form]
    exclude = list(exclude or [])
    nodes = [n for n in quantizable_nodes(model, form) if n not in exclude]
    types = {"INT8": QuantType.QInt8, "UINT8": QuantType.QUInt8}  # ONNX element type -> onnxruntime's QuantType
    # inputs of the form's GEMM/Conv only: their outputs stay float; int32 bias never (TensorRT takes float bias)
    extra = {"QuantizeBias": False, "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1}, "WeightSymmetric": True,
             "ActivationSymmetric": row.activation_symmetric, "OpTypesToExcludeOutputQuantization": list(row.ops)}
    quantizer = _qdq_quantizer(QDQQuantizer, model=model, per_channel=row.per_channel, reduce_range=False,
                               weight_qType=types[row.weight], activation_qType=types[row.activation], tensors_range=tensors,
                               nodes_to_quantize=nodes, nodes_to_exclude=exclude, op_types_to_quantize=list(row.ops),
                               extra_options=extra)
    quantizer.quantize_model()
    return float_inputs_for_float_nodes(quantizer.model.model, set(nodes))


def _qdq_quantizer(cls, **kwargs):
    """QDQQuantizer across onnxruntime releases: before 1.18 it also took `mode` and `static`."""
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
        if node.op_type in QDQ_OPS or node.name in quantized:
            continue
        for k, name in enumerate(node.input):
            dq = producer.get(name)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[k] = q.input[0]
    return prune_qdq(model)


def qdq_form_problems(model: onnx.ModelProto) -> list[str]:
    """What keeps a Q/DQ graph from TensorRT's form (empty: none): int8/fp8, zero point 0, no int32 bias."""
    inits = {i.name: i for i in model.graph.initializer}
    problems = []
    for n in model.graph.node:
        if n.op_type not in QDQ_OPS:
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


# -- returning nodes to float (the gate's edits) ---------------------------------------------------
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


def float_sources(model: onnx.ModelProto, fp32: onnx.ModelProto, candidates: list[str]):
    """(node, input index, the float tensor it reads instead) for every dequantized input of the
    `candidates` of Q/DQ graph `model`: activations the tensor before their Q, weights the fp32
    graph's initializer (appended to `model` where missing; the node keeps its name through
    quantization)."""
    names = set(candidates)
    fp32_nodes = {n.name: n for n in fp32.graph.node if n.name in names}
    fp32_inits = {i.name: i for i in fp32.graph.initializer}
    have = {i.name for i in model.graph.initializer}
    for node, k, _dq, q in list(dequantized_inputs(model, names)):
        if q is not None:
            yield node, k, q.input[0]
            continue
        source = fp32_nodes[node.name].input[k] if node.name in fp32_nodes else ""
        if source not in fp32_inits:
            continue
        if source not in have:
            model.graph.initializer.append(fp32_inits[source])
            have.add(source)
        yield node, k, source
