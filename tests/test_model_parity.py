"""Our FocalNet against transformers' FocalNet, same weights: every head, every switch, several sizes."""

from __future__ import annotations

import pytest
import torch

from helpers import SWITCHES, hf_twin

pytest.importorskip("transformers")

TOL = 1e-5
SIZES = [(1, 64, 64), (3, 96, 64)]


def maxdiff(a, b) -> float:
    return (a - b).abs().max().item()


def assert_hidden_equal(ref, out):
    assert len(ref.hidden_states) == len(out.hidden_states)
    for a, b in zip(ref.hidden_states, out.hidden_states):
        assert a.shape == b.shape and maxdiff(a, b) <= TOL
    for a, b in zip(ref.reshaped_hidden_states, out.reshaped_hidden_states):
        assert a.shape == b.shape and maxdiff(a, b) <= TOL


@pytest.mark.parametrize("switch", SWITCHES)
@pytest.mark.parametrize("batch,height,width", SIZES)
def test_classification_and_base_model(switch, batch, height, width):
    x = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(1))
    hf, ours = hf_twin("FocalNetForImageClassification", **SWITCHES[switch])
    with torch.no_grad():
        ref, out = hf(x, output_hidden_states=True), ours(x, output_hidden_states=True)
    assert out.logits.shape == (batch, 7)
    assert maxdiff(ref.logits, out.logits) <= TOL
    assert_hidden_equal(ref, out)

    hf, ours = hf_twin("FocalNetModel", **SWITCHES[switch])
    with torch.no_grad():
        ref, out = hf(x, output_hidden_states=True), ours(x, output_hidden_states=True)
    assert maxdiff(ref.last_hidden_state, out.last_hidden_state) <= TOL
    assert maxdiff(ref.pooler_output, out.pooler_output) <= TOL
    assert_hidden_equal(ref, out)


@pytest.mark.parametrize("switch", SWITCHES)
def test_masked_image_modeling(switch):
    hf, ours = hf_twin("FocalNetForMaskedImageModeling", **SWITCHES[switch])
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 64, 64, generator=g)
    mask = torch.randint(0, 2, (2, 16 * 16), generator=g).bool()
    with torch.no_grad():
        ref, out = hf(x, bool_masked_pos=mask), ours(x, bool_masked_pos=mask)
        assert maxdiff(ref.reconstruction, out.reconstruction) <= TOL
        assert abs(ref.loss.item() - out.loss.item()) <= TOL
        # without a mask: no loss, and the mask token must not be used
        ref, out = hf(x), ours(x)
    assert out.loss is None
    assert maxdiff(ref.reconstruction, out.reconstruction) <= TOL


@pytest.mark.parametrize("out_features", [None, ["stem"], ["stage1", "stage3"], ["stem", "stage1", "stage2", "stage3", "stage4"]])
@pytest.mark.parametrize("switch", ["default", "conv_embed", "post_layernorm"])
def test_backbone_feature_maps(out_features, switch):
    hf, ours = hf_twin("FocalNetBackbone", out_features=out_features, **SWITCHES[switch])
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref, out = hf(x), ours(x)
    assert ours.out_features == hf.out_features
    assert ours.channels == list(hf.channels)
    assert len(ref.feature_maps) == len(out.feature_maps)
    for a, b in zip(ref.feature_maps, out.feature_maps):
        assert a.shape == b.shape and maxdiff(a, b) <= TOL


def test_tuple_outputs_match_transformers():
    hf, ours = hf_twin("FocalNetForImageClassification")
    x = torch.randn(2, 3, 64, 64)
    labels = torch.tensor([1, 4])
    with torch.no_grad():
        ref = hf(x, labels=labels, return_dict=False)
        out = ours(x, labels=labels, return_dict=False)
    assert len(ref) == len(out) == 2
    assert abs(ref[0].item() - out[0].item()) <= TOL  # the cross-entropy loss
    assert maxdiff(ref[1], out[1]) <= TOL


def test_focalnet_tiny_shape_at_224():
    """The real focalnet-tiny configuration (28M parameters) at 224, batch 2."""
    transformers = pytest.importorskip("transformers")
    from helpers import perturb_

    from focalnet_edge.model import FocalNetConfig, FocalNetForImageClassification
    from focalnet_edge.model.base import load_state_dict_strict

    hf = perturb_(transformers.FocalNetForImageClassification(transformers.FocalNetConfig(num_labels=1000)), scale=0.02)
    ours = FocalNetForImageClassification(FocalNetConfig(num_labels=1000))
    load_state_dict_strict(ours, hf.state_dict(), "hf")
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert maxdiff(hf(x).logits, ours.eval()(x).logits) <= TOL
