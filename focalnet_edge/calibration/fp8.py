"""FP8 (E4M3): the INT8 TensorRT-form placement with FLOAT8E4M3FN Q/DQ, for sm >= 8.9 and Thor.

The graph is the int8 Q/DQ graph re-typed: every QuantizeLinear/DequantizeLinear gets a
FLOAT8E4M3FN zero point of 0 (what onnx-tensorrt accepts for FP8), scales become
range / 448 (E4M3's largest finite value) instead of range / 127, and weights are stored as
E4M3 from the fp32 graph's own weights (per output channel, as for int8). QuantizeLinear
saturates (opset 19's default), as TensorRT's FP8 quantization does.

ONNX Runtime's CPU kernels run FLOAT8E4M3FN Q/DQ from opset 19, so the gate measures the
FP8 graph itself on the CPU (`tests/test_calibration.py` checks that against a numpy
simulation of E4M3 rounding with `ml_dtypes`).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from .fp16 import QDQ_FP16_OPSET

E4M3_MAX = 448.0
INT8_MAX = 127.0
FP8_OPSET = QDQ_FP16_OPSET  #: FLOAT8 QuantizeLinear/DequantizeLinear exist from opset 19


def _fp8_tensor(name: str, values: np.ndarray) -> onnx.TensorProto:
    import ml_dtypes

    arr = np.asarray(values, np.float32).astype(ml_dtypes.float8_e4m3fn)
    return onnx.helper.make_tensor(name, onnx.TensorProto.FLOAT8E4M3FN, arr.shape, arr.view(np.uint8).tobytes(), raw=True)


def int8_to_fp8(qmodel: onnx.ModelProto, fp32: onnx.ModelProto) -> onnx.ModelProto:  # noqa: C901 - one pass rewriting each Q/DQ node kind of the int8 graph; split when the quantization forms become rows (issue 28)
    """The FP8 (E4M3) version of int8 Q/DQ graph `qmodel` (fp32 float parts), `fp32` its source."""
    model = onnx.ModelProto()
    model.CopyFrom(qmodel)
    opset = next(o for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset.version < FP8_OPSET:
        model = onnx.version_converter.convert_version(model, FP8_OPSET)
    del model.graph.value_info[:]  # inferred int8 types of the Q outputs; ONNX Runtime infers them again
    inits = {i.name: i for i in model.graph.initializer}
    consts = set(inits) | {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    fp32_inits = {i.name: numpy_helper.to_array(i) for i in fp32.graph.initializer}
    fp32_nodes = {n.name: n for n in fp32.graph.node}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    replaced: dict[str, onnx.TensorProto] = {}
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        scale_name, zp_name = node.input[1], node.input[2] if len(node.input) > 2 else ""
        if node.op_type == "DequantizeLinear" and node.input[0] in consts:  # a weight: E4M3 from fp32
            consumer = readers[node.output[0]][0]
            k = list(consumer.input).index(node.output[0])
            w = fp32_inits[fp32_nodes[consumer.name].input[k]]
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % w.ndim
            other = tuple(d for d in range(w.ndim) if d != axis)
            amax = np.abs(w).max(axis=other) if other else np.abs(w)
            scale = np.where(amax > 0, amax / E4M3_MAX, 1.0).astype(np.float32)
            shape = [1] * w.ndim
            shape[axis] = -1
            replaced[node.input[0]] = _fp8_tensor(node.input[0], w / scale.reshape(shape))
            replaced[scale_name] = numpy_helper.from_array(scale.reshape(numpy_helper.to_array(inits[scale_name]).shape), scale_name)
        elif scale_name not in replaced:  # an activation: the same range over E4M3's
            s = numpy_helper.to_array(inits[scale_name]).astype(np.float32)
            replaced[scale_name] = numpy_helper.from_array((s * (INT8_MAX / E4M3_MAX)).astype(np.float32), scale_name)
        if zp_name and zp_name not in replaced:
            replaced[zp_name] = _fp8_tensor(zp_name, np.zeros(numpy_helper.to_array(inits[zp_name]).shape, np.float32))
    for i, init in enumerate(model.graph.initializer):
        if init.name in replaced:
            model.graph.initializer[i].CopyFrom(replaced[init.name])
    return model
