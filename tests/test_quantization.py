"""INT8/FP8 placement, report and gate, read off the graphs and checked against independent references.

References: PyTorch's own FLOP counter (GEMM/Conv FLOPs), the fp32 graph (a graph with every
node returned to float), ml_dtypes' E4M3 rounding in numpy (the FP8 graph), the graph itself
(which inputs carry Q/DQ).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper

from focalnet_edge.calibration import build_fp8, build_int8, compute_ranges, load_calibration_data, quantize
from focalnet_edge.calibration.data import CalibrationSet
from focalnet_edge.calibration.fp8 import E4M3_MAX, int8_to_fp8
from focalnet_edge.calibration.gate import GateScore, GateTarget, holdout_note, outputs
from focalnet_edge.calibration.qdq import qdq_form_problems, to_float
from focalnet_edge.calibration.placement import float_by_default, gemm_flops, placement_report, residual_adds, skip_input, stem_and_head
from focalnet_edge.verify.metrics import sqnr_db
from focalnet_edge.model import load_checkpoint
from focalnet_edge.folder.onnx_io import read_contract
from focalnet_edge.pipeline import ExportOptions, export_stage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the residual Q/DQ placements measured against
from residual_qdq import quantize_residual, residual_quantizer, residual_ranges


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's fp32 graph, its calibration/held-back split and max ranges."""
    out = tmp_path_factory.mktemp("q")
    export_stage(load_checkpoint("demo"), out, ExportOptions())
    path = out / "model.onnx"
    contract, _ = read_contract(onnx.load(str(path)), path)
    cal, hold = load_calibration_data("demo", contract).split()
    return path, cal, hold, residual_ranges(path, cal.inputs, "max")


def _producers(m):
    return {o: n for n in m.graph.node for o in n.output}


def _dq_inputs(node, producers):
    return [i for i in node.input if i in producers and producers[i].op_type == "DequantizeLinear"]


def test_gemm_flops_match_pytorchs_flop_counter(demo):
    from torch.utils.flop_counter import FlopCounterMode

    path, _, _, _ = demo
    from focalnet_edge.export.heads import build_head

    model = build_head(load_checkpoint("demo"), "logits").eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, 64, 64))
    flops = gemm_flops(onnx.load(str(path)))
    assert sum(flops.values()) == counter.get_total_flops()
    assert all(v > 0 for v in flops.values())


def test_placement_report_of_the_default_graph(demo):
    path, _, _, ranges = demo
    fp32 = onnx.load(str(path))
    q = quantize(path, ranges, "tensorrt", stem_and_head(fp32))
    rep = placement_report(q)
    flops = gemm_flops(fp32)
    float_names = set(stem_and_head(fp32))
    assert set(rep.float_nodes) == float_names
    expected = 1 - sum(flops[n] for n in float_names) / sum(flops.values())
    assert rep.int8_flop_share == pytest.approx(expected) and 0.9 < rep.int8_flop_share < 1
    weighted = [n for n in fp32.graph.node if n.op_type in ("Conv", "MatMul", "Gemm") and n.name not in float_names]
    assert sum(rep.quantized_by_type.values()) == len(weighted) and "Add" not in rep.quantized_by_type
    # one Q/DQ pair per quantized activation tensor; the ones TensorRT cannot fuse are named
    assert rep.qdq_pairs == len({n.input[0] for n in weighted})
    assert all(": also read in float by" in u or ": dequantized into" in u for u in rep.unfused)


def test_residual_skip_form_puts_one_qdq_on_the_carried_input(demo):
    path, _, _, ranges = demo
    fp32 = onnx.load(str(path))
    q = quantize_residual(path, ranges, "tensorrt", stem_and_head(fp32), residual="skip")
    producers = _producers(q)
    readers = {}
    for n in fp32.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n.op_type)
    adds = {n.name: n for n in fp32.graph.node if n.name in residual_adds(fp32)}
    for n in q.graph.node:
        if n.name in adds:
            dq = _dq_inputs(n, producers)
            assert len(dq) == 1, n.name
            x = producers[producers[dq[0]].input[0]].input[0]  # the tensor before Q
            assert x == skip_input(fp32, adds[n.name]) and "LayerNormalization" in readers[x]
    assert placement_report(q).quantized_by_type["Add"] == len(adds)
    both = quantize_residual(path, ranges, "tensorrt", stem_and_head(fp32), residual="both")
    p2 = _producers(both)
    assert all(len(_dq_inputs(n, p2)) == 2 for n in both.graph.node if n.name in adds)


