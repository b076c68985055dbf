"""Code written for transformers' FocalNet runs unchanged on ours: each behaviour against transformers' class.

Config (unknown and common kwargs, save/load), config switches at forward time, from_pretrained's
keywords and loading rules, padding of any input size (eager, traced, exported), the backbone's
attributes, gradient checkpointing, get_input_embeddings and torch.jit.trace(strict=False).
"""

from __future__ import annotations

import collections
import json
import logging
import warnings

import numpy as np
import pytest
import torch

from helpers import hf_twin, perturb_, small_config_dict
from focalnet_edge.errors import InputError, LoadError
from focalnet_edge.model import FocalNetBackbone, FocalNetConfig, FocalNetForImageClassification, FocalNetModel, modeling

transformers = pytest.importorskip("transformers")

TOL = 1e-5


def maxdiff(a, b) -> float:
    return (a - b).abs().max().item()


def both_configs(**kw):
    return FocalNetConfig(**small_config_dict(**kw)), transformers.FocalNetConfig(**small_config_dict(**kw))


# -- config ---------------------------------------------------------------------------------------
COMMON = dict(num_heads=[2, 2, 4], window_size=2, path_norm=True, output_hidden_states=True, return_dict=False,
              num_labels=3, torch_dtype="float16", chunk_size_feed_forward=5, problem_type="regression",
              architectures=["FocalNetForImageClassification"])


def test_config_keeps_unknown_kwargs_and_the_common_fields_as_transformers():
    ours, hf = both_configs(**COMMON)
    for name in ("num_heads", "window_size", "path_norm", "output_hidden_states", "return_dict", "num_labels",
                 "id2label", "label2id", "dtype", "chunk_size_feed_forward", "problem_type", "architectures"):
        assert getattr(ours, name) == getattr(hf, name), name
    assert ours.dtype == torch.float16 and ours.model_type == type(ours).model_type == hf.model_type == "focalnet"
    want = hf.to_dict()
    got = ours.to_dict()
    assert {k: got.get(k) for k in want if k != "transformers_version"} == {k: v for k, v in want.items() if k != "transformers_version"}


def test_config_json_both_ways_keeps_unknown_fields(tmp_path):
    ours, hf = both_configs(**COMMON)
    ours.save_pretrained(tmp_path / "ours")
    hf.save_pretrained(tmp_path / "hf")
    from_ours = transformers.FocalNetConfig.from_pretrained(tmp_path / "ours")
    from_hf = FocalNetConfig.from_pretrained(tmp_path / "hf")
    for name in ("num_heads", "window_size", "return_dict", "output_hidden_states", "num_labels", "dtype", "depths"):
        assert getattr(from_ours, name) == getattr(hf, name) and getattr(from_hf, name) == getattr(ours, name), name
    # to_json_file writes, as transformers, only what differs from the defaults (use_diff=True)
    ours.to_json_file(tmp_path / "ours.json")
    hf.to_json_file(tmp_path / "hf.json")
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("ours.json", "hf.json"))
    b.pop("transformers_version")
    assert a == b
    # from_pretrained's keywords override fields, as in transformers
    assert FocalNetConfig.from_pretrained(tmp_path / "hf", num_labels=5).num_labels == 5
    assert transformers.FocalNetConfig.from_pretrained(tmp_path / "hf", num_labels=5).num_labels == 5


def test_a_missing_config_folder_is_an_oserror_as_in_transformers(tmp_path):
    for cls in (FocalNetConfig, transformers.FocalNetConfig):
        with pytest.raises(OSError):
            cls.from_pretrained(tmp_path / "nothing")


def test_num_labels_against_id2label_is_logged_and_applied_as_transformers(caplog):
    ours, hf = both_configs(id2label={0: "a"}, num_labels=3)
    assert ours.num_labels == hf.num_labels == 3 and ours.id2label == hf.id2label
    assert "incompatible to the `id2label` map of length `1`" in caplog.text
    ours.num_labels, hf.num_labels = 4, 4
    assert ours.id2label == hf.id2label and ours.label2id == hf.label2id


