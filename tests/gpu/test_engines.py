"""fp32/fp16/int8 TensorRT engines of the demo model against PyTorch and ONNX Runtime, for real.

Agreement is judged on all 450 held-out demo images (at least 200: with 10 samples a 0.99
threshold means "10 of 10"). Also: a copied folder built into engines in a process without
torch, a plan built by trtexec and adopted, a DLA build (where the device has DLA), torch CUDA
input on the caller's stream, and the per-call overhead of the two run paths.

Without torch (a stock JetPack), `built` is the folder FOCALNET_EDGE_GPU_FOLDER names (see
conftest.py): its engines are built here and verified against its stored references.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from focalnet_edge.folder.artifacts import thresholds
from focalnet_edge.engine.command import engine_command
from focalnet_edge.engine.config import EngineOptions
from focalnet_edge.pipeline import BuildOptions, ExportOptions, build
from focalnet_edge.runtime import OnnxRuntimeRunner, load
from focalnet_edge.verify.compare import load_image_set
from gpu_folder import GPU_FOLDER, copy_without_engines, engines_on_the_stored_references, given_folder, needs_torch_or_folder

ENGINES = {"model.fp32.engine": "model.onnx", "model.fp16.engine": "model.fp16.onnx", "model.int8.engine": "model.int8.onnx"}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("trt")
    given = given_folder()
    if given is not None:  # built elsewhere: engines and verification here, without torch
        folder = copy_without_engines(given, out / "given")
        return folder, engines_on_the_stored_references(folder)
    needs_torch_or_folder()
    result = build(BuildOptions(model="demo", output=out, precision="best", backend="tensorrt",
                                export=ExportOptions(batch=(1, 8, 32)), engine=EngineOptions()))
    return out, result


@pytest.fixture(scope="module")
def demo_images():
    images = load_image_set("demo", {})
    assert len(images) >= 200
    return images


def test_engines_are_built_raw_and_recorded(built):
    out, _ = built
    manifest = json.loads((out / "manifest.json").read_text())
    for name, source in ENGINES.items():
        entry = manifest["artifacts"][name]
        assert entry["format"] == "tensorrt-plan" and entry["built_from"] == source
        assert entry["requires"]["tensorrt"] and entry["requires"]["gpu"] != "unknown"
        assert not (out / name).read_bytes().startswith(b"{")  # a raw plan, no header of ours
        assert entry["engine"]["layers"].get("count", 0) > 0, entry["engine"]["layers"]
    assert manifest["timing_cache"]["tensorrt"] == manifest["artifacts"]["model.fp16.engine"]["requires"]["tensorrt"]
    assert (out / "timing.cache").is_file() and not list(out.glob("*.lock")) and not list(out.glob("*.partial"))


@pytest.mark.parametrize("name", list(ENGINES))
def test_engines_pass_verification_against_the_references(built, name):
    """Without torch too: the folder's stored references (references.npz) are PyTorch's outputs."""
    _, result = built
    report = {r.artifact: r for r in result.reports}[name]
    assert report.passed, report.failures


@pytest.mark.parametrize("name", list(ENGINES))
def test_engines_agree_with_pytorch_on_the_demo_images(built, demo_images, name):
    pytest.importorskip("torch", reason=f"comparing with PyTorch itself needs torch ({GPU_FOLDER} tests use the stored references)")
    from focalnet_edge.runtime import TorchRunner

    out, result = built
    with load(out / name) as engine:
        frames = engine.contract.frames_from_images(demo_images.paths)  # the same uint8 frames for both sides
        y = np.asarray(engine(engine.contract.inputs_from_frames(frames)), np.float32)
        reference = TorchRunner("demo").for_contract(engine.contract)
    ref = np.asarray(reference(reference.contract.inputs_from_frames(frames)), np.float32)
    assert len(y) == len(ref) >= 200
    agreement = float((y.argmax(-1) == ref.argmax(-1)).mean())
    precision = json.loads((out / "manifest.json").read_text())["artifacts"][name]["precision"]
    assert agreement >= thresholds(precision).min_top1, f"{name}: top-1 agreement {agreement:.4f} on {len(y)} images"
    if name == "model.fp32.engine":
        assert np.abs(y - ref).max() <= 1e-3  # TF32 is off in Polygraphy's CreateConfig by default
    report = {r.artifact: r for r in result.reports}[name]
    assert report.passed, report.failures


def test_load_prefers_the_int8_engine(built):
    out, _ = built
    manifest = json.loads((out / "manifest.json").read_text())
    with load(out) as runner:
        expected = "model.int8.engine" if manifest["artifacts"]["model.int8.engine"].get("verification", {}).get("passed", True) else "model.fp16.engine"
        assert runner.name == f"tensorrt:{expected}"


_copy_without_engines = copy_without_engines


def test_a_copied_folder_is_built_into_engines_without_torch(built, tmp_path):
    out, _ = built
    folder = _copy_without_engines(out, tmp_path / "copied")
    script = (
        "import sys; sys.modules['torch'] = None\n"  # any `import torch` now fails
        "from focalnet_edge.engine.command import engine_command\n"
        f"print('\\n'.join(engine_command({str(folder)!r}).notes))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=1800)
    if "no CUDA GPU was found" in run.stderr:
        pytest.skip("without torch, neither cuda-python nor the CUDA driver (libcuda) found the GPU")
    assert run.returncode == 0, run.stderr[-2000:]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {"model.fp32.engine", "model.fp16.engine", "model.int8.engine"} <= set(manifest["artifacts"])
    x = np.random.default_rng(0).integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)
    with load(folder / "model.fp16.engine") as a, load(out / "model.fp16.engine") as b:
        assert (np.asarray(a(a.contract.inputs_from_frames(x))).argmax(-1) == np.asarray(b(b.contract.inputs_from_frames(x))).argmax(-1)).all()


def _trtexec() -> str | None:
    for candidate in (shutil.which("trtexec"), "/usr/src/tensorrt/bin/trtexec"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def test_an_adopted_trtexec_plan_loads_and_matches(built, tmp_path):
    trtexec = _trtexec()
    if trtexec is None:
        pytest.skip("trtexec is not on PATH nor in /usr/src/tensorrt/bin")
    out, _ = built
    folder = _copy_without_engines(out, tmp_path / "adopt")
    with load(folder / "model.fp16.onnx") as onnx_runner:
        c = onnx_runner.contract
    shape = lambda b: "x".join(str(d) for d in c.shape(b, c.height, c.width))  # noqa: E731
    plan = tmp_path / "trtexec.plan"
    run = subprocess.run([trtexec, f"--onnx={folder / 'model.fp16.onnx'}", f"--saveEngine={plan}", "--stronglyTyped",
                          f"--minShapes={c.name}:{shape(1)}", f"--optShapes={c.name}:{shape(8)}", f"--maxShapes={c.name}:{shape(32)}"],
                         capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-2000:]
    notes = engine_command(folder, adopt=str(plan), source="model.fp16.onnx").notes
    assert notes and "adopted" in notes[0]
    x = c.sample_input(5)
    with load(folder / "model.fp16.engine") as engine:
        y = np.asarray(engine(x), np.float32)
    ref = OnnxRuntimeRunner(folder / "model.fp16.onnx")(x)
    assert (y.argmax(-1) == np.asarray(ref).argmax(-1)).all()


def test_a_dla_build(built, tmp_path):
    import tensorrt as trt

    if trt.Builder(trt.Logger(trt.Logger.WARNING)).num_DLA_cores == 0:
        pytest.skip("this device has no DLA (DLA: Jetson Orin/Xavier with TensorRT <= 10.7)")
    out, _ = built
    folder = _copy_without_engines(out, tmp_path / "dla")
    notes = engine_command(folder, EngineOptions(dla_core=0)).notes
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = manifest["artifacts"]["model.fp16.engine"]
    assert "model.fp32.engine" not in manifest["artifacts"] and any("DLA runs fp16 and int8 only" in n for n in notes)
    assert entry["engine"]["dla"]["dla_core"] == 0 and entry["requires"]["dla_core"] == 0
    print("DLA placement:", entry["engine"]["dla"], entry["engine"]["layers"])
    with load(folder / "model.fp16.engine") as engine:
        assert engine.contract.batch[0] == engine.contract.batch[2]  # static: the profile's one batch size
        x = engine.contract.sample_input(engine.contract.batch[1] + 3)  # padded by the runner
        assert np.asarray(engine(x)).shape[0] == len(x)


def test_torch_cuda_input_runs_on_the_callers_stream(built):
    torch = pytest.importorskip("torch")
    out, _ = built
    with load(out / "model.fp16.engine") as engine:
        x_np = engine.contract.sample_input(40)  # above the profile's max batch 32: split
        expected = np.asarray(engine(x_np), np.float32)
        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream):
            x = torch.from_numpy(x_np).cuda(non_blocking=True)  # produced on `stream`, consumed on `stream`
            x.mul_(1)
            y = engine(x)
        stream.synchronize()
    assert y.is_cuda and y.shape == (40, expected.shape[1])
    assert (y.float().cpu().numpy().argmax(-1) == expected.argmax(-1)).all()


def test_per_call_overhead(built):
    """Not a pass/fail figure: prints the per-call time of Polygraphy's runner and of the thin path."""
    torch = pytest.importorskip("torch")
    out, _ = built
    with load(out / "model.fp16.engine") as engine:
        x_np = engine.contract.sample_input(1)
        x = torch.from_numpy(x_np).cuda()
        for _ in range(10):
            engine(x_np), engine(x)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(200):
            engine(x_np)
        numpy_ms = (time.perf_counter() - t) / 200 * 1e3
        t = time.perf_counter()
        for _ in range(200):
            engine(x)
        torch.cuda.synchronize()
        torch_ms = (time.perf_counter() - t) / 200 * 1e3
    print(f"per call, batch 1: numpy via Polygraphy TrtRunner {numpy_ms:.3f} ms; torch via execute_async_v3 {torch_ms:.3f} ms")
    assert numpy_ms > 0 and torch_ms > 0


