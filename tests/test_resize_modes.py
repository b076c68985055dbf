"""Preprocessing modes (crop, stretch, letterbox) and the resize in the graph (--frame-size any).

References are written here, independently of the code: PIL's resize for the CPU path, nvinfer's
letterbox rule as gstnvinfer.cpp computes it (in doubles), transformers' shortest-edge rule, and
a numpy half-pixel bilinear resize (no antialiasing) for the graph.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from focalnet_edge.cli import main
from focalnet_edge.folder.contract import InputContract
from focalnet_edge.errors import ConfigError, InputError
from focalnet_edge.export import export_onnx
from focalnet_edge.export.resize import node_types, resize_nodes
from focalnet_edge.model.preprocessing import ImageSpec, letterbox_geometry
from focalnet_edge.folder.onnx_io import ort_session, read_contract
from focalnet_edge.engine.check import check_model

H = W = 64
#: a FocalNet-like recipe at the test size: shortest edge 73, centre crop 64 (bilinear: the exact reference is bilinear)
CROP = dict(height=H, width=W, resize_shortest_edge=73, center_crop=True, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
#: frame sizes: upscaled, 480x640 and 1080x1920 divided by 5, odd sizes, a portrait
SIZES = [(48, 64), (96, 128), (216, 384), (135, 241), (99, 77), (64, 64)]


# -- independent references ----------------------------------------------------------------------
def nvinfer_letterbox(h: int, w: int, out_h: int, out_w: int) -> tuple[int, int, int, int]:
    """gstnvinfer.cpp with maintain-aspect-ratio=1 and symmetric-padding=1, in doubles as it computes."""
    hdest = out_w * h / float(w)
    wdest = out_h * w / float(h)
    if hdest <= out_h:
        dest_w, dest_h = out_w, int(hdest)  # guint = double truncates
    else:
        dest_w, dest_h = int(wdest), out_h
    return dest_h, dest_w, (out_h - dest_h) // 2, (out_w - dest_w) // 2


def transformers_shortest_edge(h: int, w: int, s: int) -> tuple[int, int]:
    """transformers' get_resize_output_image_size for {"shortest_edge": s} (default_to_square=False)."""
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = s, int(s * long / short)
    return (new_long, new_short) if w <= h else (new_short, new_long)


def np_bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Half-pixel bilinear resize of (h, w, c) float, coordinates clamped at the borders, no antialiasing."""
    def weights(n_in: int, n_out: int):
        x = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        i0 = np.floor(x).astype(int)
        return i0, np.minimum(i0 + 1, n_in - 1), (x - i0)[:, None]

    r0, r1, fr = weights(img.shape[0], out_h)
    rows = img[r0] * (1 - fr[..., None]) + img[r1] * fr[..., None]
    c0, c1, fc = weights(img.shape[1], out_w)
    return rows[:, c0] * (1 - fc) + rows[:, c1] * fc


def reference_geometry(frame: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """The graph's geometry on an (h, w, 3) uint8 frame, from the references above: float (H, W, 3) 0..255."""
    x = frame.astype(np.float64)
    h, w = frame.shape[:2]
    if spec.mode == "stretch":
        return np_bilinear(x, spec.height, spec.width)
    if spec.mode == "letterbox":
        nh, nw, top, left = nvinfer_letterbox(h, w, spec.height, spec.width)
        out = np.zeros((spec.height, spec.width, 3))
        out[top : top + nh, left : left + nw] = np_bilinear(x, nh, nw)
        return out
    nh, nw = transformers_shortest_edge(h, w, spec.resize_shortest_edge)
    top, left = (nh - spec.height) // 2, (nw - spec.width) // 2
    return np_bilinear(x, nh, nw)[top : top + spec.height, left : left + spec.width]


