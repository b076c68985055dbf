"""`focalnet-edge calibrate`: the fp16, int8 or fp8 graph of an existing ONNX file."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..folder.contract import parse_image_size
from .args import CALIBRATE_DEFAULT, CALIBRATE_PRECISIONS, OutputArgs, PrecisionArgs, parsed_by

NAME = "calibrate"
HELP = "fp16 or int8 graph of an existing ONNX file"
EPILOG = """examples:
  focalnet-edge calibrate out/model.onnx --precision int8 --calib-data calib/
  focalnet-edge calibrate other_exporter.onnx --precision fp16 --output out16/
  focalnet-edge calibrate out/model.onnx --precision int8 --calib-data calib/ --calib-cache out/calibration.json
"""
OUTPUT = OutputArgs("default: the file's folder")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("onnx", help="an fp32 ONNX file (from focalnet-edge export or another exporter)")
    p.add_argument("--precision", choices=CALIBRATE_PRECISIONS, default=CALIBRATE_DEFAULT, help="int8 (default), fp16 or fp8 (sm >= 8.9, Thor)")
    OUTPUT.add(p)
    p.add_argument("--image-size", type=parsed_by(parse_image_size), default=None, metavar="H[xW]", help="input size of a foreign file with dynamic height/width")
    PrecisionArgs.add(p)


def _print_results(result) -> None:
    from ..calibration.gate import blocks_of

    for r in result.int8:
        judged = "held-back images" if r.held_out else "calibration images (none held back: pass at least 2 to --calib-data)"
        print(f"wrote {r.path} ({r.form} form): top-1 agreement {r.agreement:.4f} with fp32 on {r.holdout_images} {judged}"
              + (f"; returned to float: {', '.join(f'{b} ({len(n)})' for b, n in blocks_of(r.kept_float).items())}" if r.kept_float else "")
              + {True: "", False: " (gate FAILED)", None: " (no gate)"}[r.gate_passed])
    if result.fp16 is not None:
        kept = result.fp16.kept_fp32
        print(f"wrote {result.fp16.path}" + (f"; kept in fp32: {len(kept)} nodes" if kept else ""))


def run(args: argparse.Namespace) -> int:
    from ..errors import FocalNetEdgeError
    from ..folder.manifest import read_manifest
    from ..folder.outputs import lock, remove_partials
    from ..pipeline import adopt_onnx, precision_stage

    from ..extras import require_onnxruntime

    require_onnxruntime("focalnet-edge calibrate")  # before any work: every precision's stage runs ONNX Runtime
    src = Path(args.onnx)
    out = OUTPUT.folder(args, src.parent)
    options = PrecisionArgs.options(args)
    with lock(out, special=args.output is not None):  # one run at a time per folder; --output / or ~ refused
        fp32 = adopt_onnx(src, out, args.image_size, force=args.force)
        remove_partials(out)  # what a killed calibrate left here: its work folder and files (not inside other runs' folders)
        try:
            manifest = read_manifest(out).to_json()  # checked, then extended and written back
        except FocalNetEdgeError:
            manifest = None
        result = precision_stage(out, fp32, args.precision, options, manifest, progress=not args.quiet)
    _print_results(result)
    return 0 if all(r.gate_passed is not False for r in result.int8) else 1
