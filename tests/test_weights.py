"""Checkpoints: HF folders both ways, original microsoft/FocalNet files, the variant table, errors."""

from __future__ import annotations

import re

import pytest
import torch

from helpers import hf_twin
from focalnet_edge.errors import CheckpointError
from focalnet_edge.model import (
    VARIANTS,
    FocalNetForImageClassification,
    FocalNetModel,
    load_checkpoint,
    load_model,
)
from focalnet_edge.model.original import config_from_original

transformers = pytest.importorskip("transformers")


def _logits(model, x):
    with torch.no_grad():
        return model(x).logits


# names of the original repository (microsoft/FocalNet classification/focalnet.py), written out
# here independently of the loader's own renaming table
def hf_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        if k.startswith("classifier."):
            out["head." + k[len("classifier."):]] = v
            continue
        k = k[len("focalnet."):]
        k = k.replace("embeddings.patch_embeddings.projection.", "patch_embed.proj.")
        k = k.replace("embeddings.norm.", "patch_embed.norm.")
        k = re.sub(r"^encoder\.stages\.(\d+)\.layers\.", r"layers.\1.blocks.", k)
        k = re.sub(r"^encoder\.stages\.(\d+)\.downsample\.projection\.", r"layers.\1.downsample.proj.", k)
        k = re.sub(r"^encoder\.stages\.(\d+)\.downsample\.norm\.", r"layers.\1.downsample.norm.", k)
        k = k.replace("modulation.projection_in.", "modulation.f.").replace("modulation.projection_context.", "modulation.h.")
        k = k.replace("modulation.projection_out.", "modulation.proj.").replace("modulation.layernorm.", "modulation.ln.")
        k = re.sub(r"^layernorm\.", "norm.", k)
        out[k] = v
    return out


@pytest.mark.parametrize("safe", [True, False])
def test_loads_a_transformers_folder(tmp_path, safe):
    hf, _ = hf_twin("FocalNetForImageClassification", use_layerscale=True, use_post_layernorm=True)
    hf.save_pretrained(tmp_path, safe_serialization=safe)
    ours = load_model(tmp_path)
    assert isinstance(ours, FocalNetForImageClassification)
    x = torch.randn(2, 3, 64, 64)
    assert (_logits(hf, x) - _logits(ours, x)).abs().max().item() <= 1e-5


def test_transformers_loads_our_folder(tmp_path):
    hf, ours = hf_twin("FocalNetForImageClassification", normalize_modulator=True)
    ours.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "config.json").is_file()
    again = transformers.FocalNetForImageClassification.from_pretrained(tmp_path).eval()
    x = torch.randn(2, 3, 64, 64)
    assert (_logits(again, x) - _logits(hf, x)).abs().max().item() <= 1e-5


def test_a_head_checkpoint_loads_into_the_bare_model(tmp_path):
    hf, _ = hf_twin("FocalNetForImageClassification")
    hf.save_pretrained(tmp_path)
    base = load_model(tmp_path, FocalNetModel)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (base(x).pooler_output - hf.focalnet(x).pooler_output).abs().max().item() <= 1e-5


@pytest.mark.parametrize("wrap", [True, False])
@pytest.mark.parametrize("switch", [{}, {"use_conv_embed": True, "use_layerscale": True}, {"use_post_layernorm_in_modulation": True}])
def test_original_pth_configuration_read_off_the_tensors(tmp_path, wrap, switch):
    hf, _ = hf_twin("FocalNetForImageClassification", focal_levels=[2, 3, 1, 2], focal_windows=[3, 5, 3, 1], **switch)
    state = hf_to_original(hf.state_dict())
    path = tmp_path / "my_focalnet.pth"
    torch.save({"model": state} if wrap else state, path)
    ours = load_model(path)
    cfg = ours.config
    assert cfg.focal_levels == [2, 3, 1, 2] and cfg.focal_windows == [3, 5, 3, 1] and cfg.depths == [1, 1, 2, 1]
    assert cfg.embed_dim == 8 and cfg.num_labels == 7
    assert cfg.use_conv_embed == switch.get("use_conv_embed", False)
    assert cfg.use_layerscale == switch.get("use_layerscale", False)
    x = torch.randn(2, 3, 64, 64)
    assert (_logits(hf, x) - _logits(ours, x)).abs().max().item() <= 1e-5


def test_switches_hidden_from_the_tensors_come_from_overrides(tmp_path):
    hf, _ = hf_twin("FocalNetForImageClassification", use_post_layernorm=True, normalize_modulator=True)
    path = tmp_path / "custom.pth"
    torch.save({"model": hf_to_original(hf.state_dict())}, path)
    x = torch.randn(2, 3, 64, 64)
    plain = load_model(path)  # no variant matches: pre-norm assumed, so the numbers differ
    assert (_logits(hf, x) - _logits(plain, x)).abs().max().item() > 1e-3
    right = load_model(path, overrides={"use_post_layernorm": True, "normalize_modulator": True})
    assert (_logits(hf, x) - _logits(right, x)).abs().max().item() <= 1e-5


