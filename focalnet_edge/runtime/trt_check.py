"""Will TensorRT's ONNX parser take this file? A check that runs without TensorRT.

Every node is checked against the operator and type support that onnx-tensorrt documents
(`docs/operators.md` of the 10.x releases: opsets 9 to 20; INT8 only as a quantized type behind
QuantizeLinear/DequantizeLinear with a zero point of 0; UINT8 only as a network input or output,
through a Cast). The table below covers the operators of vision models; a node outside it is
reported as unknown rather than passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx


F = ("FLOAT", "FLOAT16", "BFLOAT16")
I = ("INT32", "INT64")  # noqa: E741
B = ("BOOL",)
OPSET_RANGE = (9, 20)

#: op -> (supported element types of its inputs, restriction checked here or None)
SUPPORT: dict[str, tuple[tuple[str, ...], str | None]] = {
    "Abs": (F + I, None), "Add": (F + I, None), "And": (B, None), "ArgMax": (F + I, None), "ArgMin": (F + I, None),
    "AveragePool": (F, None), "BatchNormalization": (F, None), "Cast": (F + I + ("UINT8", "INT8") + B, None),
    "Ceil": (F, None), "Clip": (F + I, None), "Concat": (F + I + B, None), "Constant": (F + I + B + ("INT8",), None),
    "ConstantOfShape": (F + I + B, None), "Conv": (F, "weights"), "ConvTranspose": (F, "weights"),
    "DepthToSpace": (F + I, None), "DequantizeLinear": (("INT8", "FLOAT8E4M3FN", "INT4"), "zero_point"),
    "Div": (F + I, None), "Dropout": (F, None), "Einsum": (F, None), "Elu": (F, None), "Equal": (F + I + B, None),
    "Erf": (F, None), "Exp": (F, None), "Expand": (F + I + B, None), "Flatten": (F + I + B, None), "Floor": (F, None),
    "Gather": (F + I + B, None), "GatherElements": (F + I + B, None), "Gelu": (F + I, None), "Gemm": (F, None),
    "GlobalAveragePool": (F, None), "GlobalMaxPool": (F, None), "Greater": (F + I, None), "HardSigmoid": (F, None),
    "HardSwish": (F, None), "Identity": (F + I + B, None), "If": (F + I + B, None),
    "InstanceNormalization": (F, None), "LayerNormalization": (F, "layernorm_outputs"), "LeakyRelu": (F, None),
    "Less": (F + I, None), "Log": (F, None), "LogSoftmax": (F, None), "Loop": (F + I + B, None), "MatMul": (F, None),
    "Max": (F + I, None), "MaxPool": (F, None), "Mean": (F + I, None), "Min": (F + I, None), "Mish": (F, None),
    "Mul": (F + I, None), "Neg": (F + I, None), "Not": (B, None), "Or": (B, None), "Pad": (F + I + B, None),
    "Pow": (F, None), "PRelu": (F, None), "QuantizeLinear": (F, "zero_point"), "Range": (F + I, None),
    "Reciprocal": (F, None), "ReduceL2": (F + I, "axes"), "ReduceMax": (F + I, "axes"), "ReduceMean": (F + I, "axes"),
    "ReduceMin": (F + I, "axes"), "ReduceSum": (F + I, "axes"), "Relu": (F + I, None), "Reshape": (F + I + B, None),
    "Resize": (F, None), "Shape": (F + I + B, None), "Sigmoid": (F, None), "Sign": (F + I, None), "Sin": (F, None),
    "Slice": (F + I + B, "axes"), "Softmax": (F, None), "Softplus": (F, None), "Split": (F + I + B, None),
    "Sqrt": (F, None), "Squeeze": (F + I + B, "axes"), "Sub": (F + I, None), "Sum": (F + I, None), "Tanh": (F, None),
    "Tile": (F + I + B, None), "TopK": (F + I, None), "Transpose": (F + I + B, None), "Unsqueeze": (F + I + B, "axes"),
    "Where": (F + I + B, None),
}
UNSUPPORTED = {"NonZero", "QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "Mod",
               "Unique", "StringNormalizer", "SequenceAt", "SequenceConstruct", "SplitToSequence", "RoiAlign"}


@dataclass(frozen=True)
class Finding:
    severity: str  #: "error": the parser refuses it; "warning": it may build, but check
    node: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.node}: {self.message}"


def _type_name(elem_type: int) -> str:
    return onnx.TensorProto.DataType.Name(elem_type)


def check_model(model: onnx.ModelProto) -> list[Finding]:
    """Findings for every node TensorRT's ONNX parser (10.x) would refuse or treat specially."""
    findings: list[Finding] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        sev = "warning" if opset and opset > OPSET_RANGE[1] else "error"
        findings.append(Finding(sev, "model", f"opset {opset} outside the range {OPSET_RANGE[0]}-{OPSET_RANGE[1]} TensorRT 10.0 documents"))
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a graph shape inference can't handle: check names only
        inferred = model
    types = {v.name: _type_name(v.type.tensor_type.elem_type) for v in
             list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    inits = {i.name: i for i in model.graph.initializer}
    types.update({n: _type_name(i.data_type) for n, i in inits.items()})
    constants = set(inits) | {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    for inp in model.graph.input:
        if types.get(inp.name) == "UINT8" and any(c.op_type != "Cast" for c in consumers.get(inp.name, [])):
            findings.append(Finding("error", inp.name, "UINT8 input must feed only Cast nodes (TensorRT takes UINT8 only at the network's edge)"))
    for node in model.graph.node:
        name = node.name or node.op_type
        if node.domain not in ("", "ai.onnx"):
            findings.append(Finding("error", name, f"custom domain {node.domain!r} ({node.op_type}) needs a TensorRT plugin"))
            continue
        if node.op_type in UNSUPPORTED:
            findings.append(Finding("error", name, f"{node.op_type} is not supported by TensorRT's ONNX parser"))
            continue
        if node.op_type not in SUPPORT:
            findings.append(Finding("warning", name, f"{node.op_type} is not in focalnet-edge's copy of the support matrix; check onnx-tensorrt's operators.md"))
            continue
        allowed, rule = SUPPORT[node.op_type]
        data_inputs = node.input[:1] if node.op_type in ("QuantizeLinear", "DequantizeLinear", "Cast") else [i for i in node.input if i and i not in constants]
        for i in data_inputs:
            t = types.get(i)
            if t and t not in allowed and not (t == "UINT8" and node.op_type == "Cast"):
                findings.append(Finding("error", name, f"input {i} is {t}; TensorRT's {node.op_type} takes {', '.join(allowed)}"))
        if rule == "zero_point" and len(node.input) > 2 and node.input[2]:
            zp = inits.get(node.input[2])
            if zp is None:
                findings.append(Finding("error", name, "zero point must be a constant 0"))
            else:
                arr = onnx.numpy_helper.to_array(zp)
                if arr.dtype.name not in ("int8", "float8_e4m3fn", "int4"):
                    findings.append(Finding("error", name, f"{arr.dtype.name} zero point: TensorRT quantizes to int8 (or fp8/int4) only"))
                elif arr.astype("float32").any():
                    findings.append(Finding("error", name, "zero point must be 0 (symmetric quantization)"))
        elif rule == "weights" and len(node.input) > 1 and node.input[1] not in constants:
            producer = next((p for p in model.graph.node if node.input[1] in p.output), None)
            if producer is None or producer.op_type != "DequantizeLinear":
                findings.append(Finding("warning", name, "weights are not an initializer (or a DequantizeLinear of one)"))
        elif rule == "axes" and len(node.input) > 1 and node.input[1] and node.input[1] not in constants:
            findings.append(Finding("error", name, "axes must be an initializer"))
        elif rule == "layernorm_outputs" and len([o for o in node.output if o]) > 1 and any(consumers.get(o) for o in node.output[1:]):
            findings.append(Finding("error", name, "only the first output of LayerNormalization is supported"))
    return findings


def check_onnx(path: str | Path) -> list[Finding]:
    from ..onnx_io import load_onnx

    return check_model(load_onnx(path))
