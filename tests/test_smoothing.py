"""Smoothing LayerNorm outputs into their GEMMs before INT8 (calibration/smoothing.py) and the
float-by-default downsampling Convs, checked against the graphs' own outputs and numpy.

The subject is the trained demo with outlier LayerNorm channels made the way trained
transformers have them: a few channels of each LayerNorm weight several times larger.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from focalnet_edge.calibration import compute_ranges, load_calibration_data, quantize
from focalnet_edge.calibration.gate import outputs
from focalnet_edge.calibration.ranges import cached_smoothing
from focalnet_edge.calibration.placement import downsampling, float_by_default, placement_report, stem_and_head
from focalnet_edge.calibration.smoothing import apply_smoothing, channel_absmax, smoothable, smoothing_scales
from focalnet_edge.errors import InputError
from focalnet_edge.verify.metrics import sqnr_db
from focalnet_edge.model import load_checkpoint
from focalnet_edge.folder.onnx_io import read_contract
from focalnet_edge.pipeline import ExportOptions, export_stage


def with_outlier_channels(model: onnx.ModelProto, share: float = 0.1, factor: float = 8.0, seed: int = 0) -> onnx.ModelProto:
    """`model` with `share` of every LayerNorm's channels given `factor`x weights and biases."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    rng = np.random.default_rng(seed)
    inits = {i.name: i for i in out.graph.initializer}
    for n in out.graph.node:
        if n.op_type != "LayerNormalization":
            continue
        w, b = (numpy_helper.to_array(inits[n.input[k]]).copy() for k in (1, 2))
        picked = rng.random(w.shape) < share
        picked[rng.integers(len(w))] = True
        w[picked] *= factor
        b[picked] *= factor
        inits[n.input[1]].CopyFrom(numpy_helper.from_array(w, n.input[1]))
        inits[n.input[2]].CopyFrom(numpy_helper.from_array(b, n.input[2]))
    return out


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    """(fp32 graph path with outlier channels, calibration inputs, held-back inputs)."""
    out = tmp_path_factory.mktemp("smooth")
    export_stage(load_checkpoint("demo"), out, ExportOptions())
    path = out / "model.onnx"
    contract, _ = read_contract(onnx.load(str(path)), path)
    cal, held = load_calibration_data("demo", contract).split()
    outlier = out / "outliers.onnx"
    onnx.save(with_outlier_channels(onnx.load(str(path))), str(outlier))
    return outlier, cal.inputs, held.inputs


def _exposed(path, tensors, x) -> dict[str, np.ndarray]:
    """The tensors themselves, as graph outputs (the independent reference of the probe)."""
    m = onnx.load(str(path))
    m.graph.output.extend(onnx.helper.make_empty_tensor_value_info(t) for t in tensors)
    from focalnet_edge.folder.onnx_io import ort_session

    sess = ort_session(m, optimize=False)
    return dict(zip(tensors, sess.run(list(tensors), {sess.get_inputs()[0].name: x})))


def test_only_layernorms_read_by_gemms_alone_are_smoothed(subject):
    path, _, _ = subject
    m = onnx.load(str(path))
    found = smoothable(m)
    producer = {o: n for n in m.graph.node for o in n.output}
    names = sorted(producer[t].name for t in found)
    # norm1 -> projection_in and norm2 -> fc1 of each of the demo's blocks; not the embedding's or the
    # downsampling norms (the residual stream: read by a LayerNorm and an Add), not the final one (pooling)
    blocks = {n.name.rsplit("/norm", 1)[0] for n in m.graph.node if n.op_type == "LayerNormalization" and "/layers." in n.name}
    assert len(names) == 2 * len(blocks) > 0
    assert all("/norm1/" in n or "/norm2/" in n for n in names)
    assert all(u.op_type == "MatMul" for users in found.values() for u in users)


def test_channel_probe_is_the_tensors_own_maxima(subject):
    path, cal, _ = subject
    tensors = list(smoothable(onnx.load(str(path))))
    x = cal[:24]
    got = channel_absmax(path, x, tensors, batch=10)  # three batches, the last one short
    ref = _exposed(path, tensors, x)
    for t in tensors:
        want = np.abs(ref[t]).reshape(-1, ref[t].shape[-1]).max(axis=0)
        np.testing.assert_allclose(got[t], want, rtol=1e-6)


