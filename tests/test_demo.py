"""The bundled demo model: loads offline, is small, and is a real trained classifier."""

from __future__ import annotations

import json

import numpy as np
import torch

from focalnet_edge.demo import DEMO_CALIBRATION_DIR, DEMO_DIR, demo_images
from focalnet_edge.model import FocalNetForImageClassification, load_checkpoint, load_model


def test_demo_package_data_is_small_and_complete():
    size = sum(f.stat().st_size for f in DEMO_DIR.rglob("*") if f.is_file())
    assert size <= 5_000_000
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "metrics.json"):
        assert (DEMO_DIR / name).is_file(), name
    assert len(list(DEMO_CALIBRATION_DIR.glob("*.png"))) >= 64


def test_demo_accuracy_on_its_held_out_images():
    """Recompute the accuracy from the bundled images through the shared preprocessing."""
    ckpt = load_checkpoint("demo")
    model = load_model(ckpt)
    assert isinstance(model, FocalNetForImageClassification)
    items = demo_images()
    assert len(items) >= 400 and len({label for _, label in items}) == 10
    x = ckpt.preprocessing.preprocess_batch([p for p, _ in items])
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).logits.argmax(-1).numpy()
    acc = float((pred == np.array([label for _, label in items])).mean())
    assert acc >= 0.97
    recorded = json.loads((DEMO_DIR / "metrics.json").read_text())["test_accuracy"]
    assert abs(acc - recorded) < 0.005  # PNG round trip of the same images


def test_demo_labels_are_the_digit_names():
    model = load_model("demo")
    assert model.config.id2label == {i: str(i) for i in range(10)}
