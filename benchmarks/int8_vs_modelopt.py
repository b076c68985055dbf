"""INT8/FP8 on focalnet-tiny: focalnet-edge's Q/DQ placement vs NVIDIA ModelOpt's, accuracy and CPU speed.

    python benchmarks/int8_vs_modelopt.py [--modelopt-python /tmp/modelopt/bin/python] [--study]

Subject: focalnet-tiny (224, 28 M parameters) with realistic weight statistics and photo crops
(`benchmarks/int8_tiny.py` says how). 320 images: 100 held back (the gate's and this table's
judge), the rest calibrate (`max` ranges unless `--study`). The rows for the residual Add
placement quantize the fp32 graph with only the stem and head in float (the placement study);
the default rows (`model.*.onnx`) are what `build` writes: LayerNorm outputs smoothed into their
GEMMs (`calibration/smoothing.py`, alpha 0.5), downsampling Convs in float. Every form is compared with the
fp32 graph on the held-back images: logit SQNR, cosine, top-1/top-5 agreement; its placement
report (nodes quantized by type, int8 share of GEMM/Conv FLOPs, activation Q/DQ pairs, pairs
TensorRT cannot fuse into a GEMM/Conv); and its CPU latency (ONNX Runtime, intra-op spinning
off, sessions timed in turns in one process, one run of the script).

ModelOpt (`nvidia-modelopt`, `modelopt.onnx.quantization.quantize`, int8, `max`, CPU
calibration on the first 128 of the same images) runs in its own virtual environment (it must not replace this
environment's torch): make one with
    python3 -m venv --system-site-packages /tmp/modelopt
    /tmp/modelopt/bin/pip install --no-deps nvidia-modelopt onnx-graphsurgeon nvidia-ml-py onnxscript onnx-ir lief
and pass its python with `--modelopt-python`; its graphs are cached in the output folder.

`--study` also measures the calibration choices (method, number of images) and the residual
Add placement (none / skip input / both inputs) that set the defaults.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).parent))
from common import interleaved, machine
from residual_qdq import quantize_residual, residual_ranges
from int8_tiny import DEFAULT_OUT, prepare

from focalnet_edge.calibration import build_fp8, build_int8, compute_ranges, load_calibration_data, quantize
from focalnet_edge.calibration.gate import outputs, score
from focalnet_edge.calibration.placement import float_by_default, gemm_flops, placement_report, stem_and_head
from focalnet_edge.calibration.smoothing import smooth
from focalnet_edge.folder.onnx_io import ort_session, read_contract


MODELOPT_SCRIPT = textwrap.dedent("""
    import sys, numpy as np
    from modelopt.onnx.quantization import quantize
    x = np.load(sys.argv[2])["pixel_values"][:int(sys.argv[4])]
    quantize(sys.argv[1], quantize_mode="int8", calibration_data=x, calibration_method="max", calibration_eps=["cpu"],
             high_precision_dtype=sys.argv[5], output_path=sys.argv[3], log_level="ERROR")
