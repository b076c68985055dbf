"""focalnet-edge: FocalNet from PyTorch to verified ONNX Runtime and TensorRT inference.

Every public name is imported on first use: `import focalnet_edge` imports neither torch nor
onnx; they load when a model, the exporter or a runner is first touched.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

from .errors import ArtifactError, CheckpointError, ConfigError, FocalNetEdgeError, InputError

_LAZY = {
    "FocalNetBackbone": "focalnet_edge.model",
    "FocalNetConfig": "focalnet_edge.model",
    "FocalNetForImageClassification": "focalnet_edge.model",
    "FocalNetForMaskedImageModeling": "focalnet_edge.model",
    "FocalNetModel": "focalnet_edge.model",
    "ImageSpec": "focalnet_edge.model",
    "load_model": "focalnet_edge.model",
    "load": "focalnet_edge.runtime",
    "export_onnx": "focalnet_edge.export",
    "build": "focalnet_edge.pipeline",
    "BuildOptions": "focalnet_edge.pipeline",
    "verify": "focalnet_edge.verify",
}


def __getattr__(name: str):
    """The models and the pipeline's entry points, imported on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'focalnet_edge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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
