"""Issue 24's capability "a verified engine for the DeepStream graph", where TensorRT is absent.

`focalnet-edge engine OUT` writes the graph nvinfer runs (`model.<p>.deepstream.onnx`: ImageNet's
per-channel normalisation in front, a Softmax behind) beside its source, builds its engine with the
others (a stub-generated TensorRT, tests/trt_fake.py, through Polygraphy's real loaders) and lists
both; the graph is verified here by ONNX Runtime against the stored references, and `deploy`
points nvinfer's `onnx-file` and `model-engine-file` at the folder's two files, as GLib parses the
config. The independent references: numpy's softmax of the stored PyTorch logits, GLib's GKeyFile,
and nvinfer's documented preprocessing applied to the file the config names (test_deepstream.py).
tests/gpu/test_engines.py builds and verifies the real engine wherever TensorRT runs.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import onnx
import pytest
from test_deepstream import _nvinfer_like, glib_parse
from test_engine import fake_build, fake_trt  # noqa: F401 - fixtures

from focalnet_edge.deploy.deepstream import DeepStreamOptions, deploy
from focalnet_edge.engine.command import engine_command
from focalnet_edge.engine.config import EngineOptions
from focalnet_edge.errors import ConfigError
from focalnet_edge.cli.printing import format_artifacts
from focalnet_edge.folder.artifacts import select
from focalnet_edge.folder.facts import folder_facts
from focalnet_edge.folder.manifest import read_manifest, write_manifest
from focalnet_edge.folder.onnx_io import ort_session
from focalnet_edge.model.preprocessing import ImageSpec
from focalnet_edge.pipeline import ExportOptions, PrecisionOptions, export_stage, live_references, precision_stage, verify_stage
from focalnet_edge.runtime.choose import choose_artifact
from focalnet_edge.runtime.loader import engine_facts
from focalnet_edge.verify.compare import load_image_set
from focalnet_edge.verify.references import load_references, save_references


@pytest.fixture(scope="module")
def imagenet_fp16(tmp_path_factory, demo_ckpt):
    """An fp16 folder as `build --precision fp16` leaves it (stored references), with ImageNet's per-channel std
    and a logits head: its DeepStream graph gets the normalisation in front and a Softmax behind."""
    out = tmp_path_factory.mktemp("imagenet-fp16")
    spec = ImageSpec(height=64, width=64)
    _, manifest = export_stage(dataclasses.replace(demo_ckpt, preprocessing=spec), out, ExportOptions(batch=(1, 2, 8), resize_mode="stretch"))
    precision_stage(out, out / "model.onnx", "fp16", PrecisionOptions(), manifest)
    write_manifest(out, manifest)
    refs = live_references(out, load_image_set("demo", limit=32))
    document = read_manifest(out).to_json()
    document["references"] = save_references(out, refs)
    write_manifest(out, document)
    return out


@pytest.fixture
def ds_build(fake_build):  # noqa: F811 - the fixture imported above
    """`fake_build` whose parsed network has the input of the ONNX file parsed (`frames` for a DeepStream graph)."""
    trt = fake_build
    parsed = {}

    def parse(self, path):
        (first,) = onnx.load(str(path), load_external_data=False).graph.input
        parsed.update(name=first.name, shape=[d.dim_value or -1 for d in first.type.tensor_type.shape.dim])
        return True

    def get_input(self, index):
        tensor = trt.ITensor()
        tensor._values.update(name=parsed["name"], shape=parsed["shape"], is_shape_tensor=False)
        return tensor

    trt._behaviour.update({"OnnxParser.parse_from_file": parse, "INetworkDefinition.get_input": get_input})
    return trt


@pytest.fixture
def folder(imagenet_fp16, tmp_path):
    return shutil.copytree(imagenet_fp16, tmp_path / "out")


def _config(path):
    return {k: e["value"] for k, e in glib_parse(path)[str(path)]["groups"]["property"].items()}


def _mark_verified(folder, name, passed=True):
    """What `engine OUT` records after verifying an engine on the device (a stub plan does not run here)."""
    document = read_manifest(folder).to_json()
    document["artifacts"][name]["verification"] = {"passed": passed}
    write_manifest(folder, document)


def test_engine_writes_the_graph_nvinfer_runs_and_builds_its_engine(ds_build, folder):
    built = engine_command(folder, EngineOptions())
    assert built.graphs == ["model.fp16.deepstream.onnx"], built.notes
    assert [e["path"] for e in built.engines] == ["model.fp32.engine", "model.fp16.engine", "model.fp16.deepstream.engine"]
    assert any(n.startswith("wrote model.fp16.deepstream.onnx") and "normalisation in front and a Softmax behind" in n for n in built.notes)
    manifest = read_manifest(folder)
    graph, engine = manifest.artifacts["model.fp16.deepstream.onnx"], manifest.artifacts["model.fp16.deepstream.engine"]
    assert graph.precision == engine.precision == "fp16"
    assert graph.deepstream["source"] == "model.fp16.onnx" and graph.deepstream["source_sha256"] == manifest.artifacts["model.fp16.onnx"].sha256
    assert graph.entry["tensorrt_check"]["errors"] == 0  # checked against onnx-tensorrt's support matrix like the others
    assert engine.built_from == "model.fp16.deepstream.onnx" and engine.deepstream == graph.deepstream
    assert engine.input["name"] == "frames" and engine.input["fused_preprocess"] is True  # 0..255 pixels, as nvinfer feeds
    facts = engine_facts(manifest, engine)
    assert facts["head"] == "probs" and facts["outputs"] == ["probs"]  # not the folder's logits (no KeyError, no second softmax)
    model = onnx.load(str(folder / graph.path))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["frames"] and [o.name for o in model.graph.output] == ["probs"]
    assert [n.op_type for n in model.graph.node[:2]] == ["Mul", "Add"] and model.graph.node[-1].op_type == "Softmax"
    shown = {line.split("  ")[0]: line for line in format_artifacts(folder_facts(folder)["artifacts"]).splitlines()}
    assert "for DeepStream's nvinfer (model.fp16.onnx as nvinfer runs it)" in shown["model.fp16.deepstream.engine"]  # `info`
    assert "nvinfer" not in shown["model.fp16.engine"]


def test_the_graph_and_its_engine_are_never_chosen_unless_named(ds_build, folder):
    engine_command(folder, EngineOptions())
    manifest = read_manifest(folder)
    notes: list[str] = []
    assert choose_artifact(manifest, None, notes, runs=lambda a: None, gpu=True, quiet=True).path == "model.fp16.engine"
    assert not any("deepstream" in n for n in notes)  # never a candidate, so never a note on stderr either
    cpu = choose_artifact(manifest, None, runs=lambda a: "no TensorRT" if a.is_engine else None, gpu=False, quiet=True)
    assert cpu.path == "model.onnx"
    assert {a.path for a in select(manifest.artifacts, "fp16")} == {"model.fp16.onnx", "model.fp16.engine"}
    assert choose_artifact(manifest, "engine", runs=lambda a: None, quiet=True).path != "model.fp16.deepstream.engine"
    assert choose_artifact(manifest, "model.fp16.deepstream.onnx", quiet=True).path == "model.fp16.deepstream.onnx"


def test_the_graph_is_verified_against_the_softmax_of_the_stored_logits(ds_build, folder):
    engine_command(folder, EngineOptions())
    manifest = read_manifest(folder)
    refs = load_references(folder, manifest)
    (report,) = verify_stage(folder, refs, ["model.fp16.deepstream.onnx"]).reports
    assert report.passed, report.failures
    # independently: nvinfer's tensor (RGB, planar, 0..255 as float, net-scale-factor 1 and offsets 0) through ONNX Runtime
    x = np.ascontiguousarray(refs.frames.transpose(0, 3, 1, 2), dtype=np.float32)
    (probs,) = ort_session(onnx.load(str(folder / "model.fp16.deepstream.onnx"))).run(None, {"frames": x})
    logits = refs.outputs["logits"].astype(np.float64)
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    assert np.allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert float(np.abs(probs - expected).max()) < 5e-3  # fp16
    assert (probs.argmax(-1) == expected.argmax(-1)).mean() >= 0.95
    assert read_manifest(folder).artifacts["model.fp16.deepstream.onnx"].verification["passed"] is True  # recorded


def test_deploy_points_nvinfer_at_the_verified_graph_and_engine(ds_build, folder):
    engine_command(folder, EngineOptions())
    _mark_verified(folder, "model.fp16.deepstream.engine")
    ds = deploy(folder, DeepStreamOptions(precision="fp16"))
    assert not (ds / "model.fp16.deepstream.onnx").exists()  # no second, unverified copy
    for name in ("config_infer_primary.txt", "config_infer_secondary.txt"):
        v = _config(ds / name)
        assert v["onnx-file"] == "../model.fp16.deepstream.onnx" and v["model-engine-file"] == "../model.fp16.deepstream.engine"
        assert (v["net-scale-factor"], v["offsets"]) == (1.0, [0.0, 0.0, 0.0]) and v["output-blob-names"] == ["probs"]
        assert "verified against the folder's references" in (ds / name).read_text()
    facts = json.loads((ds / "deepstream.json").read_text())
    assert facts["onnx"]["in_output_folder"] is True and facts["engine"]["path"] == "../model.fp16.deepstream.engine"
    # nvinfer's documented preprocessing with the parsed values, on the file the config names, reproduces the model
    refs = load_references(folder, read_manifest(folder))
    got = _nvinfer_like(ds / "config_infer_primary.txt", refs.frames)
    assert (got.argmax(-1) == refs.outputs["logits"].argmax(-1)).mean() >= 0.95


def test_deploy_writes_its_own_graph_where_the_folders_does_not_fit(ds_build, folder, caplog):
    engine_command(folder, EngineOptions())
    _mark_verified(folder, "model.fp16.deepstream.engine", passed=False)
    with caplog.at_level("WARNING"):
        ds = deploy(folder, DeepStreamOptions(precision="fp16"))
    v = _config(ds / "config_infer_primary.txt")
    assert v["onnx-file"] == "../model.fp16.deepstream.onnx"
    assert v["model-engine-file"] == f"../model.fp16.deepstream.onnx_b{v['batch-size']}_gpu0_fp16.engine"  # nvinfer builds its own
    assert "model.fp16.deepstream.engine failed its verification" in caplog.text
    # another normalisation than the folder's graph has: deploy derives and writes its own
    ds = deploy(folder, DeepStreamOptions(precision="fp16", normalize="nvinfer", force=True))
    assert _config(ds / "config_infer_primary.txt")["onnx-file"] == "model.fp16.deepstream.onnx"
    assert (ds / "model.fp16.deepstream.onnx").is_file()
    # a batch-size above the engine's profile (max 8): nvinfer builds its own engine
    _mark_verified(folder, "model.fp16.deepstream.engine")
    document = read_manifest(folder).to_json()
    document["artifacts"]["model.fp16.deepstream.engine"]["engine"]["profile"] = {"frames": [[1, 3, 64, 64], [1, 3, 64, 64], [1, 3, 64, 64]]}
    write_manifest(folder, document)
    with caplog.at_level("WARNING"):
        ds = deploy(folder, DeepStreamOptions(precision="fp16", batch_size=2, force=True))
    assert _config(ds / "config_infer_primary.txt")["model-engine-file"].startswith("../model.fp16.deepstream.onnx_b2_")
    assert "takes batches up to 1" in caplog.text


def test_the_deepstream_choice(ds_build, folder, tmp_path, demo_ckpt):
    built = engine_command(folder, EngineOptions(deepstream="none"))
    assert built.graphs == [] and "model.fp16.deepstream.onnx" not in read_manifest(folder).artifacts
    built = engine_command(folder, EngineOptions(deepstream="fp32"))
    assert built.graphs == ["model.deepstream.onnx"] and "model.fp32.deepstream.engine" in [e["path"] for e in built.engines]
    built = engine_command(folder, EngineOptions(version_compatible=True, deepstream="fp16"))
    assert built.graphs == [] and any("no graph for nvinfer with --dla-core or --version-compatible" in n for n in built.notes)
    # a folder nvinfer cannot feed (uint8 frames): a note with auto, an error when a precision is asked for
    uint8 = tmp_path / "uint8"
    _, manifest = export_stage(demo_ckpt, uint8, ExportOptions(fuse_preprocess=True))
    write_manifest(uint8, manifest)
    built = engine_command(uint8, EngineOptions())
    assert built.graphs == [] and any("deepstream: no graph for nvinfer (input 'frames' is uint8" in n for n in built.notes)
    with pytest.raises(ConfigError, match="nvinfer feeds float32 tensors"):
        engine_command(uint8, EngineOptions(deepstream="fp32"))


def test_bench_leaves_the_graph_out_unless_named_and_deploy_names_a_graph_of_another_precision(ds_build, folder, caplog, monkeypatch):
    from focalnet_edge.runtime.bench import bench_folder

    engine_command(folder, EngineOptions(deepstream="fp32"))  # the fp32 model.onnx's graph
    monkeypatch.setattr("focalnet_edge.runtime.choose.runnable_here", lambda a: not a.is_engine)  # stub plans do not run
    benched = {r["artifact"] for r in bench_folder(folder, None, [1], warmup=0, iterations=1)}
    assert benched == {"model.onnx", "model.fp16.onnx"}  # the engines do not run here; the graph is not a default
    assert {r["artifact"] for r in bench_folder(folder, "model.deepstream.onnx", [1], warmup=0, iterations=1)} == {"model.deepstream.onnx"}
    with caplog.at_level("WARNING"):
        ds = deploy(folder, DeepStreamOptions())  # deploy's own choice is fp16: it says where the verified graph is
    assert "the folder holds model.deepstream.onnx" in caplog.text and "deploy --precision fp32 uses it" in caplog.text
    assert _config(ds / "config_infer_primary.txt")["onnx-file"] == "model.fp16.deepstream.onnx"
    ds = deploy(folder, DeepStreamOptions(precision="fp32", force=True))
    assert _config(ds / "config_infer_primary.txt")["onnx-file"] == "../model.deepstream.onnx"


def test_a_second_engine_run_keeps_the_graphs_verification_and_skips_its_engine_when_told(ds_build, folder):
    engine_command(folder, EngineOptions())
    verify_stage(folder, load_references(folder, read_manifest(folder)), ["model.fp16.deepstream.onnx"])
    engine_command(folder, EngineOptions())  # the same graph, written again: its entry (verification, check) is kept
    assert read_manifest(folder).artifacts["model.fp16.deepstream.onnx"].verification["passed"] is True
    for options in (EngineOptions(deepstream="none"), EngineOptions(version_compatible=True)):
        built = engine_command(folder, options)  # never replaces nvinfer's engine with one nvinfer cannot load
        assert "model.fp16.deepstream.engine" not in [e["path"] for e in built.engines]
        assert any(n.startswith("model.fp16.deepstream.engine: not built with --deepstream none") for n in built.notes)


def test_without_onnx_runtime_the_onnx_files_do_not_run_here_and_the_engines_do(ds_build, folder, monkeypatch):
    """A Jetson with TensorRT and no ONNX Runtime yet: `verify` and `bench` take the engines, not the ONNX files."""
    from focalnet_edge.runtime.choose import NO_ONNX_RUNTIME, why_not_runnable

    engine_command(folder, EngineOptions())
    monkeypatch.setattr("focalnet_edge.runtime.choose.optional", lambda name: None)  # `import onnxruntime` fails
    manifest = read_manifest(folder)
    assert why_not_runnable(manifest.artifacts["model.fp16.onnx"]) == NO_ONNX_RUNTIME
    assert choose_artifact(manifest, None, quiet=True).path == "model.fp16.engine"


def test_a_graph_of_an_earlier_source_is_named_and_another_normalisation_is_not_a_warning(ds_build, folder, caplog):
    engine_command(folder, EngineOptions())
    with caplog.at_level("WARNING"):
        ds = deploy(folder, DeepStreamOptions(precision="fp16", normalize="nvinfer"))
    assert _config(ds / "config_infer_primary.txt")["onnx-file"] == "model.fp16.deepstream.onnx"  # its own, as asked
    assert "deepstream.onnx" not in caplog.text
    document = read_manifest(folder).to_json()
    document["artifacts"]["model.fp16.deepstream.onnx"]["deepstream"]["source_sha256"] = "0" * 64  # an earlier model.fp16.onnx
    write_manifest(folder, document)
    with caplog.at_level("WARNING"):
        ds = deploy(folder, DeepStreamOptions(precision="fp16", force=True))
    assert _config(ds / "config_infer_primary.txt")["onnx-file"] == "model.fp16.deepstream.onnx"
    assert "was derived from an earlier model.fp16.onnx" in caplog.text and "--deepstream fp16" in caplog.text
