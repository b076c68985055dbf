"""The INT8 gate's outcome by the number of held-back images (issue 22), as `build --precision int8` runs it.

    python benchmarks/int8_gate_holdout.py [--holdout 48,100,200] [--hostile tiny|small] [--cpu-form]

Subjects (`benchmarks/int8_tiny.py`): focalnet-tiny with trained-like statistics (default), or
focalnet-tiny (or a small FocalNet) with one block hostile to int8 (`--hostile tiny|small`). For each N, 2N photo crops are
sampled as the build samples them and split as the build splits them with N held back (so N
calibrate), then the build's own INT8 stage runs (`pipeline.int8_stage`: smoothing, max ranges,
`build_int8` with the default gate, `model.int8.onnx` with fp16 float parts, and with
`--cpu-form` `model.int8.cpu.onnx` too). Printed per form: the first and the written graph's
scores, the gate's outcome, the nodes returned to float by block, the int8 share of GEMM/Conv
FLOPs, the flips with their fp32 margins, and `verify`'s judgement of the written graph on the
held-back images (against the fp32 graph's outputs, which match PyTorch's to ~1e-5): what
decides the build's exit status.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine
from int8_tiny import DEFAULT_OUT, DEFAULT_OUT_HOSTILE, photo_crops, prepare

from focalnet_edge.calibration import gate, load_calibration_data
from focalnet_edge.folder.onnx_io import load_onnx, read_contract
from focalnet_edge.pipeline import PrecisionOptions, int8_stage
from focalnet_edge.verify.compare import compare_outputs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--holdout", default="48,100,200", help="held-back image counts")
    ap.add_argument("--hostile", choices=("tiny", "small"), default=None, help="the subject with one hostile block")
    ap.add_argument("--cpu-form", action="store_true", help="also model.int8.cpu.onnx")
    args = ap.parse_args()
    sizes = [int(n) for n in args.holdout.split(",")]
    hostile_out = DEFAULT_OUT_HOSTILE.with_name(DEFAULT_OUT_HOSTILE.name + "-small") if args.hostile == "small" else DEFAULT_OUT_HOSTILE
    fp32_path, _ = prepare(hostile_out, hostile=args.hostile) if args.hostile else prepare(DEFAULT_OUT)
    images = fp32_path.parent / f"images{2 * max(sizes)}"
    if not images.is_dir():
        photo_crops(images, count=2 * max(sizes))
    load = lambda: Path("/proc/loadavg").read_text().split()[0]  # noqa: E731
    print(f"machine: {machine()}; subject {fp32_path}; load average {load()} at start")
    contract, _ = read_contract(load_onnx(fp32_path, external_data=False), fp32_path)
    forms = ("int8", "int8-cpu") if args.cpu_form else ("int8",)
    print("| held back | calibrate | artifact | first graph | written graph | gate | returned to float (by block) | int8 FLOPs | flips (fp32 margin; near-tie: under the noise margin) | verify | seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        part, held = load_calibration_data(images, contract, size=2 * n).split(minimum=n)
        with tempfile.TemporaryDirectory(prefix="int8-gate-holdout.") as tmp:
            t0 = time.perf_counter()
            results = int8_stage(Path(tmp), fp32_path, part, held, PrecisionOptions(), None, forms)
            seconds = time.perf_counter() - t0
            ref = gate.outputs(str(fp32_path), held.inputs)
            for r in results:
                out = gate.outputs(str(r.path), held.inputs)
                v = compare_outputs({"logits": ref}, {"logits": out}, "int8" if r.form == "tensorrt" else "int8-cpu", True, None, r.path.name)
                blocks = "; ".join(f"{b}: {', '.join(x.split('/')[-2] for x in nodes)}" for b, nodes in gate.blocks_of(r.kept_float).items())
                flips = ", ".join(f"{f['fp32_margin']:.3g}" + ("" if f["decided"] else " near-tie") for f in r.score.flips) or "none"
                outcome = {True: "**passed**", False: "not met: " + "; ".join(r.shortfall)}[r.gate_passed]
                if r.rejected:
                    outcome += f" ({len(r.rejected)} nodes tried, no measurable gain: not kept)"
                print(f"| {len(held)} | {len(part)} | {r.path.name} | {_short(r.first_score)} | {_short(r.score)} | {outcome} | "
                      f"{blocks or 'none'} | {100 * r.int8_flop_share:.1f}% | {flips} (noise margin {r.score.flip_margin:.3g}) | "
                      f"{'pass' if v.passed else 'FAIL: ' + '; '.join(v.failures)} | {seconds:.0f} |", flush=True)
    print(f"load average {load()} at the end")


def _short(s: gate.GateScore) -> str:
    d = "-" if s.top1_decided is None else f"{s.top1_decided:.2f}"
    return f"{s.sqnr_db:.1f} dB, cos {s.cosine:.5f}, top-1 {s.top1:.3f} ({d} on {s.decided} decided)"


if __name__ == "__main__":
    main()
