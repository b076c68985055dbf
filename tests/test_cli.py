"""The focalnet-edge command: exit codes, one-line errors, nothing half-written."""

from __future__ import annotations

import json

import onnx
import pytest

from focalnet_edge.cli import main
from focalnet_edge.demo import demo_images


def run_cli(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse's usage errors (an option's value out of range, named by argparse)
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_error(code, err, *needles):
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err  # one line, no traceback
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_info_demo(capsys):
    code, out, _ = run_cli(capsys, "info", "--model", "demo", "--json")
    assert code == 0
    facts = json.loads(out)
    assert facts["architecture"] == "FocalNetForImageClassification" and facts["labels"] == 10


def test_info_says_every_fact_in_words_and_json_keeps_the_structures(capsys, tmp_path):
    """`info` on a folder, an artifact and a model: no Python dict/list/None/True in the text; --json as before."""
    import os
    import re

    from PIL import Image

    out_dir = tmp_path / "out"
    assert run_cli(capsys, "-q", "export", "--model", "demo", "--output", str(out_dir), "--batch", "1:4:8")[0] == 0
    python_repr = re.compile(r"[\[{(]'|'[\]})]|\b(None|True|False)\b|\[\d|\d\]")
    texts = {}
    for what in (str(out_dir), str(out_dir / "model.onnx"), "--model"):
        code, out, _ = run_cli(capsys, "-q", "info", *([what, "demo"] if what == "--model" else [what]))
        assert code == 0 and not python_repr.search(out), out
        texts[what] = {line.split("  ", 1)[0]: line for line in out.splitlines() if not line.startswith(" ")}
        texts[what]["_all"] = out
    folder, artifact, model = texts[str(out_dir)], texts[str(out_dir / "model.onnx")], texts["--model"]
    for facts in (folder, artifact):
        assert "batch 1..8 (optimal 4); " in facts["input"] and "dtype float32" in facts["input"]
        assert f"resample {int(Image.Resampling.BILINEAR)} (bilinear)" in facts["_all"] and "rescale_factor 1/255" in facts["_all"]
    assert f"model.onnx  fp32, onnx, {os.path.getsize(out_dir / 'model.onnx')} bytes, " in folder["artifacts"]
    assert f"onnx {onnx.__version__}" in folder["versions"] and "tensorrt " in folder["versions"]
    assert model["depths"].split("  ")[-1].strip() == "1, 1, 2, 1" and model["switches"].endswith("none")
    assert "mean 0.5, 0.5, 0.5; std 0.5, 0.5, 0.5" in model["preprocessing"]
    code, out, _ = run_cli(capsys, "-q", "info", str(out_dir), "--json")  # --json: the structures, unchanged
    facts = json.loads(out)
    assert code == 0 and facts["input"]["batch"] == [1, 4, 8] and facts["artifacts"]["model.onnx"]["verified"] is None
    assert isinstance(facts["versions"], dict) and facts["labels"] == 10


def test_export_verify_predict(capsys, tmp_path):
    out_dir = tmp_path / "out"
    code, out, _ = run_cli(capsys, "-q", "export", "--model", "demo", "--output", str(out_dir), "--fuse-preprocess", "--batch", "1:4:8")
    assert code == 0 and "frames uint8" in out
    code, out, _ = run_cli(capsys, "-q", "verify", str(out_dir), "--json", "--limit", "60")
    assert code == 0
    (report,) = json.loads(out)
    assert report["passed"] and report["images"] == 60
    image, label = demo_images()[0]
    code, out, _ = run_cli(capsys, "-q", "predict", str(out_dir), str(image), "--jsonl", "--top-k", "2")
    assert code == 0
    row = json.loads(out.strip())
    assert row["top"][0]["label"] == str(label) and len(row["top"]) == 2


def test_verify_fails_with_exit_1_when_thresholds_fail(capsys, tmp_path):
    """An artifact from other weights than the reference: figures fail, exit code 1."""
    out_dir = tmp_path / "out"
    assert run_cli(capsys, "-q", "export", "--model", "demo", "--output", str(out_dir))[0] == 0
    import torch

    from focalnet_edge.model import load_model

    model = load_model("demo")
    with torch.no_grad():
        model.classifier.bias.add_(torch.arange(10.0))
    model.save_pretrained(tmp_path / "other")
    code, out, _ = run_cli(capsys, "-q", "verify", str(out_dir), "--reference", str(tmp_path / "other"), "--limit", "40")
    assert code == 1 and "FAIL" in out


