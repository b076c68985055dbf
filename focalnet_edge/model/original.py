"""The original microsoft/FocalNet checkpoints: names, configuration read off the tensors, variants.

Like timm's `checkpoint_filter_fn` beside its model, everything that knows the original
repository's layout lives here: the renaming to transformers' names (`original_to_hf_names`),
the configuration read off the tensors' shapes (`config_from_original`) and the official
variant table (`VARIANTS`) for the switches that shapes cannot reveal.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, ConfigError
from .config import FocalNetConfig

log = logging.getLogger(__name__)

#: Switches of the official variants that a state dict's shapes don't reveal, and the shapes
#: that identify them. Source: microsoft/FocalNet configs/*.yaml.
VARIANTS: dict[str, dict[str, Any]] = {
    "tiny_srf": dict(embed_dim=96, depths=[2, 2, 6, 2], focal_levels=[2] * 4),
    "tiny_lrf": dict(embed_dim=96, depths=[2, 2, 6, 2], focal_levels=[3] * 4),
    "small_srf": dict(embed_dim=96, depths=[2, 2, 18, 2], focal_levels=[2] * 4),
    "small_lrf": dict(embed_dim=96, depths=[2, 2, 18, 2], focal_levels=[3] * 4),
    "base_srf": dict(embed_dim=128, depths=[2, 2, 18, 2], focal_levels=[2] * 4),
    "base_lrf": dict(embed_dim=128, depths=[2, 2, 18, 2], focal_levels=[3] * 4),
    "large_fl3": dict(embed_dim=192, focal_levels=[3] * 4, use_post_layernorm=True, image_size=384),
    "large_fl4": dict(
        embed_dim=192, focal_levels=[4] * 4, use_post_layernorm=True, normalize_modulator=True, image_size=384
    ),
    "xlarge_fl3": dict(embed_dim=256, focal_levels=[3] * 4, use_post_layernorm=True, image_size=384),
    "xlarge_fl4": dict(embed_dim=256, focal_levels=[4] * 4, use_post_layernorm=True, image_size=384),
    "huge_fl3": dict(embed_dim=352, focal_levels=[3] * 4, use_post_layernorm=True, use_post_layernorm_in_modulation=True),
    "huge_fl4": dict(embed_dim=352, focal_levels=[4] * 4, use_post_layernorm=True, use_post_layernorm_in_modulation=True),
}
_SHAPE_KEYS = ("embed_dim", "depths", "focal_levels")


_RENAMES = (
    (r"^patch_embed\.proj\.", "embeddings.patch_embeddings.projection."),
    (r"^patch_embed\.norm\.", "embeddings.norm."),
    (r"^layers\.(\d+)\.blocks\.", r"encoder.stages.\1.layers."),
    (r"^layers\.(\d+)\.downsample\.proj\.", r"encoder.stages.\1.downsample.projection."),
    (r"^layers\.(\d+)\.downsample\.norm\.", r"encoder.stages.\1.downsample.norm."),
    (r"\.modulation\.f\.", ".modulation.projection_in."),
    (r"\.modulation\.h\.", ".modulation.projection_context."),
    (r"\.modulation\.proj\.", ".modulation.projection_out."),
    (r"\.modulation\.ln\.", ".modulation.layernorm."),
    (r"^norm\.", "layernorm."),
)


def original_to_hf_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an original FocalNet state dict to transformers' names (`focalnet.` prefix, `classifier`)."""
    out = {}
    for key, value in state.items():
        if key.startswith("head."):
            out["classifier." + key[len("head.") :]] = value
            continue
        new = key
        for pattern, repl in _RENAMES:
            new = re.sub(pattern, repl, new)
        out["focalnet." + new] = value
    return out


