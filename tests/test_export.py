"""ONNX export: parity with PyTorch for every head, batch, input contract and size; graph hygiene."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest
import torch

from helpers import perturb_, small_config_dict
from focalnet_edge.errors import CheckpointError, ConfigError, InputError
from focalnet_edge.export import export_onnx
from focalnet_edge.folder.onnx_io import read_metadata
from focalnet_edge.export.onnx_export import ort_outputs
from focalnet_edge.model import (
    FocalNetConfig,
    FocalNetForImageClassification,
    FocalNetForMaskedImageModeling,
    ImageSpec,
    load_checkpoint,
)

SPEC = ImageSpec(height=64, width=64, resize_shortest_edge=None, center_crop=False, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))


def save_small(tmp_path, cls=FocalNetForImageClassification, **switches):
    torch.manual_seed(0)
    model = perturb_(cls(FocalNetConfig(**small_config_dict(**switches))))
    folder = tmp_path / "ckpt"
    model.save_pretrained(folder, preprocessing=SPEC)
    return load_checkpoint(folder), model


def run(path, x):
    return ort_outputs(str(path), {onnx.load(str(path)).graph.input[0].name: x})


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("head", ["logits", "probs", "features"])
def test_heads_match_pytorch(tmp_path, head, batch):
    ckpt, model = save_small(tmp_path, use_layerscale=True)
    kw = {"out_features": ["stem", "stage2", "stage4"]} if head == "features" else {}
    result = export_onnx(ckpt, tmp_path / "m.onnx", head=head, **kw)
    x = np.random.default_rng(0).standard_normal((batch, 3, 64, 64)).astype(np.float32)
    outs = run(result.path, x)
    with torch.no_grad():
        if head == "features":
            ref = [t.numpy() for t in model.focalnet(torch.from_numpy(x), output_hidden_states=True).reshaped_hidden_states]
            ref = [ref[0], ref[2], ref[4]]
            assert result.outputs == ["stem", "stage2", "stage4"]
        else:
            logits = model(torch.from_numpy(x)).logits
            ref = [(logits.softmax(-1) if head == "probs" else logits).numpy()]
    for r, o in zip(ref, outs):
        assert r.shape == o.shape
        assert np.abs(r - o).max() <= 1e-4


def test_reconstruction_head(tmp_path):
    ckpt, model = save_small(tmp_path, cls=FocalNetForMaskedImageModeling)
    result = export_onnx(ckpt, tmp_path / "m.onnx", head="reconstruction")
    x = np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).reconstruction.numpy()
    (out,) = run(result.path, x)
    assert out.shape == (2, 3, 64, 64) and np.abs(out - ref).max() <= 1e-4


def test_head_missing_from_checkpoint_is_a_clear_error(tmp_path):
    ckpt, _ = save_small(tmp_path, cls=FocalNetForMaskedImageModeling)
    with pytest.raises(CheckpointError, match="no classifier weights"):
        export_onnx(ckpt, tmp_path / "m.onnx", head="logits")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("color", ["RGB", "BGR"])
def test_fused_preprocessing_takes_raw_frames(tmp_path, layout, color):
    ckpt, model = save_small(tmp_path)
    result = export_onnx(ckpt, tmp_path / "m.onnx", fuse_preprocess=True, layout=layout, color_order=color)
    frames_rgb = np.random.default_rng(2).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    # the reference: numpy preprocessing of the RGB frames, independent of the graph
    x = (frames_rgb.astype(np.float32) / 255 - np.array(SPEC.mean, np.float32)) / np.array(SPEC.std, np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).logits.numpy()
    feed = frames_rgb[..., ::-1] if color == "BGR" else frames_rgb
    feed = np.ascontiguousarray(feed.transpose(0, 3, 1, 2) if layout == "NCHW" else feed)
    (out,) = run(result.path, feed)
    assert np.abs(out - ref).max() <= 1e-4
    inp = onnx.load(str(result.path)).graph.input[0]
    assert inp.name == "frames" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    contract = read_metadata(onnx.load(str(result.path)))["input"]
    assert contract["fused_preprocess"] and contract["layout"] == layout and contract["color_order"] == color


def test_dynamic_size_gives_correct_numbers_at_every_accepted_size(tmp_path):
    ckpt, model = save_small(tmp_path, use_conv_embed=True)
    result = export_onnx(ckpt, tmp_path / "m.onnx", dynamic_size=True)
    for h, w in [(64, 64), (96, 64), (32, 128)]:
        x = np.random.default_rng(h + w).standard_normal((2, 3, h, w)).astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).logits.numpy()
        assert np.abs(run(result.path, x)[0] - ref).max() <= 1e-4


def test_static_batch_and_image_size(tmp_path):
    ckpt, _ = save_small(tmp_path)
    result = export_onnx(ckpt, tmp_path / "m.onnx", dynamic_batch=False, batch=(1, 4, 4), image_size=(96, 64))
    dims = [d.dim_value for d in onnx.load(str(result.path)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [4, 3, 96, 64]


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"opset": 13}, "opset 13 not supported"),
        ({"image_size": (100, 64), "dynamic_size": True}, "height 100 not accepted"),  # any size: multiples of 32
        ({"head": "boxes"}, "head 'boxes' not supported"),
        ({"color_order": "BGR"}, "add --fuse-preprocess"),
        ({"simplifier": "magic"}, "simplifier 'magic' not supported"),
    ],
)
def test_bad_options_are_clear_errors_and_write_nothing(tmp_path, kwargs, message):
    ckpt, _ = save_small(tmp_path)
    with pytest.raises((ConfigError, InputError), match=message):
        export_onnx(ckpt, tmp_path / "out" / "m.onnx", **kwargs)
    assert not (tmp_path / "out" / "m.onnx").exists()


def test_metadata_carries_labels_contract_source_and_version(tmp_path):
    ckpt, _ = save_small(tmp_path, id2label={i: f"class{i}" for i in range(7)})
    result = export_onnx(ckpt, tmp_path / "m.onnx")
    meta = read_metadata(onnx.load(str(result.path)))
    from focalnet_edge import __version__

    assert meta["labels"]["3"] == "class3"
    assert meta["version"] == __version__ and meta["source"] == str(tmp_path / "ckpt")
    assert meta["input"]["height"] == 64 and meta["input"]["preprocessing"]["mean"] == [0.4, 0.5, 0.6]


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """focalnet-tiny (the real shape, random weights) exported with a dynamic batch."""
    tmp = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    model = FocalNetForImageClassification(FocalNetConfig(num_labels=1000)).eval()
    model.save_pretrained(tmp / "ckpt")
    result = export_onnx(load_checkpoint(tmp / "ckpt"), tmp / "model.onnx")
    return result, model


def test_focalnet_tiny_graph_has_no_shape_arithmetic_or_control_flow(tiny_onnx):
    result, _ = tiny_onnx
    graph = onnx.load(str(result.path)).graph
    ops = collections.Counter(n.op_type for n in graph.node)
    for op in ("Shape", "Gather", "If", "Loop", "Where", "NonZero", "Reshape", "Expand", "ConstantOfShape"):
        assert ops[op] == 0, (op, ops)
    assert ops["LayerNormalization"] == 29  # 12 blocks x 2, stem, 3 downsamples, final
    assert len(graph.node) < 573, len(graph.node)  # timm's focalnet_tiny_srf: 573, transformers': 682
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_focalnet_tiny_matches_pytorch_at_two_batch_sizes(tiny_onnx):
    result, model = tiny_onnx
    for batch in (1, 2):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 224, 224)).astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).logits.numpy()
        assert np.abs(run(result.path, x)[0] - ref).max() <= 1e-4


def test_float_frames_for_deepstream(tmp_path):
    """--frames-dtype float32: raw 0..255 pixel values as float (nvinfer with net-scale-factor=1)."""
    ckpt, model = save_small(tmp_path)
    result = export_onnx(ckpt, tmp_path / "m.onnx", fuse_preprocess=True, frames_dtype="float32", layout="NCHW", color_order="BGR")
    frames_rgb = np.random.default_rng(5).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    x = (frames_rgb.astype(np.float32) / 255 - np.array(SPEC.mean, np.float32)) / np.array(SPEC.std, np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).logits.numpy()
    feed = np.ascontiguousarray(frames_rgb[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)
    (out,) = run(result.path, feed)
    assert np.abs(out - ref).max() <= 1e-4
    assert onnx.load(str(result.path)).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
