"""The base of every public model: config, one weight initialisation, `from_pretrained`/`save_pretrained`.

This module sits below `modeling.py` and above `weights.py` (which only reads checkpoints
into a `Checkpoint`) and `registry.py` (model classes by name, weight initialisation), so none
of them imports it. Model classes register themselves by name (their `__name__`, the name in
`config.json`'s ``architectures``) when they are defined; `model_class` finds them.

Weights are initialised once, by the outermost model (`post_init`), and not at all when a
checkpoint is about to replace them: `load_model` builds the model on the ``meta`` device
inside `no_init_weights()` and then assigns the checkpoint's tensors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, InputError
from .config import FocalNetConfig
from .preprocessing import ImageSpec
from .registry import _REGISTRY, _SKIP_INIT, concrete_class, init_module, model_class, no_init_weights  # noqa: F401 - model_class: base.model_class is public
from .weights import Checkpoint, load_checkpoint

#: heads that a checkpoint may carry besides the backbone
HEAD_PREFIXES = ("classifier.", "decoder.")



def _is_tracing() -> bool:
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


class FocalNetPreTrainedModel(nn.Module):
    """Base class: config, weight initialisation, input checks, `from_pretrained`/`save_pretrained`."""

    config_class = FocalNetConfig
    base_model_prefix = "focalnet"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True
    _no_split_modules = ["FocalNetStage"]
    # transformers' loading hooks, all empty for FocalNet (nothing kept in fp32, no tied or ignored keys)
    _keep_in_fp32_modules: list[str] = []
    _keep_in_fp32_modules_strict: list[str] = []
    _keys_to_ignore_on_load_missing = None
    _keys_to_ignore_on_load_unexpected = None
    _keys_to_ignore_on_save = None

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
        if getattr(self.config, "gradient_checkpointing", False):  # transformers' older config switch
            self.gradient_checkpointing_enable()

    @torch.no_grad()
    def init_weights(self) -> None:
        """transformers' initialisation of every module (see `init_module`)."""
        for m in self.modules():
            init_module(m, self.config)

    def check_input_size(self, height: int, width: int) -> None:
        """Raise `InputError` unless a graph of any size (dynamic height and width) can take this size.

        Eager models and graphs traced at one size pad any size, as transformers does; a graph
        exported for any size has no padding in it (no shape arithmetic), so it takes heights and
        widths that are multiples of the total stride, which need none.
        """
        s = self.config.total_stride
        bad = [f"{name} {v}" for name, v in (("height", height), ("width", width)) if v < s or v % s]
        if bad:
            examples = ", ".join(str(v) for v in sorted({s * 2, s * 7, 224, 256, 384}) if v % s == 0)
            raise InputError(
                f"input {' and '.join(bad)} not accepted: this FocalNet takes heights and widths that "
                f"are multiples of {s} (e.g. {examples})"
            )

    def _check_pixel_values(self, pixel_values: torch.Tensor | None) -> None:
        if pixel_values is None:
            raise InputError("You have to specify pixel_values")
        if _is_tracing():
            return
        if pixel_values.ndim != 4 or pixel_values.shape[1] != self.config.num_channels:
            raise InputError(
                "Make sure that the channel dimension of the pixel values match with the one set in the "
                f"configuration: pixel_values of shape {tuple(pixel_values.shape)} not accepted, expected "
                f"(batch, {self.config.num_channels}, height, width)"
            )
        if pixel_values.shape[2] < 1 or pixel_values.shape[3] < 1:
            raise InputError(f"pixel_values of shape {tuple(pixel_values.shape)} not accepted: the image is empty")
        weight = next(self.parameters(), None)
        if weight is not None and pixel_values.dtype != weight.dtype:
            have, want = (str(t).removeprefix("torch.") for t in (pixel_values.dtype, weight.dtype))
            raise InputError(f"pixel_values are {have} but the model's weights are {want}: pass pixel_values.to(torch.{want}), "
                             f"or convert the model with model.to(torch.{have})")

    def _output_switches(self, output_hidden_states: bool | None, return_dict: bool | None) -> tuple[bool, bool]:
        """The call's `output_hidden_states` and `return_dict`, the config's where not given (transformers' rule)."""
        if output_hidden_states is None:
            output_hidden_states = getattr(self.config, "output_hidden_states", False)
        if return_dict is None:
            return_dict = getattr(self.config, "return_dict", True)
        return bool(output_hidden_states), bool(return_dict)

    # -- transformers' PreTrainedModel conveniences ----------------------------------------------
    @property
    def base_model(self) -> nn.Module:
        return getattr(self, self.base_model_prefix, self)

    def get_input_embeddings(self) -> nn.Module:
        """The patch embedding (the stem convolution), as in transformers."""
        base = self.base_model
        if base is self:
            raise NotImplementedError(f"{type(self).__name__} has no input embeddings")
        return base.get_input_embeddings()

    def get_output_embeddings(self) -> None:
        return None

    @classmethod
    def can_generate(cls) -> bool:
        return False

    def enable_input_require_grads(self) -> None:
        """Make the patch embedding's output require grad (for frozen stems with checkpointing, as in transformers)."""
        def hook(module, inputs, output):
            output.requires_grad_(True)

        self._require_grads_hook = self.get_input_embeddings().register_forward_hook(hook)

    def disable_input_require_grads(self) -> None:
        hook = getattr(self, "_require_grads_hook", None)
        if hook is not None:
            hook.remove()
            del self._require_grads_hook

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(p.dtype for p in self.parameters() if p.is_floating_point())

    def num_parameters(self, only_trainable: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not only_trainable)

    # -- gradient (activation) checkpointing, transformers' switches -----------------------------
    def activation_checkpointing_enable(self, activation_checkpointing_kwargs: dict | None = None, every_n_layers: int = 1) -> None:
        """Recompute each stage's activations in the backward pass (training mode only).

        `activation_checkpointing_kwargs` go to `torch.utils.checkpoint.checkpoint` (default
        ``use_reentrant=False``, transformers' default); `every_n_layers` checkpoints every n-th stage.
        """
        import functools

        from torch.utils.checkpoint import checkpoint

        func = functools.partial(checkpoint, **(activation_checkpointing_kwargs or {"use_reentrant": False}))
        for i, stage in enumerate(self._checkpointed_stages()):
            stage._gradient_checkpointing_func = func
            stage.gradient_checkpointing = i % every_n_layers == 0

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None, every_n_layers: int = 1) -> None:
        """transformers' older name of `activation_checkpointing_enable`."""
        self.activation_checkpointing_enable(gradient_checkpointing_kwargs, every_n_layers)

    def activation_checkpointing_disable(self) -> None:
        for stage in self._checkpointed_stages():
            stage.gradient_checkpointing = False

    gradient_checkpointing_disable = activation_checkpointing_disable

    @property
    def is_activation_checkpointing(self) -> bool:
        return any(stage.gradient_checkpointing for stage in self._checkpointed_stages())

    is_gradient_checkpointing = is_activation_checkpointing

    def _checkpointed_stages(self) -> list[nn.Module]:
        return [m for m in self.modules() if hasattr(m, "gradient_checkpointing")]

    @classmethod
    def _from_config(cls, config: FocalNetConfig, **kwargs):
        """transformers' `_from_config`: a model with new weights; `dtype`/`torch_dtype` set its dtype."""
        dtype = kwargs.pop("dtype", None) or kwargs.pop("torch_dtype", None)
        kwargs.pop("attn_implementation", None)  # no attention in FocalNet
        model = cls(config, **kwargs)
        return model.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype) if dtype is not None else model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path=None, *model_args, **kwargs):
        """Load from a checkpoint folder, a hub id, an original or timm file, with transformers' keywords.

        As `transformers.PreTrainedModel.from_pretrained`: `config=`, `num_labels=` and other config
        fields, `ignore_mismatched_sizes=`, `torch_dtype=`/`dtype=`, `output_loading_info=`,
        `state_dict=`, `revision=`, `cache_dir=`, `local_files_only=`, `subfolder=`. Tensors the
        model has and the checkpoint lacks (a new head) are initialised and reported, as are tensors
        the model does not use; see `pretrained.py`.
        """
        from .pretrained import from_pretrained

        return from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs)

    def save_pretrained(self, folder, **kwargs) -> None:
        """Write `config.json` and `model.safetensors` in the Hugging Face layout."""
        save_pretrained(self, folder, **kwargs)


