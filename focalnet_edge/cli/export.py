"""`focalnet-edge export`: a checkpoint to ONNX (model.onnx + manifest.json)."""

from __future__ import annotations

import argparse

from .args import ExportArgs, ModelArgs, OutputArgs

NAME = "export"
HELP = "export a checkpoint to ONNX (model.onnx + manifest.json)"
EPILOG = """examples:
  focalnet-edge export --model demo --output out/
  focalnet-edge export --model ./focalnet-tiny --output out/ --batch 1:8:32 --fuse-preprocess --color-order BGR
  focalnet-edge export --model ./focalnet-tiny --output out/ --head features --dynamic-size
"""
OUTPUT = OutputArgs("default ./focalnet-edge-out/<model>")


def add_arguments(p: argparse.ArgumentParser) -> None:
    ModelArgs.add(p)
    OUTPUT.add(p)
    ExportArgs.add(p)


def run(args: argparse.Namespace) -> int:
    from ..pipeline import default_output_dir, export_stage

    options = ExportArgs.options(args)
    ckpt = ModelArgs.checkpoint(args)
    out = OUTPUT.folder(args) or default_output_dir(args.model)
    result, _ = export_stage(ckpt, out, options, force=args.force, release_checkpoint=True)
    print(f"wrote {result.path} ({result.nodes} nodes, opset {result.opset}, input {result.contract.name} "
          f"{result.contract.dtype} {result.contract.shape()}, outputs {', '.join(result.outputs)}; "
          f"max abs vs PyTorch {result.checks['torch_vs_onnx']:.1e})")
    return 0
