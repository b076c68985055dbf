"""Stored reference outputs, verification without PyTorch, and a verification that garbage cannot pass."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from focalnet_edge.cli import main
from focalnet_edge.folder.io import sha256_file
from focalnet_edge.verify.compare import compare_outputs
from helpers import without_torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("built")
    assert main(["-q", "build", "--precision", "fp16", "--output", str(out)]) == 0
    return out


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_build_stores_frames_and_reference_outputs_hashed(built):
    manifest = json.loads((built / "manifest.json").read_text())
    entry = manifest["references"]
    assert entry["sha256"] == sha256_file(built / "references.npz") and entry["labelled"] is True
    with np.load(built / "references.npz") as data:
        frames, logits, labels = data["frames"], data["output:logits"], data["labels"]
    assert frames.dtype == np.uint8 and frames.shape == (entry["images"], 64, 64, 3) and entry["images"] == 200
    # the stored outputs are PyTorch's on those frames: recompute them independently
    from focalnet_edge.model import load_model

    import torch

    model = load_model("demo").eval()
    config = json.loads((ROOT / "focalnet_edge" / "data" / "demo" / "preprocessor_config.json").read_text())
    mean, std = np.array(config["image_mean"]), np.array(config["image_std"])
    x = ((frames[:8] / 255.0 - mean) / std).transpose(0, 3, 1, 2).astype(np.float32)
    with torch.no_grad():
        expect = model(torch.from_numpy(x)).logits.numpy()
    assert np.abs(expect - logits[:8]).max() <= 1e-4
    assert (logits.argmax(1) == labels).mean() >= 0.95  # the demo's labels, not made-up ones


def test_verify_against_stored_references(capsys, built):
    code, out, _ = run(capsys, "verify", built, "--reference", "stored", "--json")
    reports = json.loads(out)
    assert code == 0 and {r["artifact"] for r in reports} == {"model.onnx", "model.fp16.onnx"}
    assert all(r["passed"] and r["images"] == 200 and "stored in references.npz" in r["reference"] for r in reports)
    assert all(r["accuracy"] is not None and r["accuracy"] >= 0.95 for r in reports)


def test_stored_references_that_changed_are_refused(capsys, built, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    with open(copy / "references.npz", "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01")
    code, _, err = run(capsys, "verify", copy, "--reference", "stored")
    assert code == 2 and "references.npz: sha256 does not match" in err and len(err.strip().splitlines()) == 1


def test_the_runtime_commands_workwithout_torch(built, tmp_path):
    """predict, bench, info, check and verify (stored references) on a built folder, with torch unimportable."""
    copy = tmp_path / "device"
    shutil.copytree(built, copy)
    image = next((ROOT / "focalnet_edge" / "data" / "demo" / "images").rglob("*.png"))
    script = (
        "from focalnet_edge.cli import main\n"
        "import focalnet_edge, focalnet_edge.runtime\n"
        f"codes = [main(['-q', 'predict', {str(copy)!r}, {str(image)!r}, '--top-k', '1']),\n"
        f"         main(['-q', 'bench', {str(copy)!r}, '--batch', '1', '--iterations', '2', '--warmup', '0']),\n"
        f"         main(['info', {str(copy)!r}]),\n"
        f"         main(['check', {str(copy / 'model.fp16.onnx')!r}]),\n"
        f"         main(['-q', 'verify', {str(copy)!r}])]\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('CODES', codes)\n"
    )
    done = without_torch(script, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "CODES [0, 0, 0, 0, 0]" in done.stdout
    assert f"{image}: {image.parent.name} " in done.stdout  # the demo's label is the folder name
    assert "stored in references.npz" in done.stdout  # verify said which reference it used


def test_build_without_torch_is_one_line_naming_the_extra(tmp_path):
    done = without_torch("from focalnet_edge.cli import main\nraise SystemExit(main(['build', '--output', "
                          f"{str(tmp_path / 'out')!r}]))\n", tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "focalnet-edge[build]" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("garbage", ["nan", "zeros", "scaled"])
def test_garbage_outputs_fail_whatever_the_precision(garbage):
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((64, 10)).astype(np.float32)
    out = {"nan": np.full_like(ref, np.nan), "zeros": np.zeros_like(ref), "scaled": ref * 1e3}[garbage]
    for precision in ("fp32", "fp16", "int8"):
        report = compare_outputs({"logits": ref}, {"logits": out}, precision, True, None, "x")
        assert not report.passed, (garbage, precision)
    features = compare_outputs({"f": ref[:, :, None]}, {"f": out[:, :, None]}, "fp16", False, None, "x")
    assert not features.passed  # a head without top-1 still fails
    json.dumps(features.to_dict(), allow_nan=False)  # no NaN/inf in what is written


def test_an_artifact_that_outputs_zeros_fails_verify(capsys, built, tmp_path):
    """A consistent folder (hash updated) whose fp16 graph multiplies its logits by 0: exit 1."""
    copy = tmp_path / "zeros"
    shutil.copytree(built, copy)
    model = onnx.load(str(copy / "model.fp16.onnx"))
    out = model.graph.output[0]
    last = next(n for n in model.graph.node if out.name in n.output)
    last.output[list(last.output).index(out.name)] = "pre_zero"
    elem = out.type.tensor_type.elem_type
    model.graph.initializer.append(onnx.helper.make_tensor("zero", elem, [], [0.0]))
    model.graph.node.append(onnx.helper.make_node("Mul", ["pre_zero", "zero"], [out.name]))
    onnx.save(model, str(copy / "model.fp16.onnx"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["artifacts"]["model.fp16.onnx"]["sha256"] = sha256_file(copy / "model.fp16.onnx")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    code, out_text, _ = run(capsys, "verify", copy, "--reference", "stored", "--artifact", "fp16")
    assert code == 1 and "FAIL" in out_text and "cosine" in out_text