@pytest.mark.parametrize("mode,layout,order", [("letterbox", "NHWC", "BGRx"), ("crop", "NCHW", "RGB"), ("stretch", "NHWC", "RGBA")])
def test_frame_size_any_engines_resize_like_onnx_runtime(tmp_path, mode, layout, order):
    """TensorRT's parser takes the in-graph resize (Shape with start/end, Resize/Pad/Slice with axes, a dynamic
    batch) and its engine resizes frames of several sizes like ONNX Runtime does."""
    pytest.importorskip("torch", reason="exporting the graph needs torch")
    from dataclasses import replace

    from focalnet_edge.model import load_checkpoint
    from focalnet_edge.model.preprocessing import ImageSpec
    from focalnet_edge.pipeline import export_stage

    ckpt = load_checkpoint("demo")
    if mode == "crop":  # FocalNet's recipe at the demo's size: shortest edge 73, centre crop 64
        ckpt = replace(ckpt, preprocessing=ImageSpec(height=64, width=64, resize_shortest_edge=73, center_crop=True))
    export_stage(ckpt, tmp_path, ExportOptions(fuse_preprocess=True, frame_size="any", resize_mode=mode, layout=layout,
                                               color_order=order, batch=(1, 2, 4)))
    built = engine_command(tmp_path, EngineOptions(size_range=((16, 16), (480, 640), (1080, 1920))))
    (name,) = [e["path"] for e in built.engines]
    onnx_runner = OnnxRuntimeRunner(tmp_path / "model.onnx")
    rng = np.random.default_rng(0)
    with load(tmp_path / name) as engine:
        for h, w in ((480, 640), (135, 241), (1080, 1920)):
            frames = onnx_runner.contract.frames_in_layout(rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8))
            np.testing.assert_allclose(engine(frames), onnx_runner(frames), atol=2e-3)