def test_to_float_of_every_node_is_the_fp32_graph(demo):
    path, _, hold, ranges = demo
    fp32 = onnx.load(str(path))
    q = quantize(path, ranges, "tensorrt", stem_and_head(fp32))
    names = [n.name for n in fp32.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")]
    back = to_float(q, fp32, names)
    assert not [n for n in back.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    x = hold.inputs[:8]
    np.testing.assert_allclose(outputs(back, x), outputs(fp32, x), rtol=1e-5, atol=1e-5)
    one = to_float(q, fp32, names[3:4])
    assert not _dq_inputs(next(n for n in one.graph.node if n.name == names[3]), _producers(one))
    assert len(placement_report(one).float_nodes) == len(stem_and_head(fp32)) + 1


def test_gate_returns_single_nodes_to_float_largest_gain_first(demo, tmp_path):
    from focalnet_edge.calibration.gate import MIN_GAIN_DB, rank

    path, _, hold, ranges = demo
    ruined = {k: (lo / 30, hi / 30) for k, (lo, hi) in ranges.items()}  # heavy clipping everywhere
    gated = build_int8(path, tmp_path / "gated.onnx", ruined, hold.inputs, max_fallback=4, min_sqnr_db=60.0, sensitivity_images=4)
    assert not gated.gate_passed and "SQNR" in gated.shortfall[0] and "dB under 60 dB" in gated.shortfall[0]
    assert gated.tried == rank(gated.sensitivity, gemm_flops(onnx.load(str(path))))[:4]
    assert 1 <= len(gated.kept_float) <= 4 and gated.kept_float == gated.tried[: len(gated.kept_float)]
    bad = build_int8(path, tmp_path / "bad.onnx", ruined, hold.inputs, max_fallback=0)  # the same, no fallback
    assert not bad.gate_passed and bad.shortfall and not bad.kept_float and not bad.sensitivity
    # kept because it measurably helps (the no-gain rule)
    assert gated.score.sqnr_db >= bad.score.sqnr_db + MIN_GAIN_DB and gated.first_score.sqnr_db == pytest.approx(bad.score.sqnr_db)
    gains = [round(gated.sensitivity[n], 1) for n in gated.tried]
    assert gains == sorted(gains, reverse=True) and len(gated.sensitivity) == len(
        [n for n in onnx.load(str(path)).graph.node if n.op_type in ("Conv", "MatMul", "Gemm")]) - len(float_by_default(onnx.load(str(path))))
    m = onnx.load(str(gated.path))
    p = _producers(m)
    for n in m.graph.node:
        if n.name in gated.kept_float:
            assert not _dq_inputs(n, p), n.name
    assert set(gated.placement.float_nodes) == set(gated.kept_float) | set(float_by_default(onnx.load(str(path))))
    assert gated.int8_flop_share < bad.int8_flop_share
    # time per phase: the search's phases ran for the gated graph, not for the one without fallback
    assert {"reference", "quantize", "measure", "sensitivity", "fallback", "final_check", "write"} <= set(gated.timings)
    assert "sensitivity" not in bad.timings and all(v >= 0 for v in gated.timings.values())
    # the default target on good ranges: met at once, nothing back to float
    good = build_int8(path, tmp_path / "good.onnx", ranges, hold.inputs)
    assert good.gate_passed and not good.kept_float and not good.shortfall and good.score.sqnr_db >= 25


def test_gate_target_and_holdout_note():
    t = GateTarget(min_sqnr_db=30, min_top1=0.99, min_cosine=0.98)
    assert t.met(GateScore(31.0, 0.999, 1.0, 1.0, 100))
    miss = t.shortfalls(GateScore(27.5, 0.999, 0.97, 1.0, 100))
    assert miss == ["SQNR 27.50 dB is 2.50 dB under 30 dB", "top-1 agreement 0.9700 is 0.0200 under 0.99"]
    assert t.met(GateScore(31.0, 0.999, None, None, 100))  # features: no top-1
    assert not t.met(GateScore(float("nan"), 0.999, 1.0, 1.0, 100))
    assert holdout_note(100) is None and "only 26 held-back images" in holdout_note(26)
    # top-1 is judged on the decided images: near-tie flips (raw top-1 0.896) do not count
    assert t.met(GateScore(39.4, 0.9999, 0.896, 1.0, 48, top1_decided=1.0, decided=37, flip_margin=0.242))
    assert t.met(GateScore(39.4, 0.9999, 0.896, 1.0, 48, top1_decided=None, decided=0, flip_margin=9.0))  # none decided
    miss = t.shortfalls(GateScore(39.4, 0.9999, 0.896, 1.0, 48, top1_decided=36 / 37, decided=37, flip_margin=0.242))
    assert miss == ["top-1 agreement 0.9730 on the 37 decided images (fp32 margin > 0.242) is 0.0170 under 0.99"]


def test_split_holds_back_at_least_100_images_when_there_are_enough():
    s = CalibrationSet(np.zeros((320, 1), np.float32), None, "x")
    cal, hold = s.split()
    assert len(hold) == 100 and len(cal) == 220
    cal, hold = CalibrationSet(np.zeros((128, 1), np.float32), None, "x").split()
    assert len(hold) == 64 and len(cal) == 64


def test_fp8_graph_is_e4m3_rounding_as_numpy_simulates_it(tmp_path):
    """A MatMul + bias, quantized to FP8 by focalnet-edge, against E4M3 rounding done by ml_dtypes."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((16, 8)).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y0"], name="mm"), helper.make_node("Add", ["y0", "b"], ["y"], name="bias")],
        "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 16])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 8])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    fp32 = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(fp32, str(tmp_path / "mm.onnx"))
    x = rng.standard_normal((32, 16)).astype(np.float32)
    ranges = compute_ranges(tmp_path / "mm.onnx", x, "max")
    f8 = int8_to_fp8(quantize(tmp_path / "mm.onnx", ranges, "tensorrt"), fp32)
    assert qdq_form_problems(f8) == [] and f8.opset_import[0].version >= 19
    e4m3 = lambda v: v.astype(ml_dtypes.float8_e4m3fn).astype(np.float32)  # noqa: E731
    sx = max(abs(ranges["x"][0]), abs(ranges["x"][1])) / E4M3_MAX
    sw = np.abs(w).max(0) / E4M3_MAX
    expected = (e4m3(x / np.float32(sx)) * np.float32(sx)) @ (e4m3(w / sw) * sw) + b
    np.testing.assert_allclose(outputs(f8, x), expected, rtol=1e-5, atol=1e-5)
    assert 0 < sqnr_db(x @ w + b, expected) < 60  # really rounded, and close


def test_fp8_build_of_the_demo_passes_tensorrts_checks(demo, tmp_path):
    from focalnet_edge.engine.check import check_model

    path, cal, hold, ranges = demo
    r = build_fp8(path, tmp_path / "model.fp8.onnx", ranges, hold.inputs, float_type="fp16", calibration_inputs=cal.inputs)
    m = onnx.load(str(r.path))
    zps = [numpy_helper.to_array(i) for i in m.graph.initializer if i.name.endswith("zero_point")]
    assert zps and all(z.dtype.name == "float8_e4m3fn" and not z.astype(np.float32).any() for z in zps)
    assert [f for f in check_model(m) if f.severity == "error"] == []
    assert r.qtype == "fp8" and r.gate_passed and r.score.sqnr_db > 30
    flops = gemm_flops(onnx.load(str(path)))  # every GEMM/Conv quantized but stem, head and downsampling
    assert r.int8_flop_share == pytest.approx(1 - sum(flops[n] for n in float_by_default(onnx.load(str(path)))) / sum(flops.values()))
    assert r.to_manifest()["placement"]["int8_flop_share"] == r.int8_flop_share


def test_local_noise_picks_the_node_whose_range_is_ruined(demo):
    from focalnet_edge.calibration.gate import local_noise, sensitivity_pass

    path, _, hold, ranges = demo
    fp32 = onnx.load(str(path))
    fc1 = next(n for n in fp32.graph.node if n.name.endswith("stages.2/layers.1/mlp/fc1/MatMul"))
    ruined = dict(ranges)
    ruined[fc1.input[0]] = tuple(v / 100 for v in ranges[fc1.input[0]])  # its input clipped hard
    q = quantize(path, ruined, "tensorrt", stem_and_head(fp32))
    candidates = [n.name for n in fp32.graph.node if n.op_type in ("Conv", "MatMul") and n.name not in stem_and_head(fp32)]
    x = hold.inputs[:8]
    noise = local_noise(q, fp32, candidates, x)
    assert max(noise, key=noise.get) == fc1.name and noise[fc1.name] > 10 * sorted(noise.values())[-2]
    gain, order = sensitivity_pass(q, fp32, candidates, gemm_flops(fp32), outputs(fp32, x), x, limit=3)
    assert len(gain) == 3 and fc1.name in gain and gain[fc1.name] > 3 and order[0] == fc1.name


def test_switchboard_is_to_float_without_new_graphs(demo):
    """One session, any set of nodes in float: the same outputs as `to_float`'s graph for that set."""
    from focalnet_edge.calibration.gate import Switchboard
    from focalnet_edge.folder.onnx_io import ort_session

    path, _, hold, ranges = demo
    fp32 = onnx.load(str(path))
    q = quantize(path, ranges, "tensorrt", stem_and_head(fp32))
    names = [n.name for n in fp32.graph.node if n.op_type in ("Conv", "MatMul") and n.name not in stem_and_head(fp32)]
    board = Switchboard(q, fp32, names)
    x = hold.inputs[:8]
    # Q/DQ as ONNX defines them, in float (no int8 kernels): the graph run without optimizations
    sess = ort_session(q, optimize=False)
    plain = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(board.outputs(set(), x), plain, rtol=1e-4, atol=1e-4)
    for some in (names[2:3], names[5:9]):
        sess = ort_session(to_float(q, fp32, some), optimize=False)
        np.testing.assert_allclose(board.outputs(some, x), sess.run(None, {sess.get_inputs()[0].name: x})[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(board.outputs(names, x), outputs(fp32, x), rtol=1e-4, atol=1e-4)
    assert sqnr_db(outputs(fp32, x), board.outputs(set(), x)) < 60  # and it really quantizes


def test_fallback_search_doubles_then_bisects():
    from focalnet_edge.calibration.gate import fallback_search

    order = [f"n{i}" for i in range(10)]
    seen = []

    def judge(names):  # SQNR grows by 1 dB per node returned: 5 nodes reach 25 dB
        seen.append(len(names))
        return GateScore(20.0 + len(names), 0.999, 1.0, 1.0, 100)

    kept, s, lengths = fallback_search(order, judge, GateTarget(25.0, 0.99, 0.98), max_fallback=8)
    assert kept == order[:5] and s.sqnr_db == 25.0
    assert seen == [1, 2, 4, 8, 6, 5] and lengths == [1, 2, 4, 5, 6, 8]
    kept, s, lengths = fallback_search(order, judge, GateTarget(40.0, 0.99, 0.98), max_fallback=8)  # never met
    assert kept == order[:8] and s.sqnr_db == 28.0 and lengths == [1, 2, 4, 8]
    assert fallback_search([], judge, GateTarget(40.0, 0.99, 0.98), 8) == ([], None, [])


def test_risky_images_are_disagreements_then_small_margins():
    from focalnet_edge.calibration.gate import risky_images

    ref = np.array([[5.0, 0.0, 0.0], [1.0, 0.9, 0.0], [3.0, 0.0, 2.9], [2.0, 1.0, 0.0], [4.0, 0.0, 0.0]])
    out = ref.copy()
    out[4] = [0.0, 4.5, 0.0]  # top-1 flipped
    out[1] += [0.0, 0.05, 0.0]  # error 0.05 against a margin of 0.1: next to flip
    out[3] += [0.0, 0.1, 0.0]  # error 0.1 against a margin of 1
    assert list(risky_images(ref, out, 2, True)) == [1, 4]
    assert list(risky_images(ref, out, 3, True)) == [1, 3, 4]


def test_max_ranges_do_not_depend_on_the_batch_and_match_the_tensors(demo):
    """Calibration one batch at a time: the max ranges of the activations, read off the graph."""
    from focalnet_edge.folder.onnx_io import ort_session

    path, cal, _, _ = demo
    x = cal.inputs[:24]
    a, b = compute_ranges(path, x, "max", batch=5), compute_ranges(path, x, "max", batch=24)
    assert a == b
    name = next(k for k in a if k.endswith("mlp/fc1/MatMul_output_0") or "LayerNormalization_output_0" in k)
    m = onnx.load(str(path))
    m.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    sess = ort_session(m, optimize=False)
    t = sess.run([name], {sess.get_inputs()[0].name: x})[0]
    assert a[name] == pytest.approx((float(t.min()), float(t.max())), rel=1e-6)


def test_gate_searches_again_on_every_image_when_the_risky_estimate_was_too_kind(demo, tmp_path, monkeypatch):
    """The search judges the risky few first; when the written graph then misses on all held-back
    images, it must not stop there (seen on focalnet-tiny's CPU form) but search again on all."""
    from focalnet_edge.calibration import gate

    path, _, hold, ranges = demo
    ruined = {k: (lo / 30, hi / 30) for k, (lo, hi) in ranges.items()}
    judges = []
    real = gate.fallback_search

    def search(order, judge, target, max_fallback, progress=False):
        judges.append(judge)
        if len(judges) == 1:  # an estimate that claims one node is enough
            return order[:1], None, [1]
        return real(order, judge, target, max_fallback, progress)

    monkeypatch.setattr(gate, "fallback_search", search)
    result = build_int8(path, tmp_path / "g.onnx", ruined, hold.inputs, max_fallback=4, min_sqnr_db=60.0, sensitivity_images=4)
    assert len(judges) == 2  # the old gate stopped after the first search
    assert result.kept_float and result.kept_float == result.tried[: len(result.kept_float)] and not result.gate_passed
    assert judges[1]([]).sqnr_db == pytest.approx(result.first_score.sqnr_db, abs=0.05)  # all images, nothing back: the first graph


@pytest.fixture(scope="module")
def hostile(demo, tmp_path_factory):
    """The demo with one block hostile to int8 (`helpers.with_hostile_mlp`): its graph, fc2's name, max ranges."""
    from helpers import with_hostile_mlp

    path, cal, hold, _ = demo
    bad = tmp_path_factory.mktemp("hostile") / "model.onnx"
    onnx.save(with_hostile_mlp(onnx.load(str(path))), str(bad))
    return bad, "/model/encoder/stages.3/layers.0/mlp/fc2/MatMul", compute_ranges(bad, cal.inputs, "max")


@pytest.mark.parametrize("form", ["tensorrt", "cpu"])
def test_sensitivity_ranks_the_hostile_node_first_in_both_forms(demo, hostile, form):
    """Every candidate measured end to end, the TensorRT form as the CPU form: the planted node first
    (the TensorRT form's 35 candidates were cut to 24 by a proxy before); the output-referred proxy too."""
    from focalnet_edge.calibration.gate import local_noise, sensitivity_pass
    from focalnet_edge.calibration.qdq import quantizable_nodes

    _, _, hold, _ = demo
    path, fc2, ranges = hostile
    fp32 = onnx.load(str(path))
    exclude = float_by_default(fp32) if form == "tensorrt" else []
    q = quantize(path, ranges, form, exclude)
    candidates = [n for n in quantizable_nodes(fp32, form) if n not in exclude]
    x = hold.inputs[:12]
    gain, order = sensitivity_pass(q, fp32, candidates, gemm_flops(fp32), outputs(fp32, x), x)
    assert set(gain) == set(candidates) and order[0] == fc2
    assert gain[fc2] > 5 and gain[fc2] > 10 * sorted(gain.values())[-2]
    noise = local_noise(q, fp32, candidates, x)
    assert max(noise, key=noise.get) == fc2 and noise[fc2] > 10 * sorted(noise.values())[-2]


def test_gate_finds_the_hostile_node_and_writes_only_it_back(demo, hostile, tmp_path):
    from focalnet_edge.calibration.placement import module_block

    path, fc2, ranges = hostile
    _, cal, hold, demo_ranges = demo
    r = build_int8(path, tmp_path / "model.int8.onnx", ranges, hold.inputs, float_type="fp16", calibration_inputs=cal.inputs)
    assert not GateTarget(25.0, 0.99, 0.98).met(r.first_score)  # the hostile block costs the target
    assert r.gate_passed and r.kept_float == [fc2] and r.score.sqnr_db >= r.first_score.sqnr_db + 5
    assert module_block(fc2) == "encoder.stages.3.layers.0"
    assert r.to_manifest()["kept_float_blocks"] == {"encoder.stages.3.layers.0": [fc2]}
    clean = build_int8(demo[0], tmp_path / "clean.onnx", demo_ranges, hold.inputs, float_type="fp16", calibration_inputs=cal.inputs)
    # one GEMM back: the int8 share drops by its FLOPs only
    flops = gemm_flops(onnx.load(str(path)))
    assert r.int8_flop_share == pytest.approx(clean.int8_flop_share - flops[fc2] / sum(flops.values()))


def test_a_fallback_that_does_not_measurably_help_is_not_kept(demo, tmp_path):
    """The error sits where the gate cannot return anything (the residual Adds' Q/DQ, ruined): the nodes
    it tries gain nothing measurable, so the graph is written as first quantized, and the shortfall said."""
    from focalnet_edge.calibration.gate import MIN_GAIN_DB, improves

    path, _, hold, ranges = demo
    fp32 = onnx.load(str(path))
    adds = {i for n in fp32.graph.node if n.name in residual_adds(fp32) for i in n.input}
    ruined = {k: ((lo / 50, hi / 50) if k in adds else (lo, hi)) for k, (lo, hi) in ranges.items()}
    r = build_int8(path, tmp_path / "g.onnx", ruined, hold.inputs, max_fallback=4, min_sqnr_db=60.0, sensitivity_images=8,
                   quantizer=residual_quantizer("both"))
    assert not r.gate_passed and r.tried and r.kept_float == [] and r.rejected
    assert r.score.sqnr_db == pytest.approx(r.first_score.sqnr_db) and "dB under 60 dB" in r.shortfall[0]
    assert r.to_manifest()["rejected"] == r.rejected
    t = GateTarget(25.0, 0.99, 0.98)
    assert not improves(GateScore(20.0 + MIN_GAIN_DB / 2, 0.99, 1, 1, 10), GateScore(20.0, 0.99, 1, 1, 10), t)
    assert improves(GateScore(20.0 + MIN_GAIN_DB, 0.99, 1, 1, 10), GateScore(20.0, 0.99, 1, 1, 10), t)
    assert improves(GateScore(25.1, 0.99, 1, 1, 10), GateScore(24.9, 0.99, 1, 1, 10), t)  # meets the target


def test_fallback_search_keeps_the_best_prefix_not_the_longest():
    from focalnet_edge.calibration.gate import fallback_search

    order = [f"n{i}" for i in range(8)]
    sqnr = {0: 20.0, 1: 23.0, 2: 23.2, 4: 21.0, 8: 19.0}  # two nodes help, more hurt

    kept, s, lengths = fallback_search(order, lambda names: GateScore(sqnr[len(names)], 0.999, 1, 1, 10), GateTarget(30.0, 0.99, 0.98), 8)
    assert lengths == [1, 2, 4, 8] and kept == order[:1] and s.sqnr_db == 23.0  # within 0.5 dB of the best (23.2): the shorter


def test_a_hostile_node_goes_back_even_when_the_target_is_met(demo, hostile, tmp_path):
    """The CPU form of the hostile graph meets the 25 dB target at once; the hostile check (its
    output-referred local noise: under 20 dB and 10x the median) still finds fc2 and returns it alone."""
    from focalnet_edge.calibration.gate import HOSTILE_GAIN_DB

    path, fc2, ranges = hostile
    _, _, hold, demo_ranges = demo
    r = build_int8(path, tmp_path / "cpu.onnx", ranges, hold.inputs, "cpu")
    assert GateTarget(25.0, 0.99, 0.98).met(r.first_score) and r.gate_passed
    assert r.kept_float == [fc2] and r.sensitivity[fc2] >= HOSTILE_GAIN_DB and r.score.sqnr_db >= r.first_score.sqnr_db + 5
    assert "hostile_check" in r.timings and "sensitivity" not in r.timings  # no search: the target was met
    clean = build_int8(demo[0], tmp_path / "clean.onnx", demo_ranges, hold.inputs, "cpu")  # nothing hostile: nothing back
    assert clean.gate_passed and clean.kept_float == [] and clean.tried == []
