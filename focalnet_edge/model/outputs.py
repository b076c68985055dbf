"""Output objects with the field names of transformers' FocalNet outputs.

They behave like transformers' `ModelOutput` where users touch them: attribute access,
`out["logits"]`, `out[0]` (the first field that is not None) and `to_tuple()`. They are
registered as pytree nodes, so `torch.export` accepts models that return them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

Tensor = torch.Tensor


class ModelOutput:
    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(v for v in (getattr(self, f.name) for f in dataclasses.fields(self)) if v is not None)

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            return getattr(self, key)
        return self.to_tuple()[key]

    def __iter__(self):
        return iter(self.keys())


@dataclass
class FocalNetModelOutput(ModelOutput):
    last_hidden_state: Tensor | None = None
    pooler_output: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    reshaped_hidden_states: tuple[Tensor, ...] | None = None


@dataclass
class FocalNetImageClassifierOutput(ModelOutput):
    loss: Tensor | None = None
    logits: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    reshaped_hidden_states: tuple[Tensor, ...] | None = None


@dataclass
class FocalNetMaskedImageModelingOutput(ModelOutput):
    loss: Tensor | None = None
    reconstruction: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    reshaped_hidden_states: tuple[Tensor, ...] | None = None


@dataclass
class BackboneOutput(ModelOutput):
    feature_maps: tuple[Tensor, ...] | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


_OUTPUTS = (FocalNetModelOutput, FocalNetImageClassifierOutput, FocalNetMaskedImageModelingOutput, BackboneOutput)


def _register_pytrees() -> None:
    register = getattr(torch.export, "register_dataclass", None)
    if register is None:  # torch < 2.2: torch.export cannot return these objects, tuples still work
        return
    for cls in _OUTPUTS:
        try:
            register(cls, serialized_type_name=f"focalnet_edge.{cls.__name__}")
        except ValueError:  # already registered (module reloaded)
            pass


_register_pytrees()
