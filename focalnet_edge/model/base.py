"""The base of every public model: config, one weight initialisation, `from_pretrained`/`save_pretrained`.

This module sits below `modeling.py` and above `weights.py` (which only reads checkpoints
into a `Checkpoint`), so neither of them imports the other. Model classes register
themselves by name (their `__name__`, the name in `config.json`'s ``architectures``) when
they are defined; `model_class` finds them.

Weights are initialised once, by the outermost model (`post_init`), and not at all when a
checkpoint is about to replace them: `load_model` builds the model on the ``meta`` device
inside `no_init_weights()` and then assigns the checkpoint's tensors.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, InputError
from .config import FocalNetConfig
from .preprocessing import ImageSpec
from .weights import Checkpoint, load_checkpoint

#: heads that a checkpoint may carry besides the backbone
HEAD_PREFIXES = ("classifier.", "decoder.")

_REGISTRY: dict[str, type[FocalNetPreTrainedModel]] = {}
_SKIP_INIT = contextvars.ContextVar("focalnet_edge_skip_init", default=False)


def _is_tracing() -> bool:
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


@contextlib.contextmanager
def no_init_weights() -> Iterator[None]:
    """Inside this block, models are built without running `init_weights` (transformers' name)."""
    token = _SKIP_INIT.set(True)
    try:
        yield
    finally:
        _SKIP_INIT.reset(token)


def model_class(name: str) -> type[FocalNetPreTrainedModel]:
    """The registered model class called `name` (e.g. ``"FocalNetForImageClassification"``)."""
    if name not in _REGISTRY:
        importlib.import_module(".modeling", __package__)  # defines (and so registers) the public models
    try:
        return _REGISTRY[name]
    except KeyError:
        raise CheckpointError(f"unknown FocalNet architecture {name!r}; expected one of {sorted(_REGISTRY)}") from None


class FocalNetPreTrainedModel(nn.Module):
    """Base class: config, weight initialisation, input checks, `from_pretrained`/`save_pretrained`."""

    base_model_prefix = "focalnet"
    main_input_name = "pixel_values"

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def __init__(self, config: FocalNetConfig) -> None:
        super().__init__()
        self.config = config

    def post_init(self) -> None:
        """Call at the end of `__init__`: initialise the weights, once, unless they will be loaded.

        A model nested in another (the `FocalNetModel` inside a head) is built inside
        `no_init_weights()` by its parent, whose own `post_init` initialises everything.
        """
        if not _SKIP_INIT.get():
            self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """transformers' initialisation: normal(0, initializer_range) weights, zero biases, unit norms."""
        std = self.config.initializer_range
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.normal_(m.weight, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def check_input_size(self, height: int, width: int) -> None:
        """Raise `InputError` unless the model can take an image of this height and width."""
        s = self.config.total_stride
        bad = [f"{name} {v}" for name, v in (("height", height), ("width", width)) if v < s or v % s]
        if bad:
            examples = ", ".join(str(v) for v in sorted({s * 2, s * 7, 224, 256, 384}) if v % s == 0)
            raise InputError(
                f"input {' and '.join(bad)} not accepted: this FocalNet takes heights and widths that "
                f"are multiples of {s} (e.g. {examples})"
            )

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        if _is_tracing():
            return
        if pixel_values.ndim != 4 or pixel_values.shape[1] != self.config.num_channels:
            raise InputError(
                f"pixel_values of shape {tuple(pixel_values.shape)} not accepted: expected "
                f"(batch, {self.config.num_channels}, height, width)"
            )
        self.check_input_size(pixel_values.shape[2], pixel_values.shape[3])
        weight = next(self.parameters(), None)
        if weight is not None and pixel_values.dtype != weight.dtype:
            have, want = (str(t).removeprefix("torch.") for t in (pixel_values.dtype, weight.dtype))
            raise InputError(f"pixel_values are {have} but the model's weights are {want}: pass pixel_values.to(torch.{want}), "
                             f"or convert the model with model.to(torch.{have})")

    @classmethod
    def from_pretrained(cls, source, **kwargs):
        """Load from a checkpoint folder, a hub id, an original or timm file (see `load_model`)."""
        return load_model(source, cls, **kwargs)

    def save_pretrained(self, folder, **kwargs) -> None:
        """Write `config.json` and `model.safetensors` in the Hugging Face layout."""
        save_pretrained(self, folder, **kwargs)


# -- state dicts into models ----------------------------------------------------------------------
def _architecture(config: FocalNetConfig, state: dict[str, torch.Tensor]) -> str:
    for arch in config.extra.get("architectures") or []:
        if arch in ("FocalNetModel", "FocalNetForImageClassification", "FocalNetForMaskedImageModeling", "FocalNetBackbone"):
            return arch
    if any(k.startswith("classifier.") for k in state):
        return "FocalNetForImageClassification"
    if any(k.startswith("decoder.") for k in state):
        return "FocalNetForMaskedImageModeling"
    return "FocalNetModel"


def adapt_state_dict(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
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


def load_state_dict_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str, assign: bool = False) -> None:
    """Load every tensor or raise `CheckpointError` listing the missing, unexpected and mis-shaped ones.

    `assign=True` makes the checkpoint's tensors the model's parameters (no copy): the way to
    fill a model built on the ``meta`` device.
    """
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
    model.load_state_dict(state, strict=True, assign=assign)


def load_model(source, cls=None, variant: str | None = None, **kwargs) -> nn.Module:
    """Build `cls` (or the checkpoint's own architecture) from any source, in eval mode, fp32.

    `source` is anything `load_checkpoint` reads, or a `Checkpoint`. The model is built
    without initialising its weights and takes the checkpoint's tensors as its parameters.
    """
    ckpt = source if isinstance(source, Checkpoint) else load_checkpoint(source, variant=variant, **kwargs)
    if cls is None or cls is FocalNetPreTrainedModel:
        cls = model_class(_architecture(ckpt.config, ckpt.state_dict))
    with torch.device("meta"), no_init_weights():
        model = cls(ckpt.config)
    # fp32 and contiguous copies only where needed; the rest are the checkpoint's own tensors
    state = {k: v.float().contiguous() for k, v in ckpt.state_dict.items()}
    load_state_dict_strict(model, state, ckpt.source, assign=True)
    model.preprocessing = ckpt.preprocessing
    model.source = ckpt.source
    return model.eval()


def save_pretrained(model: nn.Module, folder: str | os.PathLike, preprocessing: ImageSpec | None = None) -> None:
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
