"""Precision lives in the ONNX: calibration data, the FP16 graph, the INT8 and FP8 Q/DQ graphs."""

from .data import CalibrationSet, load_calibration_data
from .fp16 import Fp16Result, convert_fp16
from .int8 import Int8Result, build_fp8, build_int8
from .placement import PlacementReport, residual_adds
from .qdq import FORMS, qdq_form_problems, quantize
from .ranges import METHODS, compute_ranges, load_ranges, save_ranges

__all__ = [
    "FORMS",
    "METHODS",
    "CalibrationSet",
    "Fp16Result",
    "Int8Result",
    "PlacementReport",
    "build_fp8",
    "build_int8",
    "compute_ranges",
    "convert_fp16",
    "load_calibration_data",
    "load_ranges",
    "qdq_form_problems",
    "quantize",
    "residual_adds",
    "save_ranges",
]