def test_three_stages_with_the_four_entry_default_focal_levels():
    """transformers' own test config: depths [1, 2, 1], focal_levels/focal_windows left at 4 entries."""
    kw = {k: v for k, v in small_config_dict(depths=[1, 2, 1]).items() if k not in ("focal_levels", "focal_windows")}
    ours, hf = FocalNetConfig(**kw), transformers.FocalNetConfig(**kw)
    assert ours.focal_levels == list(hf.focal_levels) == [2, 2, 2, 2] and ours.stage_names == hf.stage_names
    hf_model, our_model = hf_twin("FocalNetForImageClassification", depths=[1, 2, 1])
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert maxdiff(hf_model(x).logits, our_model(x).logits) <= TOL


@pytest.mark.parametrize("cls", ["FocalNetModel", "FocalNetForImageClassification", "FocalNetForMaskedImageModeling"])
def test_config_output_hidden_states_and_return_dict_are_honoured_at_forward(cls):
    hf, ours = hf_twin(cls)
    x = torch.randn(2, 3, 64, 64)
    for model in (hf, ours):
        model.config.output_hidden_states, model.config.return_dict = True, False
    with torch.no_grad():
        ref, out = hf(x), ours(x)
        assert isinstance(out, tuple) and len(out) == len(ref)
        flat = lambda t: [v for item in t for v in (item if isinstance(item, tuple) else (item,)) if v is not None]  # noqa: E731
        assert len(flat(ref)) == len(flat(out)) and all(maxdiff(a, b) <= TOL for a, b in zip(flat(ref), flat(out)))
        # the call's arguments win over the config's
        ref, out = hf(x, output_hidden_states=False, return_dict=True), ours(x, output_hidden_states=False, return_dict=True)
    assert list(out.keys()) == list(ref.keys())


def test_backbone_config_output_hidden_states():
    """(transformers' backbone fails with config.return_dict=False, so only the hidden states here)"""
    hf, ours = hf_twin("FocalNetBackbone")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert ours(x).hidden_states is None and hf(x).hidden_states is None
        hf.config.output_hidden_states = ours.config.output_hidden_states = True
        ref, out = hf(x), ours(x)
    assert len(ref.hidden_states) == len(out.hidden_states) == 5
    assert all(maxdiff(a, b) <= TOL for a, b in zip(ref.hidden_states, out.hidden_states))


# -- from_pretrained ------------------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    """A 7-class classifier and its base model, saved by transformers."""
    hf, _ = hf_twin("FocalNetForImageClassification")
    hf.save_pretrained(tmp_path / "cls")
    hf.focalnet.save_pretrained(tmp_path / "base")
    return tmp_path


def _same_backbone(a, b):
    sa, sb = a.focalnet.state_dict(), b.focalnet.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k].float(), sb[k].float()) for k in sa)


def test_fine_tuning_start_num_labels_and_ignore_mismatched_sizes(saved, caplog):
    ref, ref_info = transformers.FocalNetForImageClassification.from_pretrained(
        saved / "cls", num_labels=3, ignore_mismatched_sizes=True, output_loading_info=True)
    out, info = FocalNetForImageClassification.from_pretrained(
        saved / "cls", num_labels=3, ignore_mismatched_sizes=True, output_loading_info=True)
    assert out.classifier.weight.shape == ref.classifier.weight.shape == (3, 64) and out.config.num_labels == 3
    assert {k: (tuple(a), tuple(b)) for k, a, b in info["mismatched_keys"]} == {k: (tuple(a), tuple(b)) for k, a, b in ref_info["mismatched_keys"]}
    assert info["missing_keys"] == ref_info["missing_keys"] and info["unexpected_keys"] == ref_info["unexpected_keys"]
    assert "Reinit due to size mismatch" in caplog.text and not out.training
    _same_backbone(out, ref)
    with pytest.raises(RuntimeError):
        transformers.FocalNetForImageClassification.from_pretrained(saved / "cls", num_labels=3)
    with pytest.raises(LoadError, match="ignore_mismatched_sizes"):
        FocalNetForImageClassification.from_pretrained(saved / "cls", num_labels=3)


