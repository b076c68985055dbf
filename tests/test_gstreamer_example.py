"""examples/gstreamer_appsink.py, run for real: videotestsrc ! videoconvert ! appsink -> predict.

GStreamer's Python bindings come from Debian (python3-gi, python3-gst-1.0,
gir1.2-gst-plugins-base-1.0, gstreamer1.0-plugins-base). The example runs under this test's
Python when it has them, or with the system's dist-packages appended when /usr/bin/python3 has
them and is the same Python version (the compiled gi module is version-specific); otherwise the
test is skipped with the reason. The references: the colour videotestsrc was told to draw, the
geometry of its SMPTE bars, and `predict` run here on the frames the example saved.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from focalnet_edge.model import load_checkpoint
from focalnet_edge.pipeline import ExportOptions, export_stage
from focalnet_edge.runtime import load

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "gstreamer_appsink.py"
SYSTEM_PYTHON = "/usr/bin/python3"
HAS_GST = "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstVideo', '1.0'); from gi.repository import Gst"


def _gst_python() -> tuple[list[str] | None, str]:
    """The command prefix that runs a script with GStreamer and this environment, or why there is none."""
    if subprocess.run([sys.executable, "-c", HAS_GST], check=False, capture_output=True).returncode == 0:
        return [sys.executable], "this Python has GStreamer"
    if not Path(SYSTEM_PYTHON).exists():
        return None, f"no GStreamer bindings in {sys.executable} and no {SYSTEM_PYTHON}"
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", HAS_GST + "; import os, sys; print(os.path.dirname(os.path.dirname(gi.__file__))); "
         "print('%d.%d' % sys.version_info[:2])"],
        check=False, capture_output=True, text=True,
    )
    if probe.returncode != 0:
        return None, (
            "GStreamer's Python bindings are missing (apt-get install python3-gi python3-gst-1.0 "
            "gir1.2-gst-plugins-base-1.0 gstreamer1.0-plugins-base)"
        )
    site, version = probe.stdout.split()
    if version != "{}.{}".format(*sys.version_info[:2]):
        return None, f"{SYSTEM_PYTHON} has GStreamer but is Python {version}, this is {sys.version_info[:2]}"
    boot = f"import runpy, sys; sys.path.append({site!r}); sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    return [sys.executable, "-c", boot], f"this Python with {site} appended"


@pytest.fixture(scope="module")
def gst_python():
    prefix, reason = _gst_python()
    if prefix is None:
        pytest.skip(reason)
    return prefix


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("appsink")
    export_stage(load_checkpoint("demo"), out, ExportOptions())
    return out


def _run(gst_python, folder: Path, tmp_path: Path, *args: str) -> tuple[list[dict], np.ndarray]:
    npy = tmp_path / "frames.npy"
    r = subprocess.run(
        [*gst_python, str(EXAMPLE), str(folder), "--save-frames", str(npy), *args],
        check=False, capture_output=True, text=True, timeout=300, cwd=ROOT, env=_env(),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return [json.loads(line) for line in r.stdout.splitlines()], np.load(npy)


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def test_appsink_frames_have_the_colour_videotestsrc_drew(gst_python, folder, tmp_path):
    source = "videotestsrc num-buffers=4 pattern=solid-color foreground-color=0xff3080c0"
    lines, frames = _run(gst_python, folder, tmp_path, "--source", source, "--width", "96", "--height", "64")
    assert frames.shape == (4, 64, 96, 3) and frames.dtype == np.uint8
    # 0xAARRGGBB: RGB (0x30, 0x80, 0xc0), so no channel swap and no stride shear
    assert np.abs(frames.astype(int) - [0x30, 0x80, 0xC0]).max() <= 1
    assert [line["frame"] for line in lines] == [0, 1, 2, 3]


def test_appsink_predictions_match_predict_on_the_same_frames(gst_python, folder, tmp_path):
    # width 222: GStreamer pads RGB rows to 668 bytes, which the example must skip
    lines, frames = _run(gst_python, folder, tmp_path, "--num-buffers", "5", "--width", "222", "--height", "100")
    assert frames.shape == (5, 100, 222, 3)
    assert (frames[:, 0] == frames[:, 40]).all()  # SMPTE bars are vertical: rows agree unless sheared
    assert len(np.unique(frames[0, 0].reshape(-1, 3), axis=0)) >= 7  # the seven bars
    assert [line["pts_ns"] for line in lines] == sorted({line["pts_ns"] for line in lines})
    with load(folder) as runner:
        expected = runner.predict(list(frames), top_k=3)
    for line, top in zip(lines, expected):
        assert [t["index"] for t in line["top"]] == [t["index"] for t in top]
        assert np.allclose([t["score"] for t in line["top"]], [t["score"] for t in top], atol=1e-5)
