"""One resize geometry (`inputs/geometry.py`), three executors: Pillow, OpenCV and the ONNX nodes of the
graph resize put every pixel in the same place.

Frames here are noise and smaller than the output in both directions, so every executor enlarges
with plain bilinear interpolation (no antialiasing to tell them apart) and a geometry that differs
by one pixel anywhere (size, crop offset, padding) differs by tens of grey levels.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from focalnet_edge.folder.contract import InputContract
from focalnet_edge.folder.onnx_io import ort_session
from focalnet_edge.export.resize import resize_nodes
from focalnet_edge.inputs import geometry
from focalnet_edge.inputs.geometry import Geometry
from focalnet_edge.model.preprocessing import ImageSpec

cv2 = pytest.importorskip("cv2")

H = W = 64
BASE = dict(height=H, width=W, resample=2, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
#: one spec per geometry the contract can hold
SPECS = {
    "stretch": ImageSpec(**BASE, mode="stretch"),
    "letterbox": ImageSpec(**BASE, mode="letterbox"),
    "shortest-edge-crop": ImageSpec(**BASE, resize_shortest_edge=73),
    "shortest-edge-double-crop": ImageSpec(**BASE, resize_shortest_edge=77, square_crop=69),
    "warp-crop": ImageSpec(**BASE, resize_shortest_edge=None, resize_height=80, resize_width=75),
}
FRAMES = [(40, 52), (52, 40), (33, 47), (64, 64)]


def pillow(frame: np.ndarray, spec: ImageSpec) -> np.ndarray:
    return np.asarray(geometry.pillow(Image.fromarray(frame), spec)).astype(np.float64)


def opencv(frame: np.ndarray, spec: ImageSpec) -> np.ndarray:
    return geometry.opencv(cv2, frame, spec).astype(np.float64)


def onnx_nodes(frame: np.ndarray, spec: ImageSpec) -> np.ndarray:
    contract = InputContract(name="frames", dtype="uint8", layout="NHWC", height=H, width=W, fused_preprocess=True,
                             frame_size="any", preprocessing=spec.to_dict())
    nodes, inits = resize_nodes(contract, "frames", "resized")
    graph = helper.make_graph(nodes, "resize", [helper.make_tensor_value_info("frames", TensorProto.UINT8, contract.shape("N"))],
                              [helper.make_tensor_value_info("resized", TensorProto.FLOAT, ["N", 3, H, W])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model, full_check=True)
    return ort_session(model).run(None, {"frames": frame[None]})[0][0].transpose(1, 2, 0).astype(np.float64)


EXECUTORS = {"pillow": pillow, "opencv": opencv, "onnx": onnx_nodes}


def expected_black(spec: ImageSpec, h: int, w: int) -> np.ndarray:
    """Where the geometry puts no frame pixel: (H, W) bool, from `Geometry.resized` and `shift` alone."""
    g = Geometry.of(spec)
    nh, nw = g.resized(h, w)
    dy, dx = g.shift(nh, nw)
    ys, xs = np.arange(H)[:, None] + dy, np.arange(W)[None, :] + dx
    return ~((ys >= 0) & (ys < nh) & (xs >= 0) & (xs < nw))


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("name", SPECS)
def test_every_executor_carries_out_the_same_geometry(executor, name):
    spec = SPECS[name]
    for k, (h, w) in enumerate(FRAMES):
        frame = np.random.default_rng(k).integers(30, 256, (h, w, 3), dtype=np.uint8)  # no black pixel of its own
        got = EXECUTORS[executor](frame, spec)
        assert got.shape == (H, W, 3)
        reference = pillow(frame, spec)
        assert np.abs(got - reference).max() <= 2, (name, executor, (h, w))
        black = expected_black(spec, h, w)
        assert (got[black] == 0).all() and (got[~black].min(axis=-1) > 0).all(), (name, executor, (h, w))


def test_the_geometry_is_transformers_and_nvinfers_rule():
    """Sizes and offsets against the rules written out: transformers' shortest edge (floats, as it
    computes), its centre crop at floor((have - want) / 2), nvinfer's letterbox at floor((out - scaled) / 2)."""
    g = Geometry.of(SPECS["shortest-edge-double-crop"])
    for h, w in [(480, 640), (640, 480), (99, 77), (1080, 1920), (77, 77)]:
        short, long = min(h, w), max(h, w)
        new_long = int(77 * long / short)
        nh, nw = (new_long, 77) if w <= h else (77, new_long)
        assert g.resized(h, w) == (nh, nw)
        assert g.shift(nh, nw) == ((nh - 69) // 2 + (69 - H) // 2, (nw - 69) // 2 + (69 - W) // 2)
    lb = Geometry.of(SPECS["letterbox"])
    assert lb.resized(480, 640) == (48, 64) and lb.shift(48, 64) == (-8, 0)
    assert lb.resized(33, 47) == (44, 64) and lb.shift(44, 64) == (-10, 0)
    assert Geometry.of(SPECS["warp-crop"]).resized(5, 9) == (80, 75) and Geometry.of(SPECS["warp-crop"]).shift(80, 75) == (8, 5)


@pytest.mark.parametrize("name", SPECS)
def test_identity_canvas_is_undone_by_the_geometry(name):
    """Frames of the input size put on `identity_canvas` come back from the geometry unchanged (what
    `InputContract.inputs_from_frames` relies on with --frame-size any)."""
    spec, g = SPECS[name], Geometry.of(SPECS[name])
    frames = np.random.default_rng(1).integers(0, 256, (2, H, W, 3), dtype=np.uint8)
    canvas = g.identity_canvas(frames)
    for frame, c in zip(frames, canvas):
        assert np.array_equal(np.asarray(geometry.pillow(Image.fromarray(c), spec)), frame)
        assert np.array_equal(geometry.opencv(cv2, c, spec), frame)
