"""The model package's structure: lazy imports without torch, no import cycle, weights initialised once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import small_config_dict
from focalnet_edge.model import FocalNetConfig, FocalNetForImageClassification, load_model
from focalnet_edge.model import base

ROOT = Path(__file__).resolve().parent.parent


def _run(code: str) -> None:
    """Run `code` in a fresh interpreter on this checkout; fail with its stderr."""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]


def test_import_focalnet_edge_does_not_import_torch():
    # nor does the demo's run-time module, or reading a config or a preprocessing spec
    _run("import sys, focalnet_edge; assert 'torch' not in sys.modules;"
         "import focalnet_edge.demo; from focalnet_edge.model import FocalNetConfig, ImageSpec; FocalNetConfig();"
         "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)[:5]")


def test_every_public_name_resolves():
    import focalnet_edge
    import focalnet_edge.model as model

    for module in (focalnet_edge, model):
        for name in module.__all__:
            assert getattr(module, name) is not None, (module.__name__, name)
    assert model.load_model is base.load_model
    assert focalnet_edge.FocalNetForImageClassification is model.FocalNetForImageClassification
    with pytest.raises(AttributeError):
        model.no_such_name  # noqa: B018


def test_layers_import_only_downwards():
    """weights (checkpoint reading) knows no model class; base knows no concrete model; the
    registry still finds a model class by name when only base was imported."""
    _run("import sys, focalnet_edge.model.weights;"
         "bad = [m for m in ('focalnet_edge.model.base', 'focalnet_edge.model.modeling') if m in sys.modules];"
         "assert not bad, bad;"
         "import focalnet_edge.model.base as base; assert 'focalnet_edge.model.modeling' not in sys.modules;"
         "assert base.model_class('FocalNetBackbone').__name__ == 'FocalNetBackbone'")


def test_unknown_architecture_is_a_checkpoint_error():
    from focalnet_edge.errors import CheckpointError

    with pytest.raises(CheckpointError, match="unknown FocalNet architecture 'FocalNetForVideo'"):
        base.model_class("FocalNetForVideo")


@pytest.fixture
def count_init(monkeypatch):
    calls = []
    original = base.FocalNetPreTrainedModel.init_weights

    def counting(self):
        calls.append(type(self).__name__)
        original(self)

    monkeypatch.setattr(base.FocalNetPreTrainedModel, "init_weights", counting)
    return calls


def test_weights_are_initialised_once_and_not_at_all_for_loading(tmp_path, count_init):
    config = FocalNetConfig(**small_config_dict(use_layerscale=True, layerscale_value=0.25))
    model = FocalNetForImageClassification(config)
    assert count_init == ["FocalNetForImageClassification"]  # not once more for the inner FocalNetModel
    # transformers' initialisation: unit LayerNorms, zero biases, normal(0, 0.02) weights, layer scale
    enc = model.focalnet.encoder.stages[0].layers[0]
    assert torch.equal(enc.norm1.weight, torch.ones_like(enc.norm1.weight))
    assert torch.equal(enc.mlp.fc1.bias, torch.zeros_like(enc.mlp.fc1.bias))
    assert torch.equal(enc.gamma_1, torch.full_like(enc.gamma_1, 0.25))
    weights = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))])
    assert abs(weights.std().item() - config.initializer_range) < 0.002

    count_init.clear()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    model.save_pretrained(tmp_path)
    loaded = load_model(tmp_path)
    assert count_init == []
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
        assert b.device.type == "cpu", name
    assert all(p.requires_grad for p in loaded.parameters())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.eval()(x).logits, loaded(x).logits)