def test_smoothing_keeps_the_outputs_and_flattens_the_channels(subject):
    path, cal, held = subject
    m = onnx.load(str(path))
    tensors = list(smoothable(m))
    absmax = channel_absmax(path, cal, tensors)
    scales = smoothing_scales(m, absmax, 0.5)
    smoothed = apply_smoothing(m, scales)
    assert len(smoothed.graph.node) == len(m.graph.node)  # folded: no node added
    ref, got = outputs(m, held), outputs(smoothed, held)
    assert sqnr_db(ref, got) > 100  # the same function up to float rounding
    spread = lambda a: float(a.max() / np.median(a))  # noqa: E731
    after = channel_absmax(_saved(smoothed, path.parent / "smoothed.onnx"), cal, tensors)
    for t in tensors:
        np.testing.assert_allclose(after[t], absmax[t] / scales[t], rtol=1e-4)
        # alpha 0.5 takes about the square root of the spread: the outlier channels no longer set the scale alone
        assert spread(after[t]) < 0.75 * spread(absmax[t]), t


def _saved(model, path):
    onnx.save(model, str(path))
    return path


def test_smoothing_raises_int8_sqnr_on_outlier_channels(subject):
    path, cal, held = subject
    m = onnx.load(str(path))
    ref = outputs(m, held)
    exclude = float_by_default(m)
    plain = quantize(path, compute_ranges(path, cal), "tensorrt", exclude)
    scales = smoothing_scales(m, channel_absmax(path, cal, list(smoothable(m))), 0.5)
    smoothed = _saved(apply_smoothing(m, scales), path.parent / "smoothed_q.onnx")
    q = quantize(smoothed, compute_ranges(smoothed, cal), "tensorrt", exclude)
    before, after = sqnr_db(ref, outputs(plain, held)), sqnr_db(ref, outputs(q, held))
    assert after > before + 3, (before, after)
    assert placement_report(q).int8_flop_share == pytest.approx(placement_report(plain).int8_flop_share)


def test_downsampling_convs_are_float_by_default(subject):
    path, _, _ = subject
    m = onnx.load(str(path))
    down = downsampling(m)
    assert len(down) == 3 and all(n.endswith("/downsample/projection/Conv") for n in down)  # between the 4 stages
    assert set(float_by_default(m)) == set(stem_and_head(m)) | set(down)


def test_default_build_smooths_and_caches_the_factors(tmp_path, monkeypatch, capsys):
    from focalnet_edge.cli import main

    out = tmp_path / "b"
    assert main(["build", "--model", "demo", "--precision", "int8", "--no-cpu-int8", "--output", str(out), "--quiet",
                 "--calib-cache", str(tmp_path / "cache.json")]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["artifacts"]["model.int8.onnx"]["int8"]
    assert entry["smoothing"]["alpha"] == 0.5 and entry["smoothing"]["layernorms"] > 0
    assert set(entry["placement"]["float_nodes"]) == set(float_by_default(onnx.load(str(out / "model.onnx"))))
    # `info` tells the placement and the gate's figures, as the manifest has them
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "model.int8.onnx:" in x)
    share = 100 * entry["placement"]["int8_flop_share"]
    assert "int8 (tensorrt form), gate passed" in line and f"{share:.1f}% of GEMM/Conv FLOPs quantized" in line
    assert f"SQNR {entry['gate']['sqnr_db']:.1f} dB" in line and f"{entry['smoothing']['layernorms']} LayerNorms smoothed (alpha 0.5)" in line
    doc = json.loads((tmp_path / "cache.json").read_text())
    scales, alpha = cached_smoothing(tmp_path / "cache.json", doc)
    assert alpha == 0.5
    assert len(scales) == entry["smoothing"]["layernorms"]

    # the written graph's LayerNorm weights are fp32's divided by the cached factors
    fp32, q = onnx.load(str(out / "model.onnx")), onnx.load(str(out / "model.int8.onnx"))
    producer = {o: n for n in fp32.graph.node for o in n.output}
    t = next(iter(scales))
    name = producer[t].input[1]
    w32 = numpy_helper.to_array(next(i for i in fp32.graph.initializer if i.name == name))
    wq = numpy_helper.to_array(next(i for i in q.graph.initializer if i.name == name)).astype(np.float32)
    np.testing.assert_allclose(wq, w32 / scales[t], rtol=2e-3)  # fp16 float parts

    # a second build from the cache measures no channels and writes the same graph
    import focalnet_edge.calibration.smoothing as smoothing

    monkeypatch.setattr(smoothing, "channel_absmax", lambda *a, **k: pytest.fail("channels measured again"))
    again = tmp_path / "c"
    assert main(["build", "--model", "demo", "--precision", "int8", "--no-cpu-int8", "--output", str(again), "--quiet",
                 "--calib-cache", str(tmp_path / "cache.json")]) == 0
    a, b = onnx.load(str(out / "model.int8.onnx")), onnx.load(str(again / "model.int8.onnx"))
    assert [i.raw_data for i in a.graph.initializer] == [i.raw_data for i in b.graph.initializer]


