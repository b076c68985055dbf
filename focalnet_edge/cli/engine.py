"""`focalnet-edge engine`: TensorRT engines built (or a trtexec plan adopted) in an output folder on this device, then verified."""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import EngineArgs
from .printing import print_reports

NAME = "engine"
HELP = "build TensorRT engines in an output folder on this device, or adopt a trtexec plan; then verify"
EPILOG = """examples:
  focalnet-edge engine out/                                   # build the engines of a copied folder here (no torch)
  focalnet-edge engine out/ --adopt model.fp16.engine --from model.fp16.onnx   # register a trtexec/nvinfer plan
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="an output folder (built elsewhere and copied here)")
    p.add_argument("--adopt", default=None, metavar="PLAN", help="register this plan (trtexec, nvinfer) instead of building")
    p.add_argument("--from", dest="source", default=None, metavar="ONNX", help="with --adopt: the ONNX file it was built from")
    EngineArgs.add(p)


def run(args: argparse.Namespace) -> int:
    from ..engine.command import engine_command
    from ..extras import optional
    from ..folder.manifest import read_manifest
    from ..pipeline import verify_stage
    from ..verify.references import load_references

    folder = Path(args.folder)
    built = engine_command(folder, EngineArgs.options(args), adopt=args.adopt, source=args.source)
    for note in built.notes:
        print(note)
    graphs = built.graphs  # a DeepStream graph written for its engine is verified too, on ONNX Runtime where it is installed
    if graphs and optional("onnxruntime") is None:
        print(f"{', '.join(graphs)}: not verified here (no ONNX Runtime; its engine is): "
              + "; ".join(f"focalnet-edge verify {folder} --artifact {g}" for g in graphs) + " where ONNX Runtime is")
        graphs = []
    names = graphs + [e["path"] for e in built.engines]
    if not names:
        return 0
    refs = load_references(folder, read_manifest(folder))  # verified on this device, without PyTorch
    result = verify_stage(folder, refs, names, progress=not args.quiet)
    print_reports(result.reports, False)
    print(f"\nreference: {refs.source}, {len(refs)} images")
    return 0 if result.passed else 1
