"""ONNX external data (models over 2 GB), the bounded fp16 overflow probe, and per-stage timing (issue 15).

The small-model tests force external data (`FOCALNET_EDGE_EXTERNAL_DATA=always`) on the demo, so
the same code paths run in seconds; `test_over_2gb_end_to_end` builds a model whose fp32 weights
really cross protobuf's 2 GiB limit (marked slow).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from focalnet_edge.errors import ArtifactError
from focalnet_edge.folder.onnx_io import EXTERNAL_DATA_ENV, load_onnx, save_onnx

ROOT = Path(__file__).resolve().parents[1]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def matmul_model(n: int = 64) -> tuple[onnx.ModelProto, np.ndarray]:
    w = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    g = onnx.helper.make_graph([onnx.helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                               [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, n])],
                               [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, n])],
                               [onnx.numpy_helper.from_array(w, "w")])
    return onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 17)]), w


def test_save_onnx_external_pair(tmp_path):
    model, w = matmul_model()
    path = tmp_path / "m.onnx"
    assert save_onnx(model, path, external=True) == tmp_path / "m.onnx.data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]  # no temp file left
    graph = onnx.load(str(path), load_external_data=False)  # onnx's own reader: the weights are in the data file
    (t,) = graph.graph.initializer
    assert t.data_location == onnx.TensorProto.EXTERNAL and not t.raw_data
    assert {e.key: e.value for e in t.external_data}["location"] == "m.onnx.data"
    full = onnx.load(str(path))
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(full.graph.initializer[0]), w)
    x = np.ones((1, 64), np.float32)
    y = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, x @ w, rtol=1e-5, atol=1e-4)
    # written again as one file: the stale data file goes
    assert save_onnx(load_onnx(path), path, external=False) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_save_onnx_by_size_and_setting(tmp_path, monkeypatch):
    model, _ = matmul_model()
    monkeypatch.delenv(EXTERNAL_DATA_ENV, raising=False)
    assert save_onnx(model, tmp_path / "small.onnx") is None  # small: one file
    monkeypatch.setenv(EXTERNAL_DATA_ENV, "always")
    assert save_onnx(matmul_model()[0], tmp_path / "forced.onnx") == tmp_path / "forced.onnx.data"


def test_missing_data_file_is_one_line(tmp_path):
    model, _ = matmul_model()
    save_onnx(model, tmp_path / "m.onnx", external=True)
    (tmp_path / "m.onnx.data").unlink()
    with pytest.raises(ArtifactError, match=r"m\.onnx: its external data m\.onnx\.data is missing"):
        load_onnx(tmp_path / "m.onnx")


def test_absmax_probe_matches_every_tensor_exposed(tmp_path, demo_ckpt):
    """The in-graph reductions give the same max |t| as reading every tensor out (the old way) with numpy."""
    from focalnet_edge.calibration.fp16 import activation_ranges, float_tensors
    from focalnet_edge.export import export_onnx

    path = export_onnx(demo_ckpt, tmp_path / "model.onnx").path
    model = onnx.load(str(path))
    x = np.random.default_rng(0).standard_normal((5, 3, 64, 64)).astype(np.float32)
    names = float_tensors(model)
    assert len(names) > 100
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    known = {o.name for o in exposed.graph.output}
    exposed.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names if n not in known)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(exposed.SerializeToString(), so, providers=["CPUExecutionProvider"])
    expected = {o.name: float(np.abs(v).max()) for o, v in zip(sess.get_outputs(), sess.run(None, {"pixel_values": x}))}
    got = activation_ranges(path, x, batch=2)
    assert set(got) == set(names)
    for n in names:
        assert got[n] == pytest.approx(expected[n], rel=1e-5, abs=1e-6), n
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # the probe file is gone


@pytest.fixture(scope="module")
def forced_build(tmp_path_factory):
    """`build --precision best` of the demo with every ONNX artifact written with external data."""
    from focalnet_edge.pipeline import BuildOptions, build

    out = tmp_path_factory.mktemp("external") / "out"
    old = os.environ.get(EXTERNAL_DATA_ENV)
    os.environ[EXTERNAL_DATA_ENV] = "always"
    try:
        result = build(BuildOptions(model="demo", output=out, precision="best"))
    finally:
        if old is None:
            os.environ.pop(EXTERNAL_DATA_ENV, None)
        else:
            os.environ[EXTERNAL_DATA_ENV] = old
    return result


def test_forced_external_data_build(forced_build):
    out = forced_build.output_dir
    manifest = json.loads((out / "manifest.json").read_text())
    onnx_files = sorted(n for n, e in manifest["artifacts"].items() if e["format"] == "onnx")
    assert onnx_files == ["model.fp16.onnx", "model.int8.cpu.onnx", "model.int8.onnx", "model.onnx"]
    for name in onnx_files:
        entry = manifest["artifacts"][name]
        data = out / f"{name}.data"
        assert entry["external_data"] == {"path": data.name, "sha256": sha256(data), "bytes": data.stat().st_size}
        assert entry["sha256"] == sha256(out / name)
        graph = onnx.load(str(out / name), load_external_data=False)
        locations = {e.value for t in graph.graph.initializer for e in t.external_data if e.key == "location"}
        assert locations == {data.name}, name  # one data file per artifact, its own
        assert (out / name).stat().st_size < data.stat().st_size
    assert forced_build.passed, [r.failures for r in forced_build.reports]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no work files left


def test_runner_loads_external_data(forced_build):
    """The fp32 runner on the folder reproduces the stored PyTorch references (ORT reads the data file)."""
    from focalnet_edge.verify.references import load_references
    from focalnet_edge.folder.manifest import read_manifest
    from focalnet_edge.runtime import load

    out = forced_build.output_dir
    refs = load_references(out, read_manifest(out))
    with load(out, "model.onnx") as runner:
        got = runner.run(runner.contract.inputs_from_frames(refs.frames[:8]))
    name = next(iter(refs.outputs))
    np.testing.assert_allclose(got[name], refs.outputs[name][:8], atol=1e-4)


def test_corrupt_data_file_is_detected(forced_build, tmp_path):
    import shutil

    from focalnet_edge.runtime import load

    out = tmp_path / "copy"
    shutil.copytree(forced_build.output_dir, out)
    data = out / "model.onnx.data"
    blob = bytearray(data.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    data.write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match=r"model\.onnx\.data: sha256 .* does not match manifest\.json"):
        load(out, "model.onnx")
    cli = subprocess.run([sys.executable, "-m", "focalnet_edge.cli", "info", str(out / "model.onnx")],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert cli.returncode == 2
    lines = cli.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.onnx.data: sha256" in lines[0], cli.stderr


def test_triton_deploy_carries_data_file(forced_build, tmp_path):
    from focalnet_edge.deploy.triton import TritonOptions, deploy

    result = deploy(forced_build.output_dir, TritonOptions(repo=tmp_path / "repo", artifact="fp32", kind="cpu"))
    version = result.model_dir / "1"
    assert sorted(p.name for p in version.iterdir()) == ["model.onnx", "model.onnx.data"]
    assert sha256(version / "model.onnx.data") == sha256(forced_build.output_dir / "model.onnx.data")
    sess = ort.InferenceSession(str(version / "model.onnx"), providers=["CPUExecutionProvider"])  # loads as Triton's ORT backend does
    x = np.zeros((1, 3, 64, 64), np.float32)
    assert sess.run(None, {sess.get_inputs()[0].name: x})[0].shape == (1, 10)


def test_stages_in_manifest_and_info(forced_build):
    out = forced_build.output_dir
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    names = [s["name"] for s in stages]
    assert names[0] == "export" and "verify" in names and names[1].startswith("precision")
    for s in stages:
        assert s["seconds"] >= 0 and s["peak_rss_mb"] > 50  # a Python process with torch holds far more than 50 MB
    assert sum(s["seconds"] for s in stages) < 600
    cli = subprocess.run([sys.executable, "-m", "focalnet_edge.cli", "info", str(out)], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert cli.returncode == 0, cli.stderr
    line = next(line for line in cli.stdout.splitlines() if line.startswith("stages"))
    assert f"export {stages[0]['seconds']:.1f} s (peak RSS {stages[0]['peak_rss_mb']:.0f} MB)" in line


def test_timed_stage_measures_own_peak():
    """A stage that allocates 200 MB reports a peak at least that much above the one before it."""
    from focalnet_edge.pipeline import timed_stage

    record: list[dict] = []
    with timed_stage("small", record):
        time.sleep(0.01)
    with timed_stage("big", record):
        block = np.ones(200 * 2**20 // 8)  # touched: resident
        del block
    small, big = record
    assert small["seconds"] >= 0.01 and big["name"] == "big"
    if big["peak_rss_since"] == "stage":
        assert big["peak_rss_mb"] - small["peak_rss_mb"] > 150
    assert big["peak_rss_mb"] * 1024 <= resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + 1024


#: the largest official variant's shape (focalnet-huge, `model/original.py` VARIANTS["huge_fl3"]): 683 M parameters, 2.7 GB in fp32
HUGE = dict(embed_dim=352, depths=[2, 2, 18, 2], focal_levels=[3] * 4, focal_windows=[3] * 4, use_post_layernorm=True,
            use_post_layernorm_in_modulation=True, num_labels=1000, image_size=32)

MAKE_HUGE = """
import sys, torch
from focalnet_edge.model import FocalNetConfig, FocalNetForImageClassification, save_pretrained
torch.manual_seed(0)
with torch.no_grad():
    model = FocalNetForImageClassification(FocalNetConfig(**{fields})).eval()
