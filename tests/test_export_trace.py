"""export/trace.py: the graph traced alone, its weights written from the module, against torch's own export with them.

The reference is torch.onnx.export with its weights and constant folding (what export did
before): the traced graph must have the same nodes in the same order and give the same
outputs on ONNX Runtime; every weight sits in the data file, Linear weights transposed.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from focalnet_edge.export.heads import FusedPreprocess, build_head
from focalnet_edge.export.trace import dynamic_axes, trace
from focalnet_edge.folder.contract import InputContract


def _contract(fused: bool) -> InputContract:
    return InputContract(name="frames" if fused else "pixel_values", dtype="uint8" if fused else "float32",
                         layout="NHWC" if fused else "NCHW", color_order="RGB", height=64, width=64, size_multiple=32,
                         dynamic_batch=True, dynamic_size=False, batch=(1, 1, 8), fused_preprocess=fused, preprocessing={})


@pytest.mark.parametrize("fused", [False, True])
def test_trace_matches_torch_export_with_weights(tmp_path, demo_ckpt, fused):
    module = build_head(demo_ckpt, "logits")
    if fused:
        module = FusedPreprocess(module, [0.5] * 3, [0.25] * 3, 1 / 255, "NHWC", "RGB")
    module.eval()
    contract = _contract(fused)
    x = (np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3)).astype(np.uint8) if fused
         else np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32))
    ours, ref = tmp_path / "ours" / "raw.onnx", tmp_path / "ref" / "raw.onnx"
    ours.parent.mkdir()
    ref.parent.mkdir()
    trace(module, contract, 17, "logits", x, ours)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.from_numpy(x),), str(ref), input_names=[contract.name], output_names=["logits"],
                          dynamic_axes=dynamic_axes(contract, ["logits"], "logits"), opset_version=17,
                          do_constant_folding=True, dynamo=False)
    a, b = onnx.load(str(ours), load_external_data=False), onnx.load(str(ref))
    assert [n.op_type for n in a.graph.node] == [n.op_type for n in b.graph.node]
    assert "Transpose" not in {n.op_type for n in a.graph.node if set(n.input) & {t.name for t in a.graph.initializer}}
    assert [i.name for i in a.graph.input] == [contract.name]  # the weights are initializers, not inputs
    assert sorted(p.name for p in ours.parent.iterdir()) == ["raw.onnx", "raw.onnx.data"]
    big = [t for t in a.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert sum(int({e.key: e.value for e in t.external_data}["length"]) for t in big) > 0.9 * sum(
        p.numel() * 4 for p in module.parameters())
    onnx.checker.check_model(str(ours), full_check=True)
    runs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {contract.name: x})[0] for p in (ours, ref)]
    np.testing.assert_array_equal(runs[0], runs[1])
    with torch.no_grad():
        np.testing.assert_allclose(runs[0], module(torch.from_numpy(x))[0].numpy(), atol=1e-4)
