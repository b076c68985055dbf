"""focalnet-edge: FocalNet from PyTorch to verified ONNX Runtime and TensorRT inference.

Every public name is imported on first use: `import focalnet_edge` imports neither torch nor
onnx; they load when a model, the exporter or a runner is first touched.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import ArtifactError, CheckpointError, ConfigError, FocalNetEdgeError, InputError
from .extras import lazy_exports

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
    "verify": "focalnet_edge.verify.compare",
}

#: the models and the pipeline's entry points, imported on first use
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


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
