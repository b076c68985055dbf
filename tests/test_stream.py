"""Video streams: files, URLs over loopback, cameras; decoding thread, batching, timing, errors, no torch."""

from __future__ import annotations

import functools
import http.server
import json
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from focalnet_edge.cli import main
from focalnet_edge.folder.contract import InputContract
from focalnet_edge.demo import demo_images
from focalnet_edge.errors import InputError
from focalnet_edge.model.preprocessing import ImageSpec

cv2 = pytest.importorskip("cv2", reason="OpenCV is the optional 'video' extra")

from focalnet_edge.inputs.stream import StreamStats, VideoStream, frame_transform, predict_stream  # noqa: E402
from helpers import without_torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FRAMES = 12


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("stream") / "out"
    assert main(["-q", "export", "--model", "demo", "--output", str(out), "--fuse-preprocess", "--batch", "1:4:8"]) == 0
    return out


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """An mp4 (MPEG-4 part 2, the codec opencv-python-headless writes here) of demo images, 160x120, 12 frames."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    assert writer.isOpened()
    for image, _ in demo_images()[:FRAMES]:
        rgb = Image.open(image).convert("RGB").resize((160, 120), Image.BICUBIC)
        writer.write(np.ascontiguousarray(np.asarray(rgb)[..., ::-1]))
    writer.release()
    return path


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def http_url(clip):
    """http://127.0.0.1:PORT/ serving the clip's folder from a thread of this process."""
    handler = functools.partial(_Quiet, directory=str(clip.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _predict(capsys, *argv):
    code = main(["predict", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.strip().splitlines()], err


def _decoded_rgb(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(np.ascontiguousarray(bgr[..., ::-1]))
    cap.release()
    return frames


def test_a_stream_over_http_gives_what_the_file_gives(capsys, demo_out, clip, http_url):
    code, from_file, err = _predict(capsys, demo_out, clip, "--jsonl", "--top-k", "3", "--batch", "4")
    assert code == 0 and len(from_file) == FRAMES
    assert "12 frames classified (12 decoded)" in err and "frames/s; decode" in err and "infer" in err
    code, from_url, _ = _predict(capsys, demo_out, http_url + "clip.mp4", "--jsonl", "--top-k", "3", "--batch", "4")
    assert code == 0
    assert [r["top"] for r in from_url] == [r["top"] for r in from_file]  # same frames, same numbers
    assert [r["image"] for r in from_url] == [f"{http_url}clip.mp4#{i}" for i in range(FRAMES)]


def test_stream_results_match_the_reference_preprocessing(demo_out, clip):
    """The OpenCV resize on the preprocessing thread against Pillow (the reference) on the same decoded frames."""
    from focalnet_edge.runtime import load

    frames = _decoded_rgb(clip)
    with load(demo_out) as runner:
        reference = runner.predict(frames, top_k=1)
        fast = [top for _, top in predict_stream(runner, clip, top_k=1, batch=5)]
        exact = [top for _, top in predict_stream(runner, clip, top_k=1, batch=5, resize="pil")]
    assert exact == reference  # resize="pil" is the reference path exactly
    assert [t[0]["index"] for t in fast] == [t[0]["index"] for t in reference]
    assert max(abs(a[0]["score"] - b[0]["score"]) for a, b in zip(fast, reference)) < 0.05


@pytest.mark.parametrize("spec", [
    ImageSpec(64, 64, None, False, (0.5,) * 3, (0.5,) * 3, 1 / 255, 2),  # the demo's: warp, bilinear
    ImageSpec(224, 224, 256, True, resample=3),  # focalnet-tiny's: shortest edge 256, centre crop 224, bicubic
    ImageSpec(224, 224, 256, True, resample=3).for_size(160, 96),
])
@pytest.mark.parametrize("fused", [True, False])
def test_opencv_resize_is_within_a_grey_level_of_pillow(spec, fused):
    """A 1080p frame (a demo image enlarged, with fine detail added): the two paths' inputs compared."""
    rng = np.random.default_rng(0)
    image = Image.open(demo_images()[3][0]).convert("RGB").resize((1920, 1080), Image.BICUBIC)
    rgb = np.clip(np.asarray(image, np.int16) + rng.integers(-12, 13, (1080, 1920, 3)), 0, 255).astype(np.uint8)
    contract = InputContract(height=spec.height, width=spec.width, fused_preprocess=fused, preprocessing=spec.to_dict(),
                             layout="NHWC" if fused else "NCHW", color_order="BGR" if fused else "RGB")
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    fast, exact = frame_transform(contract, "opencv")(bgr), frame_transform(contract, "pil")(bgr)
    assert fast.shape == exact.shape and fast.dtype == exact.dtype
    scale = 1.0 if fused else 255 * np.asarray(spec.std).reshape(3, 1, 1)  # normalised inputs: back to grey levels
    diff = np.abs(fast.astype(np.float64) - exact.astype(np.float64)) * scale
    print(f"opencv vs pillow: mean {diff.mean():.2f}, p99 {np.percentile(diff, 99):.1f}, max {diff.max():.0f} grey levels")
    assert diff.mean() < 1.0, diff.mean()
    assert np.percentile(diff, 99) < 6, np.percentile(diff, 99)
    # colour order and layout right: the fast path against the reference image's channels
    assert np.corrcoef(fast.astype(np.float64).ravel(), exact.astype(np.float64).ravel())[0, 1] > 0.99


def test_an_unknown_preprocessing_falls_back_to_the_reference(monkeypatch):
    from focalnet_edge.inputs import stream

    contract = InputContract(height=64, width=64, fused_preprocess=True, preprocessing={"height": 64, "width": 64})
    monkeypatch.setattr(stream, "_reproducible", lambda spec: False)
    bgr = np.random.default_rng(1).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    assert np.array_equal(frame_transform(contract, "opencv")(bgr), frame_transform(contract, "pil")(bgr))


def test_every_limit_batches_and_timing(clip):
    stats = StreamStats()
    with VideoStream(clip, every=3, batch=2, stats=stats) as stream:
        batches = list(stream)
    assert [i for b, _ in batches for i in b] == [0, 3, 6, 9] and [len(b) for b, _ in batches] == [2, 2]
    assert batches[0][1].shape == (2, 120, 160, 3) and stats.decoded == FRAMES and stats.decode_s > 0
    reference = _decoded_rgb(clip)
    assert np.array_equal(batches[1][1][1], reference[9])  # RGB frames, in order
    with VideoStream(clip, batch=5, limit=7) as stream:
        assert [len(b) for b, _ in stream] == [5, 2]


def test_stopping_early_ends_the_threads(clip):
    stream = VideoStream(clip, batch=1, queue_size=1)
    next(iter(stream))
    stream.close()
    assert not any(t.is_alive() for t in stream._threads)


@pytest.mark.parametrize("source,needle", [
    ("http://127.0.0.1:{port}/clip.mp4", "could not open the stream"),
    ("rtsp://127.0.0.1:{port}/live", "could not open the stream"),
    ("--source=9", "camera 9: no such camera"),
    ("{tmp}/garbage.mp4", "not a readable video file"),
    ("{tmp}/missing.mp4", "no such video file"),
])
def test_sources_that_cannot_be_opened_are_one_line_with_exit_2(capsys, demo_out, tmp_path, source, needle):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "garbage.mp4").write_bytes(b"not a video" * 100)
    code = main(["predict", str(demo_out), source.format(port=port, tmp=tmp_path)])
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err


def test_the_python_api_refuses_bad_arguments(clip):
    with pytest.raises(InputError, match="every 0 not accepted"):
        VideoStream(clip, every=0)
    with pytest.raises(InputError, match="camera index -1"):
        VideoStream(-1)
    with pytest.raises(InputError, match="resize 'cuda' not understood"):
        frame_transform(InputContract(), "cuda")


def test_streams_run_without_torch(demo_out, clip, tmp_path, http_url):
    """predict on a file and on a URL in a Python where `import torch` fails."""
    script = (
        "from focalnet_edge.cli import main\n"
        f"codes = [main(['-q', 'predict', {str(demo_out)!r}, {str(clip)!r}, '--top-k', '1', '--every', '4']),\n"
        f"         main(['-q', 'predict', {str(demo_out)!r}, {http_url + 'clip.mp4'!r}, '--top-k', '1', '--limit', '2'])]\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('CODES', codes)\n"
    )
    done = without_torch(script, tmp_path)
    assert done.returncode == 0 and "CODES [0, 0]" in done.stdout, done.stderr[-2000:]
    assert f"{clip}#8: " in done.stdout and f"{http_url}clip.mp4#1: " in done.stdout


@pytest.mark.parametrize("overlap", [False, None, True])
def test_on_the_cpu_decoding_waits_while_the_model_runs(clip, monkeypatch, overlap):
    """ONNX Runtime on the CPU uses every core: while the model is the slowest stage (here: 30 ms a
    frame against about 1 ms to decode and resize), nothing is resized while it runs."""
    import time

    from focalnet_edge.inputs import stream

    inferring, during = [], []

    class SlowCpuRunner:
        contract = InputContract(height=64, width=64, fused_preprocess=True, dtype="uint8", layout="NHWC")
        device, name = "ONNX Runtime CPUExecutionProvider", "onnxruntime:model.onnx"

        def top_k(self, inputs, k):
            inferring.append(True)
            time.sleep(0.03)
            inferring.pop()
            return [[{"index": 0}]] * len(inputs)

    real = stream.frame_transform

    def recording(contract, resize):
        transform = real(contract, resize)

        def record(bgr):
            during.append(bool(inferring))
            return transform(bgr)

        return record

    monkeypatch.setattr(stream, "frame_transform", recording)
    results = list(predict_stream(SlowCpuRunner(), clip, batch=1, overlap=overlap, queue_size=1))
    assert len(results) == FRAMES and len(during) == FRAMES
    if overlap:
        assert sum(during) >= FRAMES // 2  # the threads ran ahead while the model ran
    elif overlap is None:  # decided after the first frame; frames 1-3 were on their way (queues of 1 and 2)
        assert sum(during[4:]) == 0 and sum(during) > 0
    else:
        assert sum(during) == 0


def test_pyav_reads_the_same_frames_where_opencv_is_missing(capsys, demo_out, clip, http_url, monkeypatch):
    """Without OpenCV the same sources go through PyAV (frames resized by the reference path)."""
    pytest.importorskip("av", reason="PyAV is optional (pip install av)")
    from focalnet_edge.inputs import stream
    from focalnet_edge.inputs import video

    monkeypatch.setattr(video, "_cv2", lambda: None)
    monkeypatch.setattr(stream, "_cv2", lambda: None)
    with VideoStream(clip, batch=FRAMES) as frames:
        ((indices, decoded),) = list(frames)
    reference = np.stack(_decoded_rgb(clip))
    assert indices == list(range(FRAMES)) and decoded.shape == reference.shape
    assert np.abs(decoded.astype(int) - reference).mean() < 1.0  # two FFmpeg builds, one codec: (nearly) the same pixels
    code, rows, _ = _predict(capsys, demo_out, http_url + "clip.mp4", "--jsonl", "--top-k", "1", "--every", "3")
    assert code == 0 and [r["image"].rsplit("#", 1)[1] for r in rows] == ["0", "3", "6", "9"]
    code = main(["predict", str(demo_out), "--source", "http://127.0.0.1:9/none.mp4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "could not open the stream" in err[0]


def test_frames_of_any_size_go_in_whole_when_the_graph_resizes():
    """A contract with frame_size "any" (in-graph resize, branch resize): no resize on the CPU, BGR frames not even copied."""
    import types

    bgr = np.random.default_rng(2).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    contract = types.SimpleNamespace(frame_size="any", color_order="BGR", layout="NHWC", dtype="uint8")
    assert frame_transform(contract)(bgr) is bgr
    contract = types.SimpleNamespace(frame_size="any", color_order="RGB", layout="NCHW", dtype="uint8",
                                     frames_in_layout=lambda f: np.ascontiguousarray(f.transpose(0, 3, 1, 2)))
    assert np.array_equal(frame_transform(contract)(bgr), bgr[..., ::-1].transpose(2, 0, 1))
