"""Trace-friendly FocalNet with transformers' names, configs and checkpoints."""

from .config import FocalNetConfig
from .modeling import (
    FocalNetBackbone,
    FocalNetForImageClassification,
    FocalNetForMaskedImageModeling,
    FocalNetModel,
    FocalNetPreTrainedModel,
)
from .preprocessing import ImageSpec
from .weights import VARIANTS, Checkpoint, load_checkpoint, load_model, save_pretrained

__all__ = [
    "VARIANTS",
    "Checkpoint",
    "FocalNetBackbone",
    "FocalNetConfig",
    "FocalNetForImageClassification",
    "FocalNetForMaskedImageModeling",
    "FocalNetModel",
    "FocalNetPreTrainedModel",
    "ImageSpec",
    "load_checkpoint",
    "load_model",
    "save_pretrained",
]
