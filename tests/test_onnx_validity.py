"""Every ONNX file focalnet-edge writes is valid ONNX for every consumer, not just ONNX Runtime (issue 27).

The independent references: onnx's own checker with `full_check` (which also runs strict shape
inference), `onnx.shape_inference.infer_shapes(strict_mode=True)` on its own, and Polygraphy's
`polygraphy check lint` (its JSON report). Run over every precision and every export option that
changes the graph, on the demo model (seconds each), and on the DeepStream graph.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import helper

from focalnet_edge.folder import artifacts
from focalnet_edge.folder.manifest import write_manifest
from focalnet_edge.folder.onnx_io import EXTERNAL_DATA_ENV, save_onnx, sort_nodes
from focalnet_edge.pipeline import ExportOptions, PrecisionOptions, export_stage, precision_stage

#: one row per export option that changes the graph: (export options, precisions built, precision options)
BUILDS = {
    "default": (ExportOptions(), ("best", "fp8"), {}),
    "fused_preprocess": (ExportOptions(fuse_preprocess=True), ("best",), {}),
    "fused_nchw_float_bgr": (ExportOptions(fuse_preprocess=True, layout="NCHW", frames_dtype="float32", color_order="BGR"), ("fp16",), {}),
    "any_size_frames": (ExportOptions(fuse_preprocess=True, frame_size="any"), ("best",), {}),
    "dynamic_size": (ExportOptions(dynamic_size=True), ("fp16",), {}),
    # every stage that runs the graph (fp16 probe, int8 calibration, gate) feeds a static batch exactly its size
    "static_batch": (ExportOptions(dynamic_batch=False, batch=(1, 4, 4)), ("best",), {}),
    "fp16_io": (ExportOptions(head="probs"), ("fp16",), {"keep_io_types": False}),
    "int8_float_fp32": (ExportOptions(), ("int8",), {"int8_float": "fp32"}),
    "features_head": (ExportOptions(head="features", out_features=["stage2", "stage4"]), ("fp16",), {}),
    "external_data": (ExportOptions(), ("best",), {"external": True}),
}


def _build(folder: Path, ckpt, row: str, monkeypatch) -> Path:
    export, precisions, extra = BUILDS[row]
    extra = dict(extra)
    if extra.pop("external", False):
        monkeypatch.setenv(EXTERNAL_DATA_ENV, "always")
    _, manifest = export_stage(ckpt, folder, export)
    for precision in precisions:
        precision_stage(folder, folder / artifacts.FP32_ONNX, precision, PrecisionOptions(calib_size=32, **extra), manifest, is_demo=True)
    write_manifest(folder, manifest)
    return folder


def problems(path: Path) -> list[str]:
    """What onnx's checker (full) and strict shape inference say about the file `path` (empty: valid)."""
    found = []
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:  # ValidationError, InferenceError
        found.append(f"checker: {str(e).splitlines()[0][:300]}")
    try:
        onnx.shape_inference.infer_shapes(onnx.load(str(path), load_external_data=False), check_type=True, strict_mode=True, data_prop=True)
    except Exception as e:
        found.append(f"strict shape inference: {' '.join(str(e).split())[:300]}")
    return found


def lint(path: Path, tmp_path: Path) -> list[dict]:
    """The entries of `polygraphy check lint` at level error or exception (its report, written with -o)."""
    report = tmp_path / f"{path.name}.lint.json"
    polygraphy = Path(sys.executable).with_name("polygraphy")
    cmd = [str(polygraphy)] if polygraphy.is_file() else [sys.executable, "-c", "import sys; from polygraphy.tools import main; sys.exit(main())"]
    r = subprocess.run([*cmd, "check", "lint", str(path), "-o", str(report)], capture_output=True, text=True, timeout=300)
    assert report.is_file(), f"polygraphy check lint wrote no report: {r.stdout[-2000:]}{r.stderr[-2000:]}"
    entries = json.loads(report.read_text())["lint_entries"]
    assert r.returncode == 0 or entries, r.stdout[-2000:]
    return [e for e in entries if e["level"] in ("exception", "error")]


@pytest.mark.parametrize("row", list(BUILDS))
def test_every_file_a_build_writes_is_valid_onnx(row, tmp_path, demo_ckpt, monkeypatch):
    folder = _build(tmp_path / "out", demo_ckpt, row, monkeypatch)
    files = sorted(folder.glob("*.onnx"))
    wanted = {artifacts.FP32_ONNX} | {artifacts.PRECISIONS[w].onnx for p in BUILDS[row][1] for w in artifacts.build_precisions(p)}
    assert {f.name for f in files} == wanted
    if row == "external_data":
        assert all(f.with_name(f.name + ".data").is_file() for f in files)
    assert {f.name: problems(f) for f in files} == {f.name: [] for f in files}


