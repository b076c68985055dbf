"""The INT8 accuracy gate on focalnet-tiny: outcome and seconds per phase, as `build --precision int8` runs it.

    python benchmarks/int8_gate.py [--method max] [--calib-size 256] [--old-judgement]

Subject: focalnet-tiny with realistic statistics and photo crops (`benchmarks/int8_tiny.py`),
sampled and split as the build does it (`--calib-size` images: 100 held back, the rest
calibrate). Runs the calibration and `build_int8` (TensorRT form, fp16 float parts: the
default `model.int8.onnx`) and prints the gate's first and final scores, the nodes returned to
float, the int8 share of FLOPs and the seconds of each phase. `--old-judgement` also times one
judgement of a candidate set as the gate before this change made it (the graph copied with the
node in float, converted to fp16 float parts, a new session, all held-back images): the gate
then needed one per node tried, after a sensitivity pass with one such session per node.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).parent))
from common import machine
from int8_tiny import DEFAULT_OUT, DEFAULT_OUT_NO_OUTLIERS, prepare

from focalnet_edge.calibration import build_int8, compute_ranges, load_calibration_data
from focalnet_edge.calibration import gate
from focalnet_edge.calibration import quantize
from focalnet_edge.calibration.int8 import _finalize
from focalnet_edge.calibration.qdq import to_float
from focalnet_edge.calibration.placement import stem_and_head
from focalnet_edge.folder.onnx_io import read_contract


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="max")
    ap.add_argument("--percentile", type=float, default=99.99)
    ap.add_argument("--calib-size", type=int, default=256)
    ap.add_argument("--no-outliers", action="store_true", help="the subject without outlier LayerNorm channels")
    ap.add_argument("--old-judgement", action="store_true")
    args = ap.parse_args()
    fp32_path, images = prepare(DEFAULT_OUT_NO_OUTLIERS, 0.0) if args.no_outliers else prepare(DEFAULT_OUT)
    load = lambda: Path("/proc/loadavg").read_text().split()[0]  # noqa: E731
    print(f"machine: {machine()}; load average {load()} at start")
    fp32 = onnx.load(str(fp32_path))
    contract, _ = read_contract(fp32, fp32_path)
    t0 = time.perf_counter()
    cal, held = load_calibration_data(images, contract, size=args.calib_size).split()
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    ranges = compute_ranges(fp32_path, cal.inputs, args.method, args.percentile, progress=True)
    t_ranges = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = gate.outputs(fp32, held.inputs)
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = build_int8(fp32_path, Path("/tmp") / "int8_gate.model.int8.onnx", ranges, held.inputs, float_type="fp16",
                   calibration_inputs=cal.inputs, reference=ref, progress=True)
    t_gate = time.perf_counter() - t0
    print(f"{len(cal)} calibration images ({args.method}), {len(held)} held back; load {t_load:.0f} s, ranges {t_ranges:.0f} s, "
          f"fp32 reference {t_ref:.0f} s, build_int8 {t_gate:.0f} s; load average {load()} at the end")
    print(f"gate {'passed' if r.gate_passed else 'NOT met: ' + '; '.join(r.shortfall)}")
    print(f"first graph: {r.first_score}\nwritten graph: {r.score}; {r.placement.summary()}")
    print(f"returned to float ({len(r.kept_float)}): {[n.split('/model/')[-1] for n in r.kept_float]}")
    print(f"phases (s): {json.dumps(r.timings)}")
    if args.old_judgement:
        fp32 = onnx.load(str(fp32_path))
        first = quantize(fp32_path, ranges, "tensorrt", stem_and_head(fp32))
        _, keep = _finalize(first, fp32, "int8", "fp16", cal.inputs, None)
        name = next(n.name for n in fp32.graph.node if n.name.endswith("stages.2/layers.0/mlp/fc2/MatMul"))
        t0 = time.perf_counter()
        m, _ = _finalize(to_float(first, fp32, [name]), fp32, "int8", "fp16", None, keep)
        s = gate.score(ref, gate.outputs(m, held.inputs), True)
        print(f"one judgement as before (copy, fp16 float parts, new session, {len(held)} images): "
              f"{time.perf_counter() - t0:.0f} s ({s})")


if __name__ == "__main__":
    main()
