"""torch -> ONNX (opset >= 17), fused preprocessing, simplification, input contracts."""

from .contract import HEADS, InputContract, parse_batch, parse_image_size
from .onnx_export import ExportResult, export_onnx, read_metadata, sample_input, set_metadata
from .simplify import SIMPLIFIERS, simplify

__all__ = [
    "HEADS",
    "SIMPLIFIERS",
    "ExportResult",
    "InputContract",
    "export_onnx",
    "parse_batch",
    "parse_image_size",
    "read_metadata",
    "sample_input",
    "set_metadata",
    "simplify",
]
