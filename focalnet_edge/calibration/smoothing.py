"""Smoothing LayerNorm outputs into the next GEMM (SmoothQuant, Xiao et al. 2023), folded exactly.

A few channels of a trained transformer's LayerNorm output are many times larger than the rest
(a large LayerNorm weight in those channels). TensorRT quantizes activations per tensor, so those
channels set the scale and the others keep a handful of int8 levels. The weights are quantized
per output channel, where there is room: so the outlier is moved from the activation into the
weight. For a LayerNormalization whose output only GEMMs read (`norm1` -> `projection_in`,
`norm2` -> `fc1` in FocalNet) and a per-channel factor ``s``::

    LN scale and bias  /= s      (channel j of the LayerNorm output shrinks by s_j)
    GEMM weight row j  *= s      (input channel j of every reader grows by s_j)

which leaves every GEMM output unchanged (up to float rounding): no node is added, so the graph
TensorRT sees has the same layers. ``s_j = max|x_j|^alpha / max|w_j|^(1-alpha)`` with ``max|x_j|``
measured on the calibration images and ``max|w_j|`` over the readers' weight rows (SmoothQuant's
rule; `ALPHA` chosen by measurement in `int8.py`).

onnxruntime's quantizer has SmoothQuant through Intel Neural Compressor only (an extra package,
and it inserts Mul nodes where it cannot fold); this is the folded form for the one pattern that
FocalNet has, written out.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ..folder.onnx_io import load_onnx, save_onnx
from .fp16 import probe_maxima
from .placement import consumers

ALPHA = 0.5  #: migration strength (0: nothing moved, 1: all of the activation's range moved into the weights)


def constant_values(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    """Tensor name -> initializer, for initializers and for Identity outputs of them (torch.onnx.export
    passes parameters that are equal through Identity nodes)."""
    inits = {i.name: i for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Identity" and n.input[0] in inits:
            inits[n.output[0]] = inits[n.input[0]]
    return inits


def smoothable(model: onnx.ModelProto, exclude: Iterable[str] = ()) -> dict[str, list[onnx.NodeProto]]:
    """LayerNormalization output tensor -> its readers, for each LayerNorm that can be folded: it
    normalises the last axis, its scale and bias are 1-D float32 constants, its output is not a graph
    output, and every reader is a MatMul/Gemm (not in `exclude`) whose second input is a 2-D constant
    weight with one row per channel."""
    inits = constant_values(model)
    readers = consumers(model)
    outputs = {o.name for o in model.graph.output}
    skip = set(exclude)
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        if n.op_type != "LayerNormalization" or len(n.input) < 3 or not all(i in inits for i in n.input[1:3]) or n.output[0] in outputs:
            continue
        axis = next((a.i for a in n.attribute if a.name == "axis"), -1)
        scale, bias = inits[n.input[1]], inits[n.input[2]]
        if axis != -1 or len(scale.dims) != 1 or list(bias.dims) != list(scale.dims) or scale.data_type != onnx.TensorProto.FLOAT:
            continue
        users = readers.get(n.output[0], [])
        if users and all(u.name not in skip and u.input[0] == n.output[0] and _rows(u, inits) == scale.dims[0] for u in users):
            out[n.output[0]] = users
    return out


def _rows(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> int | None:
    """Input channels of a foldable GEMM's weight (None: not foldable)."""
    axis = _weight_rows(node, inits)
    return None if axis is None else int(inits[node.input[1]].dims[axis])


