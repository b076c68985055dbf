"""Checkpoints -> (config, state dict, preprocessing); `from_pretrained` and `save_pretrained`.

Sources, in the order they are recognised:
- ``"demo"``: the small classifier bundled with the package (offline);
- a folder in the Hugging Face layout: ``config.json`` + ``model.safetensors`` or
  ``pytorch_model.bin`` (sharded too), ``preprocessor_config.json`` when present;
- a file from the original microsoft/FocalNet repository (``.pth``, ``{"model": ...}`` or a bare
  state dict): its configuration is read off the tensors' shapes, and the switches that
  shapes cannot reveal come from the official variant table (`VARIANTS`);
- a hub id such as ``microsoft/focalnet-tiny``, through huggingface_hub (cached).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, ConfigError
from .config import FocalNetConfig
from .preprocessing import ImageSpec, image_spec_for, image_spec_for_folder

log = logging.getLogger(__name__)

DEMO_DIR = Path(__file__).resolve().parent.parent / "data" / "demo"
HEAD_PREFIXES = ("classifier.", "decoder.")

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


@dataclass
class Checkpoint:
    """What a source holds: the configuration, HF-named tensors and the preprocessing."""

    config: FocalNetConfig
    state_dict: dict[str, torch.Tensor]
    preprocessing: ImageSpec
    source: str
    files: list[Path] = field(default_factory=list)

    @property
    def name(self) -> str:
        return Path(self.source.rstrip("/")).name.split(".")[0] or "model"


# -- reading sources ---------------------------------------------------------------------------
def load_checkpoint(
    source: str | os.PathLike,
    variant: str | None = None,
    revision: str | None = None,
    cache_dir: str | None = None,
    local_files_only: bool = False,
    overrides: dict[str, Any] | None = None,
) -> Checkpoint:
    """Read any supported source (see the module docstring) into a `Checkpoint`.

    `variant` names an official variant (a key of `VARIANTS`) for an original `.pth`;
    `overrides` sets config fields that neither the tensors nor the variant table fix
    (e.g. ``{"use_post_layernorm": True}`` for a custom original checkpoint).
    """
    ckpt = _load_any(source, variant, revision, cache_dir, local_files_only)
    if overrides:
        try:
            ckpt.config = FocalNetConfig.from_dict({**ckpt.config.to_dict(), **overrides})
        except TypeError as e:
            raise ConfigError(f"config override not understood: {e}") from None
    return ckpt


def _load_any(source, variant, revision, cache_dir, local_files_only) -> Checkpoint:
    src = str(source)
    if src == "demo":
        if not (DEMO_DIR / "config.json").is_file():
            raise CheckpointError(f"the bundled demo model is missing from {DEMO_DIR}: reinstall focalnet-edge")
        return _load_hf_folder(DEMO_DIR, "demo")
    path = Path(src).expanduser()
    if path.is_dir():
        return _load_hf_folder(path, src)
    if path.is_file():
        return _load_original_file(path, variant)
    looks_like_path = src.startswith((".", "/", "~")) or path.suffix in (".pth", ".pt", ".bin", ".safetensors")
    if not looks_like_path and re.fullmatch(r"[\w.-]+/[\w.-]+", src):
        return _load_hf_folder(_download(src, revision, cache_dir, local_files_only), src)
    raise CheckpointError(
        f"{src}: no such file or folder (expected a checkpoint folder, an original .pth file, "
        "a hub id such as microsoft/focalnet-tiny, or 'demo')"
    )


def _download(repo_id: str, revision: str | None, cache_dir: str | None, local_files_only: bool) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - a dependency
        raise CheckpointError("huggingface_hub is needed to load hub ids: pip install huggingface_hub") from None
    patterns = ["config.json", "preprocessor_config.json", "*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin*"]
    try:
        return Path(
            snapshot_download(
                repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=patterns, local_files_only=local_files_only
            )
        )
    except Exception as e:  # huggingface_hub raises many types: offline, 404, gated, ...
        raise CheckpointError(
            f"could not get {repo_id!r} from the Hugging Face Hub ({e.__class__.__name__}); offline, pass a local "
            f"folder instead: `huggingface-cli download {repo_id} --local-dir DIR` on a connected machine, "
            "then --model DIR"
        ) from None


def _load_hf_folder(folder: Path, source: str) -> Checkpoint:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{folder}: no config.json (expected a Hugging Face FocalNet checkpoint folder)")
    try:
        config = FocalNetConfig.from_json_file(config_path)
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    files = _weight_files(folder)
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(_read_tensors(f))
    pre = image_spec_for_folder(folder, config)
    return Checkpoint(config, state, pre, source, [config_path, *files])


def _weight_files(folder: Path) -> list[Path]:
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (ValueError, KeyError) as e:
                raise CheckpointError(f"{index}: not a readable shard index ({e})") from None
            return [folder / s for s in shards]
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return [folder / name]
    raise CheckpointError(f"{folder}: no model.safetensors or pytorch_model.bin")


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: weight file is missing")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # SafetensorsError's import path differs between releases
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    return _torch_load(path)


def _torch_load(path: Path) -> dict[str, Any]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and unpickler errors have no common base
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({e.__class__.__name__})") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: not a checkpoint (expected a state dict of tensors, or {{'model': state_dict}})")
    return obj


# -- original microsoft/FocalNet files -----------------------------------------------------------
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


def _load_original_file(path: Path, variant: str | None) -> Checkpoint:
    if path.suffix == ".safetensors":
        state = _read_tensors(path)
    else:
        state = _torch_load(path)
    if any(k.startswith("focalnet.") for k in state):  # an HF state dict saved as a single file
        raise CheckpointError(f"{path}: a Hugging Face state dict without config.json; put it in a folder with its config.json")
    config = config_from_original(state, variant, str(path))
    pre = image_spec_for(None, config)
    return Checkpoint(config, original_to_hf_names(state), pre, str(path), [path])


# -- building models ---------------------------------------------------------------------------
def _architecture(config: FocalNetConfig, state: dict[str, torch.Tensor]) -> str:
    for arch in config.extra.get("architectures") or []:
        if arch in ("FocalNetModel", "FocalNetForImageClassification", "FocalNetForMaskedImageModeling", "FocalNetBackbone"):
            return arch
    if any(k.startswith("classifier.") for k in state):
        return "FocalNetForImageClassification"
    if any(k.startswith("decoder.") for k in state):
        return "FocalNetForMaskedImageModeling"
    return "FocalNetModel"


def adapt_state_dict(state: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Fit a checkpoint's names to `model`: add or strip the `focalnet.` prefix, drop other heads."""
    own = model.state_dict()
    wants_prefix = any(k.startswith("focalnet.") for k in own)
    has_prefix = any(k.startswith("focalnet.") for k in state)
    if wants_prefix and not has_prefix:
        state = {"focalnet." + k: v for k, v in state.items()}
    elif has_prefix and not wants_prefix:  # a head checkpoint into the bare FocalNetModel
        state = {k[len("focalnet.") :]: v for k, v in state.items() if k.startswith("focalnet.")}
    own_heads = tuple({k.split(".")[0] + "." for k in own if k.startswith(HEAD_PREFIXES)})
    # another head's weights, and the mask token of a masked-image-modeling checkpoint, are
    # not part of this model: drop them (a checkpoint *missing* something is still an error)
    return {
        k: v
        for k, v in state.items()
        if (not k.startswith(HEAD_PREFIXES) or k.startswith(own_heads)) and (k in own or not k.endswith("mask_token"))
    }