save_pretrained(model, sys.argv[1])
"""


def _mem_available_gb() -> float:
    try:
        with open("/proc/meminfo") as f:
            return int(next(line.split()[1] for line in f if line.startswith("MemAvailable"))) / 2**20
    except (OSError, StopIteration):
        return 0.0


@pytest.mark.slow
def test_over_2gb_end_to_end(tmp_path):
    """`build --precision fp16` of a focalnet-huge-shaped model (random weights, 32x32 input): its fp32 graph is
    over protobuf's 2 GiB, so it is written as model.onnx + model.onnx.data, and verified against PyTorch."""
    if _mem_available_gb() < 12:  # measured: export 8.2 GB, fp16 10.5 GB peak (2 cores, 2026-11-25)
        pytest.skip(f"needs ~12 GB of free memory, {_mem_available_gb():.1f} GB available")
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    env.pop(EXTERNAL_DATA_ENV, None)  # by size only
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    subprocess.run([sys.executable, "-c", MAKE_HUGE.format(fields=HUGE), str(ckpt)], env=env, check=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "focalnet_edge.cli", "build", "--model", str(ckpt), "--output", str(out),
                             "--precision", "fp16", "--image-size", "32",
                             "--calib-data", str(ROOT / "focalnet_edge" / "data" / "demo" / "calibration"), "--calib-size", "16"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds, rss_gb = time.perf_counter() - t0, usage.ru_maxrss / 2**20
    checkpoint_gb = (ckpt / "model.safetensors").stat().st_size / 2**30
    print(f"\nover-2GB build: {seconds:.0f} s, peak RSS {rss_gb:.2f} GiB ({rss_gb / checkpoint_gb:.1f}x the {checkpoint_gb:.2f} GiB checkpoint)")
    assert os.waitstatus_to_exitcode(status) in (0, 1), log[-3000:]  # 1: a random model's fp16 may miss a threshold
    manifest = json.loads((out / "manifest.json").read_text())
    for stage in manifest["stages"]:
        print(f"  {stage['name']}: {stage['seconds']:.0f} s, peak RSS {stage['peak_rss_mb'] / 1024:.2f} GiB")
    entry = manifest["artifacts"]["model.onnx"]
    data = out / "model.onnx.data"
    assert data.stat().st_size > 2**31 and (out / "model.onnx").stat().st_size < 50 * 2**20
    assert entry["external_data"]["bytes"] == data.stat().st_size and entry["external_data"]["path"] == data.name
    # fp32 vs PyTorch on real frames. Not the fp32 threshold (max abs 1e-4): this random 683 M-parameter
    # model differs from PyTorch by ~1% of its logits already in torch's own raw export (measured 0.033
    # max abs, 49 dB, before any focalnet-edge file handling; `onnx_vs_simplified` is exactly 0)
    assert entry["export_checks"]["onnx_vs_simplified"] == 0.0
    assert entry["verification"]["mean_cosine"] > 0.9999 and entry["verification"]["top1_agreement"] == 1.0
    assert "verification" in manifest["artifacts"]["model.fp16.onnx"]
    assert [s["name"] for s in manifest["stages"]][:2] == ["export", "precision (fp16)"]
