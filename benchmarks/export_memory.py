"""Peak memory of `export` and of a full `build --precision fp16`, over the checkpoint's size (issue 25).

    python benchmarks/export_memory.py [--model base] [--work DIR]

A focalnet-base-shaped checkpoint (microsoft/focalnet-base's config: embed_dim 128, depths
[2, 2, 18, 2], focal_levels [2, 2, 2, 2], 1000 classes; random weights, 336 MiB of
safetensors) is written with transformers' `save_pretrained` (once per --work folder), then
each command runs through the CLI in its own process; its peak RSS is that process's own
(`os.wait4`'s `ru_maxrss`), divided by the size of `model.safetensors` (both in MiB).
Targets: export <= 4x, build --precision fp16 <= 4x. RSS figures are exact; times move with
whatever else runs on the machine (the load average is printed with each row).

`rows(...)` returns the rows for a combined benchmark script; `main()` prints them as markdown.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from build_cost import MAKE_CHECKPOINT, SHAPES, run_stage, versions
from common import machine

ROOT = Path(__file__).resolve().parents[1]
TARGET = 4.0  #: issue 25: peak RSS / checkpoint size, for both rows


def checkpoint(work: Path, model: str, env: dict[str, str]) -> Path:
    """The random-weight checkpoint of shape `model` in `work` (written on first use)."""
    folder = work / f"{model}-ckpt"
    if not (folder / "model.safetensors").is_file():
        subprocess.run([sys.executable, "-c", MAKE_CHECKPOINT.format(fields=SHAPES[model]), str(folder)], env=env, check=True)
    return folder


def rows(model: str = "base", work: str | os.PathLike | None = None) -> list[dict[str, object]]:
    """Measure both rows for the shape `model`: [{what, peak_rss_mb, checkpoint_mb, ratio, seconds, load, exit}]."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               HF_HUB_OFFLINE="1")
    cli = [sys.executable, "-m", "focalnet_edge.cli", "--quiet"]
    with tempfile.TemporaryDirectory(prefix="export-memory-") as tmp:
        work_dir = Path(work) if work else Path(tmp)
        work_dir.mkdir(parents=True, exist_ok=True)
        ckpt = checkpoint(work_dir, model, env)
        size_mb = (ckpt / "model.safetensors").stat().st_size / 2**20
        calib = ["--calib-data", str(ROOT / "focalnet_edge" / "data" / "demo" / "images"), "--calib-size", "16"]
        commands = [
            ("export", [*cli, "export", "--model", str(ckpt), "--output", str(Path(tmp) / "export"), "--force"]),
            ("build --precision fp16", [*cli, "build", "--model", str(ckpt), "--output", str(Path(tmp) / "build"),
                                        "--precision", "fp16", "--force", *calib]),
        ]
        out = []
        for what, cmd in commands:
            load = os.getloadavg()[0]
            seconds, rss, rc = run_stage(cmd, env)
            peak_mb = rss / 2**20
            out.append({"what": what, "peak_rss_mb": round(peak_mb), "checkpoint_mb": round(size_mb), "ratio": round(peak_mb / size_mb, 2),
                        "seconds": round(seconds, 1), "load": round(load, 2), "exit": rc})
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="base", choices=sorted(SHAPES), help="checkpoint shape (default base)")
    ap.add_argument("--work", default=None, help="folder to keep the checkpoint in between runs (default: a temporary one)")
    args = ap.parse_args()
    measured = rows(args.model, args.work)
    print(f"Machine: {machine()}; {versions()}.\n")
    print(f"| focalnet-{args.model} | peak RSS / checkpoint (target <= {TARGET:g}x) | peak RSS | checkpoint | time | load average before |")
    print("|---|---|---|---|---|---|")
    for r in measured:
        note = " (exit 1: a random model's fp16 misses a threshold)" if r["exit"] else ""
        print(f"| `{r['what']}`{note} | {r['ratio']:.2f}x | {r['peak_rss_mb']} MiB | {r['checkpoint_mb']} MiB | {r['seconds']} s | {r['load']} |")


if __name__ == "__main__":
    main()
