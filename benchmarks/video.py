"""`predict` on a 1080p clip against a hand-written OpenCV -> ONNX Runtime loop (issue 13).

    python benchmarks/video.py [--work /tmp/focalnet-edge-video] [--frames 300] [--models demo,tiny]

The clip: 1920x1080, `--frames` frames at 30 frames/s, MPEG-4 part 2 (`mp4v`, what
opencv-python-headless writes here), a demo image enlarged and panned with noise on top,
written once into `--work`. The models: the bundled demo model and focalnet-tiny with random
weights (1000 classes, 224), both exported with `--fuse-preprocess` (uint8 RGB NHWC frames in).

Each contender is a fresh process, so start-up (imports, loading and checking the model) is
included, as a user would time it:
- `predict`: `focalnet-edge predict OUT CLIP --jsonl` (defaults: the artifact's optimal batch, every frame,
  OpenCV resize on the decoding thread), output to /dev/null;
- the hand loop (`HAND_LOOP` below, twenty lines): `cv2.VideoCapture` -> `cv2.resize`
  (INTER_AREA, the same geometry: warp for the demo, shortest edge 256 then centre crop 224
  for tiny) -> BGR to RGB -> `session.run` one frame at a time, spinning off
  (`session.intra_op.allow_spinning=0`, as predict's sessions), argmax per frame.
One run of each, interleaved (hand loop, predict; per model), the 1-minute load average
recorded before each. A variant (e.g. in-graph resize with `--frame-size any`) is one more
entry in `VARIANTS`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, model_source

ROOT = Path(__file__).resolve().parent.parent

HAND_LOOP = r'''
import sys, cv2, numpy as np, onnxruntime as ort
clip, model, short, height, width = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
so = ort.SessionOptions()
so.add_session_config_entry("session.intra_op.allow_spinning", "0")
session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
cap, frames = cv2.VideoCapture(clip), 0
while True:
    ok, bgr = cap.read()
    if not ok:
        break
    h, w = bgr.shape[:2]
    if short:  # shortest edge to `short`, then centre crop
        size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        top, left = (size[1] - height) // 2, (size[0] - width) // 2
        bgr = bgr[top:top + height, left:left + width]
    else:
        bgr = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)
    logits = session.run(None, {name: cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[None]})[0]
    frames += int(logits.argmax(-1).size)
print(frames)
'''

#: the contenders: name -> (extra export arguments, predict arguments); None = the hand loop
VARIANTS: dict[str, tuple[list[str], list[str]] | None] = {
    "hand loop (OpenCV -> ONNX Runtime)": None,
    "focalnet-edge predict": ([], []),
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


def _timed(cmd: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    seconds = time.perf_counter() - t
    if done.returncode:
        raise SystemExit(f"{cmd[:4]} failed: {done.stderr[-800:]}")
    return seconds, done.stdout if "predict" not in cmd else done.stderr


def run(work: Path, frames: int, models: list[str]) -> str:
    work.mkdir(parents=True, exist_ok=True)
    clip = make_clip(work / f"clip-1080p-{frames}.mp4", frames)
    folders = make_models(work, models, VARIANTS)
    hand = work / "hand_loop.py"
    hand.write_text(HAND_LOOP)
    rows = []
    for model in models:
        geometry = ["0", "64", "64"] if model == "demo" else ["256", "224", "224"]
        base = None
        for variant, spec in VARIANTS.items():
            load = os.getloadavg()[0]
            if spec is None:
                onnx_file = folders[next(k for k in folders if k[0] == model)] / "model.onnx"
                seconds, out = _timed([sys.executable, str(hand), str(clip), str(onnx_file), *geometry])
                assert int(out.strip()) == frames, out
                base, note = seconds, "batch 1"
            else:
                seconds, err = _timed([sys.executable, "-m", "focalnet_edge.cli", "predict", str(folders[(model, variant)]),
                                       str(clip), "--jsonl", *spec[1]])
                note = err.strip().splitlines()[-1].split(": ", 1)[1]  # predict's own per-stage summary
            ratio = f"{frames / seconds / (frames / base):.2f}x" if base else "-"
            rows.append(f"| {'demo' if model == 'demo' else 'focalnet-tiny'} | {variant} | {seconds:.2f} s | "
                        f"{frames / seconds:.1f} | {ratio} | {load:.2f} | {note} |")
    import onnxruntime
    import cv2

    head = (f"`python benchmarks/video.py --frames {frames} --models {','.join(models)}`: 1920x1080 mp4v clip, "
            f"{frames} frames; wall time of a fresh process (start-up included), one run each, interleaved.\n\n"
            f"Machine: {machine()}; onnxruntime {onnxruntime.__version__}, OpenCV {cv2.__version__} "
            f"({time.strftime('%Y-%m-%d')}).\n\n"
            "| model | contender | time | frames/s | / hand loop | load average (1 min) before | notes |\n|---|---|---|---|---|---|---|")
    return "\n".join([head, *rows])


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/focalnet-edge-video"))
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--models", default="demo,tiny")
    args = ap.parse_args()
    print(run(args.work, args.frames, args.models.split(",")))
