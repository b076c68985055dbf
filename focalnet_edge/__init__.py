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

_LAZY = {
    "load": ("focalnet_edge.runtime", "load"),
    "export_onnx": ("focalnet_edge.export", "export_onnx"),
    "build": ("focalnet_edge.pipeline", "build"),
    "BuildOptions": ("focalnet_edge.pipeline", "BuildOptions"),
    "verify": ("focalnet_edge.verify", "verify"),
}


def __getattr__(name: str):
    """The pipeline's entry points, imported on first use (onnx/onnxruntime load only when needed)."""
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'focalnet_edge' has no attribute {name!r}")


__all__ = [
    "BuildOptions",
    "build",
    "export_onnx",
    "load",
    "verify",
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
