"""Latency, throughput and top-1 agreement per backend and precision, on the demo model.

    python benchmarks/precision_table.py [--output /tmp/fe-demo]

Builds the demo with --precision best (verification on its 450 held-out images), then times
each artifact with `focalnet-edge bench` (one session at a time, spinning off). Prints a
Markdown table. TensorRT rows appear only where TensorRT and a GPU are present.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import machine
from focalnet_edge.runtime.bench import bench_folder
from focalnet_edge.pipeline import BuildOptions, build


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--output", type=Path, default=Path(tempfile.mkdtemp()) / "demo")
    ap.add_argument("--iterations", type=int, default=50)
    args = ap.parse_args()
    result = build(BuildOptions(model="demo", output=args.output, precision="best"))
    reports = {r.artifact: r for r in result.reports}
    rows = bench_folder(args.output, None, [1, 8], warmup=5, iterations=args.iterations)
    print(f"machine: {machine()}\n")
    print("| artifact | backend | precision | batch | p50 ms | p99 ms | images/s | top-1 agreement | accuracy (fp32 ref) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        rep = reports.get(r["artifact"])
        print(f"| {r['artifact']} | {r['device']} | {r['precision']} | {r['batch']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['throughput']:.0f} | {rep.top1_agreement:.4f} | {rep.accuracy:.4f} ({rep.reference_accuracy:.4f}) |")


if __name__ == "__main__":
    main()
