"""Resize in the graph (`--frame-size any`): ONNX nodes in front of an exported model.

The model is exported for frames of its input size (NCHW float 0..255, normalised in the graph,
the colour order folded into the stem); `prepend_resize` puts in front of it a subgraph that
takes frames of any height and width, in the contract's layout and channel order, and brings
them to the input size in the contract's resize mode (`ImageSpec.mode`):

```
frames (uint8 N,h,w,C | N,C,h,w) -> Cast, then on the spatial axes (1, 2 in NHWC; 2, 3 in NCHW):
  stretch:    Resize(sizes=[H, W], axes)                                  no shape arithmetic
  letterbox:  Shape(start, end) -> [nh, nw] -> Resize(sizes, axes) -> Pad(pads, 0, axes)
  crop:       Shape(start, end) -> [nh, nw] -> Resize(sizes, axes) -> Slice(centre, axes)
              (a warp to a fixed size, DeiT's, needs no Shape: constant sizes and slice)
-> [Slice: drop the 4th channel] -> [Transpose to NCHW] -> the model (Mul, Add normalisation, ...)
```

The geometry is `inputs/geometry.py`'s `Geometry` (the one reading of the contract's
preprocessing, which Pillow and OpenCV carry out too); its run-time sizes are computed here from
the frame's shape. Sizes are computed in int64 from `Shape` with start/end (opset 15), so no Gather: for
letterbox nvinfer's rule `[nh, nw] = min([H, W], [W*h // w, H*w // h])`, for crop transformers'
shortest edge `[nh, nw] = max([S, S], [S*h // w, S*w // h])`; `[w, h]` is `[h, w]` reversed by a
Slice with step -1. Padding is black (0) before the normalisation, as nvinfer pads its uint8
surface, so a padded pixel becomes ``(0 - mean) / std``.

Interpolation: ONNX Resize, half-pixel coordinates (pixel centres, as PIL, OpenCV and nvinfer),
linear for every PIL filter but nearest (`RESIZE_MODE`), and no antialiasing, which TensorRT's
resize layer does not have: when shrinking, PIL averages over the whole footprint of an output
pixel while the graph interpolates between the nearest 2 x 2 input pixels, as OpenCV's
INTER_LINEAR and nvinfer do, so detail finer than the output's pixels aliases where PIL's does
not. Opset >= 18 (Resize and Pad with `axes`).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..folder.contract import InputContract
from ..errors import ConfigError
from ..inputs.geometry import Geometry
from ..model.preprocessing import ImageSpec

MIN_OPSET = 18
#: PIL resampling filter -> ONNX Resize mode: nearest stays nearest, every other filter (bilinear,
#: bicubic, ...) is linear: TensorRT documents nearest and linear only, and ONNX Runtime's cubic
#: took 0.3 s per 1080p frame on 2 cores (linear: 7 ms)
RESIZE_MODE = {0: "nearest"}
PREFIX = "resize_"


def body_contract(contract: InputContract) -> InputContract:
    """The contract the model itself is exported with: float NCHW 0..255 frames of the input size, 3 channels."""
    fields = {**contract.__dict__, "dtype": "float32", "layout": "NCHW", "color_order": contract.color_order[:3],
              "frame_size": "input", "name": f"{PREFIX}frames"}
    return InputContract(**fields)


def check_spec(spec: ImageSpec) -> None:
    """Raise `ConfigError` for a crop recipe the graph cannot follow (it crops, it never pads)."""
    if spec.mode != "crop" or not spec.center_crop:
        return
    if not spec.do_resize:
        raise ConfigError("--frame-size any with --resize-mode crop needs a resize in the preprocessing (do_resize is false); "
                          "use --resize-mode stretch or letterbox")
    inner = max(spec.height, spec.width, spec.square_crop or 0)
    if spec.resize_shortest_edge and spec.resize_shortest_edge < inner:
        raise ConfigError(f"--frame-size any with --resize-mode crop: the shortest edge is resized to {spec.resize_shortest_edge}, "
                          f"less than the {spec.height}x{spec.width} crop, which transformers then pads; the graph only crops. "
                          "Use --resize-mode stretch or letterbox")
    if not spec.resize_shortest_edge and ((spec.resize_height or spec.height) < spec.height or (spec.resize_width or spec.width) < spec.width):
        raise ConfigError("--frame-size any with --resize-mode crop: the warp is smaller than the crop; use --resize-mode stretch or letterbox")


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, values, dtype=np.int64) -> str:
        name = PREFIX + name
        self.inits.append(numpy_helper.from_array(np.asarray(values, dtype), name))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attrs) -> str:
        out = PREFIX + name
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


def resize_nodes(contract: InputContract, source: str, target: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The nodes (and initializers) from the frames `source` to the model's NCHW float input `target`.

    The geometry runs in the frames' own layout (Resize, Pad and Slice on the spatial axes), so the
    full-size frame is only cast; dropping a 4th channel and the transpose to NCHW come after, on
    the input-size result (on 2 cores, 1080p NHWC: 6.7 ms instead of 21 ms transposing first).
    """
    spec = contract.image_spec
    check_spec(spec)
    b = _Builder()
    x = source
    if contract.dtype != "float32":  # first: TensorRT takes uint8 only as a network input feeding a Cast
        x = b.node("Cast", [x], "float", to=TensorProto.FLOAT)
    axes = list(contract.spatial_axes)
    mode = RESIZE_MODE.get(spec.resample, "linear")
    attrs = dict(axes=axes, mode=mode, coordinate_transformation_mode="half_pixel")
    if mode == "nearest":
        attrs.update(nearest_mode="round_prefer_ceil")  # PIL's NEAREST: floor of the centre, x_orig + 0.5

    def resize(x: str, sizes: str, name: str) -> str:
        return b.node("Resize", [x, "", "", sizes], name, **attrs)

    g = Geometry.of(spec)
    steps = _fit if g.resize == "fit" else _stretch if not g.crops else _shortest_edge if g.resize == "shortest_edge" else _fixed_crop
    x = steps(b, x, g, axes, resize)
    if contract.channels == 4:
        c_axis = 1 if contract.layout == "NCHW" else 3
        x = b.node("Slice", [x, b.const("rgb_start", [0]), b.const("rgb_end", [3]), b.const("rgb_axis", [c_axis])], "rgb")
    if contract.layout == "NHWC":
        x = b.node("Transpose", [x], "nchw", perm=[0, 3, 1, 2])
    b.nodes[-1].output[0] = target
    return b.nodes, b.inits


