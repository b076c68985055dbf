"""`focalnet-edge diagnose`: per FocalNet block, the error an artifact adds against PyTorch fp32."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..errors import ArtifactError, ConfigError
from .printing import format_table

NAME = "diagnose"
HELP = "per FocalNet block: the error an artifact adds against PyTorch fp32, worst first"
EPILOG = """examples:
  focalnet-edge diagnose out/                              # model.int8.onnx, on the build's verification images
  focalnet-edge diagnose out/ --artifact fp16 --images val/ --json
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="an output folder")
    p.add_argument("--artifact", default=None, metavar="NAME",
                   help="file name or precision (default: int8, else fp8, int8-cpu, fp16); engines: diagnose their ONNX source")
    p.add_argument("--images", default=None, metavar="DIR", help="images (default: the build's stored verification images)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="at most N images")
    p.add_argument("--reference", default=None, metavar="SRC", help="the PyTorch checkpoint (default: the manifest's source)")
    p.add_argument("--json", action="store_true", help='print {"blocks": [{"block": ..., "sqnr_db": ...}, ...]}, worst first')


def run(args: argparse.Namespace) -> int:
    from ..extras import require_torch
    from ..verify.diagnose import diagnose

    require_torch("diagnose (the PyTorch fp32 reference)")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit {args.limit} not accepted: expected a positive number of images")
    if args.images is not None and not Path(args.images).is_dir():
        raise ConfigError(f"--images {args.images}: no such image folder")
    if not Path(args.folder).is_dir():
        raise ArtifactError(f"{args.folder}: no such output folder")
    d = diagnose(args.folder, args.artifact, args.images, args.reference, limit=args.limit, progress=not args.quiet)
    print(json.dumps(d.to_dict(), indent=2) if args.json else format_diagnosis(d))
    return 0


def format_diagnosis(d) -> str:
    """The table `diagnose` prints, worst block first."""
    fmt = lambda v, f: "-" if v is None or not np.isfinite(v) else format(v, f)  # noqa: E731
    rows = [("block", "sqnr dB", "cosine", "added dB (its own error)", "tensor")]
    rows += [(b.block, fmt(b.sqnr_db, ".1f"), fmt(b.cosine, ".6f"), fmt(b.added_db, ".1f"), b.tensor) for b in d.blocks]
    lines = [f"{d.artifact} ({d.precision}) against {d.reference}, {d.images} images; worst block first", format_table(rows)]
    lines += [f"skipped {s}" for s in d.skipped]
    return "\n".join(lines)
