"""Argument groups shared by the commands, after Polygraphy's `tools/args`: each group adds its options
to a command's parser and builds, from the parsed arguments, the options object its stage takes, so an
option is declared, checked and turned into a stage's input in one place.

Range checks that a stage makes anyway are the stage's (`engine.config.check_options`); a group only
turns text into values.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError, FocalNetEdgeError
from ..folder.artifacts import BUILD_PRECISIONS, INT8_FLOAT_TYPES, INT8_MIN_AGREEMENT, PRECISIONS, quantizes


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= `low`. argparse names the option in its one-line error
    ("argument --batch-size/--batch: 0 not accepted: expected an integer >= 1"), so every count
    option of every command says which one is wrong, in one place."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} not accepted: expected an integer >= {low}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} not accepted: expected an integer >= {low}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


COUNT, NONNEGATIVE = at_least(1), at_least(0)


def parsed_by(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from one of our parsers (`contract.parse_batch`...): its one-sentence error becomes
    argparse's, which names the option it was given to."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except FocalNetEdgeError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = parse.__name__
    return convert


def int_list(text: str, what: str) -> list[int]:
    """`1,8` -> [1, 8]; a `ConfigError` naming `what` unless every value is a positive integer."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise ConfigError(f"{what} {text!r} not understood: expected positive numbers separated by commas, e.g. 1,8")
    return values


#: `calibrate --precision`: the precisions one stage writes from an fp32 file, its default first, then in the table's order
CALIBRATE_DEFAULT = "int8"
CALIBRATE_PRECISIONS = (CALIBRATE_DEFAULT,) + tuple(
    p for p in PRECISIONS if p in BUILD_PRECISIONS and BUILD_PRECISIONS[p] and p != CALIBRATE_DEFAULT)


class OutputArgs:
    """`--output/-o DIR` and `--force`: where a command writes, and whether it may write into a folder not its own."""

    def __init__(self, default: str):
        self.default = default  #: what --output defaults to, in words ("default ./out", "default: the file's folder")

    def add(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--output", "-o", default=None, metavar="DIR", help=f"output folder ({self.default})")
        p.add_argument("--force", action="store_true",
                       help="write into a folder that is not empty and not ours, or holds a build of another model")

    @staticmethod
    def folder(args: argparse.Namespace, default: Path | None = None) -> Path | None:
        """The folder --output names, else `default`."""
        return Path(args.output) if args.output else default


class ModelArgs:
    """`--model SRC` and `--variant`: the checkpoint a command starts from."""

    @staticmethod
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", default="demo", metavar="SRC",
                       help="checkpoint folder, .pth/.safetensors file (transformers, timm or microsoft/FocalNet names), "
                            "hub id, or 'demo' (the bundled model, unless ./demo exists; default)")
        p.add_argument("--variant", default=None, help="official variant of an original .pth (e.g. large_fl4), when its name doesn't say")

    @staticmethod
    def checkpoint(args: argparse.Namespace):
        """The checkpoint --model names (`model.load_checkpoint`)."""
        from ..model import load_checkpoint

        return load_checkpoint(args.model, variant=args.variant)


class ExportArgs:
    """The export options -> `pipeline.ExportOptions`."""

    @staticmethod
    def add(p: argparse.ArgumentParser) -> None:
        from ..export.simplify import SIMPLIFIERS
        from ..folder.contract import COLOR_ORDERS, HEADS, parse_batch, parse_image_size
        from ..model.preprocessing import RESIZE_MODES

        g = p.add_argument_group("export")
        g.add_argument("--image-size", type=parsed_by(parse_image_size), default=None, metavar="H[xW]", help="input size (default: the checkpoint's)")
        g.add_argument("--batch", type=parsed_by(parse_batch), default="1:1:32", metavar="MIN:OPT:MAX", help="batch range (default 1:1:32); N means 1:N:N")
        g.add_argument("--static-batch", dest="dynamic_batch", action="store_false", help="fixed batch OPT (default: a dynamic batch axis)")
        g.add_argument("--dynamic-size", action="store_true", help="dynamic height and width (multiples of the model's stride)")
        g.add_argument("--opset", type=int, default=None, help="ONNX opset, >= 17 (default 17; 18 with --frame-size any)")
        g.add_argument("--head", choices=HEADS, default="logits", help="graph outputs (default logits)")
        g.add_argument("--out-features", default=None, help="stages for --head features, e.g. stage1,stage2,stage3")
        g.add_argument("--fuse-preprocess", action="store_true", help="take raw uint8 frames and normalise in the graph")
        g.add_argument("--frames-dtype", choices=("uint8", "float32"), default="uint8",
                       help="frame type with --fuse-preprocess: uint8 (default), or float32 0..255 (DeepStream's nvinfer)")
        g.add_argument("--layout", choices=("NHWC", "NCHW"), default=None, help="frame layout with --fuse-preprocess (default NHWC)")
        g.add_argument("--color-order", choices=COLOR_ORDERS, default="RGB",
                       help="frame colour order with --fuse-preprocess; 4-channel orders (NVMM surfaces, appsink) drop the 4th")
        g.add_argument("--resize-mode", choices=RESIZE_MODES, default="crop",
                       help="how frames become the input size: crop (the checkpoint's resize + centre crop, default), "
                            "stretch (nvinfer's default), letterbox (nvinfer's maintain-aspect-ratio + symmetric-padding)")
        g.add_argument("--frame-size", choices=("input", "any"), default="input",
                       help="with --fuse-preprocess: 'any' takes frames of any size and resizes them in the graph (opset >= 18)")
        g.add_argument("--simplifier", choices=SIMPLIFIERS, default="onnxslim", help="graph simplifier (default onnxslim)")

    @staticmethod
    def options(args: argparse.Namespace):
        from ..pipeline import ExportOptions

        return ExportOptions(
            head=args.head, image_size=args.image_size, batch=args.batch, dynamic_batch=args.dynamic_batch,
            dynamic_size=args.dynamic_size, opset=args.opset, fuse_preprocess=args.fuse_preprocess,
            frames_dtype=args.frames_dtype, layout=args.layout, color_order=args.color_order,
            resize_mode=args.resize_mode, frame_size=args.frame_size, simplifier=args.simplifier,
            out_features=[s.strip() for s in args.out_features.split(",")] if args.out_features else None,
        )