#: the geometry's steps as nodes: (builder, frames, geometry, spatial axes, resize(x, sizes, name)) -> the result's name
def _fit(b: _Builder, x: str, g: Geometry, axes: list[int], resize) -> str:
    """letterbox, nvinfer: [nh, nw] = min([H, W], [W*h // w, H*w // h]), centred on black."""
    (H, W), (hw, wh) = g.out, _frame_hw(b, x, axes)
    scaled = b.node("Div", [b.node("Mul", [hw, b.const("out_wh", [W, H])], "num"), wh], "fit")
    sizes = b.node("Min", [scaled, b.const("out_hw", [H, W])], "sizes")
    x = resize(x, sizes, "scaled")
    spare = b.node("Sub", [b.const("out_hw2", [H, W]), sizes], "spare")
    before = b.node("Div", [spare, b.const("two", [2])], "before")
    after = b.node("Sub", [spare, before], "after")
    pads = b.node("Concat", [before, after], "pads", axis=0)
    return b.node("Pad", [x, pads, b.const("black", 0.0, np.float32), b.const("pad_axes", axes)], "letterboxed", mode="constant")


def _stretch(b: _Builder, x: str, g: Geometry, axes: list[int], resize) -> str:
    """stretch (or a recipe without a centre crop): warp to the input size; no shape arithmetic."""
    return resize(x, b.const("sizes", list(g.out)), "stretched")


