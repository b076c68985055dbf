"""The exported graph changes layout only around the depth-wise convolutions (issue 25).

The reference is ONNX Runtime's own CPU graph after its optimizations (what it runs): the focal
modulation gates channels-last, so the only layout changes left are the reorders into and out
of ONNX Runtime's blocked NCHWc format around the convolutions, no Transpose.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from focalnet_edge.model import FocalNetConfig, FocalNetForImageClassification, load_checkpoint
from focalnet_edge.model.layers import PointwiseConv
from helpers import perturb_, small_config_dict


def test_pointwise_conv_is_the_1x1_convolution_applied_channels_last():
    torch.manual_seed(0)
    conv = perturb_(PointwiseConv(16, 24, kernel_size=1))
    x = torch.randn(2, 5, 7, 16)
    expected = F.conv2d(x.permute(0, 3, 1, 2), conv.weight, conv.bias).permute(0, 2, 3, 1)
    with torch.no_grad():
        assert torch.allclose(conv(x), expected, atol=1e-6)
    assert set(conv.state_dict()) == {"weight", "bias"} and conv.weight.shape == (24, 16, 1, 1)


def test_onnx_runtime_cpu_graph_has_no_transpose_and_one_reorder_in_per_block(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from focalnet_edge.export import export_onnx

    # channels multiples of 16, so ONNX Runtime's NCHWc kernels (8 or 16 wide) take every convolution
    cfg = small_config_dict(embed_dim=16, hidden_sizes=[16, 32, 64, 128], focal_levels=[2, 2, 2, 2])
    perturb_(FocalNetForImageClassification(FocalNetConfig(**cfg))).save_pretrained(tmp_path / "ckpt")
    export_onnx(load_checkpoint(tmp_path / "ckpt"), tmp_path / "model.onnx")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), so, providers=["CPUExecutionProvider"])
    ops = Counter(n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node)
    if not ops["ReorderInput"]:
        pytest.skip("this CPU has no NCHWc kernels in ONNX Runtime")
    blocks, downsamples, levels = sum(cfg["depths"]), len(cfg["depths"]) - 1, 2
    assert ops["Transpose"] == 0, ops
    assert ops["ReorderInput"] == blocks + downsamples, ops  # the context into its convolutions; each downsampling
    # each level out (gated channels-last), the global average (one value per channel), the stem and each downsampling
    assert ops["ReorderOutput"] == blocks * (levels + 1) + 1 + downsamples, ops
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    model = FocalNetForImageClassification.from_pretrained(tmp_path / "ckpt").eval()
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).logits.numpy()
    assert np.abs(session.run(None, {"pixel_values": x})[0] - expected).max() <= 1e-4


def test_every_matmul_reads_its_weight_as_an_initializer_even_unsimplified(tmp_path):
    from focalnet_edge.export import export_onnx

    perturb_(FocalNetForImageClassification(FocalNetConfig(**small_config_dict()))).save_pretrained(tmp_path / "ckpt")
    export_onnx(load_checkpoint(tmp_path / "ckpt"), tmp_path / "model.onnx", simplifier="none")
    graph = onnx.load(str(tmp_path / "model.onnx")).graph
    inits = {i.name: i for i in graph.initializer}
    matmuls = [n for n in graph.node if n.op_type == "MatMul"]
    assert len(matmuls) == 5 * sum(small_config_dict()["depths"])  # projection_in, projection_context, projection_out, fc1, fc2
    assert all(n.input[1] in inits and len(inits[n.input[1]].dims) == 2 for n in matmuls)
