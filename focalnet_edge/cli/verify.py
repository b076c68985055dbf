"""`focalnet-edge verify`: artifacts against the PyTorch reference (or the stored one) on images."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import ArtifactError
from ..folder.artifacts import REPORT
from .args import COUNT
from .printing import print_reports

NAME = "verify"
HELP = "compare artifacts with the PyTorch reference on images"
EPILOG = """examples:
  focalnet-edge verify out/                       # every artifact, on the demo's images
  focalnet-edge verify out/ --images val/         # a folder per class gives accuracy too
  focalnet-edge verify out/model.onnx --images frames/ --labels labels.csv --json
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="an output folder, or one artifact in it")
    p.add_argument("--images", default=None, help="image folder (folder per class gives accuracy); default: the demo model's test images; "
                        "other models: 64 images, no accuracy; or the stored ones")
    p.add_argument("--labels", default=None, help="CSV of relative/path,label rows")
    p.add_argument("--limit", type=COUNT, default=None, help="use the first N images")
    p.add_argument("--artifact", default=None, help="only this artifact (file name or precision)")
    p.add_argument("--reference", default=None, metavar="SRC",
                   help="auto (default): PyTorch with the manifest's checkpoint where both are here, else the stored "
                        "reference outputs; stored; torch; or a checkpoint")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _save_report(folder: Path, reports) -> None:
    """report.json beside the artifacts, where the folder can be written; a line on stderr where not."""
    from ..folder.outputs import lock
    from ..pipeline import save_report

    report = folder / REPORT
    if not os.access(folder, os.W_OK):  # a deployed image, a read-only mount: verified all the same
        print(f"{report} not written: {folder} is read-only", file=sys.stderr)
        return
    try:
        with lock(folder, special=False):  # not into a folder a build is replacing now
            save_report(folder, reports)
    except ArtifactError as e:
        print(f"{report} not written: {e}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from ..folder.manifest import read_manifest
    from ..pipeline import verify_stage
    from ..verify.choose import choose_references

    path = Path(args.path)
    if not path.exists():
        raise ArtifactError(f"{path}: no such artifact or output folder")
    folder, names = (path, None) if path.is_dir() else (path.parent, [path.name])
    if args.artifact:
        names = [args.artifact]
    refs = choose_references(folder, read_manifest(folder), args.reference, args.images, args.labels, args.limit,
                             progress=not args.quiet)
    result = verify_stage(folder, refs, names, progress=not args.quiet, record=False)  # reads only: the build's figures stay
    print_reports(result.reports, args.json)
    if not args.json:
        print(f"\nreference: {refs.source}, {len(refs)} images")
    _save_report(folder, result.reports)
    return 0 if result.passed else 1
