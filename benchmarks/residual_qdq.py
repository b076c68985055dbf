"""Q/DQ on the residual Adds: the placements the library does not make, kept to measure its choice against.

The library's TensorRT form puts no Q/DQ on the residual Adds (measured: `focalnet_edge/calibration/int8.py`).
This module adds them to the library's graph, as the placements measured against it:

- ``none``: the library's graph as it is;
- ``skip``: one Q/DQ on each Add's skip input (TensorRT's and ModelOpt's form for fusing the Add into
  the GEMM epilogue);
- ``branch``: on the other input (the block's output);
- ``both``: on both inputs (the placement before issue 11).

Used by benchmarks/int8_vs_modelopt.py and by tests/test_quantization.py (a gate whose error sits
where no node can be returned to float).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from focalnet_edge.calibration import compute_ranges, quantize
from focalnet_edge.calibration.placement import residual_adds, skip_input
from focalnet_edge.errors import ConfigError

RESIDUAL_FORMS = ("none", "skip", "branch", "both")


def residual_inputs(model: onnx.ModelProto) -> list[str]:
    """The inputs of the residual Adds of `model` (the tensors `compute_ranges` must calibrate for these forms)."""
    adds = set(residual_adds(model))
    return sorted({i for n in model.graph.node if n.name in adds for i in n.input})


def residual_ranges(fp32_path: str | Path, inputs: np.ndarray, method: str = "max", **kwargs) -> dict[str, tuple[float, float]]:
    """`compute_ranges` with the residual Adds' inputs calibrated too."""
    return compute_ranges(fp32_path, inputs, method, extra=residual_inputs(onnx.load(str(fp32_path))), **kwargs)


def _edges(fp32: onnx.ModelProto, residual: str, exclude: list[str]) -> list[tuple[str, str]]:
    adds = [n for n in fp32.graph.node if n.name in set(residual_adds(fp32)) - set(exclude)]
    pick = {"none": lambda a: [], "skip": lambda a: [skip_input(fp32, a)], "both": lambda a: list(a.input),
            "branch": lambda a: [i for i in a.input if i != skip_input(fp32, a)]}[residual]
    return [(a.name, i) for a in adds for i in pick(a)]


def qdq_on_inputs(model: onnx.ModelProto, edges: list[tuple[str, str]], ranges: dict[str, tuple[float, float]]) -> None:
    """Insert a symmetric int8 Q/DQ pair on input `tensor` of node `node` for each (node, tensor), in place."""
    nodes = {n.name: n for n in model.graph.node}
    missing = sorted({t for _, t in edges if t not in ranges})
    if missing:
        raise ConfigError(f"the calibration ranges lack residual Add input {missing[0]!r} ({len(missing)} in all): "
                          "compute them with residual_ranges(...)")
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


def quantize_residual(fp32_path: str | Path, ranges: dict[str, tuple[float, float]], form: str = "tensorrt",
                      exclude: list[str] | None = None, residual: str = "none") -> onnx.ModelProto:
    """The library's Q/DQ graph (`calibration.quantize`) with Q/DQ on the residual Adds by `residual` (TensorRT form)."""
    if residual not in RESIDUAL_FORMS:
        raise ConfigError(f"residual Q/DQ {residual!r} not supported; expected one of {', '.join(RESIDUAL_FORMS)}")
    exclude = list(exclude or [])
    q = quantize(fp32_path, ranges, form, exclude)
    if form == "tensorrt" and residual != "none":
        qdq_on_inputs(q, _edges(onnx.load(str(fp32_path)), residual, exclude), ranges)
    return q


def residual_quantizer(residual: str):
    """A `quantizer` for `build_int8` that places Q/DQ on the residual Adds by `residual`."""
    def quantizer(fp32_path, ranges, form, exclude):
        return quantize_residual(fp32_path, ranges, form, exclude, residual)
    return quantizer
