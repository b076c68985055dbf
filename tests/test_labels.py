"""One label policy for every target (issue 27): line n of Triton's labels.txt, of DeepStream's labels file and of
predict's text output is class n, and a label no target can carry is refused at build, naming its class.

The references: the checkpoint's own id2label (written by the test), the files read back with plain
Python line splitting, and predict's class read off the ONNX outputs with onnxruntime directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from focalnet_edge.deploy import deepstream, triton
from focalnet_edge.deploy.triton import TritonOptions
from focalnet_edge.deploy.deepstream.config import LABELS as DEEPSTREAM_LABELS
from focalnet_edge.errors import ConfigError
from focalnet_edge.folder.labels import label_problem
from focalnet_edge.model import FocalNetConfig, FocalNetForImageClassification, ImageSpec
from focalnet_edge.pipeline import ExportOptions, export_stage

from helpers import ROOT, perturb_, small_config_dict

#: labels every target must carry as they are: commas, quotes, spaces at either end, '#', other scripts, '=' and '['
KEPT = ["tench, Tinca tinca", ' "quoted" ', "a#b", "naïve café ✓", "猫", "key=value [x]", "end\\n"]


def _checkpoint(folder, labels):
    cfg = FocalNetConfig(**small_config_dict(num_labels=len(labels), id2label=dict(enumerate(labels))))
    perturb_(FocalNetForImageClassification(cfg), seed=3, scale=0.5).save_pretrained(folder, preprocessing=ImageSpec(64, 64, None, False))
    return folder


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "focalnet_edge.cli", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from focalnet_edge.model import load_checkpoint

    tmp = tmp_path_factory.mktemp("labels")
    ckpt = load_checkpoint(str(_checkpoint(tmp / "ckpt", KEPT)))
    export_stage(ckpt, tmp / "out", ExportOptions(fuse_preprocess=True, frames_dtype="float32", layout="NCHW", batch=(1, 2, 4)))
    return tmp / "out"


def test_triton_labels_txt_line_n_is_class_n(folder, tmp_path):
    result = triton.deploy(folder, TritonOptions(repo=tmp_path / "repo"))
    text = (result.model_dir / triton.LABELS_FILE).read_text(encoding="utf-8")
    assert text.split("\n") == [*KEPT, ""]  # one label per line, in class order, newline-terminated


def test_deepstream_labels_file_entry_n_is_class_n(folder):
    out = deepstream.deploy(folder, deepstream.DeepStreamOptions(force=True))
    (line,) = (out / DEEPSTREAM_LABELS).read_text(encoding="utf-8").splitlines()
    assert line.split(";") == KEPT  # nothing replaced (no more ';' -> ',')


def test_predict_text_line_n_names_the_class_of_image_n(folder, tmp_path):
    rng = np.random.default_rng(0)
    images = []
    for i in range(6):
        path = tmp_path / f"im{i}.png"
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
        images.append(path)
    r = _cli("predict", folder, *images, "--top-k", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    assert lines[-1] == "" and len(lines) == len(images) + 1  # one line per image, no label spilled onto another
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    for path, line in zip(images, lines):
        frames = np.asarray(Image.open(path).convert("RGB"), np.float32).transpose(2, 0, 1)[None]
        expected = KEPT[int(sess.run(None, {sess.get_inputs()[0].name: frames})[0].argmax())]
        assert line.startswith(f"{path}: {expected} ")
    assert len({line.split(": ", 1)[1].rsplit(" ", 1)[0] for line in lines[:-1]}) > 1  # not one class for all: the test can tell


@pytest.mark.parametrize("label", ["two\nlines", "carriage\rreturn", "a;b", "tab\there", "para\u2029graph", "nul\x00"])
def test_a_label_no_target_can_carry_is_refused_at_build_naming_its_class(label, tmp_path):
    labels = ["zero", "one", "two", label, "four"]
    ckpt = _checkpoint(tmp_path / "ckpt", labels)
    r = _cli("build", "--model", ckpt, "--precision", "fp32", "--output", tmp_path / "out", "--images", ckpt, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "the label of class 3" in r.stderr and str(ckpt) in r.stderr
    assert not (tmp_path / "out").exists()


def test_a_manifest_edited_to_hold_a_line_break_is_refused_by_every_target(folder, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["labels"]["2"] = "bad\nlabel"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="the label of class 2"):
        triton.deploy(copy, TritonOptions(repo=tmp_path / "repo"))
    with pytest.raises(ConfigError, match="the label of class 2"):
        deepstream.deploy(copy, deepstream.DeepStreamOptions(force=True))


def test_the_policy():
    assert [label_problem(x) for x in KEPT] == [None] * len(KEPT)
    for bad in ("\n", "\r", ";", "\t", "\x85", "\u2028", "\x1e", "\x7f"):
        assert label_problem(f"a{bad}b"), repr(bad)
