"""`predict` on a 1080p clip against a hand-written OpenCV -> ONNX Runtime loop (issues 13 and 25).

    python benchmarks/video.py [--work /tmp/focalnet-edge-video] [--frames 100] [--models demo,tiny] [--repeats 3]

From a combined script: `rows(work, frames, models, repeats)` gives one dict per (model,
contender) and `table(rows, frames, repeats)` the Markdown table, machine and ISA named
(`common.machine`).

The clip: 1920x1080, `--frames` frames at 30 frames/s, MPEG-4 part 2 (`mp4v`, what
opencv-python-headless writes here), a demo image enlarged and panned with noise on top,
written once into `--work` with OpenCV's VideoWriter. The models: the bundled demo model and
focalnet-tiny with random weights (1000 classes, 224), both exported with `--fuse-preprocess`
(uint8 RGB NHWC frames in).

Each contender is a fresh process, so start-up (imports, loading and checking the model) is
included, as a user would time it:
- `predict`: `focalnet-edge predict OUT CLIP --jsonl` with its defaults, output to a pipe;
- the hand loop (`HAND_LOOP` below): `cv2.VideoCapture` -> `cv2.resize` (INTER_AREA, the same
  geometry: warp for the demo, shortest edge 256 then centre crop 224 for tiny) -> BGR to RGB
  -> `session.run` on batches of `HAND_BATCH` (8) frames, spinning off
  (`session.intra_op.allow_spinning=0`, as predict's sessions), argmax per frame.
`--repeats` rounds, each running every contender once, the hand loop first; the ratio is the
median over rounds of (that round's hand loop / the contender), the time the median, the
1-minute load average recorded before each run. Start-up: the process's wall time minus its own
loop (predict's summary line counts from opening the clip; the hand loop prints its loop time).
A variant (e.g. in-graph resize with `--frame-size any`) is one more entry in `VARIANTS`.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, model_source

ROOT = Path(__file__).resolve().parent.parent

HAND_LOOP = r"""
import sys, time, cv2, numpy as np, onnxruntime as ort
clip, model, short, height, width, batch = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
so = ort.SessionOptions()
so.add_session_config_entry("session.intra_op.allow_spinning", "0")
session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
start, cap, frames, rows = time.perf_counter(), cv2.VideoCapture(clip), 0, []
while True:
    ok, bgr = cap.read()
    if ok:
        h, w = bgr.shape[:2]
        if short:  # shortest edge to `short`, then centre crop
            size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
            top, left = (size[1] - height) // 2, (size[0] - width) // 2
            bgr = bgr[top:top + height, left:left + width]
        else:
            bgr = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)
        rows.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    if rows and (len(rows) == batch or not ok):
        logits = session.run(None, {name: np.stack(rows)})[0]
        frames, rows = frames + int(logits.argmax(-1).size), []
    if not ok:
        break