""")


def modelopt(python: str, fp32: Path, calib: np.ndarray, out: Path, high: str) -> Path | None:
    path = out / f"modelopt.int8.{high}.onnx"
    if path.is_file():
        return path
    np.savez(out / "modelopt_calib.npz", pixel_values=calib)
    t0 = time.perf_counter()
    run = subprocess.run([python, "-c", MODELOPT_SCRIPT, str(fp32), str(out / "modelopt_calib.npz"), str(path), str(len(calib)), high],
                         capture_output=True, text=True, check=False)
    if run.returncode or not path.is_file():
        print(f"ModelOpt ({high}) failed: {run.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    print(f"ModelOpt int8 ({high} float parts): {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return path


def run_float_input(path_or_model, x: np.ndarray) -> np.ndarray:
    """Outputs of a graph whose input may be float16 (ModelOpt's fp16 form)."""
    sess = ort_session(path_or_model)
    inp = sess.get_inputs()[0]
    xx = x.astype(np.float16) if inp.type == "tensor(float16)" else x
    return np.concatenate([sess.run(None, {inp.name: xx[i : i + 25]})[0] for i in range(0, len(x), 25)]).astype(np.float32)


def row(name: str, model: onnx.ModelProto, ref: np.ndarray, hold: np.ndarray, flops: dict[str, int], extra: str = "") -> str:
    rep = placement_report(model, flops)
    s = score(ref, run_float_input(model, hold), True)
    by_type = ", ".join(f"{k} {v}" for k, v in sorted(rep.quantized_by_type.items()))
    return (f"| {name} | {by_type} | {100 * rep.int8_flop_share:.1f}% | {rep.qdq_pairs} | {len(rep.unfused)} | "
            f"{s.sqnr_db:.1f} | {s.cosine:.5f} | {s.top1:.2f} | {s.top5:.2f} | {extra} |")


HEADER = ("| form | quantized nodes | int8 share of GEMM/Conv FLOPs | activation Q/DQ pairs | not fusable by TensorRT | "
          "logit SQNR (dB) | cosine | top-1 | top-5 | notes |\n|---|---|---|---|---|---|---|---|---|---|")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--modelopt-python", default=None, help="python of a venv with nvidia-modelopt")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--study", action="store_true", help="also measure calibration method/size and residual placement")
    args = ap.parse_args()
    out = args.out
    fp32_path, images = prepare(out)
    fp32 = onnx.load(str(fp32_path))
    contract, _ = read_contract(fp32, fp32_path)
    t0 = time.perf_counter()
    cal, held = load_calibration_data(images, contract, size=320).split()
    t_load = time.perf_counter() - t0
    hold = held.inputs
    flops = gemm_flops(fp32)
    ref = outputs(fp32, hold)
    print(f"machine: {machine()}; load average {Path('/proc/loadavg').read_text().split()[0]} at start")
    print(f"focalnet-tiny, {sum(flops.values()) / 1e9:.2f} GFLOPs of GEMM/Conv per image; {len(cal)} calibration images, "
          f"{len(hold)} held back\n")

    t0 = time.perf_counter()
    ranges = residual_ranges(fp32_path, cal.inputs, "max")
    t_ranges = time.perf_counter() - t0
    exclude = stem_and_head(fp32)
    forms: dict[str, Path] = {"fp32": fp32_path}
    print(HEADER)
    for residual in ("both", "skip", "branch", "none"):
        q = quantize_residual(fp32_path, ranges, "tensorrt", exclude, residual)
        path = out / f"project.int8.{residual}.fp32.onnx"
        onnx.save(q, str(path))
        forms[f"project int8, residual {residual}, fp32 float"] = path
        note = {"both": "before issue 11", "skip": "TensorRT/ModelOpt residual rule", "branch": "block output only",
                "none": "the residual rule of the default"}[residual]
        print(row(f"focalnet-edge int8, residual Q/DQ {residual}, fp32 float parts", q, ref, hold, flops, note), flush=True)
    # the default: smoothed LayerNorm outputs, downsampling Convs in float (what `build` does)
    t0 = time.perf_counter()
    smoothed = out / "model.smoothed.onnx"
    factors = smooth(fp32_path, cal.inputs, smoothed)
    ranges = compute_ranges(smoothed, cal.inputs, "max")
    t_ranges = time.perf_counter() - t0
    q = quantize(smoothed, ranges, "tensorrt", float_by_default(fp32))
    path = out / "project.int8.default.fp32.onnx"
    onnx.save(q, str(path))
    forms["project int8, default placement, fp32 float"] = path
    print(row("focalnet-edge int8, default (residual none, LayerNorms smoothed, downsampling float), fp32 float parts", q, ref, hold,
              flops, f"{len(factors)} LayerNorms smoothed"), flush=True)
    t0 = time.perf_counter()
    r = build_int8(smoothed, out / "model.int8.onnx", ranges, hold, float_type="fp16", calibration_inputs=cal.inputs, reference=ref)
    t_build = time.perf_counter() - t0
    forms["model.int8.onnx (default: fp16 float)"] = r.path
    print(row("focalnet-edge `model.int8.onnx` (default build, fp16 float parts)", onnx.load(str(r.path)), ref, hold, flops,
              f"gate {'passed' if r.gate_passed else 'failed'}, {len(r.kept_float)} nodes back to float"), flush=True)
    f8 = build_fp8(smoothed, out / "model.fp8.onnx", ranges, hold, float_type="fp16", calibration_inputs=cal.inputs, reference=ref)
    forms["model.fp8.onnx (fp16 float)"] = f8.path
    print(row("focalnet-edge `model.fp8.onnx` (E4M3, fp16 float parts)", onnx.load(str(f8.path)), ref, hold, flops,
              f"gate {'passed' if f8.gate_passed else 'failed'}; ONNX Runtime CPU runs the FP8 graph itself"), flush=True)
    cpu = build_int8(smoothed, out / "model.int8.cpu.onnx", ranges, hold, "cpu", reference=ref)
    forms["model.int8.cpu.onnx"] = cpu.path
    print(row("focalnet-edge `model.int8.cpu.onnx` (ONNX Runtime CPU form)", onnx.load(str(cpu.path)), ref, hold, flops, "u8 activations"), flush=True)
    if args.modelopt_python:
        for high in ("fp32", "fp16"):
            path = modelopt(args.modelopt_python, fp32_path, cal.inputs[:128], out, high)
            if path is not None:
                forms[f"ModelOpt int8, {high} float"] = path
                m = onnx.load(str(path))
                print(row(f"ModelOpt int8, {high} float parts", m, ref, hold, gemm_flops(m), "ModelOpt defaults (stem, head quantized)"), flush=True)
    top = sorted(r.sensitivity, key=r.sensitivity.get, reverse=True)[:6]
    if top:
        print("\nmost sensitive nodes (SQNR gain in dB back in float, on 16 images): "
              + ", ".join(f"{n.split('/model/')[-1]} {r.sensitivity[n]:+.2f}" for n in top))
    print(f"\nINT8 build of focalnet-tiny (default: smoothing, max ranges, gate, fp16 float parts): load {t_load:.0f} s + "
          f"smoothing and ranges "
          f"{t_ranges:.0f} s ({len(cal)} images) + quantize/gate/write {t_build:.0f} s = {t_load + t_ranges + t_build:.0f} s; "
          f"phases {json.dumps(r.timings)}; gate: {r.score}, placement: {r.placement.summary()}")
    if r.shortfall:
        print(f"gate not met: {'; '.join(r.shortfall)}; tried {r.tried}")

    # CPU latency, batch 1, every form in turns
    x1 = hold[:1]
    sessions = {k: ort_session(p) for k, p in forms.items()}
    feeds = {k: {s.get_inputs()[0].name: x1.astype(np.float16) if s.get_inputs()[0].type == "tensor(float16)" else x1}
             for k, s in sessions.items()}
    t = interleaved({k: (lambda s=s, f=feeds[k]: s.run(None, f)) for k, s in sessions.items()}, args.repeats)
    print("\n| form | batch 1 latency, ONNX Runtime CPU (ms) | / fp32 |\n|---|---|---|")
    for k in sessions:
        print(f"| {k} | {t[k] * 1e3:.1f} | {t[k] / t['fp32']:.2f} |")

    if args.study:
        study(fp32_path, cal.inputs, hold, ref, exclude)


