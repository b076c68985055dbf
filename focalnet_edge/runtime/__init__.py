"""One `Runner` protocol over ONNX Runtime, TensorRT and the PyTorch reference; `load(path)`.

Imports neither torch nor a build stage: `TorchRunner` (the PyTorch reference) is imported on
first use, so the runtime works on a device without PyTorch.
"""

from __future__ import annotations

import importlib

from .base import Runner, TensorSpec
from .loader import choose_artifact, load

_LAZY = {"OnnxRuntimeRunner": ".onnxruntime", "TensorRTRunner": ".tensorrt", "TorchRunner": ".torch"}

__all__ = ["OnnxRuntimeRunner", "Runner", "TensorRTRunner", "TensorSpec", "TorchRunner", "choose_artifact", "load"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
