"""Checkpoint sources -> `Checkpoint` (config, state dict with transformers' names, preprocessing).

Sources, in the order they are recognised:
- ``"demo"``: the small classifier bundled with the package (offline), unless a file or
  folder called ``demo`` exists in the working directory: a local path always wins;
- a folder in the Hugging Face layout: ``config.json`` + ``model.safetensors`` or
  ``pytorch_model.bin``, or their shards with ``model.safetensors.index.json`` /
  ``pytorch_model.bin.index.json``; ``preprocessor_config.json`` when present;
- a folder as timm pushes to the Hub (``config.json`` with ``architecture`` and
  ``pretrained_cfg``, timm-named ``model.safetensors`` or ``pytorch_model.bin``);
- a single ``.pth``/``.pt``/``.bin``/``.safetensors`` file with the names of the original
  microsoft/FocalNet repository (see `original.py`) or of timm (see `timm_layout.py`), as a
  bare state dict or under ``"model"``/``"state_dict"``: the configuration is read off the
  tensors' shapes;
- a hub id such as ``microsoft/focalnet-tiny`` (``@revision`` through `revision`), through
  huggingface_hub and its cache, so ``HF_ENDPOINT``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE``
  apply.

Building a model from a `Checkpoint` is `base.load_model`; this module knows no model class.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..demo import DEMO_DIR, uses_bundled_demo
from ..errors import CheckpointError, ConfigError, MissingCheckpointError
from ..folder.io import special_file
from .config import FocalNetConfig
from .original import config_from_original, is_original, original_to_hf_names
from .preprocessing import IMAGENET_MEAN, IMAGENET_STD, RESAMPLE_NAMES, ImageSpec, image_spec_for, image_spec_for_folder
from .timm_layout import config_from_timm, is_timm, timm_to_hf_names

log = logging.getLogger(__name__)

_WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
@dataclass
class Checkpoint:
    """What a source holds: the configuration, HF-named tensors and the preprocessing."""

    config: FocalNetConfig
    state_dict: dict[str, torch.Tensor]
    preprocessing: ImageSpec
    source: str
    files: list[Path] = field(default_factory=list)


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

    `variant` names an official variant (a key of `original.VARIANTS`) for an original `.pth`;
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
    path = Path(src).expanduser()
    if uses_bundled_demo(src):
        if not (DEMO_DIR / "config.json").is_file():
            raise CheckpointError(f"the bundled demo model is missing from {DEMO_DIR}: reinstall focalnet-edge")
        log.info("model: the bundled demo model (%s)", DEMO_DIR)
        return _load_folder(DEMO_DIR, "demo")
    if src == "demo":
        log.warning("model: 'demo' is the local %s %s, not the bundled demo model", "folder" if path.is_dir() else "file", path.resolve())
    if path.is_dir():
        return _load_folder(path, src)
    if path.is_file():
        return _load_state_file(path, variant)
    looks_like_path = src.startswith((".", "/", "~")) or path.suffix in _WEIGHT_SUFFIXES
    if not looks_like_path and re.fullmatch(r"[\w.-]+/[\w.-]+", src):
        return _load_folder(_download(src, revision, cache_dir, local_files_only), src)
    expected = "a checkpoint folder, a .pth/.safetensors file, a hub id such as microsoft/focalnet-tiny, or 'demo'"
    if special_file(path):
        raise CheckpointError(f"{src}: is {special_file(path)}, not a regular file or folder; expected {expected}")
    raise MissingCheckpointError(f"{src}: no such file or folder (expected {expected})")


def _download(repo_id: str, revision: str | None, cache_dir: str | None, local_files_only: bool) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - a dependency
        raise CheckpointError("huggingface_hub is needed to load hub ids: pip install huggingface_hub") from None
    patterns = ["config.json", "preprocessor_config.json", "*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin*"]
    at = f"{repo_id}@{revision}" if revision else repo_id
    try:
        return Path(
            snapshot_download(
                repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=patterns, local_files_only=local_files_only
            )
        )
    except Exception as e:  # huggingface_hub raises many types: offline, 404, gated, revision, ...
        raise CheckpointError(
            f"could not get {at!r} from the Hugging Face Hub ({_hub_reason(e)}); offline, pass a local "
            f"folder instead: `huggingface-cli download {repo_id} --local-dir DIR` on a connected machine, "
            "then --model DIR"
        ) from None


def _hub_reason(e: Exception) -> str:
    """The class of a huggingface_hub error and, for HTTP errors, the status: one short phrase."""
    status = getattr(getattr(e, "response", None), "status_code", None)
    return f"{e.__class__.__name__}, HTTP {status}" if status else e.__class__.__name__


def _load_folder(folder: Path, source: str) -> Checkpoint:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{folder}: no config.json (expected a Hugging Face FocalNet checkpoint folder)")
    try:
        raw = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{config_path}: not a JSON config file ({e})") from None
    if isinstance(raw, dict) and "pretrained_cfg" in raw and "model_type" not in raw:
        return _load_timm_folder(folder, source, raw)
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
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise CheckpointError(f"{index}: not a readable shard index ({e})") from None
            return [folder / s for s in shards]
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return [folder / name]
    raise CheckpointError(f"{folder}: no model.safetensors or pytorch_model.bin (nor a shard index)")


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


# -- single files: original microsoft/FocalNet or timm names -------------------------------------
def _load_state_file(path: Path, variant: str | None) -> Checkpoint:
    state = _read_tensors(path)
    if any(k.startswith(("focalnet.", "embeddings.")) for k in state):  # an HF state dict saved as a single file
        raise CheckpointError(f"{path}: a Hugging Face state dict without config.json; put it in a folder with its config.json")
    if is_timm(state):
        size = 384 if "384" in path.name else 224
        config = config_from_timm(state, str(path), image_size=size)
        return Checkpoint(config, timm_to_hf_names(state), _timm_preprocessing({}, size), str(path), [path])
    if not is_original(state):
        raise CheckpointError(
            f"{path}: not a FocalNet checkpoint (expected the names of transformers, timm "
            "(stem.proj.weight) or microsoft/FocalNet (patch_embed.proj.weight))"
        )
    config = config_from_original(state, variant, str(path))
    pre = image_spec_for(None, config)
    return Checkpoint(config, original_to_hf_names(state), pre, str(path), [path])


_TIMM_RESAMPLE = {name: number for number, name in RESAMPLE_NAMES.items()}  #: timm's `interpolation` -> Pillow's filter


def _timm_preprocessing(cfg: dict[str, Any], size: int) -> ImageSpec:
    """timm's eval transform for a `pretrained_cfg`: resize to floor(size / crop_pct), centre crop."""
    _, h, w = cfg.get("input_size", (3, size, size))
    crop_pct = float(cfg.get("crop_pct", 0.9 if h <= 224 else 1.0))
    return ImageSpec(
        height=int(h),
        width=int(w),
        resize_shortest_edge=math.floor(min(h, w) / crop_pct),
        center_crop=True,
        mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
        std=tuple(cfg.get("std", IMAGENET_STD)),
        resample=_TIMM_RESAMPLE.get(cfg.get("interpolation", "bicubic"), 3),
    )


def _load_timm_folder(folder: Path, source: str, raw: dict[str, Any]) -> Checkpoint:
    arch = str(raw.get("architecture", ""))
    if not arch.startswith("focalnet"):
        raise CheckpointError(f"{folder / 'config.json'}: a timm {arch or 'model'} checkpoint, not a FocalNet")
    files = _weight_files(folder)
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(_read_tensors(f))
    cfg = raw.get("pretrained_cfg") or {}
    pre = _timm_preprocessing(cfg, 224)
    names = raw.get("label_names")
    fields: dict[str, Any] = {"image_size": [pre.height, pre.width] if pre.height != pre.width else pre.height}
    args = raw.get("model_args") or {}
    if isinstance(args, dict) and "normalize_modulator" in args:  # the one switch the tensors do not show
        fields["normalize_modulator"] = bool(args["normalize_modulator"])
    if isinstance(names, list) and "head.fc.weight" in state and len(names) == state["head.fc.weight"].shape[0]:
        fields["id2label"] = dict(enumerate(map(str, names)))
    config = config_from_timm(state, str(folder), **fields)
    return Checkpoint(config, timm_to_hf_names(state), pre, source, [folder / "config.json", *files])