#: options only the quantization stage reads (dest -> flag): refused, not ignored, where nothing is quantized
QUANTIZATION_OPTIONS = {"calib_method": "--calib-method", "calib_percentile": "--calib-percentile", "calib_cache": "--calib-cache",
                        "min_agreement": "--min-agreement", "max_fallback": "--max-fallback", "gate": "--no-gate",
                        "cpu_int8": "--no-cpu-int8", "int8_smoothing": "--int8-smoothing", "int8_float": "--int8-float"}


class PrecisionArgs:
    """The precision and calibration options -> `pipeline.PrecisionOptions` (the command adds `--precision` itself:
    its choices differ between build and calibrate)."""

    @staticmethod
    def add(p: argparse.ArgumentParser) -> None:
        from ..calibration import METHODS
        from ..calibration.smoothing import ALPHA as SMOOTH_ALPHA

        g = p.add_argument_group("precision and calibration")
        g.add_argument("--calib-data", default=None, metavar="SRC", help="image folder, video file or .npz (the demo brings its own)")
        g.add_argument("--calib-size", type=COUNT, default=256, metavar="N", help="calibration images to sample (default 256)")
        g.add_argument("--calib-seed", type=int, default=0, help="seed of the sample (default 0)")
        g.add_argument("--calib-method", choices=METHODS, default="max", help="INT8 range method (default max)")
        g.add_argument("--calib-percentile", type=float, default=99.99, help="percentile for --calib-method percentile")
        g.add_argument("--calib-cache", default=None, metavar="JSON", help="reuse (or write) calibration ranges")
        g.add_argument("--min-agreement", type=float, default=INT8_MIN_AGREEMENT,
                       help=f"INT8 gate: top-1 agreement on held-back images (default {INT8_MIN_AGREEMENT})")
        g.add_argument("--max-fallback", type=NONNEGATIVE, default=8, help="INT8 gate: GEMM/Conv nodes it may return to float (default 8)")
        g.add_argument("--no-gate", dest="gate", action="store_false",
                       help="INT8/FP8: write the quantized graphs as quantized, no accuracy gate and no fallback (figures still reported)")
        g.add_argument("--keep-float", action="append", default=[], metavar="PATTERN",
                       help="keep these nodes in float (INT8/FP8) or fp32 (FP16): a node name, a module path such as "
                            "encoder.stages.2.layers.1.mlp.fc2 (and everything below it), or a pattern with *; repeatable")
        g.add_argument("--fp16-io", dest="keep_io_types", action="store_false",
                       help="FP16 graph with fp16 inputs/outputs (default: fp32 inputs/outputs)")
        g.add_argument("--no-cpu-int8", dest="cpu_int8", action="store_false", help="skip the ONNX Runtime CPU form of INT8")
        g.add_argument("--int8-smoothing", type=float, default=SMOOTH_ALPHA, metavar="ALPHA",
                       help=f"INT8/FP8: move LayerNorm outputs' outlier channels into the next GEMM's weights (SmoothQuant's alpha, "
                            f"default {SMOOTH_ALPHA}; 0: off)")
        g.add_argument("--int8-float", choices=INT8_FLOAT_TYPES, default=INT8_FLOAT_TYPES[0],
                       help="type of the layers left in float in model.int8.onnx (default fp16: what TensorRT runs fast)")
        p.set_defaults(precision_defaults={dest: p.get_default(dest) for dest in QUANTIZATION_OPTIONS})

    @staticmethod
    def options(args: argparse.Namespace):
        from ..pipeline import PrecisionOptions

        if not 0 < args.min_agreement <= 1:
            raise ConfigError(f"--min-agreement {args.min_agreement} not accepted: expected a value in (0, 1]")
        if not 0 <= args.int8_smoothing <= 1:
            raise ConfigError(f"--int8-smoothing {args.int8_smoothing} not accepted: expected a value in [0, 1] (0: off)")
        if not quantizes(args.precision):
            for dest, flag in QUANTIZATION_OPTIONS.items():
                if getattr(args, dest) != args.precision_defaults[dest]:
                    raise ConfigError(f"{flag} has no effect with --precision {args.precision}: it sets the INT8/FP8 quantization")
            if args.keep_float and not BUILD_PRECISIONS.get(args.precision, True):  # fp32: nothing is converted
                raise ConfigError(f"--keep-float has no effect with --precision {args.precision}: nothing is converted to keep in float")
        return PrecisionOptions(
            calib_data=args.calib_data, calib_size=args.calib_size, seed=args.calib_seed, method=args.calib_method,
            percentile=args.calib_percentile, calib_cache=args.calib_cache, min_agreement=args.min_agreement,
            max_fallback=args.max_fallback, keep_io_types=args.keep_io_types, cpu_int8=args.cpu_int8, int8_float=args.int8_float,
            smooth_alpha=args.int8_smoothing, gate=args.gate, keep_float=list(args.keep_float),
        )