def _meta_original_state(**cfg) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        hf = transformers.FocalNetForImageClassification(transformers.FocalNetConfig(**cfg))
    return hf_to_original(hf.state_dict())


@pytest.mark.parametrize(
    "filename,cfg,expect",
    [
        ("focalnet_tiny_srf.pth", dict(embed_dim=96, depths=[2, 2, 6, 2], focal_levels=[2] * 4), dict(use_post_layernorm=False)),
        ("focalnet_base_lrf.pth", dict(embed_dim=128, depths=[2, 2, 18, 2], focal_levels=[3] * 4), dict(use_post_layernorm=False)),
        (
            "focalnet_large_lrf_384.pth",
            dict(embed_dim=192, depths=[2, 2, 18, 2], focal_levels=[3] * 4, focal_windows=[5] * 4, use_conv_embed=True, use_layerscale=True),
            dict(use_post_layernorm=True, normalize_modulator=False, image_size=384),
        ),
        (
            "focalnet_large_lrf_384_fl4.pth",
            dict(embed_dim=192, depths=[2, 2, 18, 2], focal_levels=[4] * 4, use_conv_embed=True, use_layerscale=True),
            dict(use_post_layernorm=True, normalize_modulator=True),
        ),
        (
            "focalnet_huge_lrf_224_fl4.pth",
            dict(embed_dim=352, depths=[2, 2, 18, 2], focal_levels=[4] * 4, use_conv_embed=True, use_layerscale=True, use_post_layernorm_in_modulation=True),
            dict(use_post_layernorm=True, use_post_layernorm_in_modulation=True, normalize_modulator=False),
        ),
        (  # no hint in the name: the tensors' shapes identify xlarge fl4
            "checkpoint.pth",
            dict(embed_dim=256, depths=[2, 2, 18, 2], focal_levels=[4] * 4, use_conv_embed=True, use_layerscale=True),
            dict(use_post_layernorm=True, normalize_modulator=False),
        ),
    ],
)
def test_official_variant_table(filename, cfg, expect):
    config = config_from_original(_meta_original_state(num_labels=1000, **cfg), filename=filename)
    for key, value in {**cfg, **expect}.items():
        assert getattr(config, key) == value, key


def test_variant_that_contradicts_the_tensors_is_refused():
    state = _meta_original_state(embed_dim=96, depths=[2, 2, 6, 2], focal_levels=[2] * 4)
    with pytest.raises(CheckpointError, match=r"variant large_fl4 expects embed_dim=192.*have embed_dim=96"):
        config_from_original(state, variant="large_fl4", filename="x.pth")
    assert set(VARIANTS) >= {"tiny_srf", "large_fl4", "huge_fl3"}


def test_missing_unexpected_and_misshaped_tensors_are_listed(tmp_path):
    hf, _ = hf_twin("FocalNetForImageClassification")
    hf.save_pretrained(tmp_path)
    from safetensors.torch import load_file, save_file

    state = load_file(tmp_path / "model.safetensors")
    state.pop("focalnet.layernorm.bias")
    state["focalnet.extra.weight"] = torch.zeros(1)
    state["classifier.weight"] = torch.zeros(3, 64)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError) as err:
        load_model(tmp_path)
    msg = str(err.value)
    assert "missing: focalnet.layernorm.bias" in msg
    assert "unexpected: focalnet.extra.weight" in msg
    assert "mis-shaped: classifier.weight (3, 64) (model: (7, 64))" in msg


@pytest.mark.parametrize("content", [b"not a checkpoint at all", b""])
def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path, content):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + ": not a PyTorch checkpoint"):
        load_model(path)


def test_a_dict_without_tensors_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"epoch": 3}, path)
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_model(path)


def test_folder_without_config_and_missing_path(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model(tmp_path)
    with pytest.raises(CheckpointError, match="no such file or folder"):
        load_model(tmp_path / "nothing.pth")


def test_hub_id_offline_says_how_to_pass_a_folder(tmp_path):
    with pytest.raises(CheckpointError, match=r"microsoft/focalnet-tiny.*local folder.*--model DIR"):
        load_checkpoint("microsoft/focalnet-tiny", cache_dir=str(tmp_path), local_files_only=True)


def test_preprocessor_config_is_read(tmp_path):
    hf, ours = hf_twin("FocalNetForImageClassification")
    ours.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(
        '{"do_resize": true, "size": {"shortest_edge": 80}, "do_center_crop": true, '
        '"crop_size": {"height": 64, "width": 64}, "image_mean": [0.1, 0.2, 0.3], "image_std": [0.4, 0.5, 0.6], "resample": 3}'
    )
    spec = load_checkpoint(tmp_path).preprocessing
    assert (spec.height, spec.width, spec.resize_shortest_edge, spec.resample) == (64, 64, 80, 3)
    assert spec.mean == (0.1, 0.2, 0.3) and spec.std == (0.4, 0.5, 0.6)