@pytest.mark.parametrize(
    "argv,needles",
    [
        (["info", "--model", "/no/such/ckpt"], ["/no/such/ckpt", "no such file or folder"]),
        (["export", "--model", "demo", "--image-size", "100", "--dynamic-size"], ["height 100 and width 100 not accepted", "multiples of 32"]),
        (["export", "--model", "demo", "--batch", "8:1:2"], ["argument --batch: batch '8:1:2' not accepted"]),
        (["export", "--model", "demo", "--image-size", "big"], ["argument --image-size: image size 'big' not understood"]),
        (["export", "--model", "demo", "--opset", "11"], ["opset 11 not supported"]),
        (["verify", "/no/such/out"], ["/no/such/out", "no such artifact or output folder"]),
        (["verify", "/tmp"], ["/tmp", "no manifest.json"]),
        (["predict", "/no/such/out", "x.png"], ["/no/such/out"]),
    ],
)
def test_user_errors_are_one_line_with_exit_2(capsys, tmp_path, argv, needles):
    if argv[0] == "export":
        argv = [*argv, "--output", str(tmp_path / "o")]
    code, _, err = run_cli(capsys, *argv)
    assert_clean_error(code, err, *needles)
    if argv[0] == "export":
        assert not (tmp_path / "o" / "model.onnx").exists() and not (tmp_path / "o" / "manifest.json").exists()


def test_predict_on_a_video(capsys, tmp_path):
    cv2 = pytest.importorskip("cv2", reason="OpenCV is the optional 'video' extra")
    import numpy as np
    from PIL import Image

    out_dir = tmp_path / "out"
    run_cli(capsys, "-q", "export", "--model", "demo", "--output", str(out_dir))
    (image, label), *_ = demo_images()
    frame = np.asarray(Image.open(image).convert("RGB"))[..., ::-1]  # OpenCV writes BGR
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for _ in range(6):
        writer.write(np.ascontiguousarray(frame))
    writer.release()
    code, out, _ = run_cli(capsys, "-q", "predict", str(out_dir), str(path), "--every", "2", "--jsonl", "--top-k", "1")
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert code == 0 and [r["image"] for r in rows] == [f"{path}#0", f"{path}#2", f"{path}#4"]
    assert all(r["top"][0]["label"] == str(label) for r in rows)


def test_calibrate_our_onnx_and_reuse_the_cache(capsys, tmp_path, monkeypatch):
    from focalnet_edge.demo import DEMO_CALIBRATION_DIR

    out_dir = tmp_path / "out"
    run_cli(capsys, "-q", "export", "--model", "demo", "--output", str(out_dir))
    code, out, _ = run_cli(capsys, "-q", "calibrate", str(out_dir / "model.onnx"), "--precision", "int8",
                           "--calib-data", str(DEMO_CALIBRATION_DIR), "--no-cpu-int8")
    assert code == 0 and "model.int8.onnx (tensorrt form): top-1 agreement" in out
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert set(manifest["artifacts"]) == {"model.onnx", "model.int8.onnx"}
    assert (out_dir / "calibration.json").is_file()
    first = onnx.load(str(out_dir / "model.int8.onnx"))

    import focalnet_edge.calibration as calibration

    def no_calibration(*args, **kwargs):
        raise AssertionError("the cache must be used, not a new calibration")

    monkeypatch.setattr(calibration, "compute_ranges", no_calibration)
    code, out, _ = run_cli(capsys, "-q", "calibrate", str(out_dir / "model.onnx"), "--precision", "int8", "--calib-data",
                           str(DEMO_CALIBRATION_DIR), "--calib-cache", str(out_dir / "calibration.json"), "--no-cpu-int8")
    assert code == 0
    scales = lambda m: {i.name: onnx.numpy_helper.to_array(i).tolist() for i in m.graph.initializer if i.name.endswith("_scale")}  # noqa: E731
    assert scales(onnx.load(str(out_dir / "model.int8.onnx"))) == scales(first)  # the same ranges, so the same scales


