"""The `focalnetclassify` element in a 1080p pipeline against `predict` on the same frames (issue 23).

    python benchmarks/gstreamer.py [--work /tmp/focalnet-edge-gst] [--frames 120] [--models demo,tiny]

The frames: `--frames` 1920x1080 RGB frames (a demo image enlarged and panned, with noise), written
once as one raw file. The models: the bundled demo model (64 x 64) and focalnet-tiny with random
weights (224, 1000 classes), exported as `focalnet-edge export` does by default (ONNX Runtime on
the CPU, preprocessing on the CPU).

- the element: `filesrc blocksize=<one frame> ! video/x-raw,format=RGB,width=1920,height=1080 !
  focalnetclassify model=OUT ! fakesink`, run by gst-launch-1.0 as a user would (the plugin folder
  on GST_PLUGIN_PATH, this venv off PATH). It runs twice, on a tenth of the frames and on all of
  them, and the frame rate is taken from the difference, so the start-up (GStreamer, Python, the
  model) cancels out; the same two runs with `identity` in its place give what reading the
  frames costs on its own;
- `predict`: `runtime.load(OUT).predict(frame)` on each frame of the same file, in this process,
  model loaded once.
One run of each, interleaved per model; the 1-minute load average is recorded before each.
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
W, H = 1920, 1080
CAPS = f"video/x-raw,format=RGB,width={W},height={H},framerate=30/1"


def make_frames(path: Path, frames: int) -> Path:
    if path.is_file():
        return path
    from PIL import Image

    from focalnet_edge.demo import demo_images

    rng = np.random.default_rng(0)
    big = np.asarray(Image.open(demo_images()[0][0]).convert("RGB").resize((2400, 1350), Image.BICUBIC))
    tmp = path.with_suffix(".part")
    with open(tmp, "wb") as f:
        for i in range(frames):
            x, y = (i * 4) % 480, (i * 2) % 270
            frame = big[y : y + H, x : x + W].astype(np.int16) + rng.integers(-8, 9, (H, W, 1), dtype=np.int16)
            f.write(np.clip(frame, 0, 255).astype(np.uint8).tobytes())
    tmp.rename(path)
    return path


def make_models(work: Path, models: list[str]) -> dict[str, Path]:
    out = {}
    for model in models:
        source = model_source(work, model)
        folder = work / model
        if not (folder / "manifest.json").is_file():
            subprocess.run([sys.executable, "-m", "focalnet_edge.cli", "-q", "export", "--model", source, "--output", str(folder)],
                           check=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        out[model] = folder
    return out


def gst_env(work: Path) -> dict[str, str]:
    from focalnet_edge.deploy.gstreamer import plugin_path

    venv_bin = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p) != venv_bin)
    env["GST_PLUGIN_PATH"] = str(plugin_path(work / "plugin"))
    env["GST_REGISTRY"] = str(work / "registry.bin")
    return env


def pipeline_seconds(env: dict, raw: Path, frames: int, element: str) -> float:
    cmd = ["gst-launch-1.0", "-q", "filesrc", f"location={raw}", f"blocksize={W * H * 3}", f"num-buffers={frames}", "!",
           CAPS, "!", *element.split(), "!", "fakesink", "sync=false"]
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr[-800:]}")
    return seconds


def element_fps(env: dict, raw: Path, frames: int, element: str) -> tuple[float, float]:
    """(frames/s from the difference of a short and a full run, frames/s of the full run with start-up)."""
    short = max(2, frames // 10)
    t_short = pipeline_seconds(env, raw, short, element)
    t_full = pipeline_seconds(env, raw, frames, element)
    return (frames - short) / (t_full - t_short), frames / t_full


def predict_fps(folder: Path, raw: Path, frames: int) -> float:
    from focalnet_edge.runtime import load

    data = np.memmap(raw, np.uint8, "r", shape=(frames, H, W, 3))
    with load(folder) as runner:
        runner.predict(np.array(data[0]), top_k=5)  # warm-up, as the element's first frame after loading
        t = time.perf_counter()
        for i in range(frames):
            runner.predict(np.array(data[i]), top_k=5)  # a frame as the element gets it: in memory, RGB
        return frames / (time.perf_counter() - t)


def run(work: Path, frames: int, models: list[str]) -> str:
    work.mkdir(parents=True, exist_ok=True)
    raw = make_frames(work / f"frames-1080p-{frames}.rgb", frames)
    folders = make_models(work, models)
    env = gst_env(work)
    rows = []
    for model in models:
        load = os.getloadavg()[0]
        p = predict_fps(folders[model], raw, frames)
        rows.append(f"| {model} | `predict`, frame by frame | {p:.1f} | - | 1.00x | {load:.2f} |")
        load = os.getloadavg()[0]
        e, cold = element_fps(env, raw, frames, f"focalnetclassify model={folders[model]}")
        rows.append(f"| {model} | focalnetclassify (batch-size 1) | {e:.1f} | {cold:.1f} | {e / p:.2f}x | {load:.2f} |")
    load = os.getloadavg()[0]
    i, cold = element_fps(env, raw, frames, "identity")
    rows.append(f"| - | identity (reading the frames, no classification) | {i:.1f} | {cold:.1f} | - | {load:.2f} |")
    import onnxruntime

    head = (f"`python benchmarks/gstreamer.py --frames {frames} --models {','.join(models)}`: {frames} RGB frames of "
            f"1920x1080; one run each, interleaved per model.\n\n"
            f"Machine: {machine()}; onnxruntime {onnxruntime.__version__} ({time.strftime('%Y-%m-%d')}).\n\n"
            "| model | contender | frames/s | frames/s with start-up | / predict | load average (1 min) before |\n"
            "|---|---|---|---|---|---|")
    return "\n".join([head, *rows])


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/focalnet-edge-gst"))
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--models", default="demo,tiny")
    args = ap.parse_args()
    print(run(args.work, args.frames, args.models.split(",")))