# -- issue 24 -----------------------------------------------------------------------------------------------------------
def test_requirements_record_the_platform_and_the_cache_its_gpus_size(built):
    """Item 1 and 12: the platform and DLA core are in `requires`; the timing cache is keyed by SM count and memory."""
    from focalnet_edge.engine.gpu import gpu_info, machine

    out, _ = built
    manifest = json.loads((out / "manifest.json").read_text())
    here = gpu_info()
    for name in ENGINES:
        requires = manifest["artifacts"][name]["requires"]
        assert requires["platform"] == machine() and requires["dla_core"] is None
    assert manifest["timing_cache"]["sm_count"] == here["sm_count"] > 0 and manifest["timing_cache"]["memory_mib"] == here["memory_mib"] > 0
    engine = manifest["artifacts"]
    assert engine["model.fp32.engine"]["engine"]["tf32"] is False and engine["model.fp16.engine"]["engine"]["tf32"] is True


def test_the_runner_names_its_device(built):
    import tensorrt as trt

    out, _ = built
    with load(out / "model.fp16.engine") as engine:
        assert engine.device.startswith(f"TensorRT {trt.__version__} on ") and "unknown" not in engine.device


def test_a_plan_with_other_outputs_is_not_adopted(built, tmp_path):
    """Item 2: a plan of a graph whose output is `probs` (as nvinfer's plan of the DeepStream graph) is refused
    --from model.fp16.onnx, whose output is `logits`."""
    import onnx

    from focalnet_edge.folder.contract import InputContract
    from focalnet_edge.engine.build import build_engine
    from focalnet_edge.errors import ArtifactError

    out, _ = built
    folder = _copy_without_engines(out, tmp_path / "adopt-probs")
    model = onnx.load(str(folder / "model.fp16.onnx"))
    old = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = ["probs" if o == old else o for o in node.output]
    model.graph.output[0].name = "probs"
    other = tmp_path / "probs.onnx"
    onnx.save(model, str(other))
    manifest = json.loads((folder / "manifest.json").read_text())
    contract = InputContract.from_dict(manifest["input"])
    build_engine(other, tmp_path / "probs.engine", contract, "fp16", EngineOptions(inspect=False))
    with pytest.raises(ArtifactError, match=r"its outputs are probs, model.fp16.onnx's are logits: not built from model.fp16.onnx"):
        engine_command(folder, adopt=str(tmp_path / "probs.engine"), source="model.fp16.onnx")


