"""The TensorRT stage where TensorRT is absent: option mapping, the support check, clear refusals.

Engines themselves are built and run by tests/gpu/ wherever `import tensorrt` works.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from onnx import TensorProto, helper

from focalnet_edge.cli import main
from focalnet_edge.errors import ArtifactError, ConfigError
from focalnet_edge.contract import InputContract
from focalnet_edge.pipeline import BuildOptions, ExportOptions, build
from focalnet_edge.runtime import tensorrt as trt_mod
from focalnet_edge.runtime.tensorrt import EngineOptions, config_plan, profile_shapes
from focalnet_edge.runtime.trt_check import check_model, check_onnx

try:
    import tensorrt  # noqa: F401

    TRT_INSTALLED = True
except ImportError:
    TRT_INSTALLED = False

CONTRACT = InputContract(height=224, width=224, batch=(1, 8, 32))


# -- option mapping ----------------------------------------------------------------------------------
def test_profile_for_dynamic_batch():
    assert profile_shapes(CONTRACT, EngineOptions()) == ([1, 3, 224, 224], [8, 3, 224, 224], [32, 3, 224, 224])


def test_profile_for_frames_and_dynamic_size():
    c = InputContract(name="frames", dtype="uint8", layout="NHWC", height=224, width=256, dynamic_size=True, size_multiple=32, batch=(1, 2, 4))
    lo, opt, hi = profile_shapes(c, EngineOptions())
    assert (lo, opt, hi) == ([1, 96, 128, 3], [2, 224, 256, 3], [4, 448, 512, 3])
    lo, opt, hi = profile_shapes(c, EngineOptions(size_range=((64, 64), (224, 224), (320, 320))))
    assert lo == [1, 64, 64, 3] and hi == [4, 320, 320, 3]
    with pytest.raises(ConfigError, match="multiples of 32"):
        profile_shapes(c, EngineOptions(size_range=((60, 64), (224, 224), (320, 320))))


def test_dla_takes_static_shapes():
    lo, opt, hi = profile_shapes(CONTRACT, EngineOptions(dla_core=1))
    assert lo == opt == hi == [8, 3, 224, 224]
    plan = config_plan(CONTRACT, EngineOptions(dla_core=1), "10.3.0", "fp16", None)
    assert plan["use_dla"] and plan["dla_core"] == 1 and plan["allow_gpu_fallback"] is True


@pytest.mark.parametrize("version", ["10.3.0", "10.13.2", "11.1.0"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_strongly_typed_builds_set_no_precision_flag(version, precision):
    plan = config_plan(CONTRACT, EngineOptions(), version, precision, None)
    assert plan["strongly_typed"] is True and plan["fp16"] is False and plan["int8"] is False


def test_weakly_typed_on_10x_sets_the_flags_and_is_refused_on_11():
    assert config_plan(CONTRACT, EngineOptions(weakly_typed=True), "10.3.0", "fp16", None)["fp16"] is True
    plan = config_plan(CONTRACT, EngineOptions(weakly_typed=True), "10.16.0", "int8", None)
    assert plan["int8"] and plan["fp16"] and not plan["strongly_typed"]
    with pytest.raises(ConfigError, match="--weakly-typed needs TensorRT 10.x; TensorRT 11.0.1"):
        config_plan(CONTRACT, EngineOptions(weakly_typed=True), "11.0.1", "fp16", None)


def test_builder_settings_map_one_to_one(tmp_path):
    cache = tmp_path / "timing.cache"
    opts = EngineOptions(workspace_mib=512, optimization_level=4, version_compatible=True, hardware_compatibility="ampere_plus")
    plan = config_plan(CONTRACT, opts, "10.3.0", "fp32", cache)
    assert plan["memory_pool_limits"] == {"WORKSPACE": 512 * 2**20}
    assert plan["builder_optimization_level"] == 4 and plan["version_compatible"] is True
    assert plan["hardware_compatibility_level"] == "AMPERE_PLUS"
    assert plan["load_timing_cache"] is None  # nothing to load yet
    cache.write_bytes(b"cache")
    assert config_plan(CONTRACT, opts, "10.3.0", "fp32", cache)["load_timing_cache"] == str(cache)
    assert config_plan(CONTRACT, EngineOptions(), "10.3.0", "fp32", None)["hardware_compatibility_level"] is None


@pytest.mark.parametrize(
    "options,message",
    [
        (EngineOptions(optimization_level=6), "optimization level 6"),
        (EngineOptions(workspace_mib=0), "workspace 0 MiB"),
        (EngineOptions(hardware_compatibility="any"), "hardware compatibility 'any'"),
        (EngineOptions(dla_core=0, version_compatible=True), "--dla-core"),
    ],
)
def test_bad_engine_options(options, message):
    with pytest.raises(ConfigError, match=message):
        config_plan(CONTRACT, options, "10.3.0", "fp16", None)


def test_engine_from_another_tensorrt_or_gpu_is_refused_before_tensorrt(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.3.0"))
    monkeypatch.setattr(trt_mod, "gpu_info", lambda: {"gpu": "Orin", "compute_capability": "8.7"})
    path = tmp_path / "model.fp16.engine"
    with pytest.raises(ArtifactError, match=r"built with TensorRT 10.13.2, this machine has TensorRT 10.3.0"):
        trt_mod.check_engine_compatibility({"tensorrt": "10.13.2", "gpu": "Orin", "compute_capability": "8.7"}, path)
    with pytest.raises(ArtifactError, match=r"built for RTX 4090 \(compute capability 8.9\), this machine has Orin \(8.7\)"):
        trt_mod.check_engine_compatibility({"tensorrt": "10.3.0", "gpu": "RTX 4090", "compute_capability": "8.9"}, path)
    # version-compatible engines run on the same or a later TensorRT only
    with pytest.raises(ArtifactError, match="older TensorRT 10.3.0"):
        trt_mod.check_engine_compatibility({"tensorrt": "10.13.2", "version_compatible": True, "compute_capability": "8.7"}, path)
    trt_mod.check_engine_compatibility({"tensorrt": "10.1.0", "version_compatible": True, "compute_capability": "8.7"}, path)
    trt_mod.check_engine_compatibility({"tensorrt": "10.3.0", "compute_capability": "8.9", "hardware_compatibility": "ampere_plus"}, path)


# -- the support check ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    build(BuildOptions(model="demo", output=out, precision="best", export=ExportOptions(fuse_preprocess=True)))
    return out


def test_our_tensorrt_artifacts_pass_the_check(demo_out):
    for name in ("model.onnx", "model.fp16.onnx", "model.int8.onnx"):
        assert check_onnx(demo_out / name) == [], name
    errors = [f for f in check_onnx(demo_out / "model.int8.cpu.onnx") if f.severity == "error"]
    assert errors and all("uint8" in f.message.lower() or "UINT8" in f.message for f in errors)


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def test_check_finds_what_the_parser_refuses():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    u8 = helper.make_tensor_value_info("u", TensorProto.UINT8, [1, 4, 4, 3])
    scale = helper.make_tensor("s", TensorProto.FLOAT, [], [0.1])
    zp = helper.make_tensor("z", TensorProto.INT8, [], [3])
    cases = {
        "NonZero is not supported": _model([helper.make_node("NonZero", ["x"], ["y"], name="nz")], [x], [y]),
        "custom domain": _model([helper.make_node("Foo", ["x"], ["y"], name="foo", domain="my.ops")], [x], [y]),
        "UINT8 input must feed only Cast": _model([helper.make_node("Transpose", ["u"], ["y"], name="t", perm=[0, 3, 1, 2])], [u8], [y]),
        "zero point must be 0": _model([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], name="q")], [x], [y], [scale, zp]),
        "axes must be an initializer": _model([helper.make_node("ReduceMean", ["x", "x2"], ["y"], name="r")],
                                              [x, helper.make_tensor_value_info("x2", TensorProto.INT64, [1])], [y], opset=18),
    }
    for message, model in cases.items():
        findings = check_model(model)
        assert any(f.severity == "error" and message in f.message for f in findings), (message, findings)
    findings = check_model(_model([helper.make_node("Relu", ["x"], ["y"], name="r")], [x], [y], opset=22))
    assert [f.severity for f in findings] == ["warning"] and "opset 22" in findings[0].message


def test_check_command(capsys, demo_out, tmp_path):
    assert main(["check", str(demo_out / "model.int8.onnx")]) == 0
    assert "should take it" in capsys.readouterr().out
    assert main(["check", str(demo_out / "model.int8.cpu.onnx")]) == 1
    assert main(["check", str(tmp_path / "none.onnx")]) == 2
    assert "no such ONNX file" in capsys.readouterr().err


def test_build_records_the_check_and_says_where_engines_come_from(demo_out):
    import json

    manifest = json.loads((demo_out / "manifest.json").read_text())
    for name in ("model.onnx", "model.fp16.onnx", "model.int8.onnx"):
        assert manifest["artifacts"][name]["tensorrt_check"]["errors"] == 0


@pytest.mark.skipif(TRT_INSTALLED, reason="TensorRT is installed here")
def test_backend_tensorrt_without_tensorrt_is_a_clear_error_before_any_work(capsys, tmp_path):
    code = main(["build", "--backend", "tensorrt", "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "pip install 'focalnet-edge[gpu]'" in err and "python3-libnvinfer" in err and "--system-site-packages" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(TRT_INSTALLED, reason="TensorRT is installed here")
def test_auto_backend_says_in_one_line_that_engines_need_tensorrt(capsys, tmp_path):
    assert main(["-q", "build", "--precision", "fp32", "--output", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("engines:")]
    assert len(lines) == 1 and "TensorRT is not installed" in lines[0]


@pytest.mark.skipif(TRT_INSTALLED, reason="TensorRT is installed here")
def test_an_engine_where_tensorrt_is_missing_is_a_clear_error(capsys, tmp_path):
    from focalnet_edge.runtime import load

    (tmp_path / "model.fp16.engine").write_bytes(b"plan")
    with pytest.raises(Exception, match="TensorRT is not installed"):
        load(Path(tmp_path / "model.fp16.engine"))
