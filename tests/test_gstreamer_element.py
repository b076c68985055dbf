"""The `focalnetclassify` element in real GStreamer pipelines, read from C.

examples/focalnet_meta.c is compiled with gcc and `pkg-config gstreamer-1.0 gstreamer-video-1.0`
and runs `multifilesrc ! pngdec ! videoconvert ! focalnetclassify ! fakesink`, reading the
`classification` params of the GstVideoRegionOfInterestMetas at the sink. The reference is
`runtime.load(folder).predict` run here on the same PNG files (or their crops). GStreamer runs
as a user's C program would: the plugin folder from `plugin_path()` on GST_PLUGIN_PATH, this
venv off PATH and no PYTHONPATH, a registry of its own. Skipped, with the reason, where
GStreamer, its Python loader or gcc are missing (apt packages in the skip message).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from focalnet_edge.deploy.gstreamer import plugin_path
from focalnet_edge.deploy.gstreamer.element_spec import PROPERTIES
from focalnet_edge.model import load_checkpoint
from focalnet_edge.pipeline import ExportOptions, export_stage
from focalnet_edge.runtime import load

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "examples" / "focalnet_meta.c"
APT = ("apt-get install gcc pkg-config libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-tools "
       "gstreamer1.0-plugins-base gstreamer1.0-plugins-good python3-gi python3-gst-1.0 gstreamer1.0-python3-plugin-loader")
N_FRAMES = 6


def _missing() -> str | None:
    for tool in ("gcc", "pkg-config", "gst-inspect-1.0"):
        if shutil.which(tool) is None:
            return f"{tool} is missing ({APT})"
    if subprocess.run(["pkg-config", "--exists", "gstreamer-1.0", "gstreamer-video-1.0"], check=False).returncode:
        return f"GStreamer's development files are missing ({APT})"
    return None


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """The environment of a user's C program: the plugin folder on GST_PLUGIN_PATH, no venv, no PYTHONPATH."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("gst")
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(
        PATH=os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p) != Path(venv_bin)),
        GST_PLUGIN_PATH=str(plugin_path(tmp / "plugin")),
        GST_REGISTRY=str(tmp / "registry.bin"),
    )
    probe = subprocess.run(["gst-inspect-1.0", "focalnetclassify"], env=env, capture_output=True, text=True, timeout=120)
    refusal = [line for line in probe.stderr.splitlines() if line.startswith("focalnetclassify: not loaded")]
    if probe.returncode and refusal and "is installed for Python" in refusal[0]:
        pytest.skip(refusal[0])  # GStreamer's Python is another version than this one: the element cannot run this installation
    if probe.returncode and not refusal:
        pytest.skip(f"GStreamer's Python plugin loader does not load (gst-inspect-1.0: {probe.stderr.strip()[-300:]}; {APT})")
    return env


@pytest.fixture(scope="module")
def reader(env, tmp_path_factory) -> Path:
    exe = tmp_path_factory.mktemp("reader") / "focalnet_meta"
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "gstreamer-1.0", "gstreamer-video-1.0"],
                           check=True, capture_output=True, text=True).stdout.split()
    subprocess.run(["gcc", "-Wall", "-Werror", str(SOURCE), "-o", str(exe), *flags], check=True, capture_output=True, text=True)
    return exe


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model")
    export_stage(load_checkpoint("demo"), out, ExportOptions())
    return out


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> list[Path]:
    """Six demo test images of several classes, 150 x 100 (RGB rows of 450 bytes, padded to 452 by GStreamer)."""
    out = tmp_path_factory.mktemp("frames")
    images = sorted((ROOT / "focalnet_edge" / "data" / "demo" / "images").glob("*/*.png"))[::45][:N_FRAMES]
    paths = []
    for i, src in enumerate(images):
        paths.append(out / f"frame_{i:03d}.png")
        Image.open(src).convert("RGB").resize((150, 100), Image.BILINEAR).save(paths[-1])
    return paths


