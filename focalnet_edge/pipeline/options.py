"""The options of the stages: what `focalnet-edge build` (and export, calibrate) may set."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..calibration.smoothing import ALPHA as SMOOTH_ALPHA
from ..folder import artifacts


@dataclass
class ExportOptions:
    head: str = "logits"
    image_size: tuple[int, int] | None = None
    batch: tuple[int, int, int] = (1, 1, 32)
    dynamic_batch: bool = True
    dynamic_size: bool = False
    opset: int | None = None  #: default 17, 18 with frame_size "any"
    fuse_preprocess: bool = False
    frames_dtype: str = "uint8"
    layout: str | None = None
    color_order: str = "RGB"
    resize_mode: str = "crop"
    frame_size: str = "input"
    simplifier: str = "onnxslim"
    out_features: list[str] | None = None

    def as_kwargs(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class PrecisionOptions:
    calib_data: str | None = None
    calib_size: int = 256
    seed: int = 0
    method: str = "max"
    percentile: float = 99.99
    calib_cache: str | None = None
    min_agreement: float = artifacts.INT8_MIN_AGREEMENT
    max_fallback: int = 8
    keep_io_types: bool = True
    cpu_int8: bool = True  #: also write the ONNX Runtime CPU form of INT8
    int8_float: str = "fp16"  #: float parts of the TensorRT-form INT8 graph: fp16 (fast on GPUs) or fp32
    keep_stem_and_head: bool = True  #: stem, head and downsampling Convs in float (`placement.float_by_default`)
    smooth_alpha: float = SMOOTH_ALPHA  #: LayerNorm outputs smoothed into their GEMMs before INT8/FP8 (0: off)
    gate: bool = True  #: False (--no-gate): the quantized graphs are written as quantized, nothing returned to float
    keep_float: list[str] = field(default_factory=list)  #: --keep-float patterns: nodes kept in float (int8) / fp32 (fp16)


@dataclass
class BuildOptions:
    model: str = "demo"
    output: Path | None = None
    variant: str | None = None
    precision: str = "fp16"
    export: ExportOptions = field(default_factory=ExportOptions)
    calibration: PrecisionOptions = field(default_factory=PrecisionOptions)
    images: str | None = None  #: verification images (default: the demo's, or the held-back calibration images)
    labels: str | None = None
    backend: str = "auto"
    engine: Any = None  #: EngineOptions, for the TensorRT stage
