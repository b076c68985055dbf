"""The engine stage where TensorRT is absent: Polygraphy's real CreateConfig, PostprocessConfig and
EngineBytesFromNetwork over a `tensorrt` module generated from the TensorRT 10.13 stubs
(tests/trt_fake.py), so a TensorRT name or argument the real API lacks fails here.

Real engines are built by tests/gpu/ wherever `import tensorrt` works.
"""

from __future__ import annotations

import json
import sys

import pytest
from trt_fake import fake_tensorrt, forget_polygraphy_tensorrt

from focalnet_edge.folder.contract import InputContract
from focalnet_edge.engine import build as stage
from focalnet_edge.engine import check as trt_check
from focalnet_edge.engine.cache import timing_cache_key
from focalnet_edge.engine.command import engine_command
from focalnet_edge.engine.config import TENSORRT_11_REMOVED, EngineOptions, create_config, frame_size_range, profile_shapes, validate
from focalnet_edge.engine.gpu import machine
from focalnet_edge.errors import ArtifactError, ConfigError

CONTRACT = InputContract(height=224, width=224, batch=(1, 8, 32))


@pytest.fixture
def fake_trt(monkeypatch):
    """Install a stub-generated `tensorrt` (default 10.13); `fake_trt(version, removed)` replaces it."""

    def install(version="10.13.0.35", removed=frozenset(), dla_cores=0):
        trt = fake_tensorrt(version, removed)
        tensor = trt.ITensor()
        tensor._values.update(name=CONTRACT.name, shape=[-1, 3, 224, 224], is_shape_tensor=False)
        layer = trt.ILayer()  # one layer, so Polygraphy reads layer attributes (TensorRT 11 removed precision_is_set)
        layer._values.update(name="conv", type=trt.LayerType.CONVOLUTION)

        def layers(self, i):
            if i:
                raise IndexError(i)
            return layer

        trt._behaviour.update({"INetworkDefinition.num_inputs": 1, "INetworkDefinition.get_input": lambda self, i: tensor,
                               "INetworkDefinition.__getitem__": layers, "INetworkDefinition.__len__": lambda self: 1,
                               "Builder.num_DLA_cores": dla_cores})
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        forget_polygraphy_tensorrt()
        return trt

    install()
    yield install
    forget_polygraphy_tensorrt()


def _config(trt, options, precision="fp16", contract=CONTRACT, **kwargs):
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    network = builder.create_network(0)
    return create_config(contract, options, precision, **kwargs)(builder, network), builder, network


def _flags(config, call="set_flag"):
    return {args[0].name for name, args, _ in config._calls if name == call}


# -- profiles --------------------------------------------------------------------------------------------
def test_profile_for_dynamic_batch():
    assert profile_shapes(CONTRACT, EngineOptions()) == ([1, 3, 224, 224], [8, 3, 224, 224], [32, 3, 224, 224])


def test_profile_for_frames_and_dynamic_size():
    c = InputContract(name="frames", dtype="uint8", layout="NHWC", height=224, width=256, dynamic_size=True, size_multiple=32, batch=(1, 2, 4))
    assert profile_shapes(c, EngineOptions()) == ([1, 96, 128, 3], [2, 224, 256, 3], [4, 448, 512, 3])
    lo, _, hi = profile_shapes(c, EngineOptions(size_range=((64, 64), (224, 224), (320, 320))))
    assert lo == [1, 64, 64, 3] and hi == [4, 320, 320, 3]
    with pytest.raises(ConfigError, match="multiples of 32"):
        profile_shapes(c, EngineOptions(size_range=((60, 64), (224, 224), (320, 320))))
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        profile_shapes(c, EngineOptions(size_range=((320, 320), (224, 224), (64, 64))))


def test_dla_takes_static_shapes():
    lo, opt, hi = profile_shapes(CONTRACT, EngineOptions(dla_core=1))
    assert lo == opt == hi == [8, 3, 224, 224]