def _pipeline(frames: list[Path], element: str, caps: str = "") -> str:
    src = f"multifilesrc location={frames[0].parent}/frame_%03d.png index=0 stop-index={len(frames) - 1} caps=image/png,framerate=1/1"
    return f"{src} ! pngdec ! videoconvert {caps} ! focalnetclassify name=cls {element} ! fakesink name=sink"


def _run(reader: Path, env: dict, pipeline: str, *regions: str) -> subprocess.CompletedProcess:
    args = [str(reader), pipeline]
    for r in regions:
        args += ["--region", r]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)


def _rows(result: subprocess.CompletedProcess) -> tuple[list[dict], int]:
    """The metas read at the sink; the element messages, checked against them, counted."""
    assert result.returncode == 0, result.stderr[-3000:]
    rows, messages, said = [], None, {}
    for line in result.stdout.splitlines():
        f = line.split("\t")
        if f[0] == "roi":
            rows.append(dict(frame=int(f[1]), type=f[2], rect=tuple(map(int, f[3:7])), label=f[7], index=int(f[8]),
                             score=float(f[9]), top_k=int(f[10])))
        elif f[0] == "message":
            assert int(f[2]) == len(f) - 3
            said[int(f[1])] = f[3:]
        elif f[0] == "messages":
            messages = int(f[1])
    assert sorted(said) == list(range(messages))  # one message per frame
    for frame, labels in said.items():  # the same results as the metas, in the same order
        assert labels == [r["label"] for r in rows if r["frame"] == frame and r["label"] != "-"]
    return rows, messages