def smooth_frame(h: int, w: int, seed: int = 0, detail: int = 8) -> np.ndarray:
    """A photo-like frame: random colours at a coarse grid, bicubic-upsampled (detail: pixels per grid step)."""
    coarse = np.random.default_rng(seed).integers(0, 256, (max(2, h // detail), max(2, w // detail), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC))


def any_contract(mode: str, layout: str = "NHWC", color_order: str = "RGB", **spec) -> InputContract:
    pre = ImageSpec(**{**CROP, **spec, "mode": mode})
    return InputContract(name="frames", dtype="uint8", layout=layout, color_order=color_order, height=H, width=W,
                         fused_preprocess=True, frame_size="any", preprocessing=pre.to_dict())


def run_resize_subgraph(contract: InputContract, frames: np.ndarray) -> np.ndarray:
    """Only the resize nodes of `contract`: raw frames in, float NCHW 0..255 at the input size out."""
    nodes, inits = resize_nodes(contract, contract.name, "resized")
    graph = helper.make_graph(nodes, "resize", [helper.make_tensor_value_info(contract.name, TensorProto.UINT8, contract.shape("N"))],
                              [helper.make_tensor_value_info("resized", TensorProto.FLOAT, ["N", 3, H, W])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model, full_check=True)
    return ort_session(model).run(None, {contract.name: frames})[0]


# -- the CPU path, per mode ----------------------------------------------------------------------
@pytest.mark.parametrize("size", SIZES)
def test_stretch_is_pils_resize_to_the_input_size(size):
    frame = smooth_frame(*size, detail=3)
    spec = ImageSpec(**CROP, resample=3, mode="stretch")
    got = np.asarray(spec.resize_and_crop(Image.fromarray(frame)))
    assert np.array_equal(got, np.asarray(Image.fromarray(frame).resize((W, H), Image.BICUBIC)))


def test_letterbox_geometry_is_nvinfers_rule():
    rng = np.random.default_rng(1)
    cases = [(h, w, oh, ow) for h, w in rng.integers(1, 2000, (3000, 2)) for oh, ow in [(224, 224), (64, 96), (255, 33)]]
    cases += [(1080, 1920, 224, 224), (1920, 1080, 224, 224), (480, 640, 384, 512), (7, 7, 224, 224), (1, 5000, 224, 224)]
    for h, w, oh, ow in cases:
        expect = nvinfer_letterbox(int(h), int(w), oh, ow)
        if min(expect[:2]) >= 1:  # nvinfer scales a 1x5000 strip to nothing; ours keeps one row
            assert letterbox_geometry(int(h), int(w), oh, ow) == expect, (h, w, oh, ow)


@pytest.mark.parametrize("size", SIZES)
def test_letterbox_pastes_pils_resize_on_black(size):
    frame = smooth_frame(*size, detail=3)
    spec = ImageSpec(**CROP, resample=2, mode="letterbox")
    got = np.asarray(spec.resize_and_crop(Image.fromarray(frame)))
    nh, nw, top, left = nvinfer_letterbox(*size, H, W)
    inner = np.asarray(Image.fromarray(frame).resize((nw, nh), Image.BILINEAR)) if (nh, nw) != size else frame
    assert np.array_equal(got[top : top + nh, left : left + nw], inner)
    mask = np.ones((H, W), bool)
    mask[top : top + nh, left : left + nw] = False
    assert not got[mask].any()  # the padding is black
    assert mask.any() == (nh * W != nw * H or (nh, nw) != (H, W))


def test_letterbox_padding_after_normalisation_is_nvinfers():
    """nvinfer pads its uint8 surface with 0, then y = net-scale-factor * (0 - offsets[c])."""
    spec = ImageSpec(**CROP, mode="letterbox")
    contract = InputContract(height=H, width=W, preprocessing=spec.to_dict())
    x = contract.prepare(smooth_frame(32, 128))  # wide: padded above and below
    scale, offsets = 1 / (255 * np.asarray(spec.std)), 255 * np.asarray(spec.mean)  # exact when std is uniform; per channel here
    np.testing.assert_allclose(x[0, :, 0, 0], scale * (0 - offsets), rtol=1e-6)
    np.testing.assert_allclose(x[0, :, -1, -1], scale * (0 - offsets), rtol=1e-6)


def test_mode_is_in_the_contract_and_old_contracts_read_as_crop():
    old = InputContract(preprocessing=ImageSpec(**CROP).to_dict()).__dict__ | {"batch": [1, 1, 32]}
    old["preprocessing"] = {k: v for k, v in old["preprocessing"].items() if k != "mode"}
    old.pop("frame_size")
    contract = InputContract.from_dict(json.loads(json.dumps(old)))
    assert contract.resize_mode == "crop" and contract.frame_size == "input"
    with pytest.raises(ConfigError, match="resize mode 'fit' not supported"):
        ImageSpec(**CROP, mode="fit")
    with pytest.raises(ConfigError, match="frame size 'big'"):
        InputContract(fused_preprocess=True, frame_size="big")
    with pytest.raises(ConfigError, match="--fuse-preprocess"):
        InputContract(frame_size="any")


# -- the resize in the graph: exact geometry, per mode, layout and channel order ---------------------
LAYOUTS = [("NHWC", "RGB"), ("NCHW", "BGR"), ("NHWC", "BGRx"), ("NCHW", "RGBA")]


@pytest.mark.parametrize("mode", ["stretch", "letterbox", "crop"])
@pytest.mark.parametrize("layout,color_order", LAYOUTS)
def test_graph_resize_matches_the_reference_geometry(mode, layout, color_order):
    contract = any_contract(mode, layout, color_order, resample=2)
    worst = 0.0
    for size in SIZES:
        frame = np.random.default_rng(size[0]).integers(0, 256, (*size, 3), dtype=np.uint8)  # noise: any misplaced pixel shows
        got = run_resize_subgraph(contract, contract.frames_in_layout(frame[None]))[0].transpose(1, 2, 0)
        ref = reference_geometry(frame, contract.image_spec)
        ref = ref[..., ::-1] if color_order.startswith("BGR") else ref  # the stem takes the frame's own order
        worst = max(worst, float(np.abs(got - ref).max()))
    assert worst < 1e-2, f"{mode} {layout} {color_order}: max abs {worst} grey levels"  # float32 coordinates


@pytest.mark.parametrize("resample", [2, 3])
@pytest.mark.parametrize("mode", ["stretch", "letterbox", "crop"])
def test_graph_resize_is_within_interpolation_tolerance_of_the_pil_path(mode, resample):
    """Against the CPU path (PIL) on photo-like frames with no detail finer than the output's pixels.

    PIL rounds to uint8 after each of its two passes and, when shrinking, averages over the
    whole footprint of an output pixel where the graph interpolates between neighbours (no
    antialiasing: TensorRT has none, nor nvinfer nor OpenCV's INTER_LINEAR); on such frames
    both are good interpolations of the same picture. Detail finer than that aliases in the
    graph and not in PIL (see the next test).
    """
    contract = any_contract(mode, resample=resample)
    for size in SIZES:
        shrink = max(1.0, size[0] / H, size[1] / W)
        frame = smooth_frame(*size, detail=int(8 * shrink))
        got = run_resize_subgraph(contract, contract.frames_in_layout(frame[None]))[0].transpose(1, 2, 0)
        ref = contract.frames_from_images([frame])[0].astype(np.float32)
        diff = np.abs(got - ref)
        # same interpolant, no shrinking: PIL's uint8 rounding only; else bilinear vs PIL's bicubic / antialiasing
        assert diff.max() <= (1.1 if shrink == 1 and resample == 2 else 4.0), (size, float(diff.max()))
        assert diff.mean() <= 0.75, (size, float(diff.mean()))


def test_graph_stretch_is_opencvs_inter_linear():
    """On noise (aliasing and all) the bilinear graph resize is OpenCV's INTER_LINEAR, the hand-written loop's resize."""
    cv2 = pytest.importorskip("cv2")
    contract = any_contract("stretch", resample=2)
    for size in SIZES:
        frame = np.random.default_rng(size[1]).integers(0, 256, (*size, 3), dtype=np.uint8)
        got = run_resize_subgraph(contract, contract.frames_in_layout(frame[None]))[0].transpose(1, 2, 0)
        ref = cv2.resize(frame.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)
        assert np.abs(got - ref).max() < 1e-2, size


def test_node_types_no_gather_and_shape_only_where_the_frame_size_decides():
    for mode, shapes in (("stretch", 0), ("letterbox", 1), ("crop", 1)):
        for layout, axes in (("NHWC", [1, 2]), ("NCHW", [2, 3])):
            nodes, _ = resize_nodes(any_contract(mode, layout), "frames", "out")
            types = [n.op_type for n in nodes]
            assert types.count("Shape") == shapes and "Gather" not in types, (mode, types)
            assert types.count("Resize") == 1 and types[0] == "Cast" and types.count("Transpose") == (layout == "NHWC")
            (resize,) = [n for n in nodes if n.op_type == "Resize"]
            assert [a.ints for a in resize.attribute if a.name == "axes"] == [axes]  # resized in the frame's own layout
    warp = any_contract("crop", resize_shortest_edge=None, resize_height=80, resize_width=80)  # DeiT-like: no Shape
    assert "Shape" not in [n.op_type for n in resize_nodes(warp, "frames", "out")[0]]


def test_a_crop_the_graph_cannot_do_is_refused():
    with pytest.raises(ConfigError, match="less than the 64x96 crop"):
        resize_nodes(any_contract("crop", height=64, width=96, resize_shortest_edge=73), "frames", "out")


# -- exported graphs ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory, demo_ckpt):
    """The demo with a FocalNet-like crop recipe (bicubic), exported per mode with --frame-size any."""
    ckpt = dataclasses.replace(demo_ckpt, preprocessing=ImageSpec(**CROP, resample=3))
    out = {}
    for mode, layout, order in (("crop", "NHWC", "RGB"), ("letterbox", "NCHW", "BGRA"), ("stretch", "NHWC", "BGRx")):
        path = tmp_path_factory.mktemp(mode) / "model.onnx"
        result = export_onnx(ckpt, path, fuse_preprocess=True, frame_size="any", resize_mode=mode, layout=layout, color_order=order,
                             batch=(1, 2, 4))
        out[mode] = (path, result)
    return ckpt, out


@pytest.mark.parametrize("mode", ["crop", "letterbox", "stretch"])
def test_export_any_frame_size(exported, mode):
    from focalnet_edge.runtime import load
    from focalnet_edge.runtime.torch import TorchRunner

    ckpt, graphs = exported
    path, result = graphs[mode]
    model = onnx.load(str(path))
    contract, _ = read_contract(model, path)
    assert contract.frame_size == "any" and contract.resize_mode == mode and contract.to_json() == result.contract.to_json()
    assert model.opset_import[0].version == 18 and result.checks["resize_identity"] < 1e-4
    assert not [f for f in check_model(model) if f.severity == "error"]
    assert node_types(model).get("Shape", 0) == (0 if mode == "stretch" else 1) and "Gather" not in node_types(model)

    runner = load(path)
    reference = TorchRunner(ckpt).for_contract(contract)
    frames = np.stack([smooth_frame(135, 241, seed=i) for i in range(3)])
    # verify's path: frames already at the input size, which the graph's resize leaves alone -> the model exactly
    at_size = contract.frames_from_images(list(frames))
    exact = runner.run(contract.inputs_from_frames(at_size))["logits"]
    ref = reference.run(contract.reference_inputs(at_size))["logits"]
    np.testing.assert_allclose(exact, ref, atol=1e-4)
    # predict's path: frames of any size into the graph, resized there
    raw = runner.prepare(list(frames))
    assert raw.shape == tuple(contract.shape(3, 135, 241))
    got = runner.run(raw)["logits"]
    cos = (got * ref).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    assert cos.min() > 0.99 and (got.argmax(1) == ref.argmax(1)).all(), cos
    # the input check takes any height and width, not another channel count
    runner.run(contract.frames_in_layout(smooth_frame(37, 53)[None]))
    wrong = contract.shape(1, 20, 20)
    wrong[1 if contract.layout == "NCHW" else 3] = 3 if contract.channels == 4 else 4
    with pytest.raises(InputError, match=f"expected {contract.channels} channels"):
        runner.run(np.zeros(wrong, np.uint8))


def test_cli_export_frame_size_any(capsys, tmp_path):
    out_dir = tmp_path / "out"
    code = main(["-q", "export", "--model", "demo", "--output", str(out_dir), "--fuse-preprocess", "--frame-size", "any",
                 "--resize-mode", "letterbox", "--color-order", "BGRx", "--batch", "1:2:4"])
    out = capsys.readouterr().out
    assert code == 0 and "opset 18" in out and "'frame_height', 'frame_width', 4]" in out
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["input"]["frame_size"] == "any" and manifest["input"]["preprocessing"]["mode"] == "letterbox"
    code = main(["-q", "export", "--model", "demo", "--output", str(tmp_path / "o2"), "--fuse-preprocess", "--frame-size", "any",
                 "--opset", "17"])
    err = capsys.readouterr().err
    assert code == 2 and "opset >= 18" in err and len(err.strip().splitlines()) == 1


def test_engine_profile_of_an_any_size_graph_is_in_frame_sizes():
    from focalnet_edge.engine.config import EngineOptions, profile_shapes
    from focalnet_edge.runtime.tensorrt import contract_for_profile

    contract = any_contract("letterbox", "NHWC", "BGRx")
    contract.batch = (1, 2, 4)
    lo, opt, hi = profile_shapes(contract, EngineOptions())
    assert (lo, opt, hi) == ([1, 16, 16, 4], [2, 1080, 1920, 4], [4, 1080, 1920, 4])  # the GPU's memory unknown: up to 1080p
    from focalnet_edge.engine.config import frame_size_range

    big = EngineOptions(size_range=frame_size_range(contract, 81559))  # an 80 GB GPU: 4K frames at batch 4
    assert profile_shapes(contract, big)[2] == [4, 2160, 3840, 4]
    assert profile_shapes(contract, EngineOptions(size_range=((480, 640),) * 3))[1] == [2, 480, 640, 4]
    static = contract_for_profile(contract, [[1, 480, 640, 4]] * 3)  # one frame size: the input stays the model's
    assert (static.height, static.width, static.frame_size) == (H, W, "any")


@pytest.mark.parametrize("mode", ["crop", "stretch", "letterbox"])
def test_verify_references_are_computed_in_the_folders_mode(mode, tmp_path, demo_ckpt):
    """verify's reference frames (and so its figures) go through the contract's mode: a wide image is
    cropped, squeezed or letterboxed exactly as PIL does it here."""
    from focalnet_edge.runtime.torch import TorchRunner
    from focalnet_edge.verify.compare import ImageSet, reference_outputs

    wide = smooth_frame(40, 120, detail=4)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    spec = ImageSpec(**CROP, resample=3, mode=mode)
    contract = InputContract(height=H, width=W, preprocessing=spec.to_dict())
    ckpt = dataclasses.replace(demo_ckpt, preprocessing=ImageSpec(**CROP, resample=3))
    refs = reference_outputs(TorchRunner(ckpt).for_contract(contract), ImageSet([tmp_path / "wide.png"]), contract)
    im = Image.fromarray(wide)
    if mode == "stretch":
        expect = np.asarray(im.resize((W, H), Image.BICUBIC))
    elif mode == "letterbox":
        nh, nw, top, left = nvinfer_letterbox(40, 120, H, W)
        expect = np.zeros((H, W, 3), np.uint8)
        expect[top : top + nh, left : left + nw] = np.asarray(im.resize((nw, nh), Image.BICUBIC))
    else:
        nh, nw = transformers_shortest_edge(40, 120, 73)
        big = np.asarray(im.resize((nw, nh), Image.BICUBIC))
        expect = big[(nh - H) // 2 : (nh - H) // 2 + H, (nw - W) // 2 : (nw - W) // 2 + W]
    assert np.array_equal(refs.frames[0], expect)


def test_four_channel_frames_of_the_input_size(tmp_path, demo_ckpt):
    """--color-order BGRx without --frame-size any: the 4th channel is dropped, the rest is the BGR graph."""
    outs = {}
    for order in ("BGR", "BGRx"):
        result = export_onnx(demo_ckpt, tmp_path / f"{order}.onnx", fuse_preprocess=True, color_order=order, batch=(1, 2, 2))
        frames = np.stack([smooth_frame(64, 64, seed=i) for i in range(2)])
        x = result.contract.inputs_from_frames(frames)
        if order == "BGRx":
            x[..., 3] = np.random.default_rng(0).integers(0, 256, x.shape[:3])  # whatever the 4th channel holds
        outs[order] = ort_session(str(result.path)).run(None, {"frames": x})[0]
        assert list(result.contract.shape(2)) == [2, 64, 64, len(order)]
    np.testing.assert_allclose(outs["BGRx"], outs["BGR"], atol=1e-5)
