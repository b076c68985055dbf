"""`focalnet-edge check`: will TensorRT's ONNX parser take this file (without TensorRT)?"""

from __future__ import annotations

import argparse
import json

NAME = "check"
HELP = "will TensorRT's ONNX parser take this file? (runs without TensorRT)"
EPILOG = """examples:
  focalnet-edge check out/model.int8.onnx
  focalnet-edge check other_exporter.onnx --json
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("onnx", help="an ONNX file")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from ..engine.check import check_onnx

    findings = check_onnx(args.onnx)
    errors = sum(f.severity == "error" for f in findings)
    if args.json:
        print(json.dumps([f.__dict__ for f in findings], indent=2))
    else:
        for f in findings:
            print(f)
        print(f"{args.onnx}: " + ("TensorRT's ONNX parser should take it" if not errors else f"{errors} errors")
              + (f", {len(findings) - errors} warnings" if len(findings) - errors else ""))
    return 1 if errors else 0
