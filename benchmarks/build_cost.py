"""Build cost: wall time and peak RSS of each stage, as users run them (issue 15).

    python benchmarks/build_cost.py [--models tiny,base] [--no-int8] [--calib-size 32]

For each model shape (random weights, written by this script with transformers'
`save_pretrained` into a temporary folder) the stages run through the CLI, each in its own
process, so the peak RSS of a stage is that process's own (`os.wait4`'s `ru_maxrss`):

    export     focalnet-edge export --model CKPT --output OUT
    fp16       focalnet-edge calibrate OUT/model.onnx --precision fp16 --calib-data DIGITS
    int8       focalnet-edge calibrate OUT/model.onnx --precision int8 --calib-data DIGITS (calibration + gate)
    verify     focalnet-edge verify OUT   (every artifact, default images)
    build      focalnet-edge build --model CKPT --precision fp16 --calib-data DIGITS (--build: the
               whole pipeline in one process, whose peak is what issue 15's target is about)

The calibration data are the demo's digit images (any images do for a cost figure). Other
work may share the machine, so the load average is printed before each stage.
Prints a markdown table naming the machine; paste it into benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine

ROOT = Path(__file__).resolve().parents[1]

#: the shapes measured: fields of transformers' FocalNetConfig (focalnet_edge/model/original.py VARIANTS)
SHAPES = {
    "tiny": dict(embed_dim=96, depths=[2, 2, 6, 2], focal_levels=[2] * 4, focal_windows=[3] * 4),
    "base": dict(embed_dim=128, depths=[2, 2, 18, 2], focal_levels=[2] * 4, focal_windows=[3] * 4),
}

MAKE_CHECKPOINT = """
import sys, torch
from transformers import FocalNetConfig, FocalNetForImageClassification
torch.manual_seed(0)
cfg = FocalNetConfig(num_labels=1000, image_size=224, **{fields})
FocalNetForImageClassification(cfg).eval().save_pretrained(sys.argv[1])
"""


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in ("torch", "onnx", "onnxruntime"):
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return ", ".join(out)


def run_stage(cmd: list[str], env: dict[str, str]) -> tuple[float, int, int]:
    """(seconds, peak RSS in bytes, exit status) of one command in its own process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 1):  # 1: verification or the int8 gate failed (random weights), still measured
        sys.stderr.write(output)
        raise SystemExit(f"{' '.join(cmd)}: exit {proc.returncode}")
    return seconds, usage.ru_maxrss * 1024, proc.returncode  # Linux: ru_maxrss in KiB


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny", help="comma-separated: tiny, base (default tiny)")
    ap.add_argument("--no-int8", dest="int8", action="store_false", help="skip int8 calibration and its gate")
    ap.add_argument("--no-fp16", dest="fp16", action="store_false", help="skip the fp16 graph")
    ap.add_argument("--calib-size", type=int, default=32, help="calibration images for int8 (default 32)")
    ap.add_argument("--verify-limit", type=int, default=None, help="verify on the first N images only (default: the CLI's default set)")
    ap.add_argument("--build", action="store_true", help="also time `build --precision fp16` in one process")
    ap.add_argument("--only-build", action="store_true", help="only `build --precision fp16`")
    args = ap.parse_args()

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    cli = [sys.executable, "-m", "focalnet_edge.cli"]
    digits = str(ROOT / "focalnet_edge" / "data" / "demo" / "images")
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if name not in SHAPES:
            raise SystemExit(f"--models: {name!r} is not one of {', '.join(SHAPES)}")
        with tempfile.TemporaryDirectory(prefix=f"build-cost-{name}-") as tmp:
            ckpt, out = Path(tmp) / "ckpt", Path(tmp) / "out"
            subprocess.run([sys.executable, "-c", MAKE_CHECKPOINT.format(fields=SHAPES[name]), str(ckpt)], env=env, check=True)
            size = folder_size(ckpt)
            stages = [("export", [*cli, "export", "--model", str(ckpt), "--output", str(out)])]
            calib = ["--calib-data", digits, "--calib-size", str(args.calib_size)]
            if args.fp16:
                stages.append(("fp16", [*cli, "calibrate", str(out / "model.onnx"), "--precision", "fp16", *calib]))
            if args.int8:
                stages.append(("int8 (calibration + gate)", [*cli, "calibrate", str(out / "model.onnx"), "--precision", "int8", *calib]))
            verify = [*cli, "verify", str(out)] + (["--limit", str(args.verify_limit)] if args.verify_limit else [])
            stages.append(("verify (every artifact" + (f", {args.verify_limit} images)" if args.verify_limit else ", default images)"), verify))
            if args.only_build:
                stages = []
            if args.build or args.only_build:
                stages.append(("build --precision fp16 (one process, default images)",
                               [*cli, "build", "--model", str(ckpt), "--output", str(Path(tmp) / "build"), "--precision", "fp16",
                                "--quiet", *calib]))
            for stage, cmd in stages:
                load = os.getloadavg()[0]
                print(f"{name}: {stage} ...", file=sys.stderr, flush=True)
                seconds, rss, rc = run_stage(cmd, env)
                note = " (exit 1)" if rc else ""
                rows.append((f"focalnet-{name} ({gb(size)})", stage + note, f"{seconds:.1f} s", gb(rss), f"{rss / size:.1f}x", f"{load:.2f}"))
                print(f"  {seconds:.1f} s, peak RSS {gb(rss)}", file=sys.stderr, flush=True)

    print(f"`python benchmarks/build_cost.py {' '.join(sys.argv[1:])}`".replace(" `", "`") + " — random weights, 1000 classes, 224;"
          " each stage a CLI command in its own process; peak RSS from `os.wait4` (ru_maxrss).\n")
    print(f"Machine: {machine()}; {versions()} ({datetime.date.today().isoformat()}).\n")
    print("| model (checkpoint size) | stage | time | peak RSS | RSS / checkpoint | load average (1 min) before |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