def test_gst_inspect_lists_the_properties(env):
    r = subprocess.run(["gst-inspect-1.0", "focalnetclassify"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    props = r.stdout.split("Element Properties:")[1]
    for name in PROPERTIES:
        assert f"\n  {name} " in props, name
    assert set(PROPERTIES) == {"model", "artifact", "mode", "batch-size", "interval", "top-k", "threshold", "roi-type"}
    for fmt in ("RGB", "BGR", "RGBx", "BGRx", "RGBA", "GRAY8", "I420", "NV12"):
        assert f"(string){fmt}," in r.stdout or f"(string){fmt} " in r.stdout


def test_primary_labels_equal_predict_on_the_same_frames(env, reader, folder, frames):
    # batch-size 4 over 6 frames: one full batch, then the last two flushed by EOS
    rows, messages = _rows(_run(reader, env, _pipeline(frames, f"model={folder} batch-size=4 top-k=3")))
    with load(folder) as runner:
        expected = runner.predict([str(p) for p in frames], top_k=3)
    assert messages == N_FRAMES
    assert [r["frame"] for r in rows] == list(range(N_FRAMES))
    assert len({e[0]["label"] for e in expected}) >= 4  # several classes: a constant answer would fail
    for row, top in zip(rows, expected):
        assert row["type"] == "frame" and row["rect"] == (0, 0, 150, 100)
        assert (row["label"], row["index"]) == (top[0]["label"], top[0]["index"])
        assert row["score"] == pytest.approx(top[0]["score"], abs=1e-5)
        assert row["top_k"] == 3


def test_interval_and_threshold(env, reader, folder, frames):
    rows, messages = _rows(_run(reader, env, _pipeline(frames, f"model={folder} interval=2")))
    assert [r["frame"] for r in rows] == [0, 2, 4] and messages == N_FRAMES
    with load(folder) as runner:
        scores = [t[0]["score"] for t in runner.predict([str(p) for p in frames], top_k=1)]
    cut = float(np.median(scores))
    rows, _ = _rows(_run(reader, env, _pipeline(frames, f"model={folder} threshold={cut}")))
    assert [r["frame"] for r in rows] == [i for i, s in enumerate(scores) if s >= cut]


@pytest.mark.parametrize("fmt", ["BGRx", "BGR", "RGBA"])
def test_packed_formats_give_the_same_numbers(env, reader, folder, frames, fmt):
    rows, _ = _rows(_run(reader, env, _pipeline(frames, f"model={folder}", f"! video/x-raw,format={fmt}")))
    with load(folder) as runner:
        expected = runner.predict([str(p) for p in frames], top_k=1)
    assert [r["index"] for r in rows] == [t[0]["index"] for t in expected]
    assert np.allclose([r["score"] for r in rows], [t[0]["score"] for t in expected], atol=1e-5)


def test_grey_frames_give_the_same_numbers(env, reader, folder, frames, tmp_path):
    grey = []
    for i, path in enumerate(frames):  # grey PNGs: pngdec gives GRAY8, which videoconvert passes through
        grey.append(tmp_path / f"frame_{i:03d}.png")
        Image.open(path).convert("L").save(grey[-1])
    rows, _ = _rows(_run(reader, env, _pipeline(grey, f"model={folder}", "! video/x-raw,format=GRAY8")))
    with load(folder) as runner:
        expected = runner.predict([str(p) for p in grey], top_k=1)
    assert [r["index"] for r in rows] == [t[0]["index"] for t in expected]
    assert np.allclose([r["score"] for r in rows], [t[0]["score"] for t in expected], atol=1e-5)


@pytest.mark.parametrize("fmt", ["I420", "NV12"])
def test_yuv_frames_give_the_same_labels(env, reader, folder, frames, fmt):
    # videoconvert's RGB -> YUV -> our YUV -> RGB loses a grey level or two: labels equal, confidences close
    rows, _ = _rows(_run(reader, env, _pipeline(frames, f"model={folder}", f"! video/x-raw,format={fmt}")))
    with load(folder) as runner:
        expected = runner.predict([str(p) for p in frames], top_k=1)
    assert [r["index"] for r in rows] == [t[0]["index"] for t in expected]
    assert np.allclose([r["score"] for r in rows], [t[0]["score"] for t in expected], atol=0.02)


def test_secondary_classifies_the_regions_attached_upstream(env, reader, folder, frames):
    regions = {
        "digit,10,5,70,90": (10, 5, 70, 90),  # inside the frame
        "digit,100,40,100,100": (100, 40, 50, 60),  # partly outside: clipped to the frame
        "face,0,0,60,60": None,  # another type: not taken (roi-type=digit)
        "digit,200,0,10,10": None,  # wholly outside: skipped
    }
    # batch-size 3 with two regions per frame: batches span frames
    rows, messages = _rows(_run(reader, env, _pipeline(frames, f"model={folder} mode=secondary roi-type=digit batch-size=3"), *regions))
    assert messages == N_FRAMES and len(rows) == N_FRAMES * len(regions)
    crops = []
    for path in frames:
        im = Image.open(path)
        crops += [im.crop((x, y, x + w, y + h)) for x, y, w, h in filter(None, regions.values())]
    with load(folder) as runner:
        expected = iter(runner.predict(crops, top_k=5))
    assert len({(r["label"]) for r in rows if r["label"] != "-"}) >= 3
    for i, row in enumerate(rows):
        spec = list(regions)[i % len(regions)]
        kind, *rect = spec.split(",")
        assert (row["type"], row["rect"]) == (kind, tuple(map(int, rect)))  # the region upstream attached
        if regions[spec] is None:
            assert row["label"] == "-"
            continue
        top = next(expected)
        assert (row["label"], row["index"], row["top_k"]) == (top[0]["label"], top[0]["index"], 5)
        assert row["score"] == pytest.approx(top[0]["score"], abs=1e-5)


def test_missing_model_fails_the_state_change_naming_the_path(env, reader, frames, tmp_path):
    missing = tmp_path / "no-such-model"
    r = _run(reader, env, _pipeline(frames, f"model={missing}"))
    assert r.returncode == 1 and "roi\t" not in r.stdout
    assert f"error: {missing}: no such artifact or output folder" in r.stderr
    assert "Traceback" not in r.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{ not json")
    r = _run(reader, env, _pipeline(frames, f"model={broken}"))
    assert r.returncode == 1 and str(broken) in r.stderr and "Traceback" not in r.stderr


def test_unsupported_caps_fail_negotiation_with_a_clear_message(env, reader, folder, tmp_path):
    # caps fixed in the pipeline: GStreamer refuses the link, naming them
    pipeline = f"videotestsrc num-buffers=2 ! video/x-raw,format=YUY2,width=64,height=48 ! focalnetclassify name=cls model={folder} ! fakesink name=sink"
    r = _run(reader, env, pipeline)
    assert r.returncode == 1
    assert "error: could not link videotestsrc0 to cls, cls can't handle caps video/x-raw, format=(string)YUY2" in r.stderr
    assert "Traceback" not in r.stderr
    # caps known only at run time (a 16-bit grey PNG decodes to GRAY16_BE): the element says what it takes
    png = tmp_path / "grey16.png"
    Image.fromarray((np.arange(64 * 48).reshape(48, 64) * 20).astype(np.uint16)).save(png)
    r = _run(reader, env, f"filesrc location={png} ! pngdec ! focalnetclassify name=cls model={folder} ! fakesink name=sink")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert ("error: focalnetclassify: GRAY16_BE frames are not supported: expected video/x-raw in RGB, BGR, RGBx, RGBA, BGRx, BGRA, "
            "GRAY8, I420, NV12 (put videoconvert before focalnetclassify)") in r.stderr


def test_the_loader_says_in_one_line_what_to_do(env, tmp_path):
    plugin = plugin_path(tmp_path / "plugin")
    facts = json.loads((plugin / "installation.json").read_text())
    (plugin / "installation.json").write_text(json.dumps({**facts, "python": "2.7"}))
    r = subprocess.run(["gst-inspect-1.0", "focalnetclassify"], capture_output=True, text=True, timeout=120,
                       env={**env, "GST_PLUGIN_PATH": str(plugin), "GST_REGISTRY": str(tmp_path / "registry.bin")})
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if line.startswith("focalnetclassify")]
    assert len(lines) == 1 and "installed for Python 2.7" in lines[0] and "focalnet-edge gst --plugin-path" in lines[0]
    assert "Traceback" not in r.stderr


def test_cli_prints_the_plugin_folder(tmp_path):
    from focalnet_edge.cli import main

    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["gst", "--plugin-path", "--dir", str(tmp_path / "p")]) == 0
    folder = Path(out.getvalue().strip())
    assert folder == (tmp_path / "p").resolve()
    assert (folder / "python" / "focalnetclassify.py").is_file()
    facts = json.loads((folder / "installation.json").read_text())
    assert facts["python"] == "%d.%d" % sys.version_info[:2]
    assert Path(facts["package_root"], "focalnet_edge", "__init__.py").is_file()


def test_readme_c_snippet_is_the_compiled_example():
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## GStreamer: the `focalnetclassify` element"):]
    (snippet,) = re.findall(r"^```c\n(.*?)^```", section[: section.index("\n## ", 10)], flags=re.DOTALL | re.MULTILINE)
    assert snippet.strip() and snippet in SOURCE.read_text(encoding="utf-8")  # compiled and run by the tests above


def test_the_venv_on_path_gets_the_loader_blacklisted_as_readme_says(env, tmp_path):
    registry = str(tmp_path / "registry.bin")
    venv_first = {**env, "GST_REGISTRY": registry, "PATH": os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])}
    r = subprocess.run(["gst-inspect-1.0", "focalnetclassify"], env=venv_first, capture_output=True, text=True, timeout=120)
    if r.returncode == 0:
        pytest.skip(f"{sys.executable}'s environment has gi: the embedded Python loads from it")
    r = subprocess.run(["gst-inspect-1.0", "-b"], env={**env, "GST_REGISTRY": registry}, capture_output=True, text=True, timeout=120)
    assert "libgstpython" in r.stdout  # and it stays so with a clean PATH, until the registry is deleted
