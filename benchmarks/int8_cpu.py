"""INT8 on the ONNX Runtime CPU: fp32 vs the TensorRT-form Q/DQ graph vs the CPU form.

    python benchmarks/int8_cpu.py [--repeats 10]

focalnet-tiny shape at 224 with random weights (speed does not depend on the weights; the
accuracy of each form is measured on trained models by the test suite and `focalnet-edge build`).
Calibrated on 16 random inputs. Sessions timed in turns in one process, intra-op spinning off.
Also shows onnxruntime's dynamic MatMul quantization as a yardstick, and a per-operator profile.
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from common import interleaved, machine
from focalnet_edge.calibration import compute_ranges, quantize
from focalnet_edge.calibration.placement import stem_and_head
from focalnet_edge.export import export_onnx
from focalnet_edge.folder.onnx_io import ort_session
from focalnet_edge.model import FocalNetConfig, FocalNetForImageClassification, load_checkpoint


def session(path, profile=False):
    prefix = str(Path(tempfile.gettempdir()) / "focalnet_edge_ort_profile")  # not into the repo
    return ort_session(path, profile_prefix=prefix if profile else None)


def profile(path, x, runs=5):
    s = session(path, True)
    for _ in range(runs):
        s.run(None, {"pixel_values": x})
    per_op = collections.Counter()
    for e in json.loads(Path(s.end_profiling()).read_text()):
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"] / runs / 1000
    return per_op


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    FocalNetForImageClassification(FocalNetConfig(num_labels=1000)).eval().save_pretrained(tmp / "ckpt")
    fp32 = tmp / "model.onnx"
    export_onnx(load_checkpoint(tmp / "ckpt"), fp32)
    x = np.random.default_rng(0).standard_normal((16, 3, 224, 224)).astype(np.float32)
    ranges = compute_ranges(fp32, x, "max")
    keep = stem_and_head(onnx.load(str(fp32)))
    paths = {"fp32": fp32}
    for form in ("tensorrt", "cpu"):
        paths[f"int8 {form} form"] = tmp / f"{form}.onnx"
        onnx.save(quantize(fp32, ranges, form, keep), str(paths[f"int8 {form} form"]))
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(fp32), str(tmp / "dynamic.onnx"), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)
    paths["onnxruntime dynamic MatMul (yardstick)"] = tmp / "dynamic.onnx"
    sessions = {k: session(p) for k, p in paths.items()}
    print(f"machine: {machine()}; onnxruntime {ort.__version__}\n")
    print("| batch | " + " | ".join(f"{k} (ms)" for k in sessions) + " | " + " | ".join(f"{k} / fp32" for k in list(sessions)[1:]) + " |")
    print("|---" * (2 * len(sessions)) + "|")
    for batch in (1, 8):
        xb = x[:batch]
        ref = sessions["fp32"].run(None, {"pixel_values": xb})[0]
        cos = {}
        for k, s in sessions.items():
            o = s.run(None, {"pixel_values": xb})[0]
            cos[k] = float((o * ref).sum() / np.linalg.norm(o) / np.linalg.norm(ref))
        fns = {k: (lambda s=s, xb=xb: s.run(None, {"pixel_values": xb})) for k, s in sessions.items()}
        t = interleaved(fns, args.repeats if batch == 1 else max(3, args.repeats // 3))
        print(f"| {batch} | " + " | ".join(f"{t[k] * 1e3:.1f}" for k in sessions) + " | "
              + " | ".join(f"{t[k] / t['fp32']:.2f}" for k in list(sessions)[1:]) + " |")
    print("\ncosine similarity of the logits with fp32 (random weights, batch 8): "
          + ", ".join(f"{k} {v:.5f}" for k, v in cos.items()))
    for k in ("fp32", "int8 cpu form"):
        prof = profile(paths[k], x[:1])
        print(f"\n{k}, batch 1, ms per run by operator (total {sum(prof.values()):.1f}): "
              + ", ".join(f"{op} {ms:.1f}" for op, ms in prof.most_common(7)))


if __name__ == "__main__":
    main()
