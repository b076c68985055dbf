"""Messages that name what is wrong (issue 27 item 15), each through the real command line.

- every count option of every command names itself when out of range (one argparse type);
- `verify --images DIR` whose files are all unreadable names DIR;
- a FIFO given as an image or as calibration data is "a FIFO (named pipe), not a regular file" (and is never opened);
- a full disk (a real tmpfs) names --output, not the staging folder;
- options that would be ignored (--layout without --fuse-preprocess, --out-features with another head) are refused;
- `--static-batch --batch 4` prints the input's real shape.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from helpers import one_line, run_cli

from focalnet_edge.cli import main
from focalnet_edge.demo import demo_images
from focalnet_edge.errors import InputError


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("msg") / "out"
    assert main(["-q", "export", "--model", "demo", "--output", str(out)]) == 0
    return out


@pytest.mark.parametrize("argv,named", [
    (["predict", "{out}", "{image}", "--batch", "0"], "argument --batch-size/--batch: 0 not accepted: expected an integer >= 1"),
    (["predict", "{out}", "{image}", "--top-k", "0"], "argument --top-k: 0 not accepted"),
    (["predict", "{out}", "{image}", "--every", "-2"], "argument --every: -2 not accepted"),
    (["predict", "{out}", "{image}", "--limit", "zero"], "argument --limit: 'zero' not accepted: expected an integer >= 1"),
    (["verify", "{out}", "--limit", "0"], "argument --limit: 0 not accepted"),
    (["bench", "{out}", "--iterations", "0"], "argument --iterations: 0 not accepted"),
    (["bench", "{out}", "--warmup", "-1"], "argument --warmup: -1 not accepted: expected an integer >= 0"),
    (["calibrate", "{out}/model.onnx", "--calib-size", "0"], "argument --calib-size: 0 not accepted"),
    (["deploy", "{out}", "--to", "triton", "--repo", "{out}/r", "--instances", "0"], "argument --instances: 0 not accepted"),
    (["export", "--batch", "0", "--output", "{out}/x"], "argument --batch: batch '0' not accepted: expected N >= 1"),
    (["export", "--batch", "4:2:8", "--output", "{out}/x"], "argument --batch: batch '4:2:8' not accepted"),
    (["export", "--image-size", "abc", "--output", "{out}/x"], "argument --image-size: image size 'abc' not understood"),
])
def test_an_out_of_range_option_names_itself(capsys, folder, argv, named):
    image, _ = demo_images()[0]
    code, _, err = run_cli(capsys, *(a.format(out=folder, image=image) for a in argv))
    assert code == 2 and named in one_line(err)


def test_verify_on_a_folder_of_unreadable_files_names_the_folder(capsys, folder, tmp_path):
    images = tmp_path / "broken"
    images.mkdir()
    for name in ("a.png", "b.jpg", "c.jpeg"):
        (images / name).write_bytes(b"not an image")
    code, _, err = run_cli(capsys, "-q", "verify", folder, "--images", images)
    assert code == 2
    assert f"{images}: none of its 3 images could be read" in err.strip().splitlines()[-1]


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "frame.png"
    os.mkfifo(path)
    return path


def test_a_fifo_is_not_a_regular_file_wherever_an_image_is_read(capsys, folder, fifo):
    """Nothing writes to the FIFO: opening it would block, so a hang is the failure this test would show."""
    code, _, err = run_cli(capsys, "predict", folder, fifo)
    assert code == 2 and one_line(err).endswith(f"{fifo}: is a FIFO (named pipe), not a regular file; expected an image file or folder")
    from focalnet_edge.runtime import load

    with load(folder) as runner, pytest.raises(InputError, match="is a FIFO \\(named pipe\\), not a regular file; expected an image file"):
        runner.predict(fifo)
    code, _, err = run_cli(capsys, "calibrate", folder / "model.onnx", "--precision", "int8", "--calib-data", fifo, "--output", fifo.parent / "c")
    assert code == 2 and "is a FIFO (named pipe), not a regular file; expected a calibration folder or file" in one_line(err)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="mounting a tmpfs needs root")
@pytest.mark.parametrize("size", ["300k", "1200k", "2500k"])
def test_a_full_disk_names_the_output_folder(capsys, tmp_path, size):
    """A real tmpfs too small for the build: one line naming --output (not the staging folder), nothing left at --output."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)], check=True)
    try:
        out = disk / "out"
        code, _, err = run_cli(capsys, "-q", "build", "--precision", "best", "--output", out)
        line = one_line(err)
        assert code == 2 and "No space left on device" in line, line
        assert line.startswith(f"focalnet-edge build: error: {out}") and "staging" not in line, line
        assert not out.exists()
    finally:
        subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.parametrize("argv,message", [
    (["--layout", "NCHW"], "--layout NCHW: applies to raw frames, and this graph takes pixel values; add --fuse-preprocess"),
    (["--frames-dtype", "float32", "--color-order", "BGR"], "--color-order BGR, --frames-dtype float32: these apply to raw frames"),
    (["--head", "logits", "--out-features", "stage1"], "--out-features stage1: applies to --head features (here --head logits)"),
    (["--head", "probs", "--out-features", "stage1,stage2"], "--out-features stage1,stage2: applies to --head features (here --head probs)"),
])
@pytest.mark.parametrize("command", ["export", "build"])
def test_an_option_that_would_be_ignored_is_refused(capsys, tmp_path, command, argv, message):
    code, _, err = run_cli(capsys, "-q", command, "--output", tmp_path / "out", *argv)
    assert code == 2 and message in one_line(err)
    assert not (tmp_path / "out").exists()


