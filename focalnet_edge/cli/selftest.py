"""`focalnet-edge selftest`: on a device, build or load a folder's engines, verify them against the stored
references, time them, and print one report (with the power mode and clocks) to paste into a bug report."""

from __future__ import annotations

import argparse
import sys

from .args import COUNT, NONNEGATIVE, EngineArgs

NAME = "selftest"
HELP = "on this device: build or load the engines, verify them against the stored references, time them; one report"
EPILOG = """examples:
  focalnet-edge selftest out/                 # text report; exit 0 only when every engine verified
  focalnet-edge selftest out/ --json > selftest.json
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="an output folder (built elsewhere and copied here)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--iterations", type=COUNT, default=50, help="timed batches per batch size (default 50)")
    p.add_argument("--warmup", type=NONNEGATIVE, default=10, help="untimed batches first (default 10)")
    p.add_argument("--no-timing", dest="timing", action="store_false", help="verify only")
    EngineArgs.add(p)


def run(args: argparse.Namespace) -> int:
    from ..engine.selftest import format_text, selftest

    report = selftest(args.folder, EngineArgs.options(args), iterations=args.iterations, warmup=args.warmup, timing=args.timing)
    print(report.to_json() if args.json else format_text(report), end="")
    if report.missing:  # one line, as `engine` says it where TensorRT is missing
        print(f"focalnet-edge selftest: error: {report.missing}", file=sys.stderr)
    return report.exit_code