def study(fp32_path: Path, calib: np.ndarray, hold: np.ndarray, ref: np.ndarray, exclude: list[str]) -> None:
    """Residual Add placement, calibration method and image count: logit SQNR (fp32 float parts)."""
    ranges = residual_ranges(fp32_path, calib, "max")
    print("\n| residual Add Q/DQ (max ranges) | logit SQNR (dB) | top-1 |\n|---|---|---|")
    for residual in ("none", "branch", "skip", "both"):
        s = score(ref, outputs(quantize_residual(fp32_path, ranges, "tensorrt", exclude, residual), hold), True)
        print(f"| {residual} | {s.sqnr_db:.1f} | {s.top1:.2f} |", flush=True)
    print("\n| ranges | calibration images | time (s) | logit SQNR (dB) | top-1 |\n|---|---|---|---|---|")
    for method, n in (("max", 32), ("max", 64), ("max", len(calib)), ("percentile", len(calib)), ("entropy", len(calib))):
        t0 = time.perf_counter()
        ranges = compute_ranges(fp32_path, calib[:n], method, 99.99)
        dt = time.perf_counter() - t0
        s = score(ref, outputs(quantize(fp32_path, ranges, "tensorrt", exclude), hold), True)
        label = "percentile 99.99" if method == "percentile" else method
        print(f"| {label} | {n} | {dt:.0f} | {s.sqnr_db:.1f} | {s.top1:.2f} |", flush=True)


if __name__ == "__main__":
    main()
