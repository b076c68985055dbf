"""`focalnet-edge build`: export, precision, engines, verification: the whole pipeline."""

from __future__ import annotations

import argparse

from ..folder.artifacts import BUILD_PRECISIONS
from .args import EngineArgs, ExportArgs, ModelArgs, OutputArgs, PrecisionArgs
from .printing import format_table

NAME = "build"
HELP = "export, precision, engines, verification: the whole pipeline"
EPILOG = """examples:
  focalnet-edge build --precision fp16                       # the bundled demo model, offline
  focalnet-edge build --model ./focalnet-tiny --precision int8 --calib-data calib/ --images val/
  focalnet-edge build --model ./focalnet-tiny --precision best --calib-data clip.mp4 --fuse-preprocess --color-order BGR
"""
OUTPUT = OutputArgs("default ./focalnet-edge-out/<model>")


def add_arguments(p: argparse.ArgumentParser) -> None:
    ModelArgs.add(p)
    p.add_argument("--precision", choices=tuple(BUILD_PRECISIONS), default="fp16", help="default fp16; best: fp16 and int8")
    OUTPUT.add(p)
    p.add_argument("--images", default=None, help="verification images (folder per class gives accuracy)")
    p.add_argument("--labels", default=None, help="CSV of relative/path,label rows for --images")
    p.add_argument("--backend", choices=("auto", "tensorrt", "onnxruntime"), default="auto",
                   help="auto: engines where TensorRT and a GPU are present (default)")
    ExportArgs.add(p)
    PrecisionArgs.add(p)
    EngineArgs.add(p)


def _summary(result) -> str:
    rows = [("artifact", "size", "precision", "latency here", "top-1 agreement", "accuracy", "verified")]
    reports = {r.artifact: r for r in result.reports}
    for name, entry in result.manifest["artifacts"].items():
        r = reports.get(name)
        lat = result.latency_ms.get(name)
        rows.append((
            name,
            f"{entry['bytes'] / 1e6:.2f} MB",
            entry["precision"],
            f"{lat:.1f} ms" if lat is not None else "-",
            f"{r.top1_agreement:.4f}" if r and r.top1_agreement is not None else (f"cos {r.mean_cosine:.5f}" if r else "-"),
            f"{r.accuracy:.4f}" if r and r.accuracy is not None else "-",
            ("pass" if r.passed else "FAIL: " + "; ".join(r.failures)) if r else "not run here",
        ))
    return format_table(rows)


def run(args: argparse.Namespace) -> int:
    from ..pipeline import BuildOptions, build

    options = BuildOptions(
        model=args.model, output=OUTPUT.folder(args), variant=args.variant,
        precision=args.precision, export=ExportArgs.options(args), calibration=PrecisionArgs.options(args),
        images=args.images, labels=args.labels, backend=args.backend, engine=EngineArgs.options(args),
    )
    result = build(options, progress=not args.quiet, force=args.force)
    print(_summary(result))
    written = result.kept if result.failed else result.output_dir
    print(f"\nverified on {result.images_used}; manifest: {written / 'manifest.json' if written else 'not kept'}")
    for note in result.notes:
        print(note)
    if result.failed:  # the last line: where the failed build is, and that the folder did not change
        print(f"not committed ({result.failed}): {result.output_dir} was left as it was; "
              + (f"the failed build is in {result.kept}" if result.kept else "the failed build could not be kept"))
    return 0 if result.passed else 1
