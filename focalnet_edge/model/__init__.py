"""Trace-friendly FocalNet with transformers' names, configs and checkpoints.

The names are imported on first use, so `import focalnet_edge.model` (and reading a
`FocalNetConfig` or an `ImageSpec`) does not import torch.

Modules, bottom up: `config` (FocalNetConfig), `preprocessing` (ImageSpec), `original` and
`timm_layout` (other repositories' checkpoint names), `weights` (sources -> Checkpoint),
`base` (the base model, weight initialisation, load_model/save_pretrained), `modeling` (the models).
"""

from __future__ import annotations

import importlib

_NAMES = {
    "FocalNetConfig": "config",
    "ImageSpec": "preprocessing",
    "VARIANTS": "original",
    "Checkpoint": "weights",
    "load_checkpoint": "weights",
    "FocalNetPreTrainedModel": "base",
    "load_model": "base",
    "save_pretrained": "base",
    "FocalNetBackbone": "modeling",
    "FocalNetForImageClassification": "modeling",
    "FocalNetForMaskedImageModeling": "modeling",
    "FocalNetModel": "modeling",
}


def __getattr__(name: str):
    if name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = sorted(_NAMES)