# -- state dicts into models ----------------------------------------------------------------------
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
    cls = concrete_class(cls, ckpt.config, ckpt.state_dict)
    with torch.device("meta"), no_init_weights():
        model = cls(ckpt.config)
    # fp32 and contiguous copies only where needed; the rest are the checkpoint's own tensors
    state = {k: v.float().contiguous() for k, v in ckpt.state_dict.items()}
    load_state_dict_strict(model, state, ckpt.source, assign=True)
    model.preprocessing = ckpt.preprocessing
    model.source = ckpt.source
    return model.eval()


def save_pretrained(model: nn.Module, folder: str | os.PathLike, preprocessing: ImageSpec | None = None, **kwargs) -> None:
    """Write `config.json`, `model.safetensors` and `preprocessor_config.json` (HF layout, atomically).

    transformers' `save_pretrained` keywords about sharding and safe serialisation are accepted
    and need nothing (one safetensors file); `push_to_hub` is left out (use huggingface_hub).
    """
    from safetensors.torch import save_file

    from ..folder.io import atomic_path, atomic_write_text

    if kwargs.get("push_to_hub"):
        raise CheckpointError("push_to_hub is not supported by focalnet-edge; upload the folder with huggingface_hub")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = model.config
    config.architectures = [type(model).__name__]
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    pre = preprocessing or getattr(model, "preprocessing", None)
    if pre is not None:
        atomic_write_text(folder / "preprocessor_config.json", json.dumps(pre.to_preprocessor_config(), indent=2) + "\n")
    config.save(folder / "config.json")