def _fixed_crop(b: _Builder, x: str, g: Geometry, axes: list[int], resize) -> str:
    """A warp to a fixed size (DeiT's), then a fixed centre crop: constant sizes and slice, no Shape."""
    (H, W), (rh, rw) = g.out, g.size
    if g.resize == "warp":
        x = resize(x, b.const("warp_sizes", [rh, rw]), "warped")
    top, left = g.shift(rh, rw)
    return b.node("Slice", [x, b.const("crop_starts", [top, left]), b.const("crop_ends", [top + H, left + W]),
                            b.const("crop_axes", axes)], "cropped")


def _shortest_edge(b: _Builder, x: str, g: Geometry, axes: list[int], resize) -> str:
    """crop, transformers: [nh, nw] = max([S, S], [S*h // w, S*w // h]), then the centre crop(s)."""
    (H, W), (hw, wh), s = g.out, _frame_hw(b, x, axes), g.size[0]
    scaled = b.node("Div", [b.node("Mul", [hw, b.const("edge", [s, s])], "num"), wh], "long")
    sizes = b.node("Max", [scaled, b.const("edge2", [s, s])], "sizes")
    x = resize(x, sizes, "scaled")
    start = b.node("Div", [b.node("Sub", [sizes, b.const("inner", g.crops[0])], "spare"), b.const("two", [2])], "offset")
    if g.first_crop_shift() != (0, 0):
        start = b.node("Add", [start, b.const("inner_offset", g.first_crop_shift())], "offset2")
    end = b.node("Add", [start, b.const("out_hw", [H, W])], "end")
    return b.node("Slice", [x, start, end, b.const("crop_axes", axes)], "cropped")


def _frame_hw(b: _Builder, x: str, axes: list[int]) -> tuple[str, str]:
    """[h, w] of the frames `x` (Shape with start/end) and [w, h] (a Slice with step -1)."""
    hw = b.node("Shape", [x], "hw", start=axes[0], end=axes[1] + 1)
    wh = b.node("Slice", [hw, b.const("rev_start", [-1]), b.const("rev_end", [-3]), b.const("rev_axis", [0]),
                          b.const("rev_step", [-1])], "wh")
    return hw, wh


def prepend_resize(model: onnx.ModelProto, contract: InputContract) -> onnx.ModelProto:
    """`model` (exported with `body_contract(contract)`) behind the resize subgraph: input `contract.name`."""
    graph = model.graph
    body_input = body_contract(contract).name
    (old,) = [i for i in graph.input if i.name == body_input]
    resized = PREFIX + "resized"
    for n in graph.node:
        for k, name in enumerate(n.input):
            if name == body_input:
                n.input[k] = resized
    nodes, inits = resize_nodes(contract, contract.name, resized)
    elem = {"uint8": TensorProto.UINT8, "float32": TensorProto.FLOAT}[contract.dtype]
    batch = "batch" if contract.dynamic_batch else contract.batch[1]
    frames = helper.make_tensor_value_info(contract.name, elem, contract.shape(batch))
    kept = [i for i in graph.input if i.name != old.name]
    del graph.input[:]
    graph.input.extend([frames, *kept])
    graph.initializer.extend(inits)
    body = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + body)
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and imp.version < MIN_OPSET:
            raise ConfigError(f"opset {imp.version}: the resize in the graph needs opset >= {MIN_OPSET} (Resize with axes)")
    return model


def node_types(model: onnx.ModelProto) -> dict[str, int]:
    """How many nodes of each type the resize subgraph has (its nodes carry the resize_ prefix)."""
    out: dict[str, int] = {}
    for n in model.graph.node:
        if n.name.startswith(PREFIX):
            out[n.op_type] = out.get(n.op_type, 0) + 1
    return out