def test_a_version_compatible_engine_is_inspected(built, tmp_path):
    """Item 12: the inspector of a version-compatible plan needs host code allowed; the layer summary is not "unavailable"."""
    out, _ = built
    folder = _copy_without_engines(out, tmp_path / "vc")
    built_vc = engine_command(folder, EngineOptions(version_compatible=True))
    for e in built_vc.engines:
        assert e["engine"]["layers"].get("count", 0) > 0, e["engine"]["layers"]
    with load(folder / "model.fp16.engine") as engine:
        assert np.asarray(engine(engine.contract.sample_input(2))).shape[0] == 2
        max_batch = engine.profile[2][0]
    # item 10: Triton's config takes the engine's profile and names the flag a version-compatible plan needs
    from focalnet_edge.deploy.triton import TritonOptions, deploy

    result = deploy(folder, tmp_path / "repo", TritonOptions(artifact="model.fp16.engine"))
    assert result.server_flags == ["--backend-config=tensorrt,version-compatible=true"]
    assert f"max_batch_size: {max_batch}" in result.config


def test_onnx_runtimes_tensorrt_provider_caches_its_engines_beside_the_file(built, tmp_path):
    """Item 6: asked for by name, ONNX Runtime's TensorRT EP writes its engine and timing caches to ort-trt-cache/."""
    import onnxruntime as ort

    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no TensorRT execution provider")
    out, _ = built
    folder = tmp_path / "ort"
    shutil.copytree(out, folder)
    providers = ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    with OnnxRuntimeRunner(folder / "model.fp16.onnx", providers=providers) as runner:
        assert runner.providers[0] == "TensorrtExecutionProvider"
        x = runner.contract.sample_input(2)
        first = np.asarray(runner(x))
    cached = sorted(p.name for p in (folder / "ort-trt-cache").iterdir())
    assert any(n.endswith(".engine") for n in cached), cached
    with OnnxRuntimeRunner(folder / "model.fp16.onnx", providers=providers) as runner:
        assert np.array_equal(np.asarray(runner(x)).argmax(-1), first.argmax(-1))


def test_calls_on_two_streams_and_numpy_calls_agree(built):
    """Item 3: the thin path's context and Polygraphy's share profile 0; calls alternate between two caller
    streams and numpy without a wrong result (the runner waits for the other stream first)."""
    torch = pytest.importorskip("torch")
    import threading

    out, _ = built
    with load(out / "model.fp16.engine") as engine:
        xs = [engine.contract.sample_input(8, seed=i) for i in range(4)]
        expected = [np.asarray(engine(x), np.float32).argmax(-1) for x in xs]
        streams = [torch.cuda.Stream(), torch.cuda.Stream()]
        results: dict[int, list] = {0: [], 1: []}

        def work(k):
            with torch.cuda.stream(streams[k]):
                for x in xs:
                    results[k].append(engine(torch.from_numpy(x).cuda()))
            streams[k].synchronize()

        threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
        for t in threads:
            t.start()
        numpy_results = [np.asarray(engine(x), np.float32).argmax(-1) for x in xs]
        for t in threads:
            t.join()
    for k in (0, 1):
        for got, want in zip(results[k], expected):
            assert (got.float().cpu().numpy().argmax(-1) == want).all()
    for got, want in zip(numpy_results, expected):
        assert (got == want).all()


