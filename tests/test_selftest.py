"""Issue 24, the device kit: `focalnet-edge selftest OUT`.

Without TensorRT (this machine): one line saying so, exit 2, and the ONNX files still verified on
ONNX Runtime against the stored references. With the stub-generated TensorRT: engines built where
none is listed (a stand-in runner: the engine's own ONNX file on ONNX Runtime, since no plan can
run here), verified against the stored references, timed over the profile's batch sweep, loaded
rather than rebuilt the second time, and a failing engine fails the kit. The device tools' parsers
against real output of `nvpmodel -q` and `tegrastats` (tests/data/device/). The real thing:
tests/gpu/test_engines.py::test_selftest_on_the_device.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import one_line, run_cli
from trt_fake import fake_tensorrt

from focalnet_edge.cli import main
from focalnet_edge.engine import build as engine_build
from focalnet_edge.engine import device_facts, gpu, timing
from focalnet_edge.engine.build import EngineBuild
from focalnet_edge.runtime import tensorrt as trt_mod

DATA = Path(__file__).parent / "data" / "device"
TRT_INSTALLED = gpu.tensorrt_available()


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("selftest") / "out"
    assert main(["-q", "build", "--precision", "fp16", "--output", str(out)]) == 0
    return out


@pytest.fixture
def folder(good, tmp_path) -> Path:
    return Path(shutil.copytree(good, tmp_path / "out"))


# -- the device tools' parsers, on their real output -------------------------------------------------------------
def test_nvpmodel_power_mode_is_read_from_its_output():
    assert device_facts.parse_nvpmodel((DATA / "nvpmodel-agx-orin.txt").read_text()) == {"mode": "MAXN", "id": 0}
    assert device_facts.parse_nvpmodel((DATA / "nvpmodel-verbose-xavier-nx.txt").read_text()) == {"mode": "MODE_15W_6CORE", "id": 2}
    assert device_facts.parse_nvpmodel(None) is None and device_facts.parse_nvpmodel("nvpmodel: command failed") is None


def test_tegrastats_lines_are_read_for_ram_gpu_clocks_power_and_temperatures():
    nano, xavier, agx, old = [device_facts.parse_tegrastats(line) for line in (DATA / "tegrastats.txt").read_text().splitlines()]
    assert nano["ram_mb"] == [624, 1999] and (nano["gpu_load_pct"], nano["gpu_mhz"]) == (0, 318)
    assert (nano["emc_load_pct"], nano["emc_mhz"]) == (0, 1600) and nano["power_mw"]["VDD_IN"] == [2235, 1684]
    assert nano["temperatures_c"]["Tdiode"] == 34.5 and len(nano["power_mw"]) == 5
    assert xavier["gpu_mhz"] == 510 and xavier["power_mw"]["VDD_CPU_GPU_CV"] == [696, 696] and xavier["temperatures_c"]["GPU"] == 37.5
    assert agx["ram_mb"] == [3456, 15388] and agx["gpu_mhz"] == 306 and (agx["emc_load_pct"], agx["emc_mhz"]) == (24, 2133)
    assert agx["temperatures_c"]["tj"] == 53.5 and agx["power_mw"] == {"VDD_IN": [5000, 5000]}
    assert old["gpu_mhz"] == 114 and old["power_mw"]["VDD_IN"] == [3528, 3569] and old["temperatures_c"]["thermal"] == 31.95


def test_nvidia_smi_rows_are_read_and_unavailable_values_are_none():
    desktop, jetson = device_facts.parse_nvidia_smi((DATA / "nvidia-smi.csv").read_text())
    assert desktop["name"] == "NVIDIA H100 80GB HBM3" and desktop["pstate"] == "P0" and desktop["clocks.sm"] == 1980.0
    assert desktop["power.draw"] == 72.45 and desktop["temperature.gpu"] == 34.0
    assert jetson["name"] == "NVIDIA Thor" and jetson["clocks.sm"] is None and jetson["power.limit"] is None


def test_absent_tools_give_nothing_and_tegrastats_is_stopped_by_its_timeout(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(device_facts, "TOOL_PATHS", {})
    assert device_facts.collect()["power_mode"] is None and device_facts.tegrastats_lines() == []
    script = tmp_path / "tegrastats"  # prints a line per interval until stopped, as tegrastats does
    script.write_text(f"#!/bin/sh\nwhile true; do echo '{(DATA / 'tegrastats.txt').read_text().splitlines()[2]}'; /bin/sleep 0.2; done\n")
    script.chmod(0o755)
    lines = device_facts.tegrastats_lines(seconds=0.7)
    assert 1 <= len(lines) <= 5 and device_facts.parse_tegrastats(lines[0])["gpu_mhz"] == 306
    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    assert device_facts.device_model(model) == "NVIDIA Jetson AGX Orin Developer Kit"


# -- GPU compute time: the CUDA-event arithmetic --------------------------------------------------------------------
class FakeCudart:
    """cudaEvent* of libcudart as ctypes calls them: events are numbers, elapsed times 1, 2, 3... ms."""

    def __init__(self):
        self.calls, self.next = [], 1

    def cudaEventCreate(self, ptr):
        ptr._obj.value, self.next = self.next, self.next + 1
        return 0

    def cudaEventRecord(self, event, stream):
        self.calls.append(("record", event.value, stream.value))
        return 0

    def cudaEventSynchronize(self, event):
        self.calls.append(("sync", event.value))
        return 0

    def cudaEventElapsedTime(self, ms, start, end):
        ms._obj.value = float(start.value)
        return 0

    def cudaEventDestroy(self, event):
        self.calls.append(("destroy", event.value))
        return 0


def test_each_batch_is_timed_between_two_events_on_the_stream():
    lib, enqueued = FakeCudart(), []
    times = timing.event_times_ms(lib, 0xBEEF, lambda: enqueued.append(len(lib.calls)), 4)
    assert times == [1.0, 2.0, 3.0, 4.0] and len(enqueued) == 4
    records = [c for c in lib.calls if c[0] == "record"]
    assert [r[1] for r in records] == [1, 2, 3, 4, 5] and {r[2] for r in records} == {0xBEEF}
    assert ("sync", 5) in lib.calls and sorted(c[1] for c in lib.calls if c[0] == "destroy") == [1, 2, 3, 4, 5]
    s = timing.summary(8, times, "gpu compute (CUDA events)")
    assert (s["median_ms"], s["mean_ms"], s["min_ms"], s["max_ms"]) == (2.5, 2.5, 1.0, 4.0) and s["throughput"] == 8 * 1000 / 2.5


def test_the_batch_sweep_is_the_profiles_min_opt_and_max():
    from focalnet_edge.folder.contract import InputContract

    assert timing.sweep_batches(InputContract(batch=(1, 8, 32))) == [1, 8, 32]
    assert timing.sweep_batches(InputContract(batch=(8, 8, 8), dynamic_batch=False)) == [8]


# -- without TensorRT ---------------------------------------------------------------------------------------------
@pytest.mark.skipif(TRT_INSTALLED, reason="TensorRT is installed here")
def test_without_tensorrt_it_says_so_in_one_line_and_verifies_the_onnx_files(capsys, folder):
    before = (folder / "manifest.json").read_bytes()
    code, out, err = run_cli(capsys, "-q", "selftest", folder, "--json")
    assert code == 2
    assert one_line(err).startswith("focalnet-edge selftest: error: TensorRT is not installed")
    report = json.loads(out)
    assert report["passed"] is False and report["missing"].startswith("TensorRT is not installed") and report["engines"] == []
    assert report["device"]["tensorrt"] is None and report["device"]["platform"] == gpu.machine()
    assert {"model", "power_mode", "tegrastats", "nvidia_smi", "gpu"} <= set(report["device"])
    assert {r["artifact"] for r in report["onnx"]} == {"model.onnx", "model.fp16.onnx"} and all(r["passed"] for r in report["onnx"])
    code, out, _ = run_cli(capsys, "-q", "verify", folder, "--reference", "stored", "--json")  # the same figures as `verify`
    assert code == 0
    by_verify = {r["artifact"]: r["max_abs_error"] for r in json.loads(out)}
    assert {r["artifact"]: r["max_abs_error"] for r in report["onnx"]} == by_verify
    assert (folder / "manifest.json").read_bytes() == before  # nothing written
    code, out, err = run_cli(capsys, "-q", "selftest", folder)
    assert code == 2 and "onnx model.fp16.onnx (fp16): PASS" in out and out.rstrip().endswith("result: FAIL")


# -- with the stub-generated TensorRT -------------------------------------------------------------------------------
ORIN = {"gpu": "Orin", "compute_capability": "8.7", "sm_count": 16, "memory_mib": 62841, "integrated": True}


@pytest.fixture
def orin(monkeypatch):
    """A Jetson AGX Orin: the stub-generated TensorRT 10.3, the GPU, the board's tools (their real output)."""
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("10.3.0"))
    monkeypatch.setattr(gpu, "gpu_info", lambda: dict(ORIN))
    monkeypatch.setattr(gpu, "machine", lambda: "aarch64")
    outputs = {"nvpmodel": (DATA / "nvpmodel-agx-orin.txt").read_text(), "tegrastats": (DATA / "tegrastats.txt").read_text().splitlines()[2]}
    monkeypatch.setattr(device_facts, "run_tool", lambda argv, timeout=10.0, partial=False: outputs.get(argv[0]))
    monkeypatch.setattr(device_facts, "device_model", lambda path=None: "NVIDIA Jetson AGX Orin Developer Kit")
    monkeypatch.setattr(timing, "cuda_runtime", lambda: None)  # no libcudart here: whole calls timed on the host
    built = []

    def build_engines(folder, manifest, options=None, on_error=None):  # the plan is a copy of its ONNX file
        built.append(folder)
        shutil.copyfile(folder / "model.fp16.onnx", folder / "model.fp16.engine")
        facts = {"tensorrt": "10.3.0", **ORIN, "platform": "aarch64", "profile": {}, "streams": 1, "dla_core": None}
        return EngineBuild(engines=[{"path": "model.fp16.engine", "precision": "fp16", "built_from": "model.fp16.onnx",
                                     "input": manifest["input"], "engine": facts}], notes=["built model.fp16.engine"])

    monkeypatch.setattr(engine_build, "build_engines", build_engines)
    noise = {"scale": 0.0}

    class StandIn:  # the engine's own ONNX file on ONNX Runtime: what the plan would compute
        def __new__(cls, path, requires=None, contract=None, **facts):
            from focalnet_edge.runtime.onnxruntime import OnnxRuntimeRunner

            runner = OnnxRuntimeRunner(Path(path).with_suffix(".onnx"), providers=["CPUExecutionProvider"])
            run = runner.run

            def noisy(batch, stream=None):
                out = run(batch, stream)
                return {k: v + noise["scale"] * np.sign(v) for k, v in out.items()}

            runner.run = noisy
            runner.device = "TensorRT 10.3.0 on Orin (stand-in)"
            return runner

    monkeypatch.setattr(trt_mod, "TensorRTRunner", StandIn)
    return built, noise


