"""Issue 25's table in one run: every speed and memory row side by side, the machine and ISA named.

    python benchmarks/speed_memory.py [--quick]

Rows (each a ratio measured in this run, contenders timed in turns):
- ONNX Runtime CPU fp32, focalnet-tiny: our model.onnx / transformers + torch.onnx.export + onnxsim
  (onnxslim where onnxsim is absent), batch 1 and 8; CPU INT8 (model.int8.cpu.onnx) / fp32 beside it;
- peak RSS of `export` and of `build --precision fp16` / the checkpoint, focalnet-base shape;
- `predict OUT clip.mp4` (1080p, 100 frames, start-up included) against a hand OpenCV -> ORT loop,
  focalnet-tiny and the demo model: hand-loop time / predict time (>= 0.95 and >= 0.8 wanted).
The per-row scripts (onnx_vs_transformers.py, export_memory.py, video.py) print their details.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnx_vs_transformers
import video
from common import machine

def export_memory_rows(model: str) -> list[dict]:
    """export_memory.rows() run from a small process: Linux records a child's peak RSS from the memory of the
    process that forked it (exec keeps the old address space's high-water mark), and this one holds torch,
    transformers and ONNX Runtime sessions by then (2.5 GB: both rows read 7.5x, as measured here once)."""
    code = f"import json, export_memory; print(json.dumps(export_memory.rows(model={model!r})))"
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


TARGETS = {"ort": 0.85, "export": 4.0, "build": 4.0, "video tiny": 0.95, "video demo": 0.8}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats and frames (a smoke run; the figures are rough)")
    args = ap.parse_args()
    started = time.time()
    print(f"machine: {machine()}; load average at start {os.getloadavg()[0]:.1f}\n")
    lines = ["| row | measured | target | met |", "|---|---|---|---|"]

    def add(what: str, value: float, target: float, higher_is_better: bool, unit: str = "x") -> None:
        met = value >= target if higher_is_better else value <= target
        lines.append(f"| {what} | {value:.2f}{unit} | {'>=' if higher_is_better else '<='} {target}{unit} | {'yes' if met else 'no'} |")

    for r in onnx_vs_transformers.rows(repeats=8 if args.quick else 30, batches=(1,) if args.quick else (1, 8)):
        add(f"ORT fp32 focalnet-tiny, ours / transformers+{r['baseline'].split(' + ')[-1]}, batch {r['batch']}",
            r["ours / baseline"], TARGETS["ort"], False)
        if "int8 cpu / fp32" in r:
            lines.append(f"| CPU INT8 / fp32 latency, focalnet-tiny, batch {r['batch']} (cosine {r['int8 cpu cosine']:.5f}) | "
                         f"{r['int8 cpu / fp32']:.2f}x | (reported) | - |")
    for r in export_memory_rows("tiny" if args.quick else "base"):
        add(f"peak RSS of `{r['what']}` / checkpoint ({r['peak_rss_mb']} / {r['checkpoint_mb']} MB)", r["ratio"],
            TARGETS["build" if r["what"].startswith("build") else "export"], False)
    frames = 30 if args.quick else 100
    for r in video.rows(frames=frames, repeats=1 if args.quick else 3):
        if r["ratio"] is None or r["contender"].startswith("hand loop"):
            continue
        model = "tiny" if r["model"] == "focalnet-tiny" else "demo"
        what = (f"`{r['contender'].replace('focalnet-edge ', '')}` {frames} 1080p frames, {r['model']}: hand loop / predict "
                f"(CPU seconds: {r['cpu_ratio']:.2f}x)")
        if r["contender"] == "focalnet-edge predict":  # the defaults: the target's row
            add(what, r["ratio"], TARGETS[f"video {model}"], True)
        else:
            lines.append(f"| {what} | {r['ratio']:.2f}x | (reported) | - |")
    print("\n".join(lines))
    print(f"\n{time.time() - started:.0f} s; load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