def test_two_streams_run_on_two_profiles_at_once(built, tmp_path):
    """Item 3: an engine built with `streams=2` has two identical profiles; two threads (numpy: each call on
    Polygraphy's stream of its context) run in two contexts, on profiles 0 and 1, and agree with one thread."""
    import threading

    from focalnet_edge.engine.build import build_engine, source_contract
    from focalnet_edge.engine.plans import requires_of
    from focalnet_edge.runtime.tensorrt import TensorRTRunner

    out, _ = built
    contract = source_contract(out / "model.fp16.onnx")
    facts = build_engine(out / "model.fp16.onnx", tmp_path / "model.fp16.engine", contract, "fp16", EngineOptions(streams=2))
    assert facts["streams"] == 2
    runner = TensorRTRunner(tmp_path / "model.fp16.engine", requires=requires_of(facts), contract=json.loads(contract.to_json()))
    try:
        assert runner._engine.num_optimization_profiles == 2
        xs = [runner.contract.sample_input(4, seed=i) for i in range(6)]
        expected = [np.asarray(runner(x), np.float32).argmax(-1) for x in xs]
        got: dict[int, list] = {0: [], 1: []}
        start = threading.Barrier(2)

        def work(k):
            start.wait()
            got[k] = [np.asarray(runner(x), np.float32).argmax(-1) for x in xs]

        threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        pool = runner._pool()
        assert pool.size == 2 and pool.contexts[0] is not None
        assert all(ctx is None or ctx.active_optimization_profile == i for i, ctx in enumerate(pool.contexts))
        for k in (0, 1):
            assert all((a == b).all() for a, b in zip(got[k], expected))
    finally:
        runner.close()


def test_selftest_on_the_device(built, tmp_path):
    """The device kit, in a process without torch: engines built on a copied folder, verified against the
    stored references, timed with CUDA events over the profile's batch sweep; exit 0."""
    out, _ = built
    folder = _copy_without_engines(out, tmp_path / "copied")
    script = ("import sys; sys.modules['torch'] = None\n"
              "from focalnet_edge.cli import main\n"
              f"sys.exit(main(['-q', 'selftest', {str(folder)!r}, '--json', '--iterations', '5', '--warmup', '2']))\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=1800)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads(run.stdout)
    assert {e["artifact"] for e in report["engines"]} >= {"model.fp16.engine"} and all(e["passed"] for e in report["engines"])
    for engine in report["engines"]:
        assert engine["timing"] and all(t["clock"].startswith("gpu compute") and t["median_ms"] > 0 for t in engine["timing"])
    print(json.dumps(report["device"], indent=1))


def test_the_deepstream_graphs_engine_is_verified_and_deploy_points_nvinfer_at_it(built, tmp_path):
    """Issue 24's capability: the engine of the graph nvinfer runs (Softmax appended: `probs`) is built, verified
    against the references (probs against the softmax of the reference logits), and named by the nvinfer config."""
    from focalnet_edge.deploy.deepstream import DeepStreamOptions, deploy

    out, result = built
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["artifacts"]["model.fp16.deepstream.engine"]
    assert entry["built_from"] == "model.fp16.deepstream.onnx" and entry["deepstream"]["outputs"] == ["probs"]
    reports = {r.artifact: r for r in result.reports}
    for name in ("model.fp16.deepstream.onnx", "model.fp16.deepstream.engine"):
        assert reports[name].passed, reports[name].failures
    with load(out / "model.fp16.deepstream.engine") as engine:
        assert engine.output_names == ["probs"] and engine.head == "probs"
    config = (deploy(out, DeepStreamOptions(force=True)) / "config_infer_primary.txt").read_text()
    assert "onnx-file=../model.fp16.deepstream.onnx\n" in config and "model-engine-file=../model.fp16.deepstream.engine\n" in config
