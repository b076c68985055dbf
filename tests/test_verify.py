"""Verification against the PyTorch reference: figures, thresholds, labels, the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from focalnet_edge.errors import InputError
from focalnet_edge.model import load_checkpoint
from focalnet_edge.pipeline import ExportOptions, export_stage, live_references, verify_stage
from focalnet_edge.verify.compare import compare_outputs, load_image_set


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    export_stage(load_checkpoint("demo"), out, ExportOptions(fuse_preprocess=True))
    return out


def test_verify_demo_fp32_passes_with_accuracy(demo_out):
    images = load_image_set("demo", {i: str(i) for i in range(10)})
    assert images.labels is not None and len(images.paths) == 450
    result = verify_stage(demo_out, live_references(demo_out, images))
    (report,) = result.reports
    assert report.passed and report.images == 450
    assert report.max_abs_error <= 1e-4 and report.top1_agreement == 1.0
    assert report.accuracy == report.reference_accuracy >= 0.97
    manifest = json.loads((demo_out / "manifest.json").read_text())
    assert manifest["artifacts"]["model.onnx"]["verification"]["passed"] is True
    assert json.loads((demo_out / "report.json").read_text())[0]["images"] == 450


def test_compare_outputs_measures_against_an_independent_computation():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((50, 10)).astype(np.float32)
    ref[np.arange(50), rng.integers(0, 10, 50)] += 6  # decided predictions: a clear winner each
    out = ref.copy()
    order = np.argsort(-ref[:5], axis=1)
    for i, (a, b) in enumerate(order[:, :2]):  # 5 rows with top-1 and top-2 swapped: top-1 changes there
        out[i, a], out[i, b] = ref[i, b], ref[i, a]
    labels = list(ref.argmax(-1))
    r = compare_outputs({"logits": ref}, {"logits": out}, "fp32", True, labels, "x")
    assert r.max_abs_error == pytest.approx(float(np.abs(ref - out).max()))
    assert r.top1_agreement == pytest.approx(np.mean(ref.argmax(-1) == out.argmax(-1)))
    assert r.reference_accuracy == 1.0 and r.accuracy == pytest.approx(0.9)
    assert not r.passed and any("max abs error" in f for f in r.failures) and any("top-1" in f for f in r.failures)
    assert [f["image"] for f in r.flips] == [0, 1, 2, 3, 4] and all(f["decided"] for f in r.flips)
    assert r.top1_decided == pytest.approx(1 - 5 / r.decided_images)


def test_top1_counts_where_the_fp32_prediction_is_decided():
    """Near-ties flip on any noise: counted as flips with their fp32 margin, not against the target;
    a flip on an image whose margin is far above the measured noise fails."""
    from focalnet_edge.verify.metrics import FLIP_SIGMAS, top1_judgement

    rng = np.random.default_rng(1)
    ref = rng.standard_normal((48, 100)).astype(np.float32) * 3
    ref[:2, 1] = ref[:2, 0] = ref[:2].max(1) + 1  # two near-ties: classes 0 and 1 equal
    ref[:2, 0] += 0.01
    noise = rng.standard_normal(ref.shape).astype(np.float32) * 0.03  # ~40 dB
    out = ref + noise
    out[:2, 1] = out[:2, 0] + 0.02  # the near-ties flip
    j = top1_judgement(ref, out)
    sigma = float(np.sqrt(np.mean((out - ref) ** 2)))
    assert j["flip_margin"] == pytest.approx(FLIP_SIGMAS * np.sqrt(2) * sigma, rel=1e-5)
    assert [f["image"] for f in j["flips"]] == [0, 1] and not any(f["decided"] for f in j["flips"])
    assert j["flips"][0]["fp32_margin"] == pytest.approx(0.01, abs=1e-5)
    top2 = np.sort(ref, axis=1)[:, -2:]
    assert j["decided"] == int((top2[:, 1] - top2[:, 0] > j["flip_margin"]).sum()) >= 40
    assert j["agreement"] == 1.0  # raw top-1 would be 46/48 = 0.958
    r = compare_outputs({"logits": ref}, {"logits": out}, "int8", True, None, "x")
    assert r.passed and r.top1_agreement == pytest.approx(46 / 48) and r.top1_decided == 1.0
    far = ref.copy() + noise
    top2 = np.argsort(-ref[10])[:2]
    far[10, top2[1]] = ref[10, top2[0]] + 1.0  # a decided image flips: that is the quantization's doing
    r = compare_outputs({"logits": ref}, {"logits": far}, "int8", True, None, "x")
    assert not r.passed and any("top-1" in f and "#10" in f for f in r.failures)


def test_fp32_threshold_is_1e4():
    ref = np.zeros((4, 3), np.float32)
    ref[:, 0] = 1
    ok = compare_outputs({"l": ref}, {"l": ref + 5e-5}, "fp32", True, None, "x")
    bad = compare_outputs({"l": ref}, {"l": ref + 5e-4}, "fp32", True, None, "x")
    assert ok.passed and not bad.passed


def test_folder_per_class_and_labels_file(tmp_path):
    names = {0: "cat", 1: "dog"}
    for name in ("cat", "dog"):
        (tmp_path / "cls" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "cls" / name / "a.png")
    s = load_image_set(tmp_path / "cls", names)
    assert s.labels == [0, 1]
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "x.png")
    Image.new("RGB", (8, 8)).save(flat / "y.png")
    (flat / "notes.txt").write_text("not an image")
    (tmp_path / "labels.csv").write_text("x.png,dog\ny.png,cat\n")
    s = load_image_set(flat, names, tmp_path / "labels.csv")
    assert s.labels == [1, 0] and s.skipped == 1
    assert load_image_set(flat, names).labels is None


def test_image_set_errors(tmp_path):
    with pytest.raises(InputError, match="no such image folder"):
        load_image_set(tmp_path / "none")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(InputError, match="no images found"):
        load_image_set(tmp_path)


def test_images_naming_a_file_or_a_fifo_says_what_it_is_and_that_a_folder_is_expected(tmp_path, demo_out, capsys):
    import os

    from focalnet_edge.cli import main

    image = tmp_path / "one.png"
    Image.new("RGB", (8, 8)).save(image)
    with pytest.raises(InputError, match=r"one\.png: is a file, not a folder; expected a folder of images \(to verify on this image alone"):
        load_image_set(image)
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(InputError, match=r"pipe: is a FIFO \(named pipe\), not a folder; expected a folder of images$"):
        load_image_set(tmp_path / "pipe")
    assert main(["-q", "verify", str(demo_out), "--images", str(image)]) == 2
    err = capsys.readouterr().err
    assert err == f"focalnet-edge verify: error: {image}: is a file, not a folder; expected a folder of images " \
                  "(to verify on this image alone, put it in a folder)\n"


@pytest.mark.parametrize("head,extra", [("features", ["--out-features", "stem,stage2,stage4"]), ("probs", ["--dynamic-size"])])
def test_build_and_verify_other_heads(tmp_path, head, extra):
    from focalnet_edge.cli import main

    out = tmp_path / "out"
    assert main(["-q", "build", "--precision", "best", "--head", head, "--output", str(out), *extra]) == 0
    reports = json.loads((out / "report.json").read_text())
    assert len(reports) == 4 and all(r["passed"] for r in reports)
    if head == "features":  # no classes: judged on cosine similarity of the feature maps
        assert all(r["top1_agreement"] is None and r["mean_cosine"] > 0.98 for r in reports)


def test_fp32_tolerance_scales_with_the_outputs_magnitude():
    """1e-4 up to magnitude 1, in proportion above: the issue's 1.03e-4 on logits near 11.5 passes;
    an error of 1e-3 of the magnitude fails at any scale, and the message says what was allowed."""
    rng = np.random.default_rng(1)
    ref = (rng.standard_normal((16, 10)) * 4).astype(np.float32)
    ref[:, 0] = 11.5
    ok = compare_outputs({"l": ref}, {"l": ref + 1.03e-4}, "fp32", True, None, "x")
    assert ok.passed and ok.max_abs_allowed == pytest.approx(1e-4 * float(np.abs(ref).max()))
    bad = compare_outputs({"l": ref}, {"l": ref * np.float32(1.001)}, "fp32", True, None, "x")
    assert not bad.passed and any(f.startswith("max abs error") and "x its largest |reference|" in f for f in bad.failures)
    small = np.full((4, 3), 0.5, np.float32)  # below magnitude 1 the absolute 1e-4 holds
    assert not compare_outputs({"l": small}, {"l": small + 2e-4}, "fp32", True, None, "x").passed


def test_correct_fp32_graph_of_a_model_with_large_logits_passes(tmp_path):
    """A real export of the demo with its classifier scaled x100 (logits in the hundreds): ONNX Runtime
    and PyTorch differ by more than 1e-4 there, and the graph is correct."""
    import torch

    from focalnet_edge.model import load_model

    model = load_model("demo")
    with torch.no_grad():
        model.classifier.weight.mul_(100.0)
        model.classifier.bias.mul_(100.0)
    model.save_pretrained(tmp_path / "big")
    out = tmp_path / "out"
    export_stage(load_checkpoint(str(tmp_path / "big")), out, ExportOptions())
    refs = live_references(out, load_image_set("demo", limit=48))
    (report,) = verify_stage(out, refs).reports
    magnitude = float(np.abs(refs.outputs["logits"]).max())
    assert magnitude > 100
    assert report.max_abs_error > 1e-4  # the fixed 1e-4 failed this correct graph
    assert report.passed, report.failures
    assert report.max_abs_allowed == pytest.approx(1e-4 * magnitude)


def test_a_mistyped_images_path_is_named_with_stored_references_too(demo_out, tmp_path):
    """Without PyTorch (stored references) `--images` is refused anyway, but a typo is named as the typo first."""
    from focalnet_edge.errors import FocalNetEdgeError
    from focalnet_edge.folder.manifest import read_manifest
    from focalnet_edge.verify.choose import choose_references

    with pytest.raises(FocalNetEdgeError, match=f"{tmp_path / 'nope'}: no such image folder"):
        choose_references(demo_out, read_manifest(demo_out), "stored", str(tmp_path / "nope"))
    with pytest.raises(FocalNetEdgeError, match="--images needs the PyTorch reference"):
        choose_references(demo_out, read_manifest(demo_out), "stored", "demo")
