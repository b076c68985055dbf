"""torch -> ONNX (opset >= 17), fused preprocessing, simplification.

Names are imported on first use, so `from focalnet_edge.export.simplify import SIMPLIFIERS`
(the CLI's `--help`) does not import torch.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "ExportResult": ".onnx_export",
    "export_onnx": ".onnx_export",
    "SIMPLIFIERS": ".simplify",
    "simplify": ".simplify",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
