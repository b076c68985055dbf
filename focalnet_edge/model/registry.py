"""The model classes by name, and weight initialisation: what building a model needs, below `base`.

Model classes register themselves by name (their `__name__`, the name in `config.json`'s
``architectures``) when they are defined (`base.FocalNetPreTrainedModel.__init_subclass__`);
`model_class` finds them, importing `modeling` where the public models are not defined yet.
Both `base` and `pretrained` build models through this module, so neither imports the other.

Weights are initialised once, by the outermost model, and not at all inside
`no_init_weights()` (a checkpoint is about to replace them).
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import CheckpointError
from .config import FocalNetConfig

if TYPE_CHECKING:
    from .base import FocalNetPreTrainedModel

#: the public architectures, as `config.json`'s ``architectures`` names them
ARCHITECTURES = ("FocalNetModel", "FocalNetForImageClassification", "FocalNetForMaskedImageModeling", "FocalNetBackbone")

_REGISTRY: dict[str, type[FocalNetPreTrainedModel]] = {}
_SKIP_INIT = contextvars.ContextVar("focalnet_edge_skip_init", default=False)


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


def concrete_class(cls: type, config: FocalNetConfig, state: dict[str, torch.Tensor]) -> type[FocalNetPreTrainedModel]:
    """`cls` itself when it is a model class (registered), else (None, the unregistered base class) the checkpoint's architecture."""
    if cls is not None and cls.__name__ in _REGISTRY:
        return cls
    return model_class(architecture(config, state))


def architecture(config: FocalNetConfig, state: dict[str, torch.Tensor]) -> str:
    """The architecture a checkpoint is: its config's ``architectures``, else the heads its tensors carry."""
    for arch in getattr(config, "architectures", None) or []:
        if arch in ARCHITECTURES:
            return arch
    if any(k.startswith("classifier.") for k in state):
        return "FocalNetForImageClassification"
    if any(k.startswith("decoder.") for k in state):
        return "FocalNetForMaskedImageModeling"
    return "FocalNetModel"


@torch.no_grad()
def init_module(m: nn.Module, config: FocalNetConfig) -> None:
    """transformers' initialisation of one module's own parameters: normal(0, initializer_range)
    weights and zero biases for Linear and Conv2d, unit LayerNorms, a zero mask token, layer
    scales at `layerscale_value`."""
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        nn.init.normal_(m.weight, std=config.initializer_range)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    for name, p in m.named_parameters(recurse=False):
        if name == "mask_token":
            nn.init.zeros_(p)
        elif name in ("gamma_1", "gamma_2"):
            nn.init.constant_(p, config.layerscale_value)
