"""What `build` verifies on when the user names no images (issue 15).

A model that is not the demo gets a small numeric check (64 images) without accuracy: the
demo's digit folders are not its classes. The demo model keeps its own labelled test images.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from focalnet_edge.verify.compare import DEFAULT_VERIFY_IMAGES, default_image_set, verification_images

DIGITS = Path(__file__).resolve().parents[1] / "focalnet_edge" / "data" / "demo" / "images"


def _digit_files() -> list[Path]:
    return sorted(p for p in DIGITS.rglob("*") if p.is_file())


def test_demo_model_keeps_its_labelled_images():
    found, _, note = verification_images(None, {i: str(i) for i in range(10)}, None, is_demo=True)
    files = _digit_files()
    assert len(found) == len(files) > DEFAULT_VERIFY_IMAGES
    assert found.labels == [int(p.parent.name) for p in files]  # the folder names, read independently
    assert note is None


def test_other_model_gets_64_digit_images_without_labels():
    labels = {i: f"LABEL_{i}" for i in range(1000)}
    found, used, note = verification_images(None, labels, None, is_demo=False)
    assert len(found) == DEFAULT_VERIFY_IMAGES == 64
    assert found.labels is None
    assert set(found.paths) <= set(_digit_files())
    assert {p.parent.name for p in found.paths} == {str(d) for d in range(10)}  # spread over every digit
    assert "64" in used and note and "--images" in note
    assert len(verification_images(None, labels, None, is_demo=False, limit=5)[0]) == 5
    assert len(verification_images(None, labels, None, is_demo=True, limit=5)[0]) == 5


def test_other_model_gets_64_held_back_frames():
    frames = np.random.default_rng(0).integers(0, 256, (100, 8, 8, 3), dtype=np.uint8)
    found, used, _ = verification_images(None, {0: "a"}, None, is_demo=False, holdout=SimpleNamespace(frames=frames))
    assert found.labels is None and len(found) == 64
    np.testing.assert_array_equal(found.frames, frames[:64])
    assert "held back" in used
    small, _ = default_image_set(SimpleNamespace(frames=frames[:10]))
    assert len(small) == 10


def test_user_images_keep_their_labels(tmp_path):
    from PIL import Image

    for cls in ("3", "7"):
        (tmp_path / cls).mkdir()
        for i in range(70):  # more than the default set: the user's images are all used
            Image.new("RGB", (8, 8), (i, 0, 0)).save(tmp_path / cls / f"{i}.png")
    found, _, note = verification_images(str(tmp_path), {i: str(i) for i in range(10)}, None, is_demo=False)
    assert len(found) == 140 and found.labels == [3] * 70 + [7] * 70 and note is None


def test_cli_build_of_a_1000_class_model_reports_no_accuracy(tmp_path, capsys):
    """Before: 450 digit images at the model's size and an accuracy against digit labels."""
    transformers = pytest.importorskip("transformers")
    from helpers import perturb_, small_config_dict

    from focalnet_edge.cli import main

    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    cfg = transformers.FocalNetConfig(**small_config_dict(num_labels=1000, image_size=64))
    perturb_(transformers.FocalNetForImageClassification(cfg)).save_pretrained(ckpt)
    assert main(["-q", "build", "--model", str(ckpt), "--precision", "fp32", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    reports = json.loads((out / "report.json").read_text())
    assert len(reports) == 1
    r = reports[0]
    assert r["images"] == 64
    assert r["accuracy"] is None and r["reference_accuracy"] is None
    assert r["top1_agreement"] == 1.0 and r["passed"]
    header, _, row = printed.splitlines()[:3]
    start = header.index("accuracy")  # columns are padded to a common width
    assert row[start:].split("  ")[0].strip() == "-"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["verification_images"].startswith("64 ")