def _variant_from_name(name: str) -> str | None:
    name = name.lower()
    size = next((s for s in ("xlarge", "large", "huge", "small", "base", "tiny") if s in name), None)
    if size is None:
        return None
    if size in ("tiny", "small", "base"):
        return f"{size}_{'lrf' if 'lrf' in name else 'srf'}"
    return f"{size}_{'fl4' if 'fl4' in name else 'fl3'}"


def _variant_from_shapes(found: dict[str, Any]) -> str | None:
    for name, spec in VARIANTS.items():
        if all(spec[k] == found[k] for k in _SHAPE_KEYS if k in spec):
            return name
    return None


def config_from_original(state: dict[str, torch.Tensor], variant: str | None = None, filename: str = "") -> FocalNetConfig:
    """Read a FocalNetConfig off an original (non-renamed) state dict's tensor shapes."""
    try:
        stem = state["patch_embed.proj.weight"]
        n_stages = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"layers\.(\d+)\.", k)))
    except (KeyError, ValueError):
        raise CheckpointError(f"{filename}: not a FocalNet checkpoint (no patch_embed.proj.weight / layers.N.*)") from None
    depths, levels, windows = [], [], []
    for i in range(n_stages):
        blocks = {int(m.group(1)) for k in state if (m := re.match(rf"layers\.{i}\.blocks\.(\d+)\.", k))}
        depths.append(max(blocks) + 1 if blocks else 0)
        lv = {int(m.group(1)) for k in state if (m := re.match(rf"layers\.{i}\.blocks\.0\.modulation\.focal_layers\.(\d+)\.", k))}
        levels.append(max(lv) + 1 if lv else 0)
        w = state.get(f"layers.{i}.blocks.0.modulation.focal_layers.0.0.weight")
        windows.append(int(w.shape[-1]) if w is not None else 3)
    embed_dim = int(stem.shape[0])
    fc1 = state["layers.0.blocks.0.mlp.fc1.weight"]
    found: dict[str, Any] = dict(
        embed_dim=embed_dim,
        num_channels=int(stem.shape[1]),
        depths=depths,
        focal_levels=levels,
        focal_windows=windows,
        use_conv_embed=int(stem.shape[-1]) == 7 and n_stages > 1 and state["layers.0.downsample.proj.weight"].shape[-1] == 3,
        use_layerscale="layers.0.blocks.0.gamma_1" in state,
        use_post_layernorm_in_modulation="layers.0.blocks.0.modulation.ln.weight" in state,
        mlp_ratio=fc1.shape[0] / fc1.shape[1],
        hidden_sizes=[embed_dim * 2 ** min(i + 1, n_stages - 1) for i in range(n_stages)],
        drop_path_rate=0.0,
    )
    if not found["use_conv_embed"]:
        found["patch_size"] = int(stem.shape[-1])
    if "head.weight" in state:
        found["num_labels"] = int(state["head.weight"].shape[0])

    name = variant or _variant_from_name(Path(filename).name) or _variant_from_shapes(found)
    if name is not None:
        if name not in VARIANTS:
            raise ConfigError(f"unknown FocalNet variant {name!r}; expected one of {sorted(VARIANTS)}")
        spec = VARIANTS[name]
        clash = [k for k in _SHAPE_KEYS if k in spec and spec[k] != found[k]]
        if clash:
            raise CheckpointError(
                f"{filename}: variant {name} expects {', '.join(f'{k}={spec[k]}' for k in clash)} but the tensors "
                f"have {', '.join(f'{k}={found[k]}' for k in clash)}; pass the right variant"
            )
        for key in ("use_post_layernorm", "normalize_modulator", "image_size"):
            if key in spec:
                found[key] = spec[key]
        log.info("%s: original FocalNet checkpoint, variant %s", filename, name)
    else:
        log.warning("%s: no official variant matches; assuming pre-norm blocks without modulator normalisation", filename)
    return FocalNetConfig(**found)


def is_original(state: dict[str, torch.Tensor]) -> bool:
    """Whether a state dict has the original repository's names."""
    return "patch_embed.proj.weight" in state
