"""`focalnet-edge bench`: latency p50/p90/p99 and throughput per artifact and batch size."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .args import COUNT, NONNEGATIVE, int_list
from .printing import format_table

NAME = "bench"
HELP = "latency p50/p90/p99 and throughput per artifact and batch size"
EPILOG = """examples:
  focalnet-edge bench out/                         # every artifact this machine runs, batch 1 and 8
  focalnet-edge bench out/ --artifact model.int8.cpu.onnx --batch 1,4,16 --iterations 100 --json bench.json
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="an output folder or an artifact")
    p.add_argument("--artifact", default=None, help="only this artifact (default: all this machine runs)")
    p.add_argument("--batch", default="1,8", help="batch sizes, e.g. 1,8 (default)")
    p.add_argument("--warmup", type=NONNEGATIVE, default=3)
    p.add_argument("--iterations", type=COUNT, default=20)
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")


def run(args: argparse.Namespace) -> int:
    from ..runtime.bench import bench_folder

    batches = int_list(args.batch, "--batch")
    results = bench_folder(Path(args.path), args.artifact, batches, args.warmup, args.iterations, progress=not args.quiet)
    rows = [("artifact", "precision", "batch", "p50 ms", "p90 ms", "p99 ms", "images/s")]
    for r in results:
        rows.append((r["artifact"], r["precision"], str(r["batch"]), f"{r['p50_ms']:.2f}", f"{r['p90_ms']:.2f}",
                     f"{r['p99_ms']:.2f}", f"{r['throughput']:.1f}"))
    print(format_table(rows))
    if args.json:
        from ..folder.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
    return 0
