"""Running TensorRT plans where TensorRT is absent: which plans run where, how `load` ranks and skips
them, the runner's limits, batching and streams (over a `tensorrt` generated from the 10.13 stubs),
the support check of our artifacts, and clear refusals.

The builder side is tests/test_engine.py; real engines are built and run by tests/gpu/.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from onnx import TensorProto, helper
from trt_fake import fake_tensorrt

from focalnet_edge.cli import main
from focalnet_edge.folder.contract import InputContract
from focalnet_edge.errors import InputError
from focalnet_edge.pipeline import BuildOptions, ExportOptions, build
from focalnet_edge.engine import gpu, plans
from focalnet_edge.engine.check import check_model, check_onnx
from focalnet_edge.runtime import tensorrt as trt_mod

TRT_INSTALLED = gpu.tensorrt_available()
CONTRACT = InputContract(height=224, width=224, batch=(1, 8, 32))


# -- which plans run where (issue 9, items 5 and 10) ------------------------------------------------------
ORIN = {"tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"}


@pytest.mark.parametrize("requires,here,reason", [
    ({"tensorrt": "10.13.2", "compute_capability": "8.7"}, ORIN, "built with TensorRT 10.13.2, this machine has TensorRT 10.3.0"),
    ({"tensorrt": "10.3.0", "gpu": "RTX 4090", "compute_capability": "8.9"}, ORIN, r"built for RTX 4090 \(compute capability 8.9\), this machine has Orin \(8.7\)"),
    ({"tensorrt": "10.13.2", "version_compatible": True, "compute_capability": "8.7"}, ORIN, "older TensorRT 10.3.0"),
    # same_compute_capability still needs the same compute capability (the old check dropped it)
    ({"tensorrt": "10.3.0", "gpu": "RTX 4090", "compute_capability": "8.9", "hardware_compatibility": "same_compute_capability"}, ORIN,
     r"compute capability 8.9\), this machine has Orin \(8.7\)"),
    # ampere_plus needs sm >= 8.0 here (the old check never looked)
    ({"tensorrt": "10.3.0", "compute_capability": "8.6", "hardware_compatibility": "ampere_plus"},
     {"tensorrt": "10.3.0", "gpu": "Xavier", "compute_capability": "7.2"}, r"Ampere or later \(compute capability >= 8.0\), this machine has Xavier \(7.2\)"),
    ({"tensorrt": "10.3.0", "compute_capability": "8.7"}, {"tensorrt": "10.3.0", "gpu": "unknown", "compute_capability": "unknown"}, "no CUDA GPU"),
])
def test_plans_that_cannot_run_here_are_named_with_the_reason(requires, here, reason):
    import re

    found = plans.incompatibility(requires, here)
    assert found is not None and re.search(reason, found), found


@pytest.mark.parametrize("requires", [
    {"tensorrt": "10.1.0", "version_compatible": True, "compute_capability": "8.7"},
    {"tensorrt": "10.3.0", "compute_capability": "8.9", "hardware_compatibility": "ampere_plus"},
    {"tensorrt": "10.3.0", "compute_capability": "8.7", "hardware_compatibility": "same_compute_capability"},
    {"tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"},
])
def test_plans_that_can_run_here(requires):
    assert plans.incompatibility(requires, ORIN) is None


def test_a_stubs_only_tensorrt_is_not_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))  # what tensorrt-stubs alone leaves
    assert gpu.tensorrt_available() is False
    with pytest.raises(InputError, match="TensorRT is not installed"):
        gpu.require_tensorrt()


def _manifest(engine_requires):
    artifacts = {"model.onnx": {"path": "model.onnx", "precision": "fp32", "format": "onnx"},
                 "model.fp16.onnx": {"path": "model.fp16.onnx", "precision": "fp16", "format": "onnx"}}
    for precision in ("fp32", "fp16", "int8"):  # in build order: fp32 first
        name = f"model.{precision}.engine"
        artifacts[name] = {"path": name, "precision": precision, "format": "tensorrt-plan", "requires": engine_requires}
    return {"artifacts": artifacts}


@pytest.fixture
def orin(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("10.3.0"))
    monkeypatch.setattr(gpu, "gpu_info", lambda: {"gpu": "Orin", "compute_capability": "8.7"})


def test_load_ranks_engines_by_precision(orin):
    from focalnet_edge.runtime.choose import choose_artifact

    manifest = _manifest({"tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"})
    assert choose_artifact(manifest)["path"] == "model.int8.engine"  # the old loader took the first plan: fp32
    assert choose_artifact(manifest, "fp16")["path"] == "model.fp16.engine"
    del manifest["artifacts"]["model.int8.engine"]
    assert choose_artifact(manifest)["path"] == "model.fp16.engine"


def test_load_skips_engines_this_machine_cannot_run_with_a_note(orin):
    from focalnet_edge.runtime.choose import choose_artifact

    manifest = _manifest({"tensorrt": "10.13.0", "gpu": "Thor", "compute_capability": "11.0"})
    notes: list[str] = []
    chosen = choose_artifact(manifest, notes=notes)
    assert chosen["format"] == "onnx"
    skipped = [n for n in notes if n.startswith("skipped")]
    assert len(skipped) == 3 and all("built with TensorRT 10.13.0, this machine has TensorRT 10.3.0" in n for n in skipped)
    assert notes[0].startswith("skipped model.fp32.engine:")
    assert choose_artifact(manifest, "fp16")["path"] == "model.fp16.onnx"  # a precision: its ONNX file where the plan can't run


# -- the runner: contract per engine, profile limits, batching, streams (items 6, 7, 8, 13) ------------------
def test_an_engine_keeps_the_contract_of_its_own_onnx_file(tmp_path):
    """--fp16-io: the fp16 file takes float16, the manifest's (fp32) contract says float32."""
    import json

    from onnx import TensorProto, helper

    from focalnet_edge.engine.build import source_contract
    from focalnet_edge.folder.onnx_io import set_metadata

    x = helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT16, ["batch", 3, 224, 224])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT16, ["batch", 10])
    model = helper.make_model(helper.make_graph([helper.make_node("ReduceMean", ["pixel_values"], ["logits"], keepdims=0, axes=[2, 3])],
                                                "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    set_metadata(model, {"input": json.loads(InputContract().to_json())})  # float32, as the fp32 export wrote it
    (tmp_path / "model.fp16.onnx").write_bytes(model.SerializeToString())
    assert source_contract(tmp_path / "model.fp16.onnx").dtype == "float16"
    manifest = {"format": 1, "tool": {"name": "focalnet-edge"}, "model": {"source": "demo", "weights_sha256": {}, "config": {}},
                "input": json.loads(InputContract().to_json()), "labels": {}, "outputs": ["logits"],
                "artifacts": {"model.fp16.engine": {"path": "model.fp16.engine", "precision": "fp16", "requires": {},
                                                    "format": "tensorrt-plan", "sha256": "0" * 64, "bytes": 0,
                                                    "input": json.loads(InputContract(dtype="float16").to_json())}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    from focalnet_edge.runtime.loader import engine_facts_at as _facts_from_manifest

    assert _facts_from_manifest(tmp_path / "model.fp16.engine")["input"]["dtype"] == "float16"


DLA_PROFILE = [[8, 3, 224, 224]] * 3


def _runner(contract, profile, outputs=("logits",)):
    """A TensorRTRunner without a plan: its limits from `profile`, its engine faked."""
    runner = object.__new__(trt_mod.TensorRTRunner)
    runner.profile = profile
    runner.contract = trt_mod.contract_for_profile(contract, profile)
    runner.output_names = list(outputs)
    runner.path = trt_mod.Path("model.fp16.engine")
    runner.calls = []

    def infer(batch):
        runner.calls.append(batch.shape[0])
        return {"logits": batch.reshape(batch.shape[0], -1)[:, :2].astype("float32")}

    runner._infer = infer
    return runner


def test_a_dla_engine_takes_only_its_one_batch_size_and_the_runner_pads(monkeypatch):
    import numpy as np

    runner = _runner(CONTRACT, DLA_PROFILE)  # the manifest says 1..32; the DLA profile says 8 only
    assert runner.contract.batch == (8, 8, 8) and not runner.contract.dynamic_batch
    x = np.random.default_rng(0).standard_normal((10, 3, 224, 224)).astype("float32")
    out = runner.run(x)
    assert runner.calls == [8, 8] and out["logits"].shape == (10, 2)
    assert np.array_equal(out["logits"], x.reshape(10, -1)[:, :2])


def test_sizes_outside_the_engines_profile_are_refused():
    import numpy as np

    c = InputContract(height=224, width=224, dynamic_size=True, batch=(1, 4, 8))
    runner = _runner(c, [[1, 3, 128, 128], [4, 3, 224, 224], [8, 3, 320, 320]])
    with pytest.raises(InputError, match="height 352: this engine was built for heights 128 to 320"):
        runner.run(np.zeros((1, 3, 352, 224), np.float32))
    assert runner.run(np.zeros((1, 3, 320, 256), np.float32))["logits"].shape == (1, 2)


def test_torch_input_is_split_and_padded_like_numpy():
    torch = pytest.importorskip("torch")
    runner = _runner(CONTRACT, DLA_PROFILE)
    seen = []

    def infer_torch(x):
        seen.append(tuple(x.shape))
        return {"logits": x.reshape(x.shape[0], -1)[:, :2].clone()}

    runner._infer_torch = infer_torch
    x = torch.randn(10, 3, 224, 224)
    out = runner._run_torch(x)
    assert seen == [(8, 3, 224, 224)] * 2 and out["logits"].shape == (10, 2)
    assert torch.equal(out["logits"], x.reshape(10, -1)[:, :2])
    runner = _runner(CONTRACT, [[1, 3, 224, 224], [2, 3, 224, 224], [4, 3, 224, 224]])  # dynamic, max 4
    runner._infer_torch = infer_torch
    seen.clear()
    assert runner._run_torch(torch.randn(9, 3, 224, 224))["logits"].shape == (9, 2) and [s[0] for s in seen] == [4, 4, 1]


def test_torch_input_runs_on_the_callers_stream(monkeypatch):
    torch = pytest.importorskip("torch")
    trt = fake_tensorrt("10.3.0", behaviour={
        "ICudaEngine.get_tensor_dtype": lambda self, name: trt.DataType.FLOAT,
        "IExecutionContext.get_tensor_shape": lambda self, name: [3, 10],
        "IExecutionContext.execute_async_v3": True, "IExecutionContext.set_input_shape": True,
        "IExecutionContext.set_tensor_address": True,
    })
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: types.SimpleNamespace(cuda_stream=0xC0FFEE))
    runner = _runner(CONTRACT, [[1, 3, 224, 224], [8, 3, 224, 224], [32, 3, 224, 224]])
    runner._engine = trt.ICudaEngine()
    runner._context = None
    x = torch.randn(3, 3, 224, 224)
    out = runner._infer_torch(x)
    ctx = runner._context
    calls = [(name, args) for name, args, _ in ctx._calls]
    assert ("set_input_shape", ("pixel_values", (3, 3, 224, 224))) in calls
    assert ("set_tensor_address", ("pixel_values", x.data_ptr())) in calls
    assert ("set_tensor_address", ("logits", out["logits"].data_ptr())) in calls
    assert calls[-1] == ("execute_async_v3", (0xC0FFEE,))  # the caller's stream, not a private one
    assert out["logits"].shape == (3, 10) and out["logits"].dtype == torch.float32


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
        "BitShift is not supported": _model([helper.make_node("BitShift", ["x", "x"], ["y"], name="bs", direction="LEFT")], [x], [y]),
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
    with pytest.raises(InputError, match="TensorRT is not installed"):
        load(Path(tmp_path / "model.fp16.engine"))


def test_the_gpu_is_found_through_the_cuda_driver_without_torch_or_cuda_python(monkeypatch):
    """A Jetson with neither torch nor cuda-python: libcuda's driver API names the GPU."""
    import ctypes

    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "cuda", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    calls = []

    class Driver:  # the five driver calls, writing through their pointer arguments as libcuda does
        def cuInit(self, flags):
            calls.append("cuInit")
            return 0

        def cuDeviceGet(self, device, ordinal):
            device._obj.value = ordinal
            return 0

        def cuDeviceGetName(self, buffer, length, device):
            buffer.value = b"Orin (nvgpu)"
            return 0

        def cuDeviceGetAttribute(self, value, attribute, device):
            value._obj.value = {75: 8, 76: 7, 16: 8, 18: 1}[attribute]  # cc 8.7, 8 SMs, integrated (an Orin Nano)
            return 0

        def cuDeviceTotalMem_v2(self, size, device):
            size._obj.value = 7620 << 20
            return 0

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Driver())
    assert gpu.gpu_info() == {"gpu": "Orin (nvgpu)", "compute_capability": "8.7", "sm_count": 8, "memory_mib": 7620, "integrated": True}
    monkeypatch.setattr(Driver, "cuInit", lambda self, flags: 100)  # CUDA_ERROR_NO_DEVICE
    assert gpu.gpu_info() == {"gpu": "unknown", "compute_capability": "unknown"}
    assert calls == ["cuInit"]


def test_load_prefers_verified_over_unverified_over_failed(orin):
    """A hand-listed or adopted entry that never ran `verify` is not trusted like a verified one."""
    from focalnet_edge.runtime.choose import choose_artifact

    manifest = _manifest({"tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"})
    entries = manifest["artifacts"]
    for entry in entries.values():
        entry["verification"] = {"passed": True}
    del entries["model.int8.engine"]["verification"]  # e.g. a trtexec plan listed by hand
    entries["model.fp16.engine"]["verification"] = {"passed": False}
    notes: list[str] = []
    assert choose_artifact(manifest, notes=notes)["path"] == "model.fp32.engine"  # the old loader: int8 (unverified = passed)
    assert notes == []
    for entry in entries.values():
        if entry["path"] != "model.int8.engine":
            entry["verification"] = {"passed": False}
    notes.clear()
    assert choose_artifact(manifest, notes=notes)["path"] == "model.int8.engine"
    assert notes and "never verified" in notes[0]


# -- issue 24: platform, JetPack, DLA cores, the runner's device ----------------------------------------------------
ORIN_HERE = {**ORIN, "platform": "aarch64", "integrated": True, "dla_cores": 2}


@pytest.mark.parametrize("requires,here,reason", [
    # a --version-compatible --hardware-compatibility ampere_plus plan built on x86: not on an Orin
    ({"tensorrt": "10.3.0", "platform": "x86_64", "compute_capability": "8.9", "version_compatible": True, "hardware_compatibility": "ampere_plus"},
     ORIN_HERE, "built on x86_64, this machine is aarch64: TensorRT plans are not portable across platforms"),
    # the same plan built on an aarch64 server (SBSA): right platform, but JetPack has no hardware compatibility
    ({"tensorrt": "10.3.0", "platform": "aarch64", "compute_capability": "9.0", "hardware_compatibility": "ampere_plus"},
     ORIN_HERE, "built with --hardware-compatibility ampere_plus, which TensorRT does not support on JetPack"),
    ({"tensorrt": "10.3.0", "platform": "aarch64", "compute_capability": "8.7", "dla_core": 1}, {**ORIN_HERE, "dla_cores": 0},
     "built for DLA core 1, this device has no DLA cores; rebuild it here without --dla-core$"),
    ({"tensorrt": "10.3.0", "platform": "aarch64", "compute_capability": "8.7", "dla_core": 1}, {**ORIN_HERE, "dla_cores": 1},
     "built for DLA core 1, this device has 1 DLA core; rebuild it here without --dla-core or with --dla-core 0"),
])
def test_plans_judged_runnable_before_that_cannot_run(requires, here, reason):
    import re

    found = plans.incompatibility(requires, here)
    assert found is not None and re.search(reason, found), found
    older = {k: v for k, v in requires.items() if k not in ("platform", "dla_core")}
    assert plans.incompatibility({**older, "hardware_compatibility": "none", "compute_capability": "8.7"}, here) is None


def test_a_dla_plan_runs_where_its_core_exists():
    requires = {"tensorrt": "10.3.0", "platform": "aarch64", "compute_capability": "8.7", "dla_core": 1}
    assert plans.incompatibility(requires, ORIN_HERE) is None


@pytest.fixture
def orin_without_dla(monkeypatch):
    trt = fake_tensorrt("10.3.0", behaviour={"Runtime.num_DLA_cores": 0})
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(gpu, "gpu_info", lambda: {"gpu": "Orin", "compute_capability": "8.7", "integrated": True})
    monkeypatch.setattr(gpu, "machine", lambda: "aarch64")
    return trt


def test_load_skips_plans_of_another_platform_and_dla_plans_without_the_core(orin_without_dla):
    from focalnet_edge.runtime.choose import choose_artifact

    manifest = _manifest({"tensorrt": "10.3.0", "platform": "x86_64", "gpu": "RTX 4090", "compute_capability": "8.9",
                          "version_compatible": True, "hardware_compatibility": "ampere_plus"})
    notes: list[str] = []
    assert choose_artifact(manifest, notes=notes)["format"] == "onnx"
    skipped = [n for n in notes if n.startswith("skipped")]
    assert len(skipped) == 3 and all("built on x86_64, this machine is aarch64" in n for n in skipped)
    manifest = _manifest({"tensorrt": "10.3.0", "platform": "aarch64", "gpu": "Orin", "compute_capability": "8.7", "dla_core": 0})
    notes.clear()
    assert choose_artifact(manifest, notes=notes)["format"] == "onnx"
    skipped = [n for n in notes if n.startswith("skipped")]
    assert len(skipped) == 3 and all("built for DLA core 0, this device has no DLA cores" in n for n in skipped)
    manifest = _manifest({"tensorrt": "10.3.0", "platform": "aarch64", "gpu": "Orin", "compute_capability": "8.7"})
    assert choose_artifact(manifest)["path"] == "model.int8.engine"  # a plain Orin plan still runs


def test_the_runner_names_tensorrt_and_the_gpu_as_its_device(orin_without_dla, tmp_path, monkeypatch):
    """bench shows `device`; a CUDA-memory error says what runs it, not "the CPU" (item 12)."""
    import json

    trt = orin_without_dla
    io = {"pixel_values": trt.TensorIOMode.INPUT, "logits": trt.TensorIOMode.OUTPUT}
    trt._behaviour.update({
        "ICudaEngine.num_io_tensors": 2, "ICudaEngine.get_tensor_name": lambda self, i: list(io)[i],
        "ICudaEngine.get_tensor_mode": lambda self, name: io[name], "ICudaEngine.get_tensor_dtype": lambda self, name: trt.DataType.FLOAT,
        "ICudaEngine.get_tensor_shape": lambda self, name: [-1, 3, 224, 224] if name == "pixel_values" else [-1, 10],
        "ICudaEngine.get_tensor_profile_shape": lambda self, name, index: [[1, 3, 224, 224], [4, 3, 224, 224], [8, 3, 224, 224]],
    })

    class Activated:  # Polygraphy's TrtRunner allocates CUDA memory on activate: not here
        def __init__(self, engine):
            self.is_active = False

        def activate(self):
            self.is_active = True

        def deactivate(self):
            self.is_active = False

    monkeypatch.setattr("polygraphy.backend.trt.TrtRunner", Activated)
    (tmp_path / "model.fp16.engine").write_bytes(b"plan")
    runner = trt_mod.TensorRTRunner(tmp_path / "model.fp16.engine", requires={"tensorrt": "10.3.0", "platform": "aarch64", "compute_capability": "8.7"},
                                    contract=json.loads(InputContract().to_json()))
    assert runner.device == "TensorRT 10.3.0 on Orin"  # was None: bench showed null
    runner.close()


def test_the_device_tests_collect_without_torch():
    """Issue 24, item 11: on a stock JetPack (TensorRT, no torch) tests/gpu must collect and run, not fail on `import torch`."""
    from helpers import ROOT, without_torch

    script = ("import sys, pytest\n"
              f"sys.exit(pytest.main(['--co', '-q', '-p', 'no:cacheprovider', {str(ROOT / 'tests' / 'gpu')!r}]))\n")
    done = without_torch(script, ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "tests collected" in done.stdout and "error" not in done.stdout.lower()
    assert "test_engines_pass_verification_against_the_references" in done.stdout  # the torch-free verification
