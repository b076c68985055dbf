"""FP16 and INT8: the Q/DQ form on the graph itself, calibration sources, the gate, accuracy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from PIL import Image

from focalnet_edge.calibration import compute_ranges, load_calibration_data, load_ranges, qdq_form_problems, quantize
from focalnet_edge.calibration.fp16 import nodes_to_keep_fp32
from focalnet_edge.calibration.int8 import build_int8
from focalnet_edge.calibration.placement import residual_adds
from focalnet_edge.calibration.ranges import cached_smoothing
from focalnet_edge.calibration.placement import float_by_default
from focalnet_edge.calibration.smoothing import apply_smoothing
from focalnet_edge.errors import InputError
from focalnet_edge.folder.contract import InputContract
from focalnet_edge.model import FocalNetConfig, FocalNetForImageClassification, ImageSpec, load_checkpoint
from focalnet_edge.pipeline import BuildOptions, ExportOptions, PrecisionOptions, build, export_stage, precision_stage
from focalnet_edge.runtime import OnnxRuntimeRunner


DEMO_IMAGES = Path(__file__).resolve().parents[1] / "focalnet_edge" / "data" / "demo" / "images"


@pytest.fixture(scope="module")
def demo_build_warnings() -> list:
    """The warnings `demo_build` logged (messages)."""
    return []


@pytest.fixture(scope="module")
def demo_build(tmp_path_factory, demo_build_warnings):
    import logging

    class Keep(logging.Handler):
        def emit(self, record):
            demo_build_warnings.append(record.getMessage())

    out = tmp_path_factory.mktemp("demo")
    handler, logger = Keep(logging.WARNING), logging.getLogger("focalnet_edge")
    logger.addHandler(handler)
    try:
        result = build(BuildOptions(model="demo", output=out, precision="best"))
    finally:
        logger.removeHandler(handler)
    return out, result


def _graph(path):
    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    producers = {o: n for n in m.graph.node for o in n.output}
    return m, inits, producers


def test_int8_tensorrt_form_rules_on_the_graph(demo_build):  # noqa: C901 - one test walking every Q/DQ form rule over one graph
    out, _ = demo_build
    m, inits, producers = _graph(out / "model.int8.onnx")
    assert m.opset_import[0].version >= 19  # float16 QuantizeLinear inputs
    assert qdq_form_problems(m) == []
    # the layers left in float are float16 (what a strongly typed TensorRT engine runs fast)
    ln = next(n for n in m.graph.node if n.op_type == "LayerNormalization" and "stages.0" in n.name)
    assert inits[ln.input[1]].dtype == np.float16
    assert all(inits[n.input[1]].dtype == np.float16 for n in m.graph.node if n.op_type == "QuantizeLinear")
    qdq = [n for n in m.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    for n in qdq:  # int8, zero point 0
        zp = inits[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any(), n.name
    for n in m.graph.node:
        dq_inputs = [producers[i] for i in n.input if i in producers and producers[i].op_type == "DequantizeLinear"]
        if n.op_type == "LayerNormalization":
            assert not dq_inputs, f"Q/DQ on LayerNormalization {n.name}"
        if n.op_type in ("Conv", "MatMul") and dq_inputs:
            x_dq, w_dq = producers[n.input[0]], producers[n.input[1]]
            assert inits[x_dq.input[1]].ndim == 0, "activations per-tensor"
            w = inits[w_dq.input[0]]
            assert w.dtype == np.int8, "weights stored int8"
            axis = {a.name: a.i for a in w_dq.attribute}.get("axis", 1)
            assert axis == (0 if n.op_type == "Conv" else 1), "per-channel on the output-channel axis"
            assert inits[w_dq.input[1]].shape == (w.shape[axis],)
            if n.op_type == "Conv" and len(n.input) > 2:
                assert n.input[2] in inits and inits[n.input[2]].dtype in (np.float16, np.float32), "float bias"
    # the stem convolution, the downsampling convolutions and the classifier stay in float
    fp32, _, _ = _graph(out / "model.onnx")
    for name in float_by_default(fp32):
        node = next(n for n in m.graph.node if n.name == name)
        assert not any(i in producers and producers[i].op_type == "DequantizeLinear" for i in node.input), name
    # TensorRT's placement: every GEMM/Conv but the stem and head reads int8 (depth-wise focal convs
    # and the 1x1 h included); no Q/DQ on any Add (residual stream float); every activation DQ feeds
    # a GEMM/Conv (no Q whose readers are all float); no Q of a GEMM/Conv output
    residual = set(residual_adds(fp32))
    assert len(residual) == 2 * 5  # two skip connections per block, 5 blocks in the demo
    weighted = [n for n in m.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")]
    focal = [n for n in weighted if "focal_layers" in n.name or "projection_context" in n.name]
    assert focal and all(_reads_dq(n, producers) for n in focal)
    assert all(_reads_dq(n, producers) for n in weighted if n.name not in float_by_default(fp32))
    readers = {}
    for n in m.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    for n in m.graph.node:
        if n.op_type == "Add":
            assert not _reads_dq(n, producers), n.name
        if n.op_type == "DequantizeLinear" and n.input[0] not in inits:
            assert {r.op_type for r in readers[n.output[0]]} <= {"Conv", "MatMul", "Gemm"}, n.name
        if n.op_type == "QuantizeLinear":
            assert producers[n.input[0]].op_type not in ("Conv", "MatMul", "Gemm"), n.name


def _reads_dq(node, producers):
    return any(i in producers and producers[i].op_type == "DequantizeLinear" for i in node.input)


def test_int8_cpu_form_is_u8s8_on_matrix_products(demo_build):
    out, _ = demo_build
    m, inits, producers = _graph(out / "model.int8.cpu.onnx")
    quantized = {n.op_type for n in m.graph.node if any(i in producers and producers[i].op_type == "DequantizeLinear" for i in n.input)}
    assert quantized == {"MatMul"}
    act_zp = [inits[n.input[2]] for n in m.graph.node if n.op_type == "QuantizeLinear"]
    assert act_zp and all(z.dtype == np.uint8 for z in act_zp)


def test_demo_precisions_meet_the_accuracy_targets(demo_build):
    out, result = demo_build
    reports = {r.artifact: r for r in result.reports}
    assert set(reports) == {"model.onnx", "model.fp16.onnx", "model.int8.onnx", "model.int8.cpu.onnx"}
    ref_acc = reports["model.onnx"].accuracy
    assert reports["model.fp16.onnx"].top1_agreement >= 0.995
    for name in ("model.int8.onnx", "model.int8.cpu.onnx"):
        assert reports[name].top1_agreement >= 0.99, name
        assert reports[name].accuracy >= ref_acc - 0.005, name
    manifest = json.loads((out / "manifest.json").read_text())
    for entry in manifest["artifacts"].values():
        assert len(entry["sha256"]) == 64 and entry["verification"]["passed"]
    assert manifest["artifacts"]["model.int8.onnx"]["int8"]["calibration"] == "calibration.json"


def test_calibration_cache_is_reused(demo_build, tmp_path):
    out, _ = demo_build
    ranges, doc = load_ranges(out / "calibration.json")
    assert doc["method"] == "max" and doc["images"] > 0
    # exactly the activations a Q/DQ reads: the non-constant inputs of every Conv/MatMul/Gemm
    fp32 = onnx.load(str(out / "model.onnx"))
    consts = {i.name for i in fp32.graph.initializer} | {n.output[0] for n in fp32.graph.node if n.op_type == "Constant"}
    read = {i for n in fp32.graph.node if n.op_type in ("Conv", "MatMul", "Gemm") for i in n.input if i not in consts}
    assert set(ranges) == read and len(read) > 30
    # quantizing the graph smoothed by the cached factors with the cached ranges gives the very graph the build wrote
    fp32 = onnx.load(str(out / "model.onnx"))
    smoothed = tmp_path / "smoothed.onnx"
    onnx.save(apply_smoothing(fp32, cached_smoothing(out / "calibration.json", doc)[0]), str(smoothed))
    a = quantize(smoothed, ranges, "tensorrt", float_by_default(fp32))
    b = onnx.load(str(out / "model.int8.onnx"))
    scales_a = sorted(float(np.float16(numpy_helper.to_array(i).ravel()[0])) for i in a.graph.initializer if i.name.endswith("_scale"))
    scales_b = sorted(float(numpy_helper.to_array(i).ravel()[0]) for i in b.graph.initializer if i.name.endswith("_scale"))
    assert scales_a == scales_b


def test_manifest_records_the_int8_phases(demo_build):
    out, _ = demo_build
    manifest = json.loads((out / "manifest.json").read_text())
    for name in ("model.int8.onnx", "model.int8.cpu.onnx"):
        t = manifest["artifacts"][name]["int8"]["timings_s"]
        assert t["calibration"] > 0 and t["reference"] > 0 and t["measure"] > 0, name
        assert t["total"] == pytest.approx(sum(v for k, v in t.items() if k != "total"), abs=0.05)


def test_few_held_back_images_are_warned_of_once_per_build_and_recorded_per_form(demo_build, demo_build_warnings):
    out, _ = demo_build
    manifest = json.loads((out / "manifest.json").read_text())
    held = {manifest["artifacts"][n]["int8"]["holdout_images"] for n in ("model.int8.onnx", "model.int8.cpu.onnx")}
    assert len(held) == 1 and held.pop() < 100  # the demo's calibration set: one held-back set, under the gate's 100
    said = [m for m in demo_build_warnings if "held-back images (fewer than 100)" in m]
    assert len(said) == 1 and said[0].startswith("int8 gate: only "), demo_build_warnings
    for name in ("model.int8.onnx", "model.int8.cpu.onnx"):  # each artifact's manifest entry still carries it
        assert "fewer than 100" in manifest["artifacts"][name]["int8"]["gate"]["note"], name


def test_percentile_and_entropy_ranges_are_inside_the_max_ranges(demo_build):
    out, _ = demo_build
    contract = OnnxRuntimeRunner(out / "model.onnx").contract
    x = load_calibration_data("demo", contract, size=32).inputs
    mx = compute_ranges(out / "model.onnx", x, "max")
    for method in ("percentile", "entropy"):
        other = compute_ranges(out / "model.onnx", x, method, percentile=99.0)
        inside = [max(abs(other[k][0]), abs(other[k][1])) <= max(abs(mx[k][0]), abs(mx[k][1])) * 1.0001 for k in mx if k in other]
        assert len(inside) > 30 and np.mean(inside) > 0.95, method
    # and the activations really are within the max ranges: an independent check on one tensor
    name = next(k for k in mx if "LayerNormalization_output_0" in k)
    assert mx[name][1] > 0 > mx[name][0]


def test_fp16_keeps_overflowing_nodes_in_fp32(tmp_path):
    torch.manual_seed(0)
    model = FocalNetForImageClassification(FocalNetConfig(embed_dim=8, depths=[1, 1, 1, 1], image_size=64, num_labels=4)).eval()
    with torch.no_grad():  # the stem's output reaches ~1e5: over float16's 65504
        model.focalnet.embeddings.patch_embeddings.projection.weight.mul_(1e5)
    model.save_pretrained(tmp_path / "ckpt", preprocessing=ImageSpec(64, 64, None, False))
    ckpt = load_checkpoint(tmp_path / "ckpt")
    export_stage(ckpt, tmp_path / "out", ExportOptions())
    x = np.random.default_rng(0).standard_normal((8, 3, 64, 64)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", pixel_values=x)
    result = precision_stage(tmp_path / "out", tmp_path / "out" / "model.onnx", "fp16",
                             PrecisionOptions(calib_data=str(tmp_path / "calib.npz")), None)
    kept = result.fp16.kept_fp32
    assert any("patch_embeddings/projection/Conv" in k for k in kept)
    assert any(k.endswith("embeddings/norm/LayerNormalization") for k in kept)
    fp32_out = OnnxRuntimeRunner(tmp_path / "out" / "model.onnx")(x)
    fp16_out = OnnxRuntimeRunner(tmp_path / "out" / "model.fp16.onnx")(x)
    assert np.isfinite(fp16_out).all() and (fp16_out.argmax(-1) == fp32_out.argmax(-1)).mean() >= 0.75
    # the int8 graph's fp16 float parts keep the same nodes in fp32 (measured on the fp32 graph)
    ranges = compute_ranges(tmp_path / "out" / "model.onnx", x, "max")
    r = build_int8(tmp_path / "out" / "model.onnx", tmp_path / "q.onnx", ranges, x, float_type="fp16", calibration_inputs=x,
                   max_fallback=0)
    m, inits, _ = _graph(r.path)
    stem = next(n for n in m.graph.node if "patch_embeddings/projection/Conv" in n.name)
    assert inits[stem.input[1]].dtype == np.float32  # run in fp32, not float16
    int8_out = OnnxRuntimeRunner(r.path)(x)
    assert np.isfinite(int8_out).all() and (int8_out.argmax(-1) == fp32_out.argmax(-1)).mean() >= 0.75


def test_nodes_to_keep_fp32_rule():
    g = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["a"], ["b"], name="big"), onnx.helper.make_node("LayerNormalization", ["b", "s"], ["c"], name="ln"),
         onnx.helper.make_node("Relu", ["c"], ["d"], name="small")], "g", [], [])
    assert nodes_to_keep_fp32(onnx.helper.make_model(g), {"b": 3e4, "c": 3.0, "d": 1.0}) == ["big", "ln"]
    assert nodes_to_keep_fp32(onnx.helper.make_model(g), {"b": 10.0, "c": 3.0, "d": 1.0}) == []


# -- calibration sources ---------------------------------------------------------------------------
CONTRACT = InputContract(height=32, width=32, preprocessing=ImageSpec(32, 32, None, False).to_dict())


def test_folder_source_skips_non_images_and_samples_deterministically(tmp_path):
    for i in range(10):
        Image.fromarray(np.full((40, 40, 3), i * 20, np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "readme.txt").write_text("x")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    a = load_calibration_data(tmp_path, CONTRACT, size=5, seed=3)
    b = load_calibration_data(tmp_path, CONTRACT, size=5, seed=3)
    assert len(a) == 5 and np.array_equal(a.inputs, b.inputs)
    full = load_calibration_data(tmp_path, CONTRACT, size=100)
    assert len(full) == 10 and full.skipped == 2 and full.inputs.shape == (10, 3, 32, 32)
    # the same preprocessing as the runtime: 40x40 resized to 32x32, normalised with ImageNet stats
    expected = CONTRACT.image_spec.preprocess(tmp_path / "0.png")
    assert np.allclose(full.inputs[0], expected)


def test_sources_that_give_nothing_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="no usable calibration image"):
        load_calibration_data(tmp_path / "empty", CONTRACT)
    with pytest.raises(InputError, match="no such calibration folder or file"):
        load_calibration_data(tmp_path / "missing", CONTRACT)
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(InputError, match="not a calibration source"):
        load_calibration_data(tmp_path / "x.csv", CONTRACT)
    np.savez(tmp_path / "bad.npz", pixel_values=np.zeros((2, 3, 16, 16), np.float32))
    with pytest.raises(InputError, match="is 16x16, expected 32x32"):
        load_calibration_data(tmp_path / "bad.npz", CONTRACT)


def test_video_source(tmp_path):
    cv2 = pytest.importorskip("cv2", reason="OpenCV is the optional 'video' extra")
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 40))
    for i in range(30):
        writer.write(np.full((40, 48, 3), i * 8, np.uint8))
    writer.release()
    s = load_calibration_data(path, CONTRACT, size=6)
    assert len(s) == 6 and s.frames.shape == (6, 32, 32, 3)
    assert s.frames[0].mean() < s.frames[-1].mean()  # sampled evenly from start to end


def test_int8_without_calibration_data_is_refused(tmp_path):
    torch.manual_seed(0)
    FocalNetForImageClassification(FocalNetConfig(embed_dim=8, depths=[1, 1, 1, 1], image_size=64, num_labels=3)).save_pretrained(tmp_path / "ckpt")
    with pytest.raises(InputError, match="int8 needs calibration images.*--calib-data"):
        build(BuildOptions(model=str(tmp_path / "ckpt"), output=tmp_path / "out", precision="int8"))


def test_int8_float_fp32_keeps_opset_and_float32(demo_build, tmp_path):
    out, _ = demo_build
    contract = OnnxRuntimeRunner(out / "model.onnx").contract
    cal, hold = load_calibration_data("demo", contract).split()
    ranges = compute_ranges(out / "model.onnx", cal.inputs, "max")
    r = build_int8(out / "model.onnx", tmp_path / "q.onnx", ranges, hold.inputs, float_type="fp32")
    m, inits, _ = _graph(r.path)
    assert m.opset_import[0].version == 17 and qdq_form_problems(m) == []
    ln = next(n for n in m.graph.node if n.op_type == "LayerNormalization")
    assert inits[ln.input[1]].dtype == np.float32 and r.gate_passed


def test_split_never_calls_a_calibrating_image_held_back():
    from focalnet_edge.calibration.data import CalibrationSet

    frames = np.arange(5 * 4 * 4 * 3, dtype=np.uint8).reshape(5, 4, 4, 3)
    for n in (2, 3, 5):
        part, held = CalibrationSet(frames[:n].astype(np.float32), frames[:n], "x").split()
        assert held.held_out and len(held) >= 1 and len(part) + len(held) == n
        assert not {f.tobytes() for f in part.frames} & {f.tobytes() for f in held.frames}  # disjoint
    part, held = CalibrationSet(frames[:1].astype(np.float32), frames[:1], "x").split()
    assert len(held) == 1 and held.held_out is False  # the one image is both, and says so
    from focalnet_edge.verify.compare import default_image_set

    found, used = default_image_set(held)  # a build's default verification: not that image either
    assert found.frames is None and "digit images" in used and "held back" not in used


def test_one_calibration_image_says_the_gate_was_not_held_out(tmp_path, capsys):
    """The user's case: INT8 calibrated on one image. The gate cannot be held out: the CLI line, the
    manifest entry and `info` say so and what to pass; the verification never uses that image."""
    from focalnet_edge.cli import main

    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(next((DEMO_IMAGES / "4").iterdir()), one / "a.png")
    out = tmp_path / "out"
    assert main(["-q", "export", "--output", str(out)]) == 0
    capsys.readouterr()
    main(["-q", "calibrate", str(out / "model.onnx"), "--precision", "int8", "--calib-data", str(one), "--no-cpu-int8"])
    printed = capsys.readouterr().out
    assert "on 1 calibration images (none held back: pass at least 2 to --calib-data)" in printed
    assert "held-back" not in printed
    entry = json.loads((out / "manifest.json").read_text())["artifacts"]["model.int8.onnx"]["int8"]
    assert entry["held_out"] is False and entry["holdout_images"] == 1
    assert "not on held-back images: pass --calib-data with at least 2 images" in entry["gate"]["note"]
    main(["info", str(out)])
    assert "on 1 calibration images (none held back)" in capsys.readouterr().out
