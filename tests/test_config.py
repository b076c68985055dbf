"""FocalNetConfig against transformers' config: the same fields, config.json both ways, clear errors."""

from __future__ import annotations

import json

import pytest

from helpers import small_config_dict
from focalnet_edge.errors import ConfigError
from focalnet_edge.model import FocalNetConfig

transformers = pytest.importorskip("transformers")

FIELDS = [
    "image_size", "patch_size", "num_channels", "embed_dim", "use_conv_embed", "hidden_sizes", "depths",
    "focal_levels", "focal_windows", "hidden_act", "mlp_ratio", "hidden_dropout_prob", "drop_path_rate",
    "use_layerscale", "layerscale_value", "use_post_layernorm", "use_post_layernorm_in_modulation",
    "normalize_modulator", "initializer_range", "layer_norm_eps", "encoder_stride", "out_features",
    "out_indices", "num_labels", "id2label",
]


def _hf_config(**kw):
    return transformers.FocalNetConfig(
        **small_config_dict(
            use_layerscale=True, layerscale_value=0.3, normalize_modulator=True, use_conv_embed=True,
            out_features=["stage1", "stage4"], id2label={0: "cat", 1: "dog"}, num_labels=2, **kw,
        )
    )


def test_reads_a_transformers_config_json(tmp_path):
    hf = _hf_config()
    hf.save_pretrained(tmp_path)
    ours = FocalNetConfig.from_json_file(tmp_path / "config.json")
    for name in FIELDS:
        want = getattr(hf, name)
        got = getattr(ours, name)
        assert (list(got) if isinstance(got, (list, tuple)) else got) == (
            list(want) if isinstance(want, (list, tuple)) else want
        ), name
    assert ours.stage_names == hf.stage_names
    assert ours.label2id == {"cat": 0, "dog": 1}


def test_writes_a_config_json_that_transformers_reads(tmp_path):
    ours = FocalNetConfig(**small_config_dict(use_post_layernorm=True, out_indices=[0, 2], id2label={0: "a", 1: "b", 2: "c"}, num_labels=3))
    ours.save(tmp_path / "config.json")
    hf = transformers.FocalNetConfig.from_pretrained(tmp_path)
    for name in FIELDS:
        got, want = getattr(hf, name), getattr(ours, name)
        assert (list(got) if isinstance(got, (list, tuple)) else got) == (
            list(want) if isinstance(want, (list, tuple)) else want
        ), name


def test_unknown_keys_survive_the_round_trip(tmp_path):
    path = tmp_path / "config.json"
    data = FocalNetConfig().to_dict() | {"architectures": ["FocalNetForImageClassification"], "torch_dtype": "float32",
                                         "my_field": {"a": 1}}
    path.write_text(json.dumps(data))
    again = FocalNetConfig.from_json_file(path).to_dict()
    hf = transformers.FocalNetConfig.from_json_file(path).to_dict()
    assert again["architectures"] == hf["architectures"] == ["FocalNetForImageClassification"]
    assert again["dtype"] == hf["dtype"] == "float32" and again["my_field"] == hf["my_field"] == {"a": 1}


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"depths": [2, 2, 2], "focal_levels": [2, 2]}, r"focal_levels has 2 entries but depths has 3"),
        ({"focal_windows": [3, 4, 3, 3]}, r"focal_windows must be odd"),
        ({"hidden_act": "mish2"}, r"hidden_act 'mish2' is not supported"),
        ({"out_features": ["stage9"]}, r"out_features must be a subset of stage_names: .* got \['stage9'\]"),
        ({"out_features": ["stage1"], "out_indices": [2]}, r"should correspond to the same stages"),
        ({"depths": []}, r"at least one stage"),
    ],
)
def test_inconsistent_values_are_clear_errors(overrides, message):
    kw = small_config_dict()
    kw.update(overrides)
    if "depths" in overrides and "focal_levels" not in overrides:
        kw["focal_levels"] = kw["focal_windows"] = []
    with pytest.raises(ConfigError, match=message):
        FocalNetConfig(**kw)


def test_a_broken_config_file_names_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=str(path)):
        FocalNetConfig.from_json_file(path)
    path.write_text(json.dumps({"model_type": "swin"}))
    with pytest.raises(ConfigError, match="expected 'focalnet'"):
        FocalNetConfig.from_json_file(path)
