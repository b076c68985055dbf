"""focalnet-edge: FocalNet from PyTorch to verified ONNX Runtime and TensorRT inference."""

__version__ = "0.1.0"

from .errors import ArtifactError, CheckpointError, ConfigError, FocalNetEdgeError, InputError
from .model import (
    FocalNetBackbone,
    FocalNetConfig,
    FocalNetForImageClassification,
    FocalNetForMaskedImageModeling,
    FocalNetModel,
    ImageSpec,
    load_model,
)

__all__ = [
    "ArtifactError",
    "CheckpointError",
    "ConfigError",
    "FocalNetBackbone",
    "FocalNetConfig",
    "FocalNetEdgeError",
    "FocalNetForImageClassification",
    "FocalNetForMaskedImageModeling",
    "FocalNetModel",
    "ImageSpec",
    "InputError",
    "__version__",
    "load_model",
]