def test_every_precision_passes_polygraphy_lint(tmp_path, demo_ckpt, monkeypatch):
    folder = _build(tmp_path / "out", demo_ckpt, "default", monkeypatch)
    files = sorted(folder.glob("*.onnx"))
    assert {f.name for f in files} == {p.onnx for p in artifacts.PRECISIONS.values()}  # every row of the precision table
    assert {f.name: lint(f, tmp_path) for f in files} == {f.name: [] for f in files}


@pytest.mark.parametrize("row", ["default", "fused_nchw_float_bgr"])
def test_the_deepstream_graph_is_valid_onnx(row, tmp_path, demo_ckpt, monkeypatch):
    from focalnet_edge.deploy.deepstream import DeepStreamOptions, deploy

    folder = _build(tmp_path / "out", demo_ckpt, row, monkeypatch)
    graphs = sorted(deploy(folder, DeepStreamOptions(precision="fp16")).glob("*.onnx"))
    assert graphs, "deploy wrote no DeepStream graph"
    assert {g.name: problems(g) for g in graphs} == {g.name: [] for g in graphs}
    assert {g.name: lint(g, tmp_path) for g in graphs} == {g.name: [] for g in graphs}


def test_save_onnx_sorts_what_a_tool_appended(tmp_path):
    """A node appended after its consumer (as float16 conversion and the quantizers do) is written before it."""
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    nodes = [helper.make_node("Relu", ["a"], ["y"], name="consumer"), helper.make_node("Neg", ["x"], ["a"], name="producer"),
             helper.make_node("Abs", ["x"], ["unused"], name="independent")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(onnx.checker.ValidationError, match="topologically sorted"):
        onnx.checker.check_model(model)
    save_onnx(model, tmp_path / "m.onnx")
    assert [n.name for n in onnx.load(str(tmp_path / "m.onnx")).graph.node] == ["producer", "consumer", "independent"]
    assert problems(tmp_path / "m.onnx") == []
    assert sort_nodes(model.graph) == 0  # sorted already: nothing moves


def test_sort_nodes_orders_what_subgraphs_read_from_outside():
    """An If whose branch reads a tensor of the outer graph comes after that tensor's producer."""
    c = helper.make_tensor_value_info("c", onnx.TensorProto.BOOL, [])
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])
    out = helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, [2])
    branch = helper.make_graph([helper.make_node("Identity", ["a"], ["b"])], "branch", [], [out])
    nodes = [helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch, name="if"),
             helper.make_node("Neg", ["x"], ["a"], name="producer")]
    model = helper.make_model(helper.make_graph(nodes, "g", [c, x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    assert sort_nodes(model.graph) == 2
    assert [n.name for n in model.graph.node] == ["producer", "if"]
    onnx.checker.check_model(model, full_check=True)


def test_polygraphy_lint_catches_an_unsorted_file(tmp_path):
    """The lint helper above is not blind: a file written unsorted (bypassing save_onnx) is reported."""
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    nodes = [helper.make_node("Relu", ["a"], ["y"]), helper.make_node("Neg", ["x"], ["a"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "unsorted.onnx"))
    assert problems(tmp_path / "unsorted.onnx")
    assert lint(tmp_path / "unsorted.onnx", tmp_path)


def test_a_foreign_unsorted_file_is_adopted_sorted(tmp_path, demo_ckpt, monkeypatch):
    """`calibrate FILE` on another tool's fp32 file whose nodes are out of order: every file in the folder is valid."""
    from focalnet_edge.cli import main

    export_stage(demo_ckpt, tmp_path / "src", ExportOptions())
    model = onnx.load(str(tmp_path / "src" / "model.onnx"))
    del model.metadata_props[:]  # another exporter's file: no focalnet-edge metadata
    first = model.graph.node[0]
    model.graph.node.remove(first)
    model.graph.node.append(first)
    onnx.save(model, str(tmp_path / "foreign.onnx"))
    assert problems(tmp_path / "foreign.onnx")
    assert main(["-q", "calibrate", str(tmp_path / "foreign.onnx"), "--precision", "fp16", "--output", str(tmp_path / "out")]) == 0
    files = sorted((tmp_path / "out").glob("*.onnx"))
    assert [f.name for f in files] == ["model.fp16.onnx", "model.onnx"]
    assert {f.name: problems(f) for f in files} == {f.name: [] for f in files}