class EngineArgs:
    """The TensorRT builder options -> `engine.config.EngineOptions`, checked by the engine package's own rules."""

    @staticmethod
    def add(p: argparse.ArgumentParser) -> None:
        from ..engine.config import HARDWARE_COMPATIBILITY
        from ..folder.artifacts import DEEPSTREAM_CHOICES

        g = p.add_argument_group("TensorRT engines (where TensorRT and a GPU are present)")
        g.add_argument("--workspace", type=COUNT, default=None, metavar="MiB", help="workspace memory pool limit")
        g.add_argument("--opt-level", type=int, default=None, metavar="0-5", help="builder optimization level (TensorRT's default 3)")
        g.add_argument("--no-timing-cache", dest="timing_cache", action="store_false", help="don't load or save timing.cache")
        g.add_argument("--dla-core", type=NONNEGATIVE, default=None, metavar="N", help="build for DLA core N (static shapes, GPU fallback)")
        g.add_argument("--no-gpu-fallback", dest="gpu_fallback", action="store_false", help="with --dla-core: fail instead of falling back")
        g.add_argument("--version-compatible", action="store_true", help="engines that later TensorRT versions can load (lean runtime)")
        g.add_argument("--hardware-compatibility", choices=tuple(HARDWARE_COMPATIBILITY), default="none",
                       help="engines that run on other GPUs (ampere_plus, same_compute_capability)")
        g.add_argument("--weakly-typed", action="store_true", help="TensorRT 10.x only: FP16/INT8 builder flags instead of typed ONNX")
        g.add_argument("--streams", type=COUNT, default=1, metavar="N",
                       help="N identical optimization profiles: the runner runs N CUDA streams at once, one context each (default 1)")
        g.add_argument("--deepstream", choices=DEEPSTREAM_CHOICES, default="auto",
                       help="also write the graph DeepStream's nvinfer runs (model.PRECISION.deepstream.onnx), build and verify its "
                            "engine, for deploy --to deepstream: auto (the precision deploy chooses, where the folder suits nvinfer), "
                            "none, or a precision")
        g.add_argument("--profile-sizes", default=None, metavar="HxW:HxW:HxW", help="min:opt:max sizes with --dynamic-size, or frame sizes with --frame-size any (default: max 2160x3840 down to 240x320, the largest whose float frames at the max batch take <= 1/16 of the GPU's memory)")

    @staticmethod
    def options(args: argparse.Namespace):
        from ..engine.config import EngineOptions, check_options
        from ..folder.contract import parse_image_size

        sizes = None
        if args.profile_sizes:
            parts = args.profile_sizes.split(":")
            if len(parts) != 3:
                raise ConfigError(f"--profile-sizes {args.profile_sizes!r} not understood: expected MINHxW:OPTHxW:MAXHxW")
            sizes = tuple(parse_image_size(x) for x in parts)
        options = EngineOptions(
            workspace_mib=args.workspace, optimization_level=args.opt_level, timing_cache=args.timing_cache,
            dla_core=args.dla_core, gpu_fallback=args.gpu_fallback, version_compatible=args.version_compatible,
            hardware_compatibility=args.hardware_compatibility, weakly_typed=args.weakly_typed, size_range=sizes,
            streams=args.streams, deepstream=args.deepstream,
        )
        check_options(options)  # the ranges TensorRT takes, before any work
        return options
