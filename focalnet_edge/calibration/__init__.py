"""Precision lives in the ONNX: calibration data, the FP16 graph, the INT8 and FP8 Q/DQ graphs."""

from .data import CalibrationSet, load_calibration_data
from .fp16 import Fp16Result, convert_fp16
from .int8 import (
    FORMS,
    METHODS,
    RESIDUAL_QDQ,
    Int8Result,
    PlacementReport,
    build_fp8,
    build_int8,
    compute_ranges,
    load_ranges,
    qdq_form_problems,
    quantize,
    residual_adds,
    save_ranges,
)

__all__ = [
    "FORMS",
    "METHODS",
    "CalibrationSet",
    "Fp16Result",
    "Int8Result",
    "PlacementReport",
    "RESIDUAL_QDQ",
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
