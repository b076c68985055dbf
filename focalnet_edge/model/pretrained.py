"""`from_pretrained` with transformers' keywords and loading rules (`PreTrainedModel.from_pretrained`).

Where `base.load_model` (what the pipeline uses) refuses any checkpoint that does not fit the
model exactly, this is the fine-tuning entry point and follows transformers: tensors the model
has and the checkpoint lacks (a new classifier on a base checkpoint) are initialised, tensors
the model does not use are dropped, shapes that differ (``num_labels=3`` on a 1000-class
checkpoint) are re-initialised with ``ignore_mismatched_sizes=True`` and refused without it, and
all of it is logged as transformers' load report and returned by ``output_loading_info=True``.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError, LoadError
from .config import FocalNetConfig
from .preprocessing import image_spec_for
from .registry import concrete_class, init_module, no_init_weights
from .weights import Checkpoint, load_checkpoint

log = logging.getLogger(__name__)

#: transformers keywords that concern its machinery (hub transport, devices, kernels, remote
#: code, quantisation...), accepted and without effect here
IGNORED = ("trust_remote_code", "use_safetensors", "low_cpu_mem_usage", "device_map", "attn_implementation",
           "token", "force_download", "proxies", "weights_only", "key_mapping", "_fast_init", "offload_folder",
           "max_memory", "tp_plan", "quantization_config", "experts_implementation")

#: the notes of transformers' load report, by status
NOTES = {
    "UNEXPECTED": "can be ignored when loading from different task/architecture; not ok if you expect identical arch.",
    "MISSING": "those params were newly initialized because missing from the checkpoint. Consider training on your downstream task.",
    "MISMATCH": "ckpt weights were loaded, but they did not match the original empty weight shapes.",
}


def from_pretrained(cls, source, *model_args, config: FocalNetConfig | None = None,  # noqa: PLR0913 - transformers' keywords
                    state_dict: dict[str, torch.Tensor] | None = None, ignore_mismatched_sizes: bool = False,
                    output_loading_info: bool = False, torch_dtype=None, dtype=None, subfolder: str = "",
                    revision: str | None = None, cache_dir: str | None = None, local_files_only: bool = False,
                    variant: str | None = None, **kwargs: Any):
    """`cls` built from `source` as transformers' `from_pretrained` builds it (see the module docstring).

    `kwargs` that are config fields (``num_labels``, ``id2label``, ``output_hidden_states``...)
    set them; the others go to the model's constructor (``add_pooling_layer=False``), as in
    transformers. `variant` names an official microsoft/FocalNet variant for an original `.pth`.
    """
    for name in IGNORED:
        kwargs.pop(name, None)
    if torch.get_default_device().type == "meta":
        raise LoadError("You are using `from_pretrained` with a meta device context manager: the weights would not be "
                        "loaded; build the model on the meta device with `cls(config)` instead")
    ckpt = _checkpoint(source, subfolder, state_dict, config, variant, revision, cache_dir, local_files_only)
    config = copy.deepcopy(config if config is not None else ckpt.config)
    model_kwargs = {}
    for key, value in kwargs.items():
        if hasattr(config, key) or key in ("num_labels", "torch_dtype"):
            setattr(config, key, value)
        else:
            model_kwargs[key] = value
    cls = concrete_class(cls, config, ckpt.state_dict)

    with torch.device("meta"), no_init_weights():
        model = cls(config, *model_args, **model_kwargs)
    info = _load(model, ckpt.state_dict)
    _report(model, ckpt.source, info)
    if info["mismatched_keys"] and not ignore_mismatched_sizes:
        raise LoadError(
            f"{ckpt.source}: tensors of another shape than {cls.__name__}'s: "
            + ", ".join(f"{k} {tuple(a)} (model: {tuple(b)})" for k, a, b in sorted(info["mismatched_keys"]))
            + ". You set `ignore_mismatched_sizes` to `False`, thus raising an error; pass "
            "`ignore_mismatched_sizes=True` to re-initialise them"
        )
    target = _dtype(dtype if dtype is not None else torch_dtype, ckpt.state_dict)
    model.to(target)
    config.dtype = target
    model.preprocessing = ckpt.preprocessing
    model.source = ckpt.source
    model.eval()
    return (model, info) if output_loading_info else model


def _checkpoint(source, subfolder, state_dict, config, variant, revision, cache_dir, local_files_only) -> Checkpoint:
    if source is None:
        if state_dict is None or config is None:
            raise CheckpointError("from_pretrained(None, ...) needs both config= and state_dict=")
        return Checkpoint(config, dict(state_dict), image_spec_for(None, config), "state_dict")
    if subfolder:
        local = Path(source) / subfolder
        source = local if local.exists() else f"{source}/{subfolder}"
    ckpt = load_checkpoint(source, variant=variant, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
    if state_dict is not None:
        ckpt.state_dict = dict(state_dict)
    return ckpt


def _fit_prefix(state: dict[str, torch.Tensor], own: dict[str, Any], prefix: str) -> dict[str, torch.Tensor]:
    """Add or strip the base model's prefix so a base checkpoint fits a head and a head's fits the base."""
    wants = any(k.startswith(prefix) for k in own)
    has = any(k.startswith(prefix) for k in state)
    if wants and not has:
        return {(k if k.startswith(("classifier.", "decoder.")) else prefix + k): v for k, v in state.items()}
    if has and not wants:
        return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}
    return state


@torch.no_grad()
def _load(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Assign the tensors that fit; initialise, on the CPU, what the model has that the checkpoint lacks."""
    own = model.state_dict()
    state = _fit_prefix(state, own, model.base_model_prefix + ".")
    missing = set(own) - set(state)
    unexpected = set(state) - set(own)
    mismatched = {(k, tuple(state[k].shape), tuple(own[k].shape)) for k in set(own) & set(state) if own[k].shape != state[k].shape}
    fitting = {k: v.float().contiguous() if v.is_floating_point() else v for k, v in state.items()
               if k in own and own[k].shape == v.shape}
    model.load_state_dict(fitting, strict=False, assign=True)
    for m in model.modules():  # what is still on the meta device was not in the checkpoint: initialise it
        if any(t.is_meta for t in (*m.parameters(recurse=False), *m.buffers(recurse=False))):
            m.to_empty(device="cpu", recurse=False)
            init_module(m, model.config)
    return {"missing_keys": missing, "unexpected_keys": unexpected,
            "mismatched_keys": {(k, torch.Size(a), torch.Size(b)) for k, a, b in mismatched}, "error_msgs": []}


