"""A second trained FocalNet, with non-default switches: FP16 and INT8 meet the accuracy targets.

The model is test data (tests/data/switches, made by scripts/make_switches_model.py): trained
on the coloured digits at 32x32 with a convolutional stem, layer scale, post-layernorm,
normalised modulator and mixed focal levels. Its images come in images.npz and are written
out as PNG files (lossless) for the pipeline to read.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from focalnet_edge.model import FocalNetForImageClassification, load_checkpoint, load_model
from focalnet_edge.pipeline import BuildOptions, ExportOptions, PrecisionOptions, build

DATA = Path(__file__).parent / "data" / "switches"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("switches")
    images = np.load(DATA / "images.npz")
    for i, im in enumerate(images["calibration"]):
        (root / "calib").mkdir(exist_ok=True)
        Image.fromarray(im).save(root / "calib" / f"{i}.png")
    for i, (im, label) in enumerate(zip(images["test"], images["test_labels"])):
        (root / "test" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(root / "test" / str(label) / f"{i}.png")
    # the accuracy recomputed here, in PyTorch, from the shipped weights and images
    ckpt = load_checkpoint(DATA)
    model = load_model(ckpt)
    with torch.no_grad():
        x = torch.from_numpy(np.stack([ckpt.preprocessing.normalize(im) for im in images["test"]]))
        pred = model(x).logits.argmax(-1).numpy()
    return root, model, float((pred == images["test_labels"]).mean())


def test_the_second_model_is_really_trained(trained):
    _, model, acc = trained
    assert isinstance(model, FocalNetForImageClassification)
    cfg = model.config
    assert cfg.use_conv_embed and cfg.use_layerscale and cfg.use_post_layernorm and cfg.normalize_modulator
    assert cfg.focal_levels == [3, 3, 2, 2]
    assert acc >= 0.9
    recorded = json.loads((DATA / "metrics.json").read_text())["test_accuracy"]
    assert abs(acc - recorded) < 1e-6  # the same uint8 images, the same weights


def test_fp16_and_int8_of_the_second_model(trained):
    root, _, _ = trained
    result = build(BuildOptions(
        model=str(DATA), output=root / "out", precision="best",
        export=ExportOptions(fuse_preprocess=True, color_order="BGR"),
        calibration=PrecisionOptions(calib_data=str(root / "calib")), images=str(root / "test"),
    ))
    reports = {r.artifact: r for r in result.reports}
    fp32 = reports["model.onnx"]
    assert fp32.passed and fp32.images == 450 and fp32.accuracy >= 0.9
    assert reports["model.fp16.onnx"].top1_agreement >= 0.995
    for name in ("model.int8.onnx", "model.int8.cpu.onnx"):
        r = reports[name]
        assert r.top1_agreement >= 0.99, (name, r.top1_agreement)
        assert r.accuracy >= fp32.accuracy - 0.005, (name, r.accuracy, fp32.accuracy)