print(frames, time.perf_counter() - start)
"""
#: the hand loop's batch (issue 25's reference loop)
HAND_BATCH = 8

#: the contenders: name -> (extra export arguments, predict arguments); None = the hand loop
VARIANTS: dict[str, tuple[list[str], list[str]] | None] = {
    "hand loop (OpenCV -> ONNX Runtime)": None,
    "focalnet-edge predict": ([], []),
    # the artifact's optimal batch (1), predict's default on files before issue 25
    "focalnet-edge predict --batch 1": ([], ["--batch", "1"]),
    # whole BGR frames in, as decoded, resized in the graph (--frame-size any)
    "focalnet-edge predict, in-graph resize": (["--frame-size", "any", "--color-order", "BGR"], []),
}


def make_clip(path: Path, frames: int) -> Path:
    """A 1080p mp4 of a demo image panned across the frame, with noise (decoders see real work)."""
    if path.is_file():
        return path
    import cv2
    from PIL import Image

    from focalnet_edge.demo import demo_images

    rng = np.random.default_rng(0)
    big = np.asarray(Image.open(demo_images()[0][0]).convert("RGB").resize((2400, 1350), Image.BICUBIC))[..., ::-1]
    tmp = path.with_suffix(".part.mp4")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), 30, (1920, 1080))
    for i in range(frames):
        x, y = (i * 2) % 480, (i // 2) % 270
        frame = big[y : y + 1080, x : x + 1920].astype(np.int16) + rng.integers(-8, 9, (1080, 1920, 1), dtype=np.int16)
        writer.write(np.clip(frame, 0, 255).astype(np.uint8))
    writer.release()
    tmp.rename(path)
    return path


def make_models(work: Path, models: list[str], variants: dict) -> dict[tuple[str, str], Path]:
    """Output folders per (model, variant): exported with --fuse-preprocess (and the variant's arguments)."""
    out = {}
    for model in models:
        source = model_source(work, model)
        for variant, spec in variants.items():
            if spec is None:
                continue
            folder = work / f"{model}-{'-'.join(a.strip('-') for a in spec[0]) or 'fused'}"
            if not (folder / "manifest.json").is_file():
                subprocess.run([sys.executable, "-m", "focalnet_edge.cli", "-q", "export", "--model", source, "--output",
                                str(folder), "--fuse-preprocess", *spec[0]], check=True, cwd=ROOT)
            out[(model, variant)] = folder
    return out


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _env(pycache: Path) -> dict[str, str]:
    """The contenders' environment: this tree first on the path, bytecode cached (in `pycache`, not in
    the tree) as in any installed package, even where PYTHONDONTWRITEBYTECODE is set around here:
    otherwise predict compiles every module of the project at every start (0.2-0.7 s) while the
    hand loop's imports come compiled from site-packages."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONPYCACHEPREFIX=str(pycache))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _timed(cmd: list[str], pycache: Path) -> tuple[float, float, float, str]:
    """(wall seconds of the process, seconds of its own loop, its CPU seconds (user + system, every
    thread), a note): wall minus loop is start-up. CPU seconds hardly depend on what else runs on
    the machine; wall seconds do."""
    t, cpu = time.perf_counter(), _cpu_children()
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=_env(pycache))
    seconds, cpu = time.perf_counter() - t, _cpu_children() - cpu
    if done.returncode:
        raise SystemExit(f"{cmd[:4]} failed: {done.stderr[-800:]}")
    if "predict" in cmd:
        note = done.stderr.strip().splitlines()[-1].split(": ", 1)[1]  # predict's own per-stage summary
        return seconds, float(re.search(r" in ([0-9.]+) s,", note).group(1)), cpu, note
    frames, loop = done.stdout.split()
    return seconds, float(loop), cpu, f"{frames} frames, batch {HAND_BATCH}"


def rows(work: Path = Path("/tmp/focalnet-edge-video"), frames: int = 100, models: tuple[str, ...] = ("demo", "tiny"),
         repeats: int = 3, variants: dict | None = None) -> list[dict]:
    """One dict per (model, contender): median wall seconds over `repeats` interleaved rounds, the
    median of each round's ratio to the hand loop run just before it (wall, and CPU seconds: the
    figure a loaded machine moves least), start-up (wall minus the process's own loop), and every
    round's figures. For a combined benchmark script."""
    variants = VARIANTS if variants is None else variants
    work.mkdir(parents=True, exist_ok=True)
    clip = make_clip(work / f"clip-1080p-{frames}.mp4", frames)
    folders = make_models(work, list(models), variants)
    hand = work / "hand_loop.py"
    hand.write_text(HAND_LOOP)
    out = []
    pycache = work / "pycache"
    for folder in dict.fromkeys(folders.values()):  # untimed: bytecode written, the model file in the page cache
        subprocess.run([sys.executable, "-m", "focalnet_edge.cli", "-q", "predict", str(folder), str(clip), "--limit", "1"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=_env(pycache), check=True)
    for model in models:
        geometry = ["0", "64", "64"] if model == "demo" else ["256", "224", "224"]
        runs: dict[str, list[tuple[float, float, float, str, float]]] = {v: [] for v in variants}
        ratios: dict[str, list[float]] = {v: [] for v in variants}
        cpu_ratios: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(repeats):  # rounds: every contender once, the hand loop first
            base = None
            for variant, spec in variants.items():
                load = os.getloadavg()[0]
                if spec is None:
                    onnx_file = folders[next(k for k in folders if k[0] == model)] / "model.onnx"
                    cmd = [sys.executable, str(hand), str(clip), str(onnx_file), *geometry, str(HAND_BATCH)]
                else:
                    cmd = [sys.executable, "-m", "focalnet_edge.cli", "predict", str(folders[(model, variant)]), str(clip),
                           "--jsonl", *spec[1]]
                seconds, loop, cpu, note = _timed(cmd, pycache)
                base = (seconds, cpu) if spec is None else base
                runs[variant].append((seconds, loop, cpu, note, load))
                if base:
                    ratios[variant].append(base[0] / seconds)
                    cpu_ratios[variant].append(base[1] / cpu)
        for variant, done in runs.items():
            wall = statistics.median(r[0] for r in done)
            out.append({"model": "demo" if model == "demo" else "focalnet-tiny", "contender": variant, "frames": frames,
                        "seconds": wall, "frames_per_s": frames / wall,
                        "ratio": statistics.median(ratios[variant]) if ratios[variant] else None,
                        "cpu_s": statistics.median(r[2] for r in done),
                        "cpu_ratio": statistics.median(cpu_ratios[variant]) if cpu_ratios[variant] else None,
                        "startup_s": statistics.median(r[0] - r[1] for r in done),
                        "rounds": [{"seconds": r[0], "loop_s": r[1], "cpu_s": r[2], "load": r[4], "note": r[3]} for r in done]})
    return out


def table(results: list[dict], frames: int, repeats: int) -> str:
    """The rows as the Markdown table of benchmarks/README.md, machine and ISA named."""
    import cv2
    import onnxruntime

    head = (f"1920x1080 mp4v clip, {frames} frames; wall time of a fresh process (start-up included), "
            f"{repeats} interleaved rounds (hand loop, then each predict), medians; ratio: median of each round's "
            "hand-loop time / this time (wall; CPU: user + system seconds of the process, all threads).\n\n"
            f"Machine: {machine()}; onnxruntime {onnxruntime.__version__}, OpenCV {cv2.__version__} "
            f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).\n\n"
            "| model | contender | time (median) | frames/s | / hand loop | CPU s | / hand loop (CPU) | start-up | rounds (s) "
            "| load average (1 min) | notes (last round) |\n|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in results:
        rounds = ", ".join(f"{x['seconds']:.2f}" for x in r["rounds"])
        loads = ", ".join(f"{x['load']:.1f}" for x in r["rounds"])
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] else "-"
        cpu_ratio = f"{r['cpu_ratio']:.2f}x" if r["cpu_ratio"] else "-"
        lines.append(f"| {r['model']} | {r['contender']} | {r['seconds']:.2f} s | {r['frames_per_s']:.1f} | {ratio} | "
                     f"{r['cpu_s']:.2f} | {cpu_ratio} | {r['startup_s']:.2f} s | {rounds} | {loads} | {r['rounds'][-1]['note']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/focalnet-edge-video"))
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--models", default="demo,tiny")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--variants", default=None, help="comma-separated contenders (default: all of VARIANTS), by their "
                                                      "position in VARIANTS: 0 is the hand loop")
    args = ap.parse_args()
    names = list(VARIANTS)
    chosen = {names[int(i)]: VARIANTS[names[int(i)]] for i in args.variants.split(",")} if args.variants else VARIANTS
    if next(iter(chosen.values())) is not None:
        chosen = {names[0]: None, **chosen}  # the hand loop is every ratio's base
    print(f"`python benchmarks/video.py --frames {args.frames} --models {args.models} --repeats {args.repeats}`: ", end="")
    print(table(rows(args.work, args.frames, tuple(args.models.split(",")), args.repeats, chosen), args.frames, args.repeats))
