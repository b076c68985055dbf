"""The stages in order, over an output folder: export -> precision -> engine -> verify -> manifest.

Each function takes files (or a checkpoint) and writes files; the CLI only calls them. Every
artifact is written to a temporary path and renamed when complete, and the manifest is rewritten
after each stage listing only complete artifacts, so an interrupted run never leaves a
half-written artifact or a manifest that lies.

    options.py    ExportOptions, PrecisionOptions, BuildOptions
    export.py     export_stage (model.onnx and a fresh manifest), adopt_onnx
    precision.py  precision_stage: the fp16 graph, the quantized graphs behind the accuracy gate
    engines.py    engine_stage: TensorRT's parser check, engines where TensorRT runs
    verify.py     verify_stage against the PyTorch reference (or the stored references)
    memory.py     timed_stage: time and peak RSS per stage
    run.py        build: the stages in order, committed only when every gate and verification passed
"""

from .engines import engine_stage, tensorrt_check_stage
from .export import adopt_onnx, default_output_dir, export_stage
from .memory import timed_stage
from .options import BuildOptions, ExportOptions, PrecisionOptions
from .precision import PrecisionResult, form_wanted, fp16_stage, int8_source, int8_stage, precision_stage
from .run import BuildResult, build, build_failures, measure_latency
from .verify import VerifyResult, live_references, reference_for, save_report, verify_stage

__all__ = [
    "BuildOptions",
    "BuildResult",
    "ExportOptions",
    "PrecisionOptions",
    "PrecisionResult",
    "VerifyResult",
    "adopt_onnx",
    "build",
    "build_failures",
    "default_output_dir",
    "engine_stage",
    "export_stage",
    "form_wanted",
    "fp16_stage",
    "int8_source",
    "int8_stage",
    "live_references",
    "measure_latency",
    "precision_stage",
    "reference_for",
    "save_report",
    "tensorrt_check_stage",
    "timed_stage",
    "verify_stage",
]