def load_state_dict_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load every tensor or raise `CheckpointError` listing the missing, unexpected and mis-shaped ones."""
    state = adapt_state_dict(state, model)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshaped = sorted(
        f"{k} {tuple(state[k].shape)} (model: {tuple(own[k].shape)})" for k in set(own) & set(state) if own[k].shape != state[k].shape
    )
    if missing or unexpected or misshaped:
        parts = []
        for title, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if items:
                shown = ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")
                parts.append(f"{title}: {shown}")
        raise CheckpointError(f"{source}: tensors do not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def load_model(source, cls=None, variant: str | None = None, **kwargs) -> torch.nn.Module:
    """Build `cls` (or the checkpoint's own architecture) from any source, in eval mode, fp32."""
    from . import modeling

    ckpt = source if isinstance(source, Checkpoint) else load_checkpoint(source, variant=variant, **kwargs)
    if cls is None or cls is modeling.FocalNetPreTrainedModel:
        cls = modeling.MODEL_CLASSES[_architecture(ckpt.config, ckpt.state_dict)]
    model = cls(ckpt.config)
    load_state_dict_strict(model, {k: v.float() for k, v in ckpt.state_dict.items()}, ckpt.source)
    model.preprocessing = ckpt.preprocessing
    model.source = ckpt.source
    return model.eval()


def save_pretrained(model: torch.nn.Module, folder: str | os.PathLike, preprocessing: ImageSpec | None = None) -> None:
    """Write `config.json`, `model.safetensors` and `preprocessor_config.json` (HF layout, atomically)."""
    from safetensors.torch import save_file

    from ..io import atomic_path, atomic_write_text

    folder = Path(folder)
    config = model.config
    config.extra["architectures"] = [type(model).__name__]
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    pre = preprocessing or getattr(model, "preprocessing", None)
    if pre is not None:
        atomic_write_text(folder / "preprocessor_config.json", json.dumps(pre.to_preprocessor_config(), indent=2) + "\n")
    config.save(folder / "config.json")