def test_smoothing_off_and_bad_values(tmp_path, capsys):
    from focalnet_edge.cli import main

    cache = tmp_path / "plain.json"
    for name, extra in (("off", ["--int8-smoothing", "0"]), ("from_cache", [])):
        # the second build reads the cache the first wrote without factors: its ranges are those of the
        # graph as it is, so it must not smooth (the default alpha notwithstanding)
        out = tmp_path / name
        assert main(["build", "--model", "demo", "--precision", "int8", "--no-cpu-int8", "--output", str(out), "--quiet",
                     "--calib-cache", str(cache), *extra]) == 0
        entry = json.loads((out / "manifest.json").read_text())["artifacts"]["model.int8.onnx"]["int8"]
        assert entry["smoothing"]["layernorms"] == 0
        assert "smoothing" not in json.loads(cache.read_text())
        fp32, q = onnx.load(str(out / "model.onnx")), onnx.load(str(out / "model.int8.onnx"))
        ln = next(n for n in fp32.graph.node if n.op_type == "LayerNormalization" and "/norm1/" in n.name)
        w32 = numpy_helper.to_array(next(i for i in fp32.graph.initializer if i.name == ln.input[1]))
        wq = numpy_helper.to_array(next(i for i in q.graph.initializer if i.name == ln.input[1])).astype(np.float32)
        np.testing.assert_allclose(wq, w32, rtol=1e-3)

    assert main(["build", "--model", "demo", "--precision", "int8", "--output", str(tmp_path / "x"), "--int8-smoothing", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--int8-smoothing 2" in err[0]


@pytest.mark.parametrize("smoothing", [
    {"alpha": 0.5, "scales": {"t": [1.0, -2.0]}}, {"alpha": 0.5, "scales": {"t": "abc"}}, {"alpha": 0.5, "scales": {"t": [1.0, float("nan")]}},
    {"alpha": 0.5, "scales": {"t": [1.0, 1e30]}}, {"alpha": 0.5, "scales": {"t": [True, 1.0]}}, {"alpha": 0.5, "scales": {"t": ["1", 1.0]}},
    {"alpha": 0.5, "scales": {"t": []}}, {"alpha": 0.5, "scales": {"t": [[1.0]]}}, {"alpha": 0.5, "scales": ["t"]},
    {"alpha": "abc", "scales": {"t": [1.0]}}, {"alpha": None, "scales": {"t": [1.0]}}, {"scales": {"t": [1.0]}}, {"alpha": 2, "scales": {"t": [1.0]}},
])
def test_cache_with_broken_factors_is_refused_in_one_line(tmp_path, smoothing):
    with pytest.raises(InputError, match="smoothing (factors|alpha)") as e:
        cached_smoothing(tmp_path / "c.json", {"smoothing": smoothing})
    assert "\n" not in str(e.value) and "c.json" in str(e.value)
    assert cached_smoothing(tmp_path / "c.json", {}) == ({}, 0.0)  # caches written before smoothing: none


def test_factors_of_the_wrong_length_are_refused(subject):
    path, _, _ = subject
    m = onnx.load(str(path))
    t = next(iter(smoothable(m)))
    with pytest.raises(ValueError, match="1 given, the LayerNorm has"):
        apply_smoothing(m, {t: np.ones(1, np.float32)})


def test_layernorm_parameters_behind_identity_are_smoothed(subject):
    """torch.onnx.export passes equal parameters through Identity nodes: those LayerNorms count too."""
    path, cal, held = subject
    m = onnx.load(str(path))
    inits = {i.name for i in m.graph.initializer}
    ln = next(n for n in m.graph.node if n.op_type == "LayerNormalization" and "/norm1/" in n.name)
    alias = ln.input[1] + "_alias"
    m.graph.node.insert(0, onnx.helper.make_node("Identity", [ln.input[1]], [alias]))
    ln.input[1] = alias
    assert ln.input[1] not in inits and ln.output[0] in smoothable(m)
    tensors = list(smoothable(m))
    aliased = _saved(m, path.parent / "aliased.onnx")
    scales = smoothing_scales(m, channel_absmax(aliased, cal, tensors), 0.5)
    smoothed = apply_smoothing(m, scales)
    assert sqnr_db(outputs(m, held), outputs(smoothed, held)) > 100


def test_cache_from_elsewhere_decides_and_the_folder_keeps_a_copy(tmp_path, capsys, caplog):
    """A cache made with another alpha and method is used as it is (its ranges hold for that graph
    only), with a warning; the manifest says what was used; OUT/calibration.json is its copy."""
    from focalnet_edge.cli import main

    cache = tmp_path / "elsewhere.json"
    common = ["build", "--model", "demo", "--precision", "int8", "--no-cpu-int8", "--quiet", "--calib-cache", str(cache)]
    assert main([*common, "--output", str(tmp_path / "a"), "--int8-smoothing", "0.3", "--calib-method", "percentile",
                 "--calib-percentile", "99.999"]) == 0
    caplog.clear()
    assert main([*common, "--output", str(tmp_path / "b")]) == 0  # default alpha 0.5, default method max
    assert any("alpha 0.3, so that is used, not --int8-smoothing 0.5" in r.getMessage() for r in caplog.records)
    entry = json.loads((tmp_path / "b" / "manifest.json").read_text())["artifacts"]["model.int8.onnx"]["int8"]
    assert entry["method"] == "percentile" and entry["smoothing"]["alpha"] == 0.3
    assert json.loads((tmp_path / "b" / "calibration.json").read_text()) == json.loads(cache.read_text())
    a, b = onnx.load(str(tmp_path / "a" / "model.int8.onnx")), onnx.load(str(tmp_path / "b" / "model.int8.onnx"))
    assert [i.raw_data for i in a.graph.initializer] == [i.raw_data for i in b.graph.initializer]

    # a cache whose ranges miss tensors a Q/DQ reads: one line naming the cache, exit 2, nothing written
    doc = json.loads(cache.read_text())
    doc["ranges"] = dict(list(doc["ranges"].items())[:3])
    cache.write_text(json.dumps(doc))
    capsys.readouterr()
    assert main([*common, "--output", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(cache) in err[0] and "has no range for" in err[0], err
    assert not (tmp_path / "c").exists()


def test_info_of_a_manifest_without_the_figures():
    from focalnet_edge.cli.printing import format_quantization
    from focalnet_edge.folder.facts import quantization_facts

    line = format_quantization({"m.onnx": quantization_facts({"gate_passed": False, "placement": None, "gate": "x",
                                                              "smoothing": {"layernorms": 2, "alpha": None}})})
    assert line.startswith("m.onnx: int8 (? form), gate FAILED: SQNR ? dB") and "?% of GEMM/Conv FLOPs" in line
    assert line.endswith("2 LayerNorms smoothed (alpha ?)")
    line = format_quantization({"m.onnx": quantization_facts({"holdout_images": 100.0, "smoothing": {"layernorms": 2.5}})})
    assert "on 100 held-back images" in line and "? LayerNorms smoothed" in line


def _synthetic(tmp_path):
    """Unnamed nodes: two LayerNorms sharing scale and bias, one read by a Gemm (transB), one by a
    MatMul and also a graph output; a third LayerNorm over axis 0; a fourth LayerNorm read by a MatMul."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(1)
    c = 8
    scale = (1 + rng.random(c)).astype(np.float32)
    scale[2] = 9.0  # an outlier channel
    inits = [numpy_helper.from_array(scale, "sc"), numpy_helper.from_array(rng.normal(size=c).astype(np.float32), "bi"),
             numpy_helper.from_array(rng.normal(size=(6, c)).astype(np.float32), "wt"),  # Gemm, transB: [out, in]
             numpy_helper.from_array(rng.normal(size=(c, 5)).astype(np.float32), "wm"),
             numpy_helper.from_array(rng.normal(size=(c, 5)).astype(np.float32), "wm2"),
             numpy_helper.from_array(np.ones((4, c), np.float32), "sc0"), numpy_helper.from_array(np.zeros((4, c), np.float32), "bi0")]
    nodes = [helper.make_node("LayerNormalization", ["x", "sc", "bi"], ["ln_a"]),
             helper.make_node("Gemm", ["ln_a", "wt"], ["ya"], transB=1),
             helper.make_node("LayerNormalization", ["x", "sc", "bi"], ["ln_b"]),
             helper.make_node("MatMul", ["ln_b", "wm"], ["yb"]),
             helper.make_node("LayerNormalization", ["x", "sc0", "bi0"], ["ln_c"], axis=0),
             helper.make_node("MatMul", ["ln_c", "wm2"], ["yc"]),
             helper.make_node("Mul", ["x", "x"], ["x2"]),
             helper.make_node("LayerNormalization", ["x2", "sc", "bi"], ["ln_d"]),
             helper.make_node("MatMul", ["ln_d", "wm2"], ["yd"])]
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("ya", "yb", "ln_b", "yc", "yd")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, c])], outs, inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path = tmp_path / "syn.onnx"
    onnx.save(m, str(path))
    return m, path, rng.normal(size=(32, 4, c)).astype(np.float32)


def test_fold_on_gemm_trans_b_shared_parameters_and_what_is_left_alone(tmp_path):
    from focalnet_edge.folder.onnx_io import ort_session

    m, path, xs = _synthetic(tmp_path)
    found = smoothable(m)
    # ln_b is also a graph output (folding would change it), ln_c normalises axis 0: both left alone
    assert set(found) == {"ln_a", "ln_d"}
    absmax = {}
    for x in xs:
        got = channel_absmax(path, x, list(found), batch=4)
        absmax = {k: np.maximum(absmax.get(k, 0), v) for k, v in got.items()}
    scales = smoothing_scales(m, absmax, 0.5)
    assert scales["ln_a"][2] > np.median(scales["ln_a"])  # the outlier channel gets the largest factor
    smoothed = apply_smoothing(m, scales)
    names = [i.name for i in smoothed.graph.initializer]
    assert len(names) == len(set(names))  # shared sc/bi copied under unique names
    a, b = ort_session(m), ort_session(smoothed)
    for x in xs[:4]:
        want, got = a.run(None, {"x": x}), b.run(None, {"x": x})
        for w, g in zip(want, got):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_calibrate_writes_the_cache_it_is_told_to_in_its_own_folder(tmp_path, capsys, monkeypatch):
    """`calibrate out/model.onnx --calib-cache out/calibration.json` (the help's example): written, then reused."""
    from focalnet_edge.cli import main

    out = tmp_path / "out"
    assert main(["build", "--model", "demo", "--precision", "fp32", "--output", str(out), "--quiet"]) == 0
    cache = out / "calibration.json"
    args = ["calibrate", str(out / "model.onnx"), "--precision", "int8", "--no-cpu-int8", "--calib-data", "demo",
            "--calib-cache", str(cache), "--quiet"]
    assert main(args) == 0
    doc = json.loads(cache.read_text())
    assert doc["smoothing"]["alpha"] == 0.5 and doc["smoothing"]["scales"]
    first = onnx.load(str(out / "model.int8.onnx"))
    import focalnet_edge.calibration.smoothing as smoothing

    monkeypatch.setattr(smoothing, "channel_absmax", lambda *a, **k: pytest.fail("channels measured again"))
    assert main(args) == 0
    again = onnx.load(str(out / "model.int8.onnx"))
    assert [i.raw_data for i in first.graph.initializer] == [i.raw_data for i in again.graph.initializer]
    assert not list(out.glob(".*.partial"))

    # without images for the gate: one line, and the folder's cache is not touched
    other = tmp_path / "other.json"
    other.write_text(cache.read_text().replace('"method": "max"', '"method": "percentile"'))
    before = cache.read_bytes()
    capsys.readouterr()
    assert main(["calibrate", str(out / "model.onnx"), "--precision", "int8", "--calib-cache", str(other), "--quiet"]) == 2
    assert "held-back images" in capsys.readouterr().err and cache.read_bytes() == before
