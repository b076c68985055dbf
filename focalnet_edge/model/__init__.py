"""Trace-friendly FocalNet with transformers' names, configs and checkpoints.

The names are imported on first use, so `import focalnet_edge.model` (and reading a
`FocalNetConfig` or an `ImageSpec`) does not import torch.

Modules, bottom up: `config` (FocalNetConfig), `preprocessing` (ImageSpec), `original` and
`timm_layout` (other repositories' checkpoint names), `weights` (sources -> Checkpoint),
`registry` (model classes by name, weight initialisation), `pretrained` (transformers'
`from_pretrained`), `base` (the base model, load_model/save_pretrained), `modeling` (the models).
"""

from __future__ import annotations

from ..extras import lazy_exports

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

__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, {name: f".{module}" for name, module in _NAMES.items()})