def test_a_base_checkpoint_into_the_classifier_initialises_the_head_and_says_so(saved, caplog):
    ref, ref_info = transformers.FocalNetForImageClassification.from_pretrained(saved / "base", output_loading_info=True)
    out, info = FocalNetForImageClassification.from_pretrained(saved / "base", output_loading_info=True)
    assert info["missing_keys"] == ref_info["missing_keys"] == {"classifier.weight", "classifier.bias"}
    assert "MISSING" in caplog.text and "classifier.weight" in caplog.text
    _same_backbone(out, ref)
    assert not out.classifier.weight.is_meta and out.classifier.bias.abs().max() == 0  # transformers' initialisation
    assert abs(out.classifier.weight.std().item() - out.config.initializer_range) < 0.01
    # and a classifier's checkpoint into the base model: the head is unexpected, as in transformers
    _, ref_info = transformers.FocalNetModel.from_pretrained(saved / "cls", output_loading_info=True)
    _, info = FocalNetModel.from_pretrained(saved / "cls", output_loading_info=True)
    assert info["unexpected_keys"] == ref_info["unexpected_keys"] == {"classifier.weight", "classifier.bias"}


@pytest.mark.parametrize("dtype", [torch.float16, "bfloat16", "auto"])
def test_torch_dtype(saved, dtype):
    ref = transformers.FocalNetForImageClassification.from_pretrained(saved / "cls", torch_dtype=dtype)
    out = FocalNetForImageClassification.from_pretrained(saved / "cls", torch_dtype=dtype)
    assert {p.dtype for p in out.parameters()} == {p.dtype for p in ref.parameters()}
    assert out.config.dtype == ref.config.dtype


def test_config_kwargs_and_model_kwargs(saved):
    out = FocalNetModel.from_pretrained(saved / "base", add_pooling_layer=False, output_hidden_states=True)
    ref = transformers.FocalNetModel.from_pretrained(saved / "base", add_pooling_layer=False, output_hidden_states=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = ref(x), out(x)
    assert a.pooler_output is None and b.pooler_output is None and len(a.hidden_states) == len(b.hidden_states) == 5


# -- inputs of any size ---------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(33, 33), (30, 30), (33, 50), (5, 7)])
@pytest.mark.parametrize("switch", [{}, {"use_conv_embed": True}, {"patch_size": 3}])
def test_inputs_of_any_size_are_padded_as_transformers_pads(size, switch):
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(4))
    for cls in ("FocalNetModel", "FocalNetBackbone"):
        hf, ours = hf_twin(cls, out_features=["stem", "stage1", "stage2", "stage3", "stage4"], **switch)
        with torch.no_grad():
            ref, out = hf(x, output_hidden_states=True), ours(x, output_hidden_states=True)
        for a, b in zip(ref.to_tuple(), out.to_tuple()):
            for ta, tb in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
                assert ta.shape == tb.shape and maxdiff(ta, tb) <= TOL


def test_masked_image_modeling_pads_as_transformers():
    hf, ours = hf_twin("FocalNetForMaskedImageModeling")
    x = torch.randn(1, 3, 60, 60)
    with torch.no_grad():
        ref, out = hf(x), ours(x)
    assert ref.reconstruction.shape == out.reconstruction.shape == (1, 3, 64, 64)
    assert maxdiff(ref.reconstruction, out.reconstruction) <= TOL


