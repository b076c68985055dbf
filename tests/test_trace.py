"""Trace-friendliness: clean torch.jit.trace, torch.export with a dynamic batch, clear size errors."""

from __future__ import annotations

import warnings

import pytest
import torch

from helpers import SWITCHES, perturb_, small_config_dict
from focalnet_edge.errors import InputError
from focalnet_edge.model import FocalNetConfig, FocalNetForImageClassification


class LogitsOnly(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x, return_dict=False)[0]


def model_with(**switches):
    torch.manual_seed(0)
    return perturb_(FocalNetForImageClassification(FocalNetConfig(**small_config_dict(**switches))))


@pytest.mark.parametrize("switch", SWITCHES)
def test_jit_trace_has_no_tracer_warning_and_generalises_over_batch(switch):
    model = model_with(**SWITCHES[switch])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = torch.jit.trace(LogitsOnly(model), torch.randn(1, 3, 64, 64), check_trace=False)
    tracer_warnings = [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    assert tracer_warnings == [], [str(w.message) for w in tracer_warnings]
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        assert (traced(x) - model(x).logits).abs().max().item() <= 1e-5


def test_torch_export_with_dynamic_batch():
    model = model_with()
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(LogitsOnly(model), (torch.randn(2, 3, 64, 64),), dynamic_shapes=({0: batch},))
    x = torch.randn(5, 3, 64, 64)
    with torch.no_grad():
        assert (program.module()(x) - model(x).logits).abs().max().item() <= 1e-5


def test_torch_export_returns_output_objects():
    model = model_with()
    program = torch.export.export(model, (torch.randn(2, 3, 64, 64),))
    out = program.module()(torch.randn(2, 3, 64, 64))
    assert out.logits.shape == (2, 7)


def _graph_ops(model) -> list[str]:
    traced = torch.jit.trace(LogitsOnly(model), torch.randn(1, 3, 64, 64), check_trace=False)
    return [n.kind() for n in traced.inlined_graph.nodes()]


def test_unit_layerscale_and_zero_initialisers_are_no_graph_nodes():
    cfg = small_config_dict()
    blocks = sum(cfg["depths"])
    off = _graph_ops(model_with())
    on = _graph_ops(model_with(use_layerscale=True))
    # layer scale adds exactly its two multiplications per block, and nothing when off
    assert on.count("aten::mul") - off.count("aten::mul") == 2 * blocks
    # no shape arithmetic or control flow in the graph
    for op in ("aten::size", "aten::view", "aten::reshape", "prim::If", "prim::Loop", "aten::zeros"):
        assert op not in off, op


@pytest.mark.parametrize("height,width", [(225, 224), (224, 100), (16, 16)])
def test_sizes_an_any_size_graph_cannot_take_are_a_clear_error(height, width):
    """Eager models pad (as transformers does); a graph exported for any size has no padding in it."""
    model = model_with()
    with pytest.raises(InputError, match=r"multiples of 32") as err:
        model.check_input_size(height, width)
    assert str(height if height % 32 or height < 32 else width) in str(err.value)


def test_wrong_channel_count_is_a_clear_error():
    with pytest.raises(InputError, match=r"\(batch, 3, height, width\)"):
        model_with()(torch.randn(1, 4, 64, 64))


def test_check_input_size_accepts_every_multiple_of_the_stride():
    model = model_with()
    for size in (32, 64, 96, 224, 256, 384):
        model.check_input_size(size, size)