def test_a_static_batch_is_printed_as_it_is(capsys, tmp_path):
    import onnx

    code, out, _ = run_cli(capsys, "-q", "export", "--static-batch", "--batch", "4", "--output", tmp_path / "out")
    dims = [d.dim_value or d.dim_param for d in onnx.load(str(tmp_path / "out" / "model.onnx")).graph.input[0].type.tensor_type.shape.dim]
    assert code == 0 and dims == [4, 3, 64, 64]
    assert "input pixel_values float32 [4, 3, 64, 64]" in out
    code, out, _ = run_cli(capsys, "-q", "export", "--batch", "1:4:8", "--output", tmp_path / "dyn")
    assert code == 0 and "input pixel_values float32 ['batch', 3, 64, 64]" in out


def test_a_calibration_size_beyond_memory_is_refused_up_front(capsys, folder, tmp_path):
    """`--calib-size` from a video (its frames are kept): checked like `--image-size`, before any frame is decoded."""
    cv2 = pytest.importorskip("cv2", reason="OpenCV is the optional 'video' extra")
    import numpy as np

    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 40))
    for i in range(5):
        writer.write(np.full((40, 48, 3), i * 8, np.uint8))
    writer.release()
    code, _, err = run_cli(capsys, "-q", "calibrate", folder / "model.onnx", "--precision", "int8", "--calib-data", clip,
                       "--calib-size", "1000000000", "--output", tmp_path / "c")
    line = one_line(err)
    assert code == 2 and "--calib-size 1000000000 (64x64 images) needs about" in line and "choose a smaller --calib-size" in line


def test_a_missing_checkpoint_is_an_oserror_as_in_transformers(tmp_path):
    from focalnet_edge.model import FocalNetForImageClassification

    with pytest.raises(OSError, match="no such file or folder"):
        FocalNetForImageClassification.from_pretrained(tmp_path / "nothing")


def test_a_fifo_given_as_the_model_is_said_to_be_one(capsys, tmp_path):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    code, _, err = run_cli(capsys, "export", "--model", fifo, "--output", tmp_path / "out")
    assert code == 2 and "is a FIFO (named pipe), not a regular file or folder" in one_line(err), err


def test_ctrl_c_while_the_parser_is_built_is_one_line(capsys, monkeypatch):
    """Building the parser imports onnx (about a second): Ctrl-C there is one line and 130 too."""
    import focalnet_edge.cli as cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    code, _, err = run_cli(capsys, "info", "demo")
    assert code == 130 and one_line(err) == "focalnet-edge: interrupted (SIGINT)"


@pytest.mark.parametrize("argv,flag", [
    (["--precision", "fp16", "--no-gate"], "--no-gate"),
    (["--precision", "fp16", "--min-agreement", "0.9"], "--min-agreement"),
    (["--precision", "fp32", "--max-fallback", "3"], "--max-fallback"),
    (["--precision", "fp16", "--int8-smoothing", "0.3"], "--int8-smoothing"),
    (["--precision", "fp32", "--calib-method", "entropy"], "--calib-method"),
    (["--precision", "fp32", "--keep-float", "encoder.stages.0.*"], "--keep-float"),
])
def test_quantization_options_without_quantization_are_refused(capsys, tmp_path, argv, flag):
    """An INT8/FP8 option where nothing is quantized would have no effect: refused before any work."""
    code, _, err = run_cli(capsys, "build", *argv, "--output", tmp_path / "out")
    assert code == 2 and one_line(err).endswith(f"error: {flag} has no effect with {' '.join(argv[:2])}: "
                                                + ("nothing is converted to keep in float" if flag == "--keep-float"
                                                   else "it sets the INT8/FP8 quantization")), err
    assert not (tmp_path / "out").exists()


def test_predict_on_a_folder_of_only_unreadable_images_is_an_error(capsys, caplog, tmp_path):
    """Each unreadable image is skipped with its reason; when that leaves nothing classified, exit 2 naming the folder."""
    folder = tmp_path / "bad"
    folder.mkdir()
    for name in ("a.png", "b.jpg"):
        (folder / name).write_text("not an image")
    from focalnet_edge.model import load_checkpoint
    from focalnet_edge.pipeline import ExportOptions, export_stage

    export_stage(load_checkpoint("demo"), tmp_path / "out", ExportOptions())
    code, out, err = run_cli(capsys, "predict", tmp_path / "out", folder)
    assert code == 2 and out == "", (out, err)
    assert [r.getMessage().split(":")[0] for r in caplog.records if "skipped" in r.getMessage()] == \
        [f"skipped {folder / 'a.png'}", f"skipped {folder / 'b.jpg'}"]
    assert one_line(err).endswith(f"error: {folder}: no readable image among its 2 files (each skipped, with its reason, above)"), err