def _weight_rows(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> int | None:
    """The input-channel axis of `node`'s weight (0 for MatMul's [in, out]), or None if not a foldable GEMM."""
    if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2 or node.input[1] not in inits:
        return None
    if len(inits[node.input[1]].dims) != 2:
        return None
    if node.op_type == "Gemm":
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("transA", 0):
            return None
        return 1 if attrs.get("transB", 0) else 0
    return 0


def channel_absmax(model_path: str | Path, inputs: np.ndarray, tensors: Iterable[str], batch: int = 16) -> dict[str, np.ndarray]:
    """max |x| per channel (the last axis) of each LayerNorm output in `tensors` over `inputs`,
    reduced inside the graph (`fp16.probe_maxima`: no activation map leaves ONNX Runtime)."""
    graph = load_onnx(model_path, external_data=False)
    producer = {o: n for n in graph.graph.node for o in n.output}
    inits = constant_values(graph)
    channels = {t: int(np.prod(inits[producer[t].input[1]].dims)) for t in tensors}  # the LayerNorm's scale: one per channel
    del graph
    return probe_maxima(model_path, inputs, list(channels), channels, batch=batch, optimize=True)  # type: ignore[return-value]


def smoothing_scales(model: onnx.ModelProto, absmax: dict[str, np.ndarray], alpha: float = ALPHA,
                     exclude: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """LayerNorm output tensor -> the factors s (float32, one per channel) SmoothQuant's rule gives."""
    inits = constant_values(model)
    scales: dict[str, np.ndarray] = {}
    for tensor, users in smoothable(model, exclude).items():
        if tensor not in absmax:
            continue
        x = np.maximum(absmax[tensor], 1e-5)
        w = np.max([np.abs(numpy_helper.to_array(inits[u.input[1]])).max(axis=1 - _weight_rows(u, inits)) for u in users], axis=0)
        s = x**alpha / np.maximum(w, 1e-5) ** (1 - alpha)
        s = np.clip(s, 1e-2, 1e2)
        scales[tensor] = (s / np.exp(np.mean(np.log(s)))).astype(np.float32)  # geometric mean 1: the overall scale stays put
    return scales


def apply_smoothing(model: onnx.ModelProto, scales: dict[str, np.ndarray]) -> onnx.ModelProto:  # noqa: C901 - one walk over the consumers of each smoothed tensor, a branch per way a weight is reached
    """A copy of `model` with `scales` folded in (see the module docstring); outputs unchanged."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    direct = {i.name: i for i in out.graph.initializer}
    inits = constant_values(out)
    uses: dict[str, int] = {}
    for n in out.graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    producer = {o: n for n in out.graph.node for o in n.output}
    done = smoothable(out)
    taken = set(inits) | {t for n in out.graph.node for t in [*n.input, *n.output]}

    def replace(node: onnx.NodeProto, k: int, value: np.ndarray) -> None:
        """Input k of `node` becomes `value`: in place when it is an initializer nothing else reads, else a new one."""
        name = node.input[k]
        if name in direct and uses.get(name, 0) == 1:
            direct[name].CopyFrom(numpy_helper.from_array(value, name))
            return
        new, k2 = f"{name}_smoothed", 0
        while new in taken:  # unique even where nodes are unnamed
            k2 += 1
            new = f"{name}_smoothed_{k2}"
        taken.add(new)
        out.graph.initializer.append(numpy_helper.from_array(value, new))
        uses[name] = uses.get(name, 1) - 1
        node.input[k] = new

    for tensor, s in scales.items():
        if tensor not in done:
            raise ValueError(f"cannot fold smoothing into {tensor!r}: not a LayerNorm output that only GEMMs read")
        ln = producer[tensor]
        channels = int(np.prod(inits[ln.input[1]].dims))
        if s.shape != (channels,):
            raise ValueError(f"smoothing factors of {tensor!r}: {s.size} given, the LayerNorm has {channels} channels")
        for k in (1, 2):
            replace(ln, k, (numpy_helper.to_array(inits[ln.input[k]]) / s).astype(np.float32))
        for user in done[tensor]:
            w = numpy_helper.to_array(inits[user.input[1]])
            rows = _weight_rows(user, inits)
            replace(user, 1, (w * (s[:, None] if rows == 0 else s[None, :])).astype(w.dtype))
    return out


def smooth(fp32_path: str | Path, inputs: np.ndarray, output: str | Path, alpha: float = ALPHA,
           scales: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Write `fp32_path` with its LayerNorm outputs smoothed (factors measured on `inputs` with
    `alpha`, or the given `scales`) to `output`; return the factors. Empty: nothing to smooth,
    nothing written."""
    fp32 = load_onnx(fp32_path)
    if scales is None:
        targets = smoothable(fp32)
        scales = smoothing_scales(fp32, channel_absmax(fp32_path, inputs, targets), alpha) if targets and alpha > 0 else {}
    if scales:
        save_onnx(apply_smoothing(fp32, scales), output)
    return scales