def test_with_tensorrt_it_builds_verifies_and_times_the_engines_then_loads_them(capsys, folder, orin):
    built, _ = orin
    code, out, err = run_cli(capsys, "-q", "selftest", folder, "--json", "--iterations", "2", "--warmup", "0")
    assert code == 0, err
    report = json.loads(out)
    assert report["passed"] is True and report["missing"] is None and built == [folder]
    (engine,) = report["engines"]
    assert engine["artifact"] == "model.fp16.engine" and engine["passed"] and engine["device"] == "TensorRT 10.3.0 on Orin (stand-in)"
    contract = json.loads((folder / "manifest.json").read_text())["input"]
    assert [t["batch"] for t in engine["timing"]] == sorted(set(contract["batch"]))  # the sweep: min, opt, max
    assert all(t["iterations"] == 2 and t["median_ms"] > 0 and t["clock"].startswith("host") for t in engine["timing"])
    device = report["device"]
    assert device["power_mode"] == {"mode": "MAXN", "id": 0} and device["model"] == "NVIDIA Jetson AGX Orin Developer Kit"
    assert device["tegrastats"][0]["gpu_mhz"] == 306 and device["tensorrt"] == "10.3.0" and device["gpu"] == "Orin"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["artifacts"]["model.fp16.engine"]["verification"]["passed"] is True  # a build records its verification
    code, out, _ = run_cli(capsys, "-q", "selftest", folder, "--no-timing")
    assert code == 0 and len(built) == 1  # listed and runnable here: loaded, not built again
    assert "power mode: MAXN (id 0)" in out and "engine model.fp16.engine (fp16): PASS" in out and "note: loaded model.fp16.engine" in out


def test_an_engine_that_fails_verification_fails_the_kit(capsys, folder, orin):
    _, noise = orin
    noise["scale"] = 0.5
    code, out, _ = run_cli(capsys, "-q", "selftest", folder, "--no-timing")
    assert code == 1 and "engine model.fp16.engine (fp16): FAIL" in out and out.rstrip().endswith("result: FAIL")


def test_selftest_is_a_command():
    from focalnet_edge.cli.registry import COMMANDS

    assert "selftest" in [c.NAME for c in COMMANDS]