# -- the builder configuration, through Polygraphy's real CreateConfig ------------------------------------
@pytest.mark.parametrize("version", ["10.3.0.26", "10.13.0.35", "11.1.0"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_strongly_typed_builds_set_no_precision_flag(fake_trt, version, precision):
    trt = fake_trt(version, removed=TENSORRT_11_REMOVED if version.startswith("11") else frozenset())
    config, _, _ = _config(trt, EngineOptions(), precision)
    assert not _flags(config) & {"FP16", "INT8", "BF16", "FP8"}
    profile = next(args[0] for name, args, _ in config._calls if name == "add_optimization_profile")
    assert [c[1] for c in profile._calls if c[0] == "set_shape"] == [(CONTRACT.name, [1, 3, 224, 224], [8, 3, 224, 224], [32, 3, 224, 224])]


def test_weakly_typed_on_10x_sets_the_flags_and_is_refused_on_11(fake_trt):
    trt = fake_trt("10.3.0.26")
    assert _flags(_config(trt, EngineOptions(weakly_typed=True), "fp16")[0]) >= {"FP16"}
    assert _flags(_config(trt, EngineOptions(weakly_typed=True), "int8")[0]) >= {"FP16", "INT8"}
    trt = fake_trt("11.0.1", removed=TENSORRT_11_REMOVED)
    with pytest.raises(ConfigError, match="--weakly-typed needs TensorRT 10.x; TensorRT 11.0.1"):
        _config(trt, EngineOptions(weakly_typed=True), "fp16")


def test_builder_settings_reach_the_config(fake_trt):
    trt = fake_trt()
    opts = EngineOptions(workspace_mib=512, optimization_level=4, version_compatible=True, hardware_compatibility="ampere_plus")
    config, _, _ = _config(trt, opts, "fp32")
    pools = [args for name, args, _ in config._calls if name == "set_memory_pool_limit"]
    assert pools == [(trt.MemoryPoolType.WORKSPACE, 512 << 20)]
    assert config._values["builder_optimization_level"] == 4
    assert config._values["hardware_compatibility_level"] == trt.HardwareCompatibilityLevel.AMPERE_PLUS
    assert config._values["profiling_verbosity"] == trt.ProfilingVerbosity.DETAILED
    assert "VERSION_COMPATIBLE" in _flags(config)
    plain, _, _ = _config(trt, EngineOptions(), "fp32")
    assert "hardware_compatibility_level" not in plain._values and "VERSION_COMPATIBLE" not in _flags(plain)


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
        validate(options, "10.3.0", "fp16")


# -- DLA (issue 9, item 12) ----------------------------------------------------------------------------------
def test_dla_build_picks_the_core_checks_the_cores_and_records_placement(fake_trt):
    trt = fake_trt("10.3.0.26", dla_cores=2)
    layers = [trt.ILayer(), trt.ILayer(), trt.ILayer()]
    for layer, kind in zip(layers, ("CONVOLUTION", "NORMALIZATION", "CONVOLUTION")):
        layer._values["type"] = getattr(trt.LayerType, kind)
    trt._behaviour.update({"INetworkDefinition.num_layers": 3, "INetworkDefinition.get_layer": lambda self, i: layers[i],
                           "IBuilderConfig.can_run_on_DLA": lambda self, layer: layer._values["type"].name == "CONVOLUTION"})
    placement: dict = {}
    config, _, _ = _config(trt, EngineOptions(dla_core=1), "fp16", placement=placement)
    assert config._values["DLA_core"] == 1 and config._values["default_device_type"] == trt.DeviceType.DLA
    assert "GPU_FALLBACK" in _flags(config)
    assert "PREFER_PRECISION_CONSTRAINTS" in _flags(config, "clear_flag")  # set by Polygraphy for DLA, cleared: strongly typed
    assert placement == {"dla_core": 1, "layers_dla_capable": {"CONVOLUTION": 2}, "layers_gpu_only": {"NORMALIZATION": 1}}
    trt = fake_trt("10.3.0.26", dla_cores=1)
    with pytest.raises(ConfigError, match="--dla-core 1: this device has 1 DLA core$"):
        _config(trt, EngineOptions(dla_core=1), "fp16")


@pytest.mark.parametrize("version,precision,message", [
    ("10.3.0", "fp32", "DLA runs fp16 and int8 only"),
    ("10.13.0", "fp16", "TensorRT 10.13.0 has no DLA support"),
    ("11.1.0", "int8", "TensorRT 11.1.0 has no DLA support"),
])
def test_dla_is_refused_where_it_cannot_run(version, precision, message):
    with pytest.raises(ConfigError, match=message):
        validate(EngineOptions(dla_core=0), version, precision)
    validate(EngineOptions(dla_core=0), "10.3.0", "int8")
    validate(EngineOptions(dla_core=0), "11.4.1", "fp16")  # DLA again on Orin with JetPack 7.2.2+


# -- timing cache without lock files (item 14) --------------------------------------------------------------
def test_timing_cache_is_read_through_a_file_object_and_leaves_no_lock_file(fake_trt, tmp_path):
    trt = fake_trt()
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"old timings")
    with open(cache, "rb") as f:
        config, _, _ = _config(trt, EngineOptions(), "fp16", timing_cache=f)
    loaded = [args[0] for name, args, _ in config._calls if name == "create_timing_cache"]
    assert loaded == [b"old timings"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["timing.cache"]


# -- a whole build through Polygraphy's loaders (items 14, 15) -------------------------------------------------
@pytest.fixture
def fake_build(fake_trt, monkeypatch):
    """A fake TensorRT whose builder returns b'PLAN' and whose timing cache serializes to b'CACHE'."""
    trt = fake_trt("10.3.0.26")
    host = {"plan": trt.IHostMemory(), "cache": trt.IHostMemory()}
    trt._behaviour.update({
        "OnnxParser.parse_from_file": True, "OnnxParser.num_errors": 0,
        "Builder.build_serialized_network": lambda self, network, config: b"PLAN",
        "ITimingCache.serialize": lambda self: host["cache"],
        "IHostMemory.__enter__": lambda self: b"CACHE",
        "EngineInspector.get_engine_information": lambda self, fmt: json.dumps(
            {"Layers": [{"Name": "conv", "LayerType": "CaskConvolution"}, {"Name": "{ForeignNode[dla]}", "LayerType": "DLA"}]}),
    })
    monkeypatch.setattr("focalnet_edge.engine.gpu.gpu_info", lambda: dict(AGX_ORIN))
    return trt


#: what gpu_info() says on a Jetson AGX Orin 64 GB (an Orin Nano says "Orin" and 8.7 too, with 8 SMs and 7620 MiB)
AGX_ORIN = {"gpu": "Orin", "compute_capability": "8.7", "sm_count": 16, "memory_mib": 62841, "integrated": True}


def test_a_plan_is_written_from_the_serialized_network_atomically(fake_build, tmp_path):
    trt = fake_build
    onnx_path = tmp_path / "model.fp16.onnx"
    onnx_path.write_bytes(b"onnx")
    facts = stage.build_engine(onnx_path, tmp_path / "model.fp16.engine", CONTRACT, "fp16", EngineOptions(), tmp_path / "timing.cache")
    assert (tmp_path / "model.fp16.engine").read_bytes() == b"PLAN"
    assert (tmp_path / "timing.cache").read_bytes() == b"CACHE"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.fp16.engine", "model.fp16.onnx", "timing.cache"]  # no .lock, no temp
    assert facts["tensorrt"] == "10.3.0.26" and facts["gpu"] == "Orin" and facts["strongly_typed"] is True
    assert facts["profile"] == {CONTRACT.name: [[1, 3, 224, 224], [8, 3, 224, 224], [32, 3, 224, 224]]}
    assert facts["layers"] == {"count": 2, "by_type": {"CaskConvolution": 1, "DLA": 1}, "on_dla": 1, "on_gpu": 1}
    # never deserialized and serialized again: no ICudaEngine.serialize anywhere
    assert "serialize" not in trt.ICudaEngine.__dict__


def _demo_folder(tmp_path, entries):
    """A folder and manifest listing ONNX files (contents checked by the stub build, not parsed)."""
    from onnx import TensorProto, helper

    from focalnet_edge.folder.contract import InputContract
    from focalnet_edge.folder.onnx_io import set_metadata

    from focalnet_edge.folder.io import sha256_file

    manifest = {"format": 1, "tool": {"name": "focalnet-edge"}, "model": {"source": "demo", "weights_sha256": {}, "config": {}},
                "input": json.loads(InputContract().to_json()), "artifacts": {}}
    for name, precision, errors in entries:
        x = helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, 224, 224])
        y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])
        model = helper.make_model(helper.make_graph([helper.make_node("ReduceMean", ["pixel_values"], ["logits"], keepdims=0, axes=[2, 3])],
                                                    "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
        set_metadata(model, {"input": json.loads(InputContract().to_json())})
        (tmp_path / name).write_bytes(model.SerializeToString())
        manifest["artifacts"][name] = {"path": name, "precision": precision, "format": "onnx",
                                       "sha256": sha256_file(tmp_path / name), "bytes": (tmp_path / name).stat().st_size,
                                       "tensorrt_check": {"errors": errors, "warnings": 0, "first": ["error: n: bad"] if errors else []}}
    return manifest


def test_build_engines_returns_facts_and_refuses_files_the_check_refused(fake_build, tmp_path):
    manifest = _demo_folder(tmp_path, [("model.onnx", "fp32", 0), ("model.fp16.onnx", "fp16", 0)])
    built = stage.build_engines(tmp_path, manifest, EngineOptions())
    assert [e["path"] for e in built.engines] == ["model.fp32.engine", "model.fp16.engine"]
    assert built.timing_cache == {"path": "timing.cache", "tensorrt": "10.3.0.26", "gpu": "Orin", "compute_capability": "8.7",
                                  "sm_count": 16, "memory_mib": 62841, "platform": machine()}
    assert "artifacts" in manifest and set(manifest["artifacts"]) == {"model.onnx", "model.fp16.onnx"}  # not written by the stage
    stage.record(manifest, tmp_path, built)
    entry = manifest["artifacts"]["model.fp16.engine"]
    assert entry["format"] == "tensorrt-plan" and entry["built_from"] == "model.fp16.onnx" and entry["input"]["name"] == "pixel_values"
    assert entry["requires"]["tensorrt"] == "10.3.0.26" and entry["requires"]["compute_capability"] == "8.7"
    assert entry["requires"]["platform"] == machine() and entry["requires"]["dla_core"] is None  # issue 24, item 1
    bad = _demo_folder(tmp_path, [("model.fp16.onnx", "fp16", 2)])
    with pytest.raises(ArtifactError, match="model.fp16.onnx: TensorRT's parser would refuse it: error: n: bad"):
        stage.build_engines(tmp_path, bad, EngineOptions())


def test_a_timing_cache_from_another_machine_is_not_reused(fake_build, tmp_path, monkeypatch):
    manifest = _demo_folder(tmp_path, [("model.fp16.onnx", "fp16", 0)])
    (tmp_path / "timing.cache").write_bytes(b"from elsewhere")
    # an Orin Nano's cache: same TensorRT, same name "Orin", same compute capability; other SM count and memory
    manifest["timing_cache"] = {**timing_cache_key("10.3.0.26", {**AGX_ORIN, "platform": machine()}), "sm_count": 8, "memory_mib": 7620}
    seen = []
    real = stage.build_engine

    def spy(*args, **kwargs):
        seen.append(args[6] if len(args) > 6 else kwargs.get("reuse_cache"))
        return real(*args, **kwargs)

    monkeypatch.setattr(stage, "build_engine", spy)
    built = stage.build_engines(tmp_path, manifest, EngineOptions())
    assert seen == [False]
    assert any("made on another machine (sm_count 8 there, 16 here, memory_mib 7620 there, 62841 here), not reused" in n for n in built.notes)
    assert (tmp_path / "timing.cache").read_bytes() == b"CACHE"
    manifest["timing_cache"] = built.timing_cache
    seen.clear()
    stage.build_engines(tmp_path, manifest, EngineOptions())
    assert seen == [True]


def test_auto_turns_a_failed_engine_build_into_a_note(fake_build, tmp_path, monkeypatch):
    from focalnet_edge.pipeline import BuildOptions, engine_stage

    manifest = _demo_folder(tmp_path, [("model.onnx", "fp32", 0), ("model.fp16.onnx", "fp16", 0)])
    monkeypatch.setattr("focalnet_edge.engine.check.record_checks", lambda folder, m: [])
    real = stage.build_engine

    def fp16_fails(onnx_path, *args, **kwargs):
        if onnx_path.name == "model.fp16.onnx":
            raise RuntimeError("out of memory while building")
        return real(onnx_path, *args, **kwargs)

    monkeypatch.setattr(stage, "build_engine", fp16_fails)
    notes = engine_stage(tmp_path, manifest, BuildOptions(backend="auto"))
    assert any("model.fp16.engine was not built (out of memory while building)" in n for n in notes)
    written = json.loads((tmp_path / "manifest.json").read_text())
    assert "model.fp32.engine" in written["artifacts"] and "model.fp16.engine" not in written["artifacts"]
    with pytest.raises(ArtifactError, match="--backend tensorrt: building the engines failed"):
        engine_stage(tmp_path, manifest, BuildOptions(backend="tensorrt"))


# -- packaging (items 1 and 2) ----------------------------------------------------------------------------------
def _requirements(group=None):
    from pathlib import Path

    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")

    from packaging.requirements import Requirement

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in (project["optional-dependencies"][group] if group else project["dependencies"])]


def test_polygraphy_pin_excludes_the_releases_that_crash_on_tensorrt_11():
    (req,) = [r for r in _requirements() if r.name == "polygraphy"]
    assert not req.specifier.contains("0.49.26") and req.specifier.contains("0.50.3")  # 0.50.3 guards precision_is_set


@pytest.mark.parametrize("machine,expect", [
    ("x86_64", {"onnxruntime-gpu", "tensorrt", "cuda-python"}),
    ("aarch64", set()),  # Jetson: TensorRT from JetPack's apt packages, no onnxruntime-gpu wheel on PyPI
])
def test_gpu_extra_per_platform(machine, expect):
    env = {"platform_machine": machine, "extra": "gpu"}
    wanted = {r.name: r for r in _requirements("gpu") if r.marker is None or r.marker.evaluate(env)}
    assert set(wanted) == expect
    if "tensorrt" in wanted:
        spec = wanted["tensorrt"].specifier
        assert spec.contains("10.3.0") and spec.contains("11.4.0") and not spec.contains("12.0.0")


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_one_onnxruntime_distribution_per_install(machine):
    """Item 7: onnxruntime and onnxruntime-gpu install one module: the base brings neither (a Jetson's JetPack wheel,
    seen through --system-site-packages, is not shadowed), `cpu` brings one, `gpu` the other, and no extra both."""
    ort = {"onnxruntime", "onnxruntime-gpu"}

    def names(group):
        env = {"platform_machine": machine, "extra": group or ""}
        return {r.name for r in _requirements(group) if r.marker is None or r.marker.evaluate(env)}

    assert not names(None) & ort
    assert names("cpu") & ort == {"onnxruntime"}
    assert names("gpu") & ort == ({"onnxruntime-gpu"} if machine == "x86_64" else set())
    for group in ("build", "test", "video", "serve", "onnxsim", "deepstream"):
        assert not names(group) & ort, group  # combined with cpu or gpu, never a second distribution
    (numpy,) = [r for r in _requirements("deepstream") if r.name == "numpy"]
    assert numpy.specifier.contains("1.26.4") and not numpy.specifier.contains("2.0.0")  # DeepStream 7.1's pyds


def test_without_onnx_runtime_running_an_onnx_file_is_one_line_naming_the_extras(tmp_path):
    import subprocess

    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"")
    script = ("import sys; sys.modules['onnxruntime'] = None\n"  # `import onnxruntime` fails, as in a bare install
              "from focalnet_edge.cli import main\n"
              f"sys.exit(main(['predict', {str(onnx_file)!r}, 'x.png']))\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert "needs ONNX Runtime, which is not installed here: pip install 'focalnet-edge[cpu]'" in line
    assert "'focalnet-edge[gpu]'" in line and "Jetson" in line


# -- engines on the target: the `engine` command and adopted plans -----------------------------------------------
def test_engine_command_checks_each_file_once_builds_and_records(fake_build, tmp_path, monkeypatch):
    manifest = _demo_folder(tmp_path, [("model.onnx", "fp32", 0), ("model.fp16.onnx", "fp16", 0)])
    for entry in manifest["artifacts"].values():
        del entry["tensorrt_check"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    checked = []
    real = trt_check.check_onnx
    monkeypatch.setattr(trt_check, "check_onnx", lambda path, *a: checked.append(path.name) or real(path, *a))
    notes = engine_command(tmp_path, EngineOptions()).notes
    assert checked == ["model.onnx", "model.fp16.onnx"]  # once each, not again inside the build
    written = json.loads((tmp_path / "manifest.json").read_text())
    assert {"model.fp32.engine", "model.fp16.engine"} <= set(written["artifacts"])
    assert written["timing_cache"]["tensorrt"] == "10.3.0.26" and any(n.startswith("built model.fp16.engine") for n in notes)


def test_engine_command_without_tensorrt_names_what_to_install(tmp_path, monkeypatch):
    from focalnet_edge.errors import InputError

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` fails
    (tmp_path / "manifest.json").write_text(json.dumps(_demo_folder(tmp_path, [("model.onnx", "fp32", 0)])))
    with pytest.raises(InputError, match="TensorRT is not installed.*python3-libnvinfer"):
        engine_command(tmp_path, EngineOptions())


@pytest.fixture
def trtexec_plan(fake_trt, tmp_path, monkeypatch):
    trt = fake_trt("10.3.0.26")
    io = {"pixel_values": trt.TensorIOMode.INPUT, "logits": trt.TensorIOMode.OUTPUT}
    shapes = {"pixel_values": [-1, 3, 224, 224], "logits": [-1, 10]}
    trt._io, trt._shapes = io, shapes  # tests change them
    trt._behaviour.update({
        "ICudaEngine.num_io_tensors": 2, "ICudaEngine.get_tensor_name": lambda self, i: list(io)[i],
        "ICudaEngine.get_tensor_mode": lambda self, name: io[name],
        "ICudaEngine.get_tensor_shape": lambda self, name: shapes[name],
        "ICudaEngine.get_tensor_dtype": lambda self, name: trt.DataType.FLOAT,
        "ICudaEngine.get_tensor_profile_shape": lambda self, name, index: [[1, 3, 224, 224], [4, 3, 224, 224], [8, 3, 224, 224]],
        "EngineInspector.get_engine_information": lambda self, fmt: json.dumps({"Layers": [{"LayerType": "Reduce"}]}),
    })
    monkeypatch.setattr("focalnet_edge.engine.gpu.gpu_info", lambda: {"gpu": "Orin", "compute_capability": "8.7"})
    manifest = _demo_folder(tmp_path, [("model.onnx", "fp32", 0), ("model.fp16.onnx", "fp16", 0)])
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    plan = tmp_path / "model.fp16.onnx_b1_gpu0_fp16.engine"  # as DeepStream's nvinfer names it
    plan.write_bytes(b"PLAN FROM TRTEXEC")
    return trt, plan


def test_an_adopted_plan_is_registered_with_this_machines_facts(trtexec_plan, tmp_path):
    from focalnet_edge.runtime.loader import engine_facts_at as _facts_from_manifest

    _, plan = trtexec_plan
    notes = engine_command(tmp_path, adopt=str(plan), source="model.fp16.onnx").notes
    assert "adopted" in notes[0] and (tmp_path / "model.fp16.engine").read_bytes() == b"PLAN FROM TRTEXEC"
    entry = json.loads((tmp_path / "manifest.json").read_text())["artifacts"]["model.fp16.engine"]
    assert entry["format"] == "tensorrt-plan" and entry["built_from"] == "model.fp16.onnx" and entry["adopted_from"] == str(plan)
    assert entry["requires"]["tensorrt"] == "10.3.0.26" and entry["requires"]["gpu"] == "Orin"
    assert entry["engine"]["profile"] == {"pixel_values": [[1, 3, 224, 224], [4, 3, 224, 224], [8, 3, 224, 224]]}
    assert _facts_from_manifest(tmp_path / "model.fp16.engine")["precision"] == "fp16"  # runtime.load no longer says "not listed"


def test_adopting_refuses_what_does_not_fit(trtexec_plan, tmp_path):
    from focalnet_edge.errors import InputError

    trt, plan = trtexec_plan
    with pytest.raises(InputError, match="--adopt needs --from"):
        engine_command(tmp_path, adopt=str(plan))
    with pytest.raises(InputError, match="--from model.int8.cpu.onnx: expected the ONNX file the plan was built from, one of model.onnx, model.fp16.onnx"):
        engine_command(tmp_path, adopt=str(plan), source="model.int8.cpu.onnx")
    trt._behaviour["ICudaEngine.get_tensor_dtype"] = lambda self, name: trt.DataType.HALF
    with pytest.raises(ArtifactError, match="input 'pixel_values' is float16, model.fp16.onnx's is float32: not built from model.fp16.onnx"):
        engine_command(tmp_path, adopt=str(plan), source="model.fp16.onnx")
    trt._behaviour["Runtime.deserialize_cuda_engine"] = None
    with pytest.raises(ArtifactError, match="TensorRT 10.3.0.26 cannot load this plan"):
        engine_command(tmp_path, adopt=str(plan), source="model.fp16.onnx")


def test_host_code_is_allowed_only_for_a_plan_adopted_as_version_compatible(trtexec_plan, tmp_path, monkeypatch):
    trt, plan = trtexec_plan
    made = []
    init = trt.Runtime.__init__

    def spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(trt.Runtime, "__init__", spy)
    engine_command(tmp_path, adopt=str(plan), source="model.fp16.onnx")
    assert "engine_host_code_allowed" not in made[-1]._values
    engine_command(tmp_path, EngineOptions(version_compatible=True), adopt=str(plan), source="model.fp16.onnx")
    assert made[-1]._values["engine_host_code_allowed"] is True
    entry = json.loads((tmp_path / "manifest.json").read_text())["artifacts"]["model.fp16.engine"]
    assert entry["requires"]["version_compatible"] is True


def test_fp8_is_not_built_on_orin_and_is_on_ada(fake_build, tmp_path, monkeypatch):
    manifest = _demo_folder(tmp_path, [("model.fp16.onnx", "fp16", 0), ("model.fp8.onnx", "fp8", 0)])
    built = stage.build_engines(tmp_path, manifest, EngineOptions())  # Orin: sm 8.7
    assert [e["path"] for e in built.engines] == ["model.fp16.engine"]
    assert any("model.fp8.engine: not built: fp8 needs compute capability >= 8.9" in n and "8.7" in n for n in built.notes)
    monkeypatch.setattr("focalnet_edge.engine.gpu.gpu_info", lambda: {"gpu": "RTX 4090", "compute_capability": "8.9"})
    built = stage.build_engines(tmp_path, manifest, EngineOptions())
    assert [e["path"] for e in built.engines] == ["model.fp16.engine", "model.fp8.engine"]


# -- issue 24 --------------------------------------------------------------------------------------------------------
def test_a_plan_with_the_deepstream_graphs_outputs_is_not_adopted_from_the_plain_graph(trtexec_plan, tmp_path, capsys):
    """nvinfer's plan of model.fp16.deepstream.onnx outputs `probs`; model.fp16.onnx outputs `logits` (item 2)."""
    from focalnet_edge.cli import main

    trt, plan = trtexec_plan
    trt._io.pop("logits")
    trt._io["probs"] = trt.TensorIOMode.OUTPUT
    trt._shapes["probs"] = [-1, 10]
    assert main(["engine", str(tmp_path), "--adopt", str(plan), "--from", "model.fp16.onnx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {plan}: its outputs are probs, model.fp16.onnx's are logits: not built from model.fp16.onnx"] or (
        len(err) == 1 and err[0].endswith(f"{plan}: its outputs are probs, model.fp16.onnx's are logits: not built from model.fp16.onnx")), err
    assert not (tmp_path / "model.fp16.engine").exists()
    assert "model.fp16.engine" not in json.loads((tmp_path / "manifest.json").read_text())["artifacts"]


@pytest.mark.parametrize("name,shape,message", [
    ("logits", [-1, 1000], r"output 'logits' has shape \[-1, 1000\], model.fp16.onnx's \[-1, 10\]"),
    ("pixel_values", [-1, 3, 256, 256], r"input 'pixel_values' has shape \[-1, 3, 256, 256\], model.fp16.onnx's \[-1, 3, 224, 224\]"),
    ("logits", [-1, 10, 1], r"output 'logits' has shape \[-1, 10, 1\]"),
])
def test_adopting_checks_shapes_against_the_source_graph(trtexec_plan, tmp_path, name, shape, message):
    trt, plan = trtexec_plan
    trt._shapes[name] = shape
    with pytest.raises(ArtifactError, match=message):
        engine_command(tmp_path, adopt=str(plan), source="model.fp16.onnx")
    trt._shapes.update({"pixel_values": [8, 3, 224, 224], "logits": [8, 10]})  # a static plan of a dynamic graph fits
    assert engine_command(tmp_path, adopt=str(plan), source="model.fp16.onnx").engines


def test_an_adopted_plan_records_the_platform(trtexec_plan, tmp_path):
    _, plan = trtexec_plan
    engine_command(tmp_path, adopt=str(plan), source="model.fp16.onnx")
    entry = json.loads((tmp_path / "manifest.json").read_text())["artifacts"]["model.fp16.engine"]
    assert entry["requires"]["platform"] == machine() in ("x86_64", "aarch64")


@pytest.mark.parametrize("precision,tf32", [("fp32", False), ("fp16", True), ("int8", True)])
def test_tf32_is_allowed_where_the_precisions_thresholds_allow_it(fake_trt, precision, tf32):
    """Polygraphy clears TF32 unless told; trtexec keeps it. The fp32 engine's max abs 1e-4 rules it out (item 12)."""
    trt = fake_trt()
    config, _, _ = _config(trt, EngineOptions(), precision)
    assert ("TF32" in _flags(config)) is tf32 and ("TF32" in _flags(config, "clear_flag")) is not tf32


def test_a_version_compatible_plan_is_inspected_with_host_code_allowed(fake_build, tmp_path, monkeypatch):
    trt = fake_build
    onnx_path = tmp_path / "model.fp16.onnx"
    onnx_path.write_bytes(b"onnx")
    made = []
    init = trt.Runtime.__init__
    monkeypatch.setattr(trt.Runtime, "__init__", lambda self, *a, **k: (init(self, *a, **k), made.append(self))[0])
    facts = stage.build_engine(onnx_path, tmp_path / "model.fp16.engine", CONTRACT, "fp16", EngineOptions(version_compatible=True))
    assert made[-1]._values["engine_host_code_allowed"] is True and facts["layers"]["count"] == 2
    trt._behaviour["Runtime.deserialize_cuda_engine"] = None  # the inspector's plan does not load: one line, no plan left
    with pytest.raises(ArtifactError, match=r"model.fp16.engine: TensorRT 10.3.0.26 cannot load the plan it just built$"):
        stage.build_engine(onnx_path, tmp_path / "model.fp16.engine", CONTRACT, "fp16", EngineOptions(version_compatible=True))
    assert not (tmp_path / "model.fp16.engine").exists()


def test_an_out_of_memory_build_is_named_with_what_to_change(fake_build, tmp_path):
    """TensorRT logs the allocation failure through its ILogger and returns no plan (item 4)."""
    from polygraphy.backend.trt import util as trt_util

    trt = fake_build

    def out_of_memory(self, network, config):
        trt_util.get_trt_logger().log(trt.Logger.ERROR, "[virtualMemoryBuffer.cpp::resizePhysical::140] Error Code 2: "
                                                        "OutOfMemory (Requested size was 4246732800 bytes.)")
        return None

    trt._behaviour["Builder.build_serialized_network"] = out_of_memory
    trt._behaviour["INetworkDefinition.get_input"](None, 0)._values["name"] = "frames"
    frames = InputContract(name="frames", dtype="uint8", layout="NHWC", color_order="BGRx", fused_preprocess=True, frame_size="any",
                           height=224, width=224, batch=(1, 8, 32))
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"onnx")
    with pytest.raises(ArtifactError) as e:
        stage.build_engine(onnx_path, tmp_path / "model.fp32.engine", frames, "fp32", EngineOptions(size_range=((16, 16), (1080, 1920), (2160, 3840))))
    assert str(e.value) == ("model.onnx: TensorRT ran out of GPU memory building the engine for inputs up to 32x2160x3840x4; pass a smaller "
                            "max to --profile-sizes (e.g. 16x16:720x1280:720x1280), or export with a smaller --batch MAX "
                            "(--workspace limits only the builder's scratch memory)")
    assert not (tmp_path / "model.fp32.engine").exists()
    trt._behaviour["Builder.build_serialized_network"] = lambda self, network, config: None  # another failure: not called memory
    with pytest.raises(Exception) as e:
        stage.build_engine(onnx_path, tmp_path / "model.fp32.engine", frames, "fp32", EngineOptions())
    assert "out of GPU memory" not in str(e.value)


@pytest.mark.parametrize("memory_mib,batch,expect", [
    (81559, 32, (2160, 3840)),  # H100 80 GB: 4K frames at batch 32 (4.2 GB as float) fit in 1/16
    (62841, 32, (1080, 1920)),  # AGX Orin 64 GB
    (30536, 32, (1080, 1920)),  # AGX Orin 32 GB
    (7620, 32, (720, 1280)),  # Orin Nano 8 GB
    (7620, 2, (2160, 3840)),
    (3000, 64, (240, 320)),  # nothing fits: the smallest
    (None, 32, (1080, 1920)),  # memory unknown: up to 1080p
])
def test_the_frame_profile_is_sized_from_the_gpus_memory(memory_mib, batch, expect):
    c = InputContract(name="frames", dtype="uint8", layout="NHWC", color_order="BGRx", fused_preprocess=True, frame_size="any",
                      height=224, width=224, batch=(1, 1, batch))
    lo, opt, hi = frame_size_range(c, memory_mib)
    assert hi == expect and lo == (16, 16) and opt == (min(1080, hi[0]), min(1920, hi[1]))
    if memory_mib:  # the rule itself: the largest float frame batch within 1/16 of the memory
        assert batch * hi[0] * hi[1] * 4 * 4 <= memory_mib * 2**20 / 16 or hi == (240, 320)


def test_build_engines_sizes_a_frame_size_any_profile_and_says_so(fake_build, tmp_path, monkeypatch):
    manifest = _demo_folder(tmp_path, [("model.onnx", "fp32", 0)])
    frames = InputContract(name="frames", dtype="uint8", layout="NHWC", color_order="BGRx", fused_preprocess=True, frame_size="any",
                           height=224, width=224, batch=(1, 1, 32))
    monkeypatch.setattr(stage, "source_contract", lambda path: frames)
    fake_build._behaviour["INetworkDefinition.get_input"](None, 0)._values["name"] = "frames"
    monkeypatch.setattr("focalnet_edge.engine.gpu.gpu_info", lambda: {**AGX_ORIN, "memory_mib": 7620})  # an Orin Nano
    built = stage.build_engines(tmp_path, manifest, EngineOptions())
    assert built.engines[0]["engine"]["profile"]["frames"][2] == [32, 720, 1280, 4]
    assert any("model.fp32.engine: frames up to 720x1280 (for 7620 MiB of GPU memory; --profile-sizes changes it)" in n for n in built.notes)
    built = stage.build_engines(tmp_path, manifest, EngineOptions(size_range=((16, 16), (480, 640), (1080, 1920))))
    assert built.engines[0]["engine"]["profile"]["frames"][2] == [32, 1080, 1920, 4]


def test_hardware_compatibility_is_refused_on_a_jetson(fake_build, tmp_path):
    manifest = _demo_folder(tmp_path, [("model.fp16.onnx", "fp16", 0)])
    with pytest.raises(ConfigError, match="hardware compatibility on JetPack"):
        stage.build_engines(tmp_path, manifest, EngineOptions(hardware_compatibility="ampere_plus"))


def test_the_engine_entry_records_its_streams(fake_build, tmp_path):
    """Issue 24, item 3: `--streams N` builds N identical profiles; the engine entry says how many streams run at once."""
    onnx_path = tmp_path / "model.fp16.onnx"
    onnx_path.write_bytes(b"onnx")
    assert stage.build_engine(onnx_path, tmp_path / "a.engine", CONTRACT, "fp16", EngineOptions())["streams"] == 1
    assert stage.build_engine(onnx_path, tmp_path / "b.engine", CONTRACT, "fp16", EngineOptions(streams=2))["streams"] == 2


def test_streams_build_that_many_identical_profiles(fake_trt):
    """Issue 24, item 3: one optimization profile per concurrent stream, all with the same shapes."""
    trt = fake_trt()
    for streams in (1, 3):
        config, _, _ = _config(trt, EngineOptions(streams=streams))
        profiles = [args[0] for name, args, _ in config._calls if name == "add_optimization_profile"]
        shapes = [[(a[0], *map(list, a[1:])) for n, a, _ in p._calls if n == "set_shape"] for p in profiles]
        assert shapes == [[("pixel_values", [1, 3, 224, 224], [8, 3, 224, 224], [32, 3, 224, 224])]] * streams
    with pytest.raises(ConfigError, match="--streams 0 not accepted"):
        validate(EngineOptions(streams=0), "10.3.0", "fp16")