def test_a_trace_at_an_odd_size_pads_with_constants():
    hf, ours = hf_twin("FocalNetForImageClassification")
    x = torch.randn(2, 3, 33, 30)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = torch.jit.trace(ours, x, strict=False)
    assert not [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    kinds = {n.kind() for n in traced.inlined_graph.nodes()}
    assert "aten::size" not in kinds and "aten::Int" not in kinds and "aten::pad" in kinds
    with torch.no_grad():
        assert maxdiff(traced(x)["logits"], hf(x).logits) <= TOL


def test_an_export_at_an_odd_fixed_size_has_no_shape_arithmetic(tmp_path):
    import onnx
    import onnxruntime as ort

    from focalnet_edge.export.onnx_export import export_onnx
    from focalnet_edge.model import load_checkpoint

    hf, ours = hf_twin("FocalNetForImageClassification")
    ours.save_pretrained(tmp_path / "ckpt")
    result = export_onnx(load_checkpoint(tmp_path / "ckpt"), tmp_path / "model.onnx", image_size=(33, 30))
    ops = collections.Counter(n.op_type for n in onnx.load(str(result.path)).graph.node)
    for op in ("Shape", "Gather", "If", "Reshape", "ConstantOfShape"):
        assert ops[op] == 0, (op, ops)
    x = np.random.default_rng(0).standard_normal((2, 3, 33, 30)).astype(np.float32)
    got = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"]).run(None, {"pixel_values": x})[0]
    with torch.no_grad():
        assert np.abs(got - hf(torch.from_numpy(x)).logits.numpy()).max() <= 1e-4
    # a graph of any size keeps the multiple-of rule (it has no padding in it)
    with pytest.raises(InputError, match="multiples of 32"):
        export_onnx(load_checkpoint(tmp_path / "ckpt"), tmp_path / "any.onnx", image_size=(33, 30), dynamic_size=True)
    assert not (tmp_path / "any.onnx").exists()


# -- backbone -------------------------------------------------------------------------------------
def test_backbone_out_indices_set_after_creation_and_its_attributes():
    ours, hf = both_configs(depths=[1, 2, 1], out_indices=[1, 2])
    for config in (ours, hf):
        config.out_indices = [0, 3]
    assert ours.out_features == hf.out_features == ["stem", "stage3"]
    hf_model = perturb_(transformers.FocalNetBackbone(hf))
    our_model = modeling.FocalNetBackbone(ours)
    our_model.load_state_dict(hf_model.state_dict())
    our_model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref, out = hf_model(x), our_model(x)
    assert len(ref.feature_maps) == len(out.feature_maps) == 2
    assert all(maxdiff(a, b) <= TOL for a, b in zip(ref.feature_maps, out.feature_maps))
    for name in ("num_features", "out_feature_channels", "channels", "stage_names", "out_features", "out_indices"):
        assert getattr(our_model, name) == getattr(hf_model, name), name
    assert our_model.backbone_type.value == hf_model.backbone_type.value == "transformers"
    # setting them on the model sets the config, as in transformers
    our_model.out_features, hf_model.out_features = ["stage1"], ["stage1"]
    assert our_model.config.out_indices == hf_model.config.out_indices == [1]
    # None: the last stage
    for config in (ours, hf):
        config.out_features = None
    assert ours.out_features == hf.out_features == ["stage3"] and ours.out_indices == hf.out_indices == [3]
    with torch.no_grad():
        assert maxdiff(our_model(x).feature_maps[0], hf_model(x).feature_maps[0]) <= TOL


def test_backbone_refuses_what_transformers_refuses():
    ours, hf = both_configs()
    for config in (ours, hf):
        with pytest.raises(ValueError, match=r"out_features must be a subset of stage_names"):
            config.out_features = ["stage9"]
        with pytest.raises(ValueError, match=r"out_indices must be valid indices"):
            config.out_indices = [7]


# -- training conveniences and tracing ------------------------------------------------------------
def test_gradient_checkpointing_gives_transformers_gradients():
    hf, ours = hf_twin("FocalNetForImageClassification", drop_path_rate=0.0)
    x, labels = torch.randn(2, 3, 64, 64), torch.tensor([1, 5])
    grads = {}
    for name, model in (("hf", hf), ("ours", ours)):
        model.train()
        model.gradient_checkpointing_enable()
        assert model.is_gradient_checkpointing
        model.zero_grad()
        model(x, labels=labels).loss.backward()
        grads[name] = {k: p.grad.clone() for k, p in model.named_parameters()}
        model.gradient_checkpointing_disable()
        assert not model.is_gradient_checkpointing
    assert grads["ours"].keys() == grads["hf"].keys()
    assert all(maxdiff(grads["ours"][k], grads["hf"][k]) <= 1e-4 for k in grads["hf"])
    # the stages really are recomputed: their forward runs twice per step
    calls = []
    stage = ours.focalnet.encoder.stages[0]
    stage.register_forward_pre_hook(lambda *_: calls.append(1))
    ours.gradient_checkpointing_enable()
    ours(x, labels=labels).loss.backward()
    assert len(calls) == 2


def test_get_input_embeddings_is_the_patch_embedding():
    for cls in ("FocalNetModel", "FocalNetForImageClassification", "FocalNetForMaskedImageModeling"):
        hf, ours = hf_twin(cls)
        assert type(ours.get_input_embeddings()).__name__ == type(hf.get_input_embeddings()).__name__
        assert torch.equal(ours.get_input_embeddings().projection.weight, hf.get_input_embeddings().projection.weight)
        assert ours.get_output_embeddings() is None and hf.get_output_embeddings() is None


@pytest.mark.parametrize("cls", ["FocalNetModel", "FocalNetForImageClassification", "FocalNetBackbone"])
def test_jit_trace_strict_false_returns_transformers_dict(cls):
    hf, ours = hf_twin(cls)
    x = torch.randn(2, 3, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, out = torch.jit.trace(hf, x, strict=False)(x), torch.jit.trace(ours, x, strict=False)(x)
    assert isinstance(out, dict) and list(out) == list(ref)
    for key in ref:
        a, b = ref[key], out[key]
        for ta, tb in zip(a if isinstance(a, (tuple, list)) else (a,), b if isinstance(b, (tuple, list)) else (b,)):
            assert maxdiff(ta, tb) <= TOL


def test_outputs_are_ordered_dicts_as_transformers():
    hf, ours = hf_twin("FocalNetForImageClassification")
    x, labels = torch.randn(2, 3, 64, 64), torch.tensor([1, 5])
    with torch.no_grad():
        ref, out = hf(x, labels=labels), ours(x, labels=labels)
    assert isinstance(out, collections.OrderedDict) and list(out.keys()) == list(ref.keys()) == ["loss", "logits"]
    assert maxdiff(out[1], ref[1]) <= TOL and maxdiff(out["loss"], ref["loss"]) <= TOL and len(out.to_tuple()) == 2
    out.logits = ref.logits
    assert out["logits"] is ref.logits  # attribute and key stay in step


def test_from_pretrained_logs_nothing_for_a_perfect_fit(saved, caplog):
    with caplog.at_level(logging.WARNING, logger="focalnet_edge.model.pretrained"):
        FocalNetForImageClassification.from_pretrained(saved / "cls")
    assert "LOAD REPORT" not in caplog.text
    assert FocalNetBackbone.from_pretrained(saved / "base").out_features == ["stage4"]


def test_gradients_reach_hidden_states_as_in_transformers():
    hf, ours = hf_twin("FocalNetModel", drop_path_rate=0.0)
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for model in (hf, ours):
        out = model(x, output_hidden_states=True)
        for h in out.hidden_states:
            h.retain_grad()
        out.pooler_output.square().sum().backward()
        grads.append([h.grad for h in out.hidden_states])
    assert all(b is not None and maxdiff(a, b) <= 1e-4 for a, b in zip(*grads))
