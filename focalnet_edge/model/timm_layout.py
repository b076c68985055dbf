"""timm's FocalNet checkpoints (`focalnet_tiny_srf` ... `focalnet_huge_fl4`): names and configuration.

timm (`timm/models/focalnet.py`) runs channels-first, so its 1x1 projections are Conv2d
weights of shape (out, in, 1, 1) where ours are Linear (out, in); it downsamples at the
*start* of a stage (`layers.{i}.downsample`, i >= 1) where transformers does it at the end of
the previous one; post-norm blocks have `norm1_post`/`norm2_post`, layer scale `ls1.gamma`.
Unlike the original repository's files, every switch that changes the forward pass is
visible in the tensors, except `normalize_modulator`, which none of timm's registered
variants sets (so it is False here unless overridden).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import torch

from ..errors import CheckpointError
from .config import FocalNetConfig

log = logging.getLogger(__name__)

#: timm name (within a block) -> transformers name, and whether a 1x1 conv becomes a Linear
_BLOCK_RENAMES = (
    (r"^norm1(_post)?\.", "norm1.", False),
    (r"^norm2(_post)?\.", "norm2.", False),
    (r"^ls1\.gamma$", "gamma_1", False),
    (r"^ls2\.gamma$", "gamma_2", False),
    (r"^modulation\.f\.", "modulation.projection_in.", True),
    (r"^modulation\.h\.", "modulation.projection_context.", False),
    (r"^modulation\.proj\.", "modulation.projection_out.", True),
    (r"^modulation\.norm\.", "modulation.layernorm.", False),
    (r"^modulation\.focal_layers\.", "modulation.focal_layers.", False),
    (r"^mlp\.fc([12])\.", r"mlp.fc\1.", True),
)


def is_timm(state: dict[str, torch.Tensor]) -> bool:
    """Whether a state dict has timm's FocalNet names."""
    return "stem.proj.weight" in state and any(k.startswith("layers.0.blocks.") for k in state)


def timm_to_hf_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename (and reshape) a timm FocalNet state dict to transformers' names."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = _rename(key)
        if new is None:  # not a FocalNet tensor: kept, so that loading lists it as unexpected
            out[key] = value
            continue
        name, to_linear = new
        if to_linear and name.endswith(".weight") and value.ndim == 4:
            value = value.reshape(value.shape[0], value.shape[1])
        out[name] = value
    return out


def _rename(key: str) -> tuple[str, bool] | None:
    if key.startswith("stem.proj."):
        return "focalnet.embeddings.patch_embeddings.projection." + key[len("stem.proj.") :], False
    if key.startswith("stem.norm."):
        return "focalnet.embeddings.norm." + key[len("stem.norm.") :], False
    if key.startswith("norm."):
        return "focalnet.layernorm." + key[len("norm.") :], False
    if key.startswith("head.fc."):
        return "classifier." + key[len("head.fc.") :], False
    m = re.match(r"^layers\.(\d+)\.downsample\.(proj|norm)\.(.*)$", key)
    if m:  # timm's stage i starts with the downsampling that ends transformers' stage i-1
        part = "projection" if m.group(2) == "proj" else "norm"
        return f"focalnet.encoder.stages.{int(m.group(1)) - 1}.downsample.{part}.{m.group(3)}", False
    m = re.match(r"^layers\.(\d+)\.blocks\.(\d+)\.(.*)$", key)
    if m:
        for pattern, repl, to_linear in _BLOCK_RENAMES:
            rest, n = re.subn(pattern, repl, m.group(3))
            if n:
                return f"focalnet.encoder.stages.{m.group(1)}.layers.{m.group(2)}.{rest}", to_linear
    return None


def config_from_timm(state: dict[str, torch.Tensor], filename: str = "", **fields: Any) -> FocalNetConfig:
    """Read a FocalNetConfig off a timm state dict's tensors; `fields` adds what they cannot say."""
    try:
        stem = state["stem.proj.weight"]
        n_stages = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"layers\.(\d+)\.blocks\.", k)))
        fc1 = state["layers.0.blocks.0.mlp.fc1.weight"]
    except (KeyError, ValueError):
        raise CheckpointError(f"{filename}: not a timm FocalNet checkpoint (no stem.proj.weight / layers.N.blocks.*)") from None
    if any(k.startswith(("head.pre_logits.", "head.norm.")) for k in state):
        raise CheckpointError(
            f"{filename}: a timm FocalNet with an MLP classifier head (head_hidden_size) is not supported; "
            "only the plain `head.fc` classifier is"
        )
    depths, levels, windows = [], [], []
    for i in range(n_stages):
        blocks = {int(m.group(1)) for k in state if (m := re.match(rf"layers\.{i}\.blocks\.(\d+)\.", k))}
        depths.append(max(blocks) + 1 if blocks else 0)
        prefix = rf"layers\.{i}\.blocks\.0\.modulation\.focal_layers\.(\d+)\."
        lv = {int(m.group(1)) for k in state if (m := re.match(prefix, k))}
        levels.append(max(lv) + 1 if lv else 0)
        w = state.get(f"layers.{i}.blocks.0.modulation.focal_layers.0.0.weight")
        windows.append(int(w.shape[-1]) if w is not None else 3)
    embed_dim = int(stem.shape[0])
    block0 = "layers.0.blocks.0."
    found: dict[str, Any] = dict(
        embed_dim=embed_dim,
        num_channels=int(stem.shape[1]),
        depths=depths,
        focal_levels=levels,
        focal_windows=windows,
        use_conv_embed=int(stem.shape[-1]) == 7,
        use_layerscale=block0 + "ls1.gamma" in state,
        use_post_layernorm=block0 + "norm1_post.weight" in state,
        use_post_layernorm_in_modulation=block0 + "modulation.norm.weight" in state,
        normalize_modulator=False,
        mlp_ratio=fc1.shape[0] / fc1.shape[1],
        hidden_sizes=[embed_dim * 2 ** min(i + 1, n_stages - 1) for i in range(n_stages)],
        drop_path_rate=0.0,
    )
    if not found["use_conv_embed"]:
        found["patch_size"] = int(stem.shape[-1])
    if "head.fc.weight" in state:
        found["num_labels"] = int(state["head.fc.weight"].shape[0])
    found.update(fields)
    log.info("%s: timm FocalNet checkpoint (embed_dim %d, depths %s)", filename, embed_dim, depths)
    return FocalNetConfig(**found)