def _report(model: nn.Module, source: str, info: dict[str, Any]) -> None:
    """transformers' load report: one warning with a row per key that was not loaded as it is."""
    rows = [(k, "UNEXPECTED", "") for k in sorted(info["unexpected_keys"])]
    rows += [(k, "MISSING", "") for k in sorted(info["missing_keys"])]
    rows += [(k, "MISMATCH", f"Reinit due to size mismatch - ckpt: {a} vs model:{b}") for k, a, b in sorted(info["mismatched_keys"])]
    if not rows:
        return
    width = max(len(k) for k, _, _ in rows)
    table = "\n".join(f"{k:<{width}} | {status:<10} | {detail}".rstrip(" |") for k, status, detail in rows)
    notes = "".join(f"\n- {status}:\t{NOTES[status]}" for status in NOTES if any(r[1] == status for r in rows))
    log.warning("%s LOAD REPORT from: %s\n%s\n\nNotes:%s", type(model).__name__, source, table, notes)


def _dtype(value, state: dict[str, torch.Tensor]) -> torch.dtype:
    """transformers' `dtype=`: a torch dtype, its name, or "auto" (the checkpoint's); float32 by default."""
    if value is None:
        return torch.float32
    if value == "auto":
        return next((v.dtype for v in state.values() if v.is_floating_point()), torch.float32)
    found = getattr(torch, value, None) if isinstance(value, str) else value
    if not isinstance(found, torch.dtype) or not found.is_floating_point:
        raise ConfigError(f"dtype {value!r} not understood; expected a floating torch dtype, its name, or 'auto'")
    return found
