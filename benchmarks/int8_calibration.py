"""INT8 calibration ranges on focalnet-tiny: max vs percentile vs entropy vs distribution.

    python benchmarks/int8_calibration.py [--methods max,percentile:99.99,...] [--subjects outliers,no-outliers]

Subjects (`benchmarks/int8_tiny.py`): focalnet-tiny (224) with realistic weight statistics,
with and without its 2% outlier LayerNorm channels (4-8x weights), and 320 crops of two
photographs: 220 calibrate, 100 are held back as the judge, the split the build makes. Each
method's ranges quantize the TensorRT form (default placement: Q/DQ on the inputs of every
Conv/MatMul/Gemm but the stem and the head, no residual Q/DQ, fp32 float parts, no gate), and the
graph is compared with the fp32 graph on the held-back images: logit SQNR, cosine, top-1/top-5
agreement, int8 share of the GEMM/Conv FLOPs. Time: computing the ranges (onnxruntime's
calibrators, one batch of 16 at a time).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).parent))
from common import machine
from int8_tiny import DEFAULT_OUT, DEFAULT_OUT_NO_OUTLIERS, prepare

from focalnet_edge.calibration import compute_ranges, load_calibration_data
from focalnet_edge.calibration.gate import outputs, score
from focalnet_edge.calibration.int8 import quantize
from focalnet_edge.calibration.placement import gemm_flops, placement_report, stem_and_head
from focalnet_edge.onnx_io import read_contract

SUBJECTS = {"outliers": (DEFAULT_OUT, 0.02), "no-outliers": (DEFAULT_OUT_NO_OUTLIERS, 0.0)}
METHODS = "max,percentile:99.999,percentile:99.99,entropy,distribution"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default=METHODS, help=f"comma-separated (default {METHODS})")
    ap.add_argument("--subjects", default="outliers,no-outliers")
    args = ap.parse_args()
    print(f"machine: {machine()}; load average {Path('/proc/loadavg').read_text().split()[0]} at start\n")
    print("| subject | ranges | calibration images | time for ranges (s) | logit SQNR (dB) | cosine | top-1 | top-5 | "
          "int8 share of GEMM/Conv FLOPs |\n|---|---|---|---|---|---|---|---|---|", flush=True)
    for subject in args.subjects.split(","):
        out, outliers = SUBJECTS[subject]
        fp32_path, images = prepare(out, outliers)
        fp32 = onnx.load(str(fp32_path))
        contract, _ = read_contract(fp32, fp32_path)
        cal, held = load_calibration_data(images, contract, size=320).split()
        ref = outputs(fp32, held.inputs)
        flops, exclude = gemm_flops(fp32), stem_and_head(fp32)
        for spec in args.methods.split(","):
            method, _, pct = spec.partition(":")
            t0 = time.perf_counter()
            ranges = compute_ranges(fp32_path, cal.inputs, method, float(pct or 99.99))
            dt = time.perf_counter() - t0
            q = quantize(fp32_path, ranges, "tensorrt", exclude)
            s = score(ref, outputs(q, held.inputs), True)
            share = placement_report(q, flops).int8_flop_share
            label = f"percentile {pct}" if method == "percentile" else method
            print(f"| {subject} | {label} | {len(cal)} | {dt:.0f} | {s.sqnr_db:.1f} | {s.cosine:.5f} | {s.top1:.2f} | "
                  f"{s.top5:.2f} | {100 * share:.1f}% |", flush=True)


if __name__ == "__main__":
    main()
