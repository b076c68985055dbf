"""One `Runner` protocol over ONNX Runtime, TensorRT and the PyTorch reference; `load(path)`.

Imports neither torch nor a build stage: `TorchRunner` (the PyTorch reference) is imported on
first use, so the runtime works on a device without PyTorch.
"""

from __future__ import annotations

from ..extras import lazy_exports
from .base import Runner, TensorSpec
from .choose import choose_artifact
from .loader import load

_LAZY = {"OnnxRuntimeRunner": ".onnxruntime", "TensorRTRunner": ".tensorrt", "TorchRunner": ".torch"}

__all__ = ["OnnxRuntimeRunner", "Runner", "TensorRTRunner", "TensorSpec", "TorchRunner", "choose_artifact", "load"]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
