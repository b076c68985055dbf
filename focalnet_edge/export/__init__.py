"""torch -> ONNX (opset >= 17), fused preprocessing, simplification.

Names are imported on first use, so `from focalnet_edge.export.simplify import SIMPLIFIERS`
(the CLI's `--help`) does not import torch.
"""

from __future__ import annotations

from ..extras import lazy_exports

_LAZY = {
    "ExportResult": ".onnx_export",
    "export_onnx": ".onnx_export",
    "SIMPLIFIERS": ".simplify",
    "simplify": ".simplify",
}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
