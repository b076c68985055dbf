"""One `Runner` protocol over ONNX Runtime, TensorRT and the PyTorch reference; `load(path)`."""

from .base import Runner, TensorSpec
from .loader import choose_artifact, load
from .onnxruntime import OnnxRuntimeRunner
from .torch import TorchRunner

__all__ = [
    "OnnxRuntimeRunner",
    "Runner",
    "TensorSpec",
    "TorchRunner",
    "choose_artifact",
    "load",
]