def test_calibrate_a_foreign_onnx_file(capsys, tmp_path):
    """An fp32 ONNX file from another exporter (transformers' FocalNet), no focalnet-edge metadata."""
    import warnings

    import numpy as np
    import onnxruntime as ort
    import torch

    from helpers import hf_twin

    hf, _ = hf_twin("FocalNetForImageClassification")

    class Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x).logits

    foreign = tmp_path / "foreign.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Logits(hf), (torch.randn(1, 3, 64, 64),), str(foreign), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}}, opset_version=17, dynamo=False)
    code, out, _ = run_cli(capsys, "-q", "calibrate", str(foreign), "--precision", "fp16", "--output", str(tmp_path / "out"))
    assert code == 0 and "model.fp16.onnx" in out
    x = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    a = ort.InferenceSession(str(foreign), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    b = ort.InferenceSession(str(tmp_path / "out" / "model.fp16.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.abs(a - b).max() < 0.05 and (a.argmax(-1) == b.argmax(-1)).all()


def test_predict_skips_an_unreadable_image_in_a_folder_and_names_it(capsys, tmp_path, caplog):
    import shutil

    out_dir = tmp_path / "out"
    run_cli(capsys, "-q", "export", "--model", "demo", "--output", str(out_dir))
    folder = tmp_path / "frames"
    folder.mkdir()
    (good, label), *_ = demo_images()
    shutil.copy(good, folder / "a.png")
    (folder / "b.png").write_bytes(b"\x89PNG broken")
    code, out, err = run_cli(capsys, "predict", str(out_dir), str(folder), "--top-k", "1")
    assert code == 0 and out.strip() == f"{folder / 'a.png'}: {label} " + out.strip().split(" ")[-1]
    assert f"skipped {folder / 'b.png'}: not a readable image" in caplog.text + err
    code, _, err = run_cli(capsys, "predict", str(out_dir), str(folder / "b.png"))  # named explicitly: an error
    assert code == 2 and "b.png: not a readable image" in err


def test_predict_top_k_over_the_classes_ranks_them_all_and_says_so_once(capsys, tmp_path, caplog):
    out_dir = tmp_path / "out"
    run_cli(capsys, "-q", "export", "--model", "demo", "--output", str(out_dir))
    n_classes = onnx.load(out_dir / "model.onnx").graph.output[0].type.tensor_type.shape.dim[-1].dim_value
    images = [str(p) for p, _ in demo_images()[:3]]
    code, out, err = run_cli(capsys, "-q", "predict", str(out_dir), *images, "--jsonl", "--top-k", "50")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 3
    assert all(sorted(t["index"] for t in r["top"]) == list(range(n_classes)) for r in rows)
    note = f"--top-k 50: the model has {n_classes} classes; showing all {n_classes}"
    assert (caplog.text + err).count(note) == 1, caplog.text + err
    caplog.clear()
    code, _, err = run_cli(capsys, "-q", "predict", str(out_dir), *images, "--top-k", str(n_classes))
    assert code == 0 and "classes; showing all" not in caplog.text + err


def test_predict_into_head_stops_quietly_like_a_unix_tool(tmp_path):
    """`predict OUT many/ | head -1` through a real shell pipe: one line out, no traceback, exit status 141 (SIGPIPE's)."""
    import os
    import shutil
    import subprocess
    import sys

    from helpers import ROOT

    out_dir = tmp_path / "out"
    assert main(["-q", "export", "--model", "demo", "--output", str(out_dir)]) == 0
    many = tmp_path / "many"
    many.mkdir()
    image, _ = demo_images()[0]
    for i in range(600):  # ~200 bytes a line: far more than a pipe holds once head has gone
        shutil.copy(image, many / f"{i:04d}-{'x' * 120}.png")
    script = f'"{sys.executable}" -m focalnet_edge.cli -q predict "{out_dir}" "{many}" --top-k 5 | head -1; echo "status ${{PIPESTATUS[0]}}" >&2'
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.stdout.count("\n") == 1 and r.stdout.startswith(str(many / "0000-"))
    *before, status = r.stderr.strip().splitlines()
    assert status == "status 141", r.stderr
    assert before == ["using model.onnx: never verified; run `focalnet-edge verify` on the folder"], r.stderr  # no BrokenPipeError, no "Exception ignored"


#: a run of the CLI that sends itself a real SIGINT at the first import after torch's fake_tensor module ran (its
#: atexit handler registered), so the interrupt lands inside `import torch`, as Ctrl-C early in a build does
CUT_TORCH_IMPORT = """
import os, signal, sys

class CutTorchImport:
    sent = False

    def find_spec(self, name, path=None, target=None):
        fake_tensor = sys.modules.get("torch._subclasses.fake_tensor")
        if not self.sent and fake_tensor is not None and hasattr(fake_tensor, "dump_cache_stats"):
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)
        return None

hook = CutTorchImport()
sys.meta_path.insert(0, hook)
from focalnet_edge.cli import main
code = main(sys.argv[1:])
print("sent" if hook.sent else "not sent")
sys.exit(code)
"""


def test_ctrl_c_inside_import_torch_leaves_only_our_line_on_stderr(tmp_path):
    """Interrupted while torch imports, torch's loggers are left unconfigured; its atexit handler's FakeTensor cache
    statistics must not follow our line (they did, through the CLI's log handler)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "cut.py"
    script.write_text(CUT_TORCH_IMPORT)
    r = subprocess.run([sys.executable, str(script), "build", "--precision", "fp16", "--output", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
    assert r.stdout == "sent\n", r.stdout  # the signal was sent, inside torch's import
    assert r.returncode == 130 and r.stderr == "focalnet-edge build: interrupted (SIGINT)\n", r.stderr



def test_a_file_where_a_folder_is_expected_is_named_before_any_work(capsys, tmp_path):
    """`engine FILE` and `build --images FILE`: one line naming the file, exit 2, nothing written."""
    from helpers import one_line, run_cli

    image = demo_images()[0][0]
    code, _, err = run_cli(capsys, "engine", image)
    assert code == 2 and one_line(err).endswith(f"{image}: is a file, expected a focalnet-edge output folder")
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "-q", "build", "--output", out, "--images", image)
    assert code == 2 and f"--images {image}: is a file, not a folder; expected a folder of images" in one_line(err)
    assert not out.exists()  # refused before the export


def test_build_deepstream_names_a_precision_the_build_writes_before_any_work(capsys, tmp_path):
    from helpers import one_line, run_cli

    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "build", "--precision", "fp16", "--deepstream", "int8", "--output", out)
    assert code == 2 and one_line(err).endswith("--deepstream int8: this build writes fp32, fp16; build with --precision int8 "
                                                "(or best), or name one of those")
    assert not out.exists()
