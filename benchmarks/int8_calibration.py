"""INT8 calibration ranges on focalnet-tiny: max vs percentile vs entropy vs distribution.

    python benchmarks/int8_calibration.py [--methods max,percentile:99.99,...] [--subjects outliers,no-outliers] [--why]
    python benchmarks/int8_calibration.py --smoothing 0,0.3,0.5,0.7 [--subjects ...]

Subjects (`benchmarks/int8_tiny.py`): focalnet-tiny (224) with realistic weight statistics,
with and without its 2% outlier LayerNorm channels (4-8x weights), and 320 crops of two
photographs: 220 calibrate, 100 are held back as the judge, the split the build makes. Each
method's ranges quantize the TensorRT form (default placement: Q/DQ on the inputs of every
Conv/MatMul/Gemm but the stem and the head, no residual Q/DQ, fp32 float parts, no gate), and the
graph is compared with the fp32 graph on the held-back images: logit SQNR, cosine, top-1/top-5
agreement, int8 share of the GEMM/Conv FLOPs. Time: computing the ranges (onnxruntime's
calibrators, one batch of 16 at a time), wall clock and CPU seconds (both cores).

`--smoothing ALPHAS` measures, instead of the methods, the two defaults issue 11 chose (max
ranges): LayerNorm outputs smoothed into their GEMMs with each alpha (0: not smoothed), and the
downsampling Convs in int8 or in float (`placement.float_by_default`).

`--why` splits the error of the default graph (max ranges) by where the quantization is:
weights only (activations read in float), activations only (fp32 weights), and by operation
(depth-wise focal Conv vs MatMul, by the tensor a Q/DQ reads: LayerNorm outputs, the
modulator, the MLP's hidden activations).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import onnx

from focalnet_edge.calibration.qdq import dequantized_inputs, prune_qdq

sys.path.insert(0, str(Path(__file__).parent))
from common import machine
from int8_tiny import DEFAULT_OUT, DEFAULT_OUT_NO_OUTLIERS, prepare

from focalnet_edge.calibration import compute_ranges, load_calibration_data, quantize
from focalnet_edge.calibration.gate import outputs, score
from focalnet_edge.calibration.placement import gemm_flops, placement_report, stem_and_head
from focalnet_edge.folder.onnx_io import read_contract

SUBJECTS = {"outliers": (DEFAULT_OUT, 0.02), "no-outliers": (DEFAULT_OUT_NO_OUTLIERS, 0.0)}
METHODS = "max,percentile:99.999,percentile:99.99,entropy,distribution"


def load_subject(subject: str):
    """(fp32 path, fp32 graph, calibration set, held-back set, fp32 outputs on the held-back images): 220/100 of 320."""
    out, outliers = SUBJECTS[subject]
    fp32_path, images = prepare(out, outliers)
    fp32 = onnx.load(str(fp32_path))
    contract, _ = read_contract(fp32, fp32_path)
    cal, held = load_calibration_data(images, contract, size=320).split()
    return fp32_path, fp32, cal, held, outputs(fp32, held.inputs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default=METHODS, help=f"comma-separated (default {METHODS})")
    ap.add_argument("--subjects", default="outliers,no-outliers")
    ap.add_argument("--why", action="store_true", help="split the error of the max-range graph by where it is quantized")
    ap.add_argument("--smoothing", default=None, metavar="ALPHAS", help="comma-separated alphas: the smoothing x downsampling table")
    args = ap.parse_args()
    if args.smoothing:
        return smoothing_table([float(a) for a in args.smoothing.split(",")], args.subjects.split(","))
    whys = []
    print(f"machine: {machine()}; load average {Path('/proc/loadavg').read_text().split()[0]} at start\n")
    print("| subject | ranges | calibration images | time for ranges, wall (CPU) (s) | logit SQNR (dB) | cosine | top-1 | top-5 | "
          "int8 share of GEMM/Conv FLOPs |\n|---|---|---|---|---|---|---|---|---|", flush=True)
    for subject in args.subjects.split(","):
        fp32_path, fp32, cal, held, ref = load_subject(subject)
        flops, exclude = gemm_flops(fp32), stem_and_head(fp32)
        for spec in args.methods.split(","):
            method, _, pct = spec.partition(":")
            t0, c0 = time.perf_counter(), time.process_time()
            ranges = compute_ranges(fp32_path, cal.inputs, method, float(pct or 99.99))
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            q = quantize(fp32_path, ranges, "tensorrt", exclude)
            s = score(ref, outputs(q, held.inputs), True)
            share = placement_report(q, flops).int8_flop_share
            label = f"percentile {pct}" if method == "percentile" else method
            print(f"| {subject} | {label} | {len(cal)} | {dt:.0f} ({cpu:.0f} CPU) | {s.sqnr_db:.1f} | {s.cosine:.5f} | {s.top1:.2f} | "
                  f"{s.top5:.2f} | {100 * share:.1f}% |", flush=True)
            if args.why and method == "max":
                whys.append((subject, why(q, fp32, ref, held.inputs, flops)))
    for subject, rows in whys:
        print(f"\n{subject}, max ranges: where the error comes from (the rest of the graph in float)\n"
              "| quantized | logit SQNR (dB) | top-1 | share of GEMM/Conv FLOPs |\n|---|---|---|---|")
        for label, s, share in rows:
            print(f"| {label} | {s.sqnr_db:.1f} | {s.top1:.2f} | {100 * share:.1f}% |")


def smoothing_table(alphas: list[float], subjects: list[str]) -> None:
    """Logit SQNR of the TensorRT form with LayerNorm smoothing (each alpha) x downsampling Convs int8/float."""
    import tempfile

    from focalnet_edge.calibration.placement import downsampling
    from focalnet_edge.calibration.smoothing import apply_smoothing, channel_absmax, smoothable, smoothing_scales

    print(f"machine: {machine()}; load average {Path('/proc/loadavg').read_text().split()[0]} at start\n")
    print("| subject | smoothing alpha | downsampling Convs | logit SQNR (dB) | cosine | top-1 | top-5 | int8 share of GEMM/Conv FLOPs "
          "| channel maxima (s) | ranges (s) |\n|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for subject in subjects:
        fp32_path, fp32, cal, held, ref = load_subject(subject)
        flops, exclude, down = gemm_flops(fp32), stem_and_head(fp32), downsampling(fp32)
        t0 = time.perf_counter()
        absmax = channel_absmax(fp32_path, cal.inputs, list(smoothable(fp32)))
        t_channels = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            for alpha in alphas:
                path = fp32_path
                if alpha > 0:
                    path = Path(tmp) / f"smoothed{alpha}.onnx"
                    onnx.save(apply_smoothing(fp32, smoothing_scales(fp32, absmax, alpha)), str(path))
                t0 = time.perf_counter()
                ranges = compute_ranges(path, cal.inputs)
                t_ranges = time.perf_counter() - t0
                for where, skip in (("int8", []), ("float", down)):
                    q = quantize(path, ranges, "tensorrt", exclude + skip)
                    s = score(ref, outputs(q, held.inputs), True)
                    share = placement_report(q, flops).int8_flop_share
                    print(f"| {subject} | {alpha:g} | {where} | {s.sqnr_db:.1f} | {s.cosine:.5f} | {s.top1:.2f} | {s.top5:.2f} | "
                          f"{100 * share:.1f}% | {t_channels if alpha > 0 else 0:.0f} | {t_ranges:.0f} |", flush=True)


def partial(q: onnx.ModelProto, fp32: onnx.ModelProto, keep) -> onnx.ModelProto:
    """`q` with only the dequantized inputs for which `keep(node, is_weight, tensor)` holds still quantized."""
    m = onnx.ModelProto()
    m.CopyFrom(q)
    inits = {i.name: i for i in fp32.graph.initializer}
    fnodes = {n.name: n for n in fp32.graph.node}
    have = {i.name for i in m.graph.initializer}
    names = [n.name for n in m.graph.node]
    for node, k, _dq, qn in list(dequantized_inputs(m, names)):
        weight = qn is None
        source = fnodes[node.name].input[k] if weight else qn.input[0]
        if keep(node, weight, source):
            continue
        if weight and source not in have:
            m.graph.initializer.append(inits[source])
            have.add(source)
        node.input[k] = source
    return prune_qdq(m)


def why(q, fp32, ref, x, flops):
    """(label, score, FLOP share) of the default graph quantized only in part."""
    parts = {
        "everything (default)": lambda n, w, t: True,
        "weights only": lambda n, w, t: w,
        "activations only": lambda n, w, t: not w,
        "Conv only (depth-wise focal, 1x1 h, downsampling)": lambda n, w, t: n.op_type == "Conv",
        "depth-wise focal Conv only": lambda n, w, t: n.op_type == "Conv" and "focal_layers" in n.name,
        "MatMul only": lambda n, w, t: n.op_type == "MatMul",
        "MatMul reading a LayerNorm output only": lambda n, w, t: n.op_type == "MatMul" and "LayerNormalization" in t,
        "MatMul reading the MLP hidden (fc2) only": lambda n, w, t: n.op_type == "MatMul" and "fc2" in n.name,
        "MatMul reading the modulator (projection_out) only": lambda n, w, t: n.op_type == "MatMul" and "projection_out" in n.name,
    }
    rows = []
    for label, keep in parts.items():
        m = partial(q, fp32, keep)
        share = placement_report(m, flops).int8_flop_share
        rows.append((label, score(ref, outputs(m, x), True), share))
    return rows


if __name__ == "__main__":
    main()
