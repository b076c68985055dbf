"""Output objects with the field names of transformers' FocalNet outputs.

Like transformers' `ModelOutput` they are ordered dicts of the fields that are not None, with
attribute access, `out["logits"]`, `out[0]` (the first field that is not None), `to_tuple()`
and `keys()`/`items()`. Being dicts, `torch.jit.trace(model, x, strict=False)` takes them; they
are registered as pytree nodes, so `torch.export` accepts models that return them.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

Tensor = torch.Tensor


class ModelOutput(OrderedDict):
    """An ordered dict of the non-None fields of a dataclass, kept in step with its attributes."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                super().__setitem__(f.name, value)

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            return super().__getitem__(key)
        return self.to_tuple()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        super().__setattr__(key, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if value is not None and name in self.keys():
            super().__setitem__(name, value)
        super().__setattr__(name, value)

    def __reduce__(self):  # pickle and copy by fields, as a dataclass
        return type(self), tuple(getattr(self, f.name) for f in dataclasses.fields(self))

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(self[k] for k in self.keys())


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
    """Flatten to the values of the fields (None kept), so torch.export rebuilds the same object."""
    from torch.utils import _pytree

    for cls in _OUTPUTS:
        names = [f.name for f in dataclasses.fields(cls)]

        def flatten(out, names=names):
            return [getattr(out, n) for n in names], names

        def unflatten(values, names, cls=cls):
            return cls(**dict(zip(names, values)))

        def flatten_with_keys(out, names=names):
            return [(_pytree.MappingKey(n), getattr(out, n)) for n in names], names

        try:
            _pytree.register_pytree_node(cls, flatten, unflatten, serialized_type_name=f"focalnet_edge.{cls.__name__}",
                                         flatten_with_keys_fn=flatten_with_keys)
        except ValueError:  # already registered (module reloaded)
            pass


_register_pytrees()
