"""fp32/fp16/int8 TensorRT engines of the demo model against ONNX Runtime and PyTorch."""

from __future__ import annotations

import json

import numpy as np
import pytest

from focalnet_edge.pipeline import BuildOptions, ExportOptions, build
from focalnet_edge.runtime import OnnxRuntimeRunner, TorchRunner, load
from focalnet_edge.runtime.tensorrt import EngineOptions


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("trt")
    result = build(BuildOptions(model="demo", output=out, precision="best", backend="tensorrt",
                                export=ExportOptions(batch=(1, 4, 16)), engine=EngineOptions()))
    return out, result


def test_engines_are_built_raw_and_recorded(built):
    out, _ = built
    manifest = json.loads((out / "manifest.json").read_text())
    for name in ("model.fp32.engine", "model.fp16.engine", "model.int8.engine"):
        entry = manifest["artifacts"][name]
        assert entry["format"] == "tensorrt-plan" and entry["requires"]["tensorrt"] and entry["requires"]["gpu"] != "unknown"
        assert not (out / name).read_bytes().startswith(b"{")  # a raw plan, no header of ours
    assert (out / "timing.cache").is_file()


@pytest.mark.parametrize("name,tol_agree", [("model.fp32.engine", 1.0), ("model.fp16.engine", 0.995), ("model.int8.engine", 0.99)])
def test_engines_match_onnxruntime_and_pytorch(built, name, tol_agree):
    out, result = built
    x = np.random.default_rng(0).standard_normal((10, 3, 64, 64)).astype(np.float32)
    with load(out / name) as engine:
        y = engine(x)
    onnx_name = {"model.fp32.engine": "model.onnx", "model.fp16.engine": "model.fp16.onnx", "model.int8.engine": "model.int8.onnx"}[name]
    ref_ort = OnnxRuntimeRunner(out / onnx_name)(x)
    ref_torch = TorchRunner("demo")(x)
    if name == "model.fp32.engine":
        assert np.abs(y - ref_torch).max() <= 1e-3  # TF32 is off in Polygraphy's CreateConfig by default
    assert (y.argmax(-1) == ref_ort.argmax(-1)).mean() >= tol_agree
    report = {r.artifact: r for r in result.reports}[name]
    assert report.passed, report.failures


def test_torch_cuda_tensors_stay_on_the_device(built):
    torch = pytest.importorskip("torch")
    out, _ = built
    x = torch.randn(3, 3, 64, 64, device="cuda")
    with load(out / "model.fp16.engine") as engine:
        y = engine(x)
    assert y.is_cuda and y.shape == (3, 10)
