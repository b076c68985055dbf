"""The support table against onnx-tensorrt's own document (issue 9, item 9).

`tests/data/onnx-tensorrt-10.1-GA-operators.md` is docs/operators.md of onnx-tensorrt's 10.1 GA
release, unchanged. Its rows are read here with a separate, deliberately plain reading of the
Markdown table and compared with the table the package stores.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from onnx import TensorProto, helper

from focalnet_edge.engine.check import check_model, table_for

DOC = Path(__file__).parent / "data" / "onnx-tensorrt-10.1-GA-operators.md"
NAMES = {"FP32": "FLOAT", "FP16": "FLOAT16", "BF16": "BFLOAT16", "FP8": "FLOAT8E4M3FN"}


def _doc_rows() -> dict[str, tuple[bool, set[str]]]:
    rows = {}
    in_table = False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("| Operator"):
            in_table = True
            continue
        if not in_table or not line.startswith("|") or line.startswith("|--"):
            continue
        parts = line.split("|")
        op, flag = parts[1].strip(), parts[2].strip()
        types = {NAMES.get(t.strip(), t.strip()) for t in parts[3].split(",") if t.strip()} if len(parts) > 3 else set()
        rows[op] = (flag == "Y", types)
    return rows


def test_the_stored_table_is_the_documents():
    release, table = table_for("10.3.0")
    assert release == "10.1-GA" and table["opsets"] == [9, 20]
    rows = _doc_rows()
    assert len(rows) > 150
    stored = table["operators"]
    assert set(stored) == set(rows)
    for op, (supported, types) in rows.items():
        assert stored[op]["supported"] == supported, op
        assert set(stored[op]["types"]) == types, op


def _one(op, in_type, out_type=None, inputs=None, inits=(), opset=17, **attrs):
    x = helper.make_tensor_value_info("x", in_type, [2, 4])
    extra = [helper.make_tensor_value_info(n, t, s) for n, t, s in (inputs or [])]
    y = helper.make_tensor_value_info("y", out_type or in_type, None)
    node = helper.make_node(op, ["x"] + [n for n, _, _ in (inputs or [])] + [i.name for i in inits], ["y"], name="n", **attrs)
    graph = helper.make_graph([node], "g", [x] + extra, [y], list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _errors(model):
    return [f for f in check_model(model) if f.severity == "error"]


@pytest.mark.parametrize("model", [
    _one("NonZero", TensorProto.FLOAT, TensorProto.INT64),
    _one("Mod", TensorProto.INT32, inputs=[("b", TensorProto.INT32, [2, 4])]),
    helper.make_model(helper.make_graph(
        [helper.make_node("RoiAlign", ["x", "rois", "idx"], ["y"], name="r")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8]), helper.make_tensor_value_info("rois", TensorProto.FLOAT, [2, 4]),
         helper.make_tensor_value_info("idx", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]), opset_imports=[helper.make_opsetid("", 17)]),
], ids=["NonZero", "Mod", "RoiAlign"])
def test_operators_the_document_supports_pass(model):
    assert _errors(model) == []  # the old hand-written table refused all three


def test_types_the_document_does_not_list_are_refused():
    clip = _one("Clip", TensorProto.INT32)
    assert any("TensorRT's Clip takes FLOAT, FLOAT16, BFLOAT16" in f.message for f in _errors(clip))
    pad = _one("Pad", TensorProto.BOOL, inits=[helper.make_tensor("pads", TensorProto.INT64, [4], [0, 1, 0, 1])])
    assert any("TensorRT's Pad takes" in f.message for f in _errors(pad))
    assert _errors(_one("Clip", TensorProto.FLOAT)) == []


def test_slice_axes_are_its_fourth_input_not_its_starts():
    """`axes` must be an initializer; Slice's dynamic starts (input 1) are fine."""
    starts = ("starts", TensorProto.INT64, [1])
    ends = helper.make_tensor("ends", TensorProto.INT64, [1], [2])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    ok = _one("Slice", TensorProto.FLOAT, inputs=[starts], inits=[ends, axes])
    assert _errors(ok) == []
    dynamic_axes = _one("Slice", TensorProto.FLOAT, inputs=[starts, ("ends", TensorProto.INT64, [1]), ("axes", TensorProto.INT64, [1])])
    assert [f.message for f in _errors(dynamic_axes)] == ["axes must be an initializer"]
