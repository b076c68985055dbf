"""Every error a user can cause: exit code 2, one line naming the file or value, nothing half-written."""

from __future__ import annotations

import errno
import json

import pytest

from helpers import one_line, run_cli

from focalnet_edge.cli import main

ARTIFACTS = ("model.onnx", "model.fp16.onnx", "model.int8.onnx", "model.int8.cpu.onnx", "manifest.json", "calibration.json")


def nothing_written(folder) -> None:
    if folder.exists():
        left = [p.name for p in folder.iterdir()]
        assert not [n for n in left if n in ARTIFACTS or n.endswith(".partial")], left


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("built")
    assert main(["-q", "build", "--precision", "fp16", "--output", str(out)]) == 0
    return out


def test_missing_checkpoint(capsys, tmp_path):
    code, _, err = run_cli(capsys, "build", "--model", tmp_path / "nope", "--output", tmp_path / "out")
    assert code == 2 and f"{tmp_path / 'nope'}: no such file or folder" in one_line(err)
    nothing_written(tmp_path / "out")


@pytest.mark.parametrize("content", [b"\x00garbage", b"PK\x03\x04broken zip"])
def test_corrupt_checkpoint(capsys, tmp_path, content):
    bad = tmp_path / "weights.pth"
    bad.write_bytes(content)
    code, _, err = run_cli(capsys, "build", "--model", bad, "--output", tmp_path / "out")
    assert code == 2 and f"{bad}: not a PyTorch checkpoint" in one_line(err)
    nothing_written(tmp_path / "out")


def test_corrupt_safetensors_in_a_folder(capsys, tmp_path):
    from focalnet_edge.model import load_model

    load_model("demo").save_pretrained(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "model.safetensors").write_bytes(b"{not safetensors")
    code, _, err = run_cli(capsys, "export", "--model", tmp_path / "ckpt", "--output", tmp_path / "out")
    assert code == 2 and "model.safetensors: not a readable safetensors file" in one_line(err)
    nothing_written(tmp_path / "out")


def test_unreadable_image(capsys, built, tmp_path):
    bad = tmp_path / "frame.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    code, _, err = run_cli(capsys, "predict", built, bad)
    assert code == 2 and f"{bad}: not a readable image" in one_line(err)


def test_empty_calibration_set(capsys, tmp_path):
    (tmp_path / "calib").mkdir()
    (tmp_path / "calib" / "notes.txt").write_text("no images here")
    code, _, err = run_cli(capsys, "build", "--precision", "int8", "--calib-data", tmp_path / "calib", "--output", tmp_path / "out")
    assert code == 2 and f"{tmp_path / 'calib'}: no usable calibration image" in one_line(err)
    out = tmp_path / "out"
    assert not (out / "model.int8.onnx").exists() and not (out / "calibration.json").exists()


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["build", "--precision", "int4"], "invalid choice: 'int4'"),
        (["build", "--calib-size", "0"], "argument --calib-size: 0 not accepted"),
        (["build", "--min-agreement", "1.5"], "--min-agreement 1.5 not accepted"),
        (["build", "--opt-level", "9"], "--opt-level 9 not accepted"),
        (["build", "--workspace", "0"], "argument --workspace: 0 not accepted"),
        (["build", "--batch", "x"], "argument --batch: batch 'x' not understood"),
        (["build", "--profile-sizes", "64"], "--profile-sizes '64' not understood"),
        (["export", "--image-size", "0x0"], "argument --image-size: image size '0x0' not understood"),
        (["bench", ".", "--batch", "0"], "--batch '0' not understood"),
        (["predict", ".", "x.png", "--top-k", "0"], "argument --top-k: 0 not accepted: expected an integer >= 1"),
        (["calibrate", "x.onnx", "--precision", "int2"], "invalid choice: 'int2'"),
        (["build", "--calib-method", "magic"], "invalid choice: 'magic'"),
    ],
)
def test_bad_option_values(capsys, tmp_path, argv, needle):
    code, _, err = run_cli(capsys, *argv, *(["--output", tmp_path / "out"] if argv[0] in ("build", "export") else []))
    assert code == 2 and needle in one_line(err)
    nothing_written(tmp_path / "out")


@pytest.mark.parametrize("command", ["predict", "predict-by-path", "bench", "verify", "info"])
def test_tampered_artifact(capsys, built, tmp_path, command):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    with open(copy / "model.fp16.onnx", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    from focalnet_edge.demo import demo_images

    image = str(demo_images()[0][0])
    argv = {"predict": ["predict", copy, image, "--artifact", "model.fp16.onnx"], "bench": ["bench", copy, "--artifact", "model.fp16.onnx"],
            "verify": ["verify", copy, "--artifact", "model.fp16.onnx"], "predict-by-path": ["predict", copy / "model.fp16.onnx", image],
            "info": ["info", copy / "model.fp16.onnx"]}[command]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "model.fp16.onnx: sha256" in one_line(err) and "changed after the build" in err


def test_output_folder_not_writable(capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(capsys, "build", "--precision", "fp32", "--output", blocker / "out")
    assert code == 2 and str(blocker) in one_line(err)


def test_disk_full_leaves_no_half_written_artifact(capsys, tmp_path, monkeypatch):
    import focalnet_edge.folder.onnx_write as onnx_write

    real_write = onnx_write._write_inline  # how save_onnx writes an ONNX file's bytes

    def full_disk(model, f, *a, **k):
        if ".model.fp16.onnx." in f.name:  # the temporary file of model.fp16.onnx
            f.write(b"partial bytes")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(model, f, *a, **k)

    monkeypatch.setattr(onnx_write, "_write_inline", full_disk)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "build", "--precision", "fp16", "--output", out)
    line = one_line(err)
    assert code == 2 and "model.fp16.onnx" in line and "No space left on device" in line
    assert not out.exists()  # a build that fails commits nothing: the folder is as it was (absent)
    assert not list(tmp_path.glob(".out.staging-*"))  # and its staging folder is gone


def test_interrupted_build_leaves_no_half_written_artifact(capsys, tmp_path, monkeypatch):
    import focalnet_edge.calibration.int8 as int8

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(int8, "quantize", interrupt)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "build", "--precision", "best", "--output", out)
    assert code == 130 and "interrupted" in err
    assert not out.exists() and not list(tmp_path.glob(".out.staging-*"))  # nothing committed, nothing left


def test_rebuild_into_the_same_folder_replaces_each_artifact(capsys, built, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    before = json.loads((copy / "manifest.json").read_text())["artifacts"]["model.onnx"]["sha256"]
    assert main(["-q", "build", "--precision", "fp16", "--output", str(copy), "--batch", "1:2:8"]) == 0
    after = json.loads((copy / "manifest.json").read_text())
    assert after["artifacts"]["model.onnx"]["sha256"] != before  # a new graph (new batch range), consistent manifest
    from focalnet_edge.runtime import load

    with load(copy) as runner:
        assert runner.contract.batch == (1, 2, 8)
