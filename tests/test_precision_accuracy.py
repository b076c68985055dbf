"""A second trained FocalNet, with non-default switches: FP16 and INT8 meet the accuracy targets.

The model is trained here (about 30 s on 2 cores) on the coloured digits at 32x32 with a
convolutional stem, layer scale, post-layernorm, normalised modulator and mixed focal levels.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from focalnet_edge.model import FocalNetConfig, FocalNetForImageClassification, ImageSpec
from focalnet_edge.pipeline import BuildOptions, ExportOptions, PrecisionOptions, build

pytest.importorskip("sklearn")

SWITCHES = dict(
    use_conv_embed=True, use_layerscale=True, layerscale_value=0.5, use_post_layernorm=True,
    normalize_modulator=True, focal_levels=[3, 3, 2, 2], focal_windows=[3, 3, 3, 3],
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from focalnet_edge.demo import accuracy, colored_digits, split, train_classifier

    root = tmp_path_factory.mktemp("switches")
    torch.manual_seed(0)
    images, labels = colored_digits(32, seed=1)
    train, test = split(labels, 0.25, seed=1)
    spec = ImageSpec(height=32, width=32, resize_shortest_edge=None, center_crop=False, mean=(0.5,) * 3, std=(0.5,) * 3)
    x = np.stack([spec.normalize(im) for im in images])
    config = FocalNetConfig(image_size=32, embed_dim=16, depths=[1, 1, 1, 1], num_labels=10, drop_path_rate=0.0,
                            hidden_sizes=[32, 64, 128, 128], id2label={i: str(i) for i in range(10)}, **SWITCHES)
    model = FocalNetForImageClassification(config)
    train_classifier(model, x[train], labels[train], epochs=12, lr=3e-3, log=None)
    acc = accuracy(model, x[test], labels[test])
    model.save_pretrained(root / "ckpt", preprocessing=spec)
    for i in train[::4]:
        (root / "calib").mkdir(exist_ok=True)
        Image.fromarray(images[i]).save(root / "calib" / f"{i}.png")
    for i in test:
        (root / "test" / str(labels[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(root / "test" / str(labels[i]) / f"{i}.png")
    return root, acc


def test_the_second_model_is_really_trained(trained):
    _, acc = trained
    assert acc >= 0.9


def test_fp16_and_int8_of_the_second_model(trained):
    root, _ = trained
    result = build(BuildOptions(
        model=str(root / "ckpt"), output=root / "out", precision="best",
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
