"""`save_onnx` against onnx's own reader, on whatever protobuf is installed.

`save_onnx` writes through onnx's serializer and external-data helpers (`onnx_write`). onnx
(protobuf's parser) is the reference: what it reads back must equal the model, every kind of
field included (scalars, enums, repeated scalars and messages, nested messages, metadata,
functions, external tensors copied in), and the data file keeps the layout ONNX Runtime maps.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from google.protobuf import __version__ as protobuf_version
from onnx import TensorProto, helper, numpy_helper

from focalnet_edge.folder.onnx_io import save_onnx


def _model_with_every_kind_of_field() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 4)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    big = numpy_helper.from_array(rng.standard_normal((64, 64)).astype(np.float32), "big")
    shape = numpy_helper.from_array(np.array([1, 4], dtype=np.int64), "shape")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["y0"], name="mm", doc_string="a node's doc"),
        helper.make_node("Add", ["y0", "b"], ["y1"], name="add"),
        helper.make_node("Reshape", ["y1", "shape"], ["y2"], name="reshape"),
        helper.make_node("ReduceSum", ["big"], ["s"], name="sum", keepdims=0),
        helper.make_node("Local", ["y2"], ["y"], name="call", domain="local.fn"),
    ]
    fn = helper.make_function("local.fn", "Local", ["a"], ["o"], [helper.make_node("Relu", ["a"], ["o"])],
                              [helper.make_opsetid("", 17)])
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4]), helper.make_tensor_value_info("s", TensorProto.FLOAT, [])],
        initializer=[w, b, big, shape],
        doc_string="the graph's doc",
        value_info=[helper.make_tensor_value_info("y0", TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local.fn", 1)],
                              functions=[fn], producer_name="focalnet-edge-test", producer_version="1", doc_string="doc",
                              model_version=7)
    model.ir_version = 8
    helper.set_model_props(model, {"focalnet_edge.input": '{"name": "x"}', "other": "kept"})
    return model


def test_streamed_writer_reads_back_as_the_model(tmp_path):
    model = _model_with_every_kind_of_field()
    expected = onnx.ModelProto()
    expected.CopyFrom(model)
    save_onnx(model, tmp_path / "m.onnx", external=False)
    back = onnx.load(str(tmp_path / "m.onnx"))
    assert back == expected, f"protobuf {protobuf_version}: the streamed file reads back differently"
    onnx.checker.check_model(str(tmp_path / "m.onnx"), full_check=True)
    # and the same bytes' meaning as onnx's own writer
    onnx.save(expected, str(tmp_path / "ref.onnx"))
    assert onnx.load(str(tmp_path / "ref.onnx")) == back


@pytest.mark.parametrize("first", ["external", "inline"])
def test_external_and_inline_writes_agree(tmp_path, first):
    """external -> inline (tensors copied back in from the data file) and inline -> external give the same model."""
    model = _model_with_every_kind_of_field()
    expected = onnx.ModelProto()
    expected.CopyFrom(model)
    a, b = tmp_path / "a" / "m.onnx", tmp_path / "b" / "m.onnx"
    a.parent.mkdir()
    b.parent.mkdir()
    save_onnx(model, a, external=(first == "external"))
    graph = onnx.load(str(a), load_external_data=False)
    save_onnx(graph, b, external=(first != "external"), base_dir=a.parent)
    for path in (a, b):
        back = onnx.load(str(path))
        for t in back.graph.initializer:  # loaded data stays marked external: compare values
            t.data_location = TensorProto.DEFAULT
            del t.external_data[:]
        assert {t.name: numpy_helper.to_array(t).tobytes() for t in back.graph.initializer} == \
            {t.name: numpy_helper.to_array(t).tobytes() for t in expected.graph.initializer}
        del back.graph.initializer[:]
        shell = onnx.ModelProto()
        shell.CopyFrom(expected)
        del shell.graph.initializer[:]
        assert back == shell


def test_external_data_layout(tmp_path):
    """One data file beside the graph, every tensor at an offset aligned to 4096 (ONNX Runtime maps them), small
    tensors kept in the graph, mode by the umask; onnx's reader and ONNX Runtime agree on the values."""
    import onnxruntime as ort

    model = _model_with_every_kind_of_field()
    expected = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    data = save_onnx(model, tmp_path / "m.onnx", external=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]
    graph = onnx.load(str(tmp_path / "m.onnx"), load_external_data=False)
    external = {t.name: {e.key: e.value for e in t.external_data} for t in graph.graph.initializer
                if t.data_location == TensorProto.EXTERNAL}
    assert set(external) == {"big"}  # w, b and shape are under 1024 bytes: in the graph
    blob = data.read_bytes()
    for name, info in external.items():
        offset, length = int(info["offset"]), int(info["length"])
        assert info["location"] == "m.onnx.data" and offset % 4096 == 0
        assert blob[offset:offset + length] == expected[name].tobytes()
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "m.onnx").stat().st_mode & 0o777 == data.stat().st_mode & 0o777 == 0o666 & ~mask
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (s,) = [o for o, out in zip(session.run(None, {"x": np.ones((1, 4), np.float32)}), session.get_outputs()) if out.name == "s"]
    np.testing.assert_allclose(s, expected["big"].sum(), rtol=1e-5)
