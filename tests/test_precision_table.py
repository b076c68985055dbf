"""The precision table (`folder/artifacts.py`), tested row by row: a new row is tested without a new test.

References: `choose_artifact` (the one chooser every consumer uses), onnx.checker and the graph's own
Q/DQ zero points (read with onnx's numpy_helper), DeepStream's NvDsInferNetworkMode enum
(nvdsinfer.h: FP32 0, INT8 1, FP16 2), TensorRT's builder flags as the fake TensorRT records them.
"""

from __future__ import annotations

import onnx
import pytest
from onnx import numpy_helper
from test_engine import _config, _flags, fake_trt  # noqa: F401 - fake_trt: the fixture, used by name

from focalnet_edge.calibration import build_int8, compute_ranges, load_calibration_data
from focalnet_edge.folder import artifacts
from focalnet_edge.folder.onnx_io import read_contract, read_metadata
from focalnet_edge.pipeline import ExportOptions, export_stage
from focalnet_edge.runtime.choose import choose_artifact

ROWS = list(artifacts.PRECISIONS.values())
QUANTIZED = [r for r in ROWS if r.quantized]
#: nvdsinfer.h's NvDsInferNetworkMode, by the name of the type the engine computes in
NV_DS_INFER_NETWORK_MODE = {"FP32": 0, "INT8": 1, "FP16": 2}
#: ONNX's element type names of the numpy dtypes a Q/DQ zero point has
ZERO_POINT_TYPES = {"int8": "INT8", "uint8": "UINT8", "float8_e4m3fn": "FLOAT8E4M3FN"}


def _entry(row: artifacts.Precision, path: str, fmt: str) -> dict:
    return {"path": path, "precision": row.name, "format": fmt, "verification": {"passed": True}}


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_each_rows_files_round_trip_through_choose_artifact(row):
    entries = {row.onnx: _entry(row, row.onnx, artifacts.ONNX)}
    if row.engine:
        entries[row.engine] = _entry(row, row.engine, artifacts.TENSORRT_PLAN)
    others = {r.onnx: _entry(r, r.onnx, artifacts.ONNX) for r in ROWS if r is not row}
    manifest = {"artifacts": {**others, **entries}}
    everywhere = lambda entry: None  # noqa: E731 - a consumer that runs everything
    assert choose_artifact(manifest, row.onnx, runs=everywhere, gpu=False)["path"] == row.onnx
    # by precision: its engine on a GPU where it has one, its ONNX file on a CPU
    assert choose_artifact(manifest, row.name, runs=everywhere, gpu=False)["path"] == (row.engine or row.onnx)
    no_engines = lambda entry: "no TensorRT" if artifacts.is_engine(entry) else None  # noqa: E731
    assert choose_artifact(manifest, row.name, runs=no_engines, gpu=False)["path"] == row.onnx
    if row.engine:
        assert artifacts.ENGINE_SOURCES[row.onnx] == row.engine and artifacts.BY_ONNX[row.onnx] is row


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_each_row_is_made_by_a_stage_a_build_choice_reaches(row):
    reached = {p for choice in artifacts.BUILD_PRECISIONS for p in artifacts.build_precisions(choice)}
    assert row.stage in (artifacts.EXPORT, artifacts.FP16, artifacts.QUANTIZE)
    assert (row.name in reached) == (row.stage != artifacts.EXPORT)  # fp32 is always written, the others when asked
    choices = [c for c in artifacts.BUILD_PRECISIONS if row.name in artifacts.build_precisions(c)]
    assert not row.quantized or all(artifacts.quantizes(c) for c in choices)  # calibration images are asked for
    if row.quantized:
        form = artifacts.QUANT_FORMS[row.form]
        assert row.qtype in artifacts.QTYPES and set(form.ops) <= {"Conv", "MatMul", "Gemm"}
        assert artifacts.quantized_precision(row.form, row.qtype) is row


@pytest.mark.parametrize("row", [r for r in ROWS if r.network_mode is not None], ids=lambda r: r.name)
def test_each_nvinfer_row_has_deepstreams_network_mode(row):
    assert row.network_mode == NV_DS_INFER_NETWORK_MODE[row.name.upper()]
    assert row.name in artifacts.NVINFER_PRECISIONS


@pytest.fixture(scope="module")
def demo_graph(tmp_path_factory, demo_ckpt):
    out = tmp_path_factory.mktemp("table")
    export_stage(demo_ckpt, out, ExportOptions())
    path = out / "model.onnx"
    contract, _ = read_contract(onnx.load(str(path)), path)
    cal, hold = load_calibration_data("demo", contract, 48).split()
    return path, cal, hold, compute_ranges(path, cal.inputs, "max")


@pytest.mark.parametrize("row", QUANTIZED, ids=lambda r: r.name)
def test_each_quantizing_row_builds_a_valid_graph_of_its_qdq_types(row, demo_graph, tmp_path):
    path, cal, hold, ranges = demo_graph
    form = artifacts.QUANT_FORMS[row.form]
    result = build_int8(path, tmp_path / row.onnx, ranges, hold.inputs, form.name, qtype=row.qtype,
                        float_type=form.float_parts or "fp16", calibration_inputs=cal.inputs, run_gate=False)
    model = onnx.load(str(result.path))
    onnx.checker.check_model(model, full_check=True)
    assert read_metadata(model)["precision"] == row.name
    inits = {i.name: i for i in model.graph.initializer}
    zero_points = {n.input[2] for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2}
    types = {ZERO_POINT_TYPES[numpy_helper.to_array(inits[z]).dtype.name] for z in zero_points}
    assert types == artifacts.qdq_types(row)
    producer = {o: n for n in model.graph.node for o in n.output}
    readers = {n.op_type for n in model.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
               and any(i in producer and producer[i].op_type == "DequantizeLinear" for i in n.input)}
    assert readers and readers <= set(form.ops)  # the form's op types read the Q/DQ, nothing else


@pytest.mark.parametrize("row", [r for r in ROWS if r.engine], ids=lambda r: r.name)
def test_each_engine_row_sets_its_builder_flags(row, fake_trt):  # noqa: F811 - the fixture imported above
    """A weakly typed build sets the row's flags and clears the others; TF32 follows the row's column."""
    from focalnet_edge.engine.config import EngineOptions

    trt = fake_trt()
    weak = _flags(_config(trt, EngineOptions(weakly_typed=True), row.name)[0])
    strong = _flags(_config(trt, EngineOptions(), row.name)[0])
    assert weak & {"FP16", "INT8"} == {f.upper() for f in row.weak_flags}
    assert ("TF32" in strong) == row.tf32
