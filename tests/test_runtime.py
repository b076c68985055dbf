"""Runners: input validation, batching, torch tensors, predict on every image kind, load()."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from focalnet_edge.errors import ArtifactError, InputError
from focalnet_edge.pipeline import ExportOptions, export_stage
from focalnet_edge.runtime import OnnxRuntimeRunner, TorchRunner, load
from focalnet_edge.demo import demo_images


@pytest.fixture(scope="module")
def exported(tmp_path_factory, demo_ckpt):
    out = tmp_path_factory.mktemp("out")
    export_stage(demo_ckpt, out, ExportOptions(batch=(1, 2, 4)))
    return out


@pytest.fixture(scope="module")
def fused(tmp_path_factory, demo_ckpt):
    out = tmp_path_factory.mktemp("fused")
    export_stage(demo_ckpt, out, ExportOptions(fuse_preprocess=True, color_order="BGR"))
    return out


@pytest.mark.parametrize(
    "array,message",
    [
        (np.zeros((2, 3, 64), np.float32), r"expected rank 4"),
        (np.zeros((2, 3, 64, 64), np.float64), r"dtype float64, expected float32"),
        (np.zeros((2, 64, 64, 3), np.float32), r"expected 3 channels on axis 1 \(NCHW"),
        (np.zeros((2, 3, 96, 64), np.float32), r"is 96x64, expected 64x64"),
        (np.zeros((0, 3, 64, 64), np.float32), r"batch 0"),
        ([[1.0]], r"numpy array or torch tensor"),
    ],
)
def test_inputs_are_checked_before_running(exported, array, message):
    with load(exported) as runner, pytest.raises(InputError, match=message):
        runner(array)


def test_fused_artifact_checks_dtype_and_layout(fused):
    with load(fused) as runner:
        with pytest.raises(InputError, match="dtype float32, expected uint8"):
            runner(np.zeros((1, 64, 64, 3), np.float32))
        with pytest.raises(InputError, match=r"expected 3 channels on axis 3 \(NHWC"):
            runner(np.zeros((1, 3, 64, 64), np.uint8))


def test_batches_over_the_maximum_are_split_and_joined(exported, demo_ckpt):
    x = np.random.default_rng(0).standard_normal((11, 3, 64, 64)).astype(np.float32)  # max batch is 4
    with load(exported) as runner:
        out = runner(x)
    ref = TorchRunner(demo_ckpt)(x)
    assert out.shape == (11, 10) and np.abs(out - ref).max() <= 1e-4


def test_static_batch_pads_the_last_chunk(tmp_path, demo_ckpt):
    export_stage(demo_ckpt, tmp_path, ExportOptions(dynamic_batch=False, batch=(1, 4, 4)))
    x = np.random.default_rng(1).standard_normal((6, 3, 64, 64)).astype(np.float32)
    with load(tmp_path) as runner:
        out = runner(x)
    assert out.shape == (6, 10) and np.abs(out - TorchRunner(demo_ckpt)(x)).max() <= 1e-4


def test_torch_tensors_in_give_torch_tensors_out(exported):
    x = torch.randn(2, 3, 64, 64)
    with load(exported) as runner:
        out = runner(x)
        assert isinstance(out, torch.Tensor) and out.shape == (2, 10)
        assert torch.allclose(out, torch.from_numpy(runner(x.numpy())))


def test_predict_takes_paths_pil_images_and_frames_alike(fused, exported):
    paths = [p for p, _ in demo_images()[::90]]
    pils = [Image.open(p) for p in paths]
    frames = [np.asarray(im.convert("RGB")) for im in pils]
    with load(fused) as a, load(exported) as b:
        results = [a.predict(paths, top_k=3), a.predict(pils, top_k=3), a.predict(frames, top_k=3), b.predict(paths, top_k=3)]
    for r in results[1:]:
        assert [[t["label"] for t in row] for row in r] == [[t["label"] for t in row] for row in results[0]]
        for row, row0 in zip(r, results[0]):
            assert abs(row[0]["score"] - row0[0]["score"]) < 1e-4
    expected = [label for _, label in demo_images()[::90]]
    assert [row[0]["index"] for row in results[0]] == expected
    assert all(len(row) == 3 for row in results[0])


def test_predict_refuses_unreadable_images(exported, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("no image")
    with load(exported) as runner, pytest.raises(InputError, match=f"{bad}: not a readable image"):
        runner.predict([bad])


def test_load_refuses_a_changed_artifact(tmp_path, demo_ckpt):
    export_stage(demo_ckpt, tmp_path, ExportOptions())
    with open(tmp_path / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ArtifactError, match="sha256 .* does not match manifest.json"):
        load(tmp_path)
    with pytest.raises(ArtifactError, match="sha256"):
        load(tmp_path / "model.onnx")


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(ArtifactError, match="no such artifact"):
        load(tmp_path / "missing")
    with pytest.raises(ArtifactError, match="no manifest.json"):
        load(tmp_path)
    (tmp_path / "x.onnx").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="x.onnx: not a readable ONNX file"):
        OnnxRuntimeRunner(tmp_path / "x.onnx")


def test_load_picks_a_named_artifact(exported):
    manifest = json.loads((exported / "manifest.json").read_text())
    assert list(manifest["artifacts"]) == ["model.onnx"]
    with load(exported, artifact="fp32") as runner:
        assert runner.precision == "fp32" and runner.labels[3] == "3"
    with pytest.raises(ArtifactError, match="no artifact 'int8'"):
        load(exported, artifact="int8")


def test_runner_specs(exported):
    with load(exported) as runner:
        (spec,) = runner.inputs
        assert (spec.name, spec.dtype, spec.shape) == ("pixel_values", "float32", ("batch", 3, 64, 64))
        assert runner.outputs[0].name == "logits"


def test_public_api_reexports_the_entry_points():
    import focalnet_edge
    import focalnet_edge.pipeline
    import focalnet_edge.runtime

    assert focalnet_edge.load is focalnet_edge.runtime.load
    assert focalnet_edge.build is focalnet_edge.pipeline.build
    with pytest.raises(AttributeError):
        focalnet_edge.nothing_here  # noqa: B018


# -- issue 24, item 6: ONNX Runtime's TensorRT execution provider ------------------------------------------------------
def test_the_tensorrt_execution_provider_is_used_only_when_asked_and_then_with_its_caches(exported, tmp_path, monkeypatch):
    import shutil

    import onnxruntime as ort

    from focalnet_edge.runtime import onnxruntime as ort_runner

    everything = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: everything)  # an onnxruntime-gpu with TensorRT (a Jetson build)
    assert ort_runner.default_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    folder = tmp_path / "copy"
    shutil.copytree(exported, folder)
    asked = ort_runner.with_options(["TensorrtExecutionProvider", "CPUExecutionProvider"], folder / "model.onnx")
    cache = str(folder / "ort-trt-cache")
    assert asked == [("TensorrtExecutionProvider", {"trt_engine_cache_enable": True, "trt_engine_cache_path": cache,
                                                    "trt_timing_cache_enable": True, "trt_timing_cache_path": cache}),
                     "CPUExecutionProvider"]
    assert (folder / "ort-trt-cache").is_dir()
    mine = ("TensorrtExecutionProvider", {"trt_fp16_enable": True})
    assert ort_runner.with_options([mine], folder / "model.onnx") == [mine]  # the caller's own options are kept
    monkeypatch.undo()
    seen = []
    real = ort_runner.ort_session
    monkeypatch.setattr(ort_runner, "ort_session", lambda path, providers, *a: seen.append(providers) or real(path, ["CPUExecutionProvider"], *a))
    with OnnxRuntimeRunner(folder / "model.onnx", providers=["TensorrtExecutionProvider", "CPUExecutionProvider"]) as runner:
        assert runner(runner.contract.sample_input(2)).shape[0] == 2
    assert seen == [asked]


def test_a_cuda_provider_lost_to_two_onnxruntime_installs_is_named(exported, monkeypatch, caplog):
    """Issue 24, item 7: onnxruntime and onnxruntime-gpu install one module; the CPU one over the GPU one hides CUDA."""
    from importlib import metadata

    from focalnet_edge.runtime import onnxruntime as ort_runner

    versions = {"onnxruntime": "1.22.0", "onnxruntime-gpu": "1.22.0"}

    def version(name):
        if name not in versions:
            raise metadata.PackageNotFoundError(name)
        return versions[name]

    monkeypatch.setattr(metadata, "version", version)
    problem = ort_runner.missing_gpu_provider(["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"])
    assert problem == ("CUDAExecutionProvider is not available: onnxruntime 1.22.0 and onnxruntime-gpu 1.22.0 are both installed and "
                       "share the onnxruntime module; pip uninstall -y onnxruntime onnxruntime-gpu, then install only onnxruntime-gpu "
                       "(on Jetson: NVIDIA's Jetson build)")
    assert ort_runner.missing_gpu_provider(["CPUExecutionProvider"], ["CPUExecutionProvider"]) is None
    with caplog.at_level("WARNING"), OnnxRuntimeRunner(exported / "model.onnx", providers=["CUDAExecutionProvider", "CPUExecutionProvider"]) as r:
        assert r.providers == ["CPUExecutionProvider"]
    assert any("share the onnxruntime module" in m for m in caplog.messages)
    del versions["onnxruntime-gpu"]  # one CPU build alone: no GPU provider to lose, nothing to say
    assert ort_runner.missing_gpu_provider(["CUDAExecutionProvider"], ["CPUExecutionProvider"]) is None
