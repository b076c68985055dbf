"""Classifying video streams: files, `rtsp://`/`http(s)://` URLs and cameras, decoded on their own thread.

```python
from focalnet_edge.runtime import load
from focalnet_edge.inputs.stream import StreamStats, predict_stream

stats = StreamStats()
with load("out/") as runner:
    for index, top in predict_stream(runner, "rtsp://camera/stream", every=2, batch=8, stats=stats):
        print(index, top[0]["label"])
print(stats.summary())
```

`VideoStream` decodes on a thread of its own, preprocesses on a second one, and hands batches
of model inputs to the caller through a bounded queue (`queue_size` frames): decoding the next
frame and preprocessing the one before overlap (OpenCV lets go of the GIL), and so does
inference on a GPU; on the CPU the two threads pause while the model runs whenever the model
is the slowest stage (`predict_stream`'s `overlap`). A slow consumer makes the decoder wait
rather than fill memory (a live source then lags; take fewer frames with `every`).

On a file `predict_stream` chooses the batch for throughput (the file is there to be read as
fast as it decodes): the artifact's optimal batch or `FILE_BATCH`, whichever its first frames
run faster per frame; on a network stream or a camera, the artifact's optimal batch (latency:
no frame waits for the next ones to arrive).

Preprocessing works on the BGR frame the decoder gives, through
OpenCV (`resize="opencv"`, the default): `cv2.resize` with `INTER_AREA` when shrinking (an
area average, which like Pillow's filters looks at every source pixel) and the spec's filter
when enlarging, then the spec's centre crop, then the colour order and layout of the
artifact's input. Pillow, which the reference preprocessing uses, is a few times slower on
1080p frames. On a 1080p frame the two differ by 0.2 to 0.7 grey levels on average, at most
4 (measured in `tests/test_stream.py` for the demo's and focalnet-tiny's preprocessing);
`resize="pil"` gives exactly the reference's pixels.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..folder.contract import InputContract
from ..errors import InputError
from . import geometry
from .video import Source, _capture, _cv2, describe, parse_source, source_kind

log = logging.getLogger(__name__)

RESIZE_MODES = ("opencv", "pil")


@dataclass
class StreamStats:
    """Where the time went: decode and preprocess on their own threads, infer on the caller's.

    The three overlap, so their sum exceeds `wall_s` when the pipeline works as meant."""

    source: str = ""
    frames: int = 0  #: frames classified
    decoded: int = 0  #: frames decoded (skipped ones included)
    decode_s: float = 0.0
    preprocess_s: float = 0.0
    infer_s: float = 0.0
    wall_s: float = 0.0  #: from opening the source to the last result

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> str:
        return (f"{self.source}: {self.frames} frames classified ({self.decoded} decoded) in {self.wall_s:.2f} s, "
                f"{self.fps:.1f} frames/s; decode {self.decode_s:.2f} s, preprocess {self.preprocess_s:.2f} s "
                f"(their own threads), infer {self.infer_s:.2f} s")


def frame_transform(contract: InputContract, resize: str = "opencv") -> Callable[[np.ndarray], np.ndarray]:  # noqa: C901 - one closure per resize mode and layout the contract allows; moves with the one resize geometry (issue 28)
    """A function from one decoded uint8 BGR (H, W, 3) frame to one row of the artifact's input.

    `resize="opencv"` (module docstring) where OpenCV is installed and the preprocessing is one
    this module reproduces; otherwise, and with `resize="pil"`, the reference's own path.
    """
    if resize not in RESIZE_MODES:
        raise InputError(f"resize {resize!r} not understood: expected one of {', '.join(RESIZE_MODES)}")
    if getattr(contract, "frame_size", "input") == "any":  # the graph resizes (--frame-size any): whole frames in
        def whole(bgr: np.ndarray) -> np.ndarray:
            if contract.color_order == "BGR" and contract.layout == "NHWC" and contract.dtype == "uint8":
                return bgr  # as decoded, not even copied
            return contract.frames_in_layout(np.ascontiguousarray(bgr[..., ::-1])[None])[0]

        return whole
    spec = contract.image_spec
    cv2 = _cv2()
    fast = resize == "opencv" and cv2 is not None and _reproducible(spec)
    if resize == "opencv" and not fast:
        log.info("resizing frames with Pillow (%s)", "OpenCV is not installed" if cv2 is None else "a preprocessing OpenCV is not used for here")

    def reference(bgr: np.ndarray) -> np.ndarray:
        return contract.prepare([np.ascontiguousarray(bgr[..., ::-1])])[0]

    if not fast:
        return reference
    flip = not (contract.fused_preprocess and contract.color_order == "BGR")  # the decoder gives BGR

    def transform(bgr: np.ndarray) -> np.ndarray:
        a = geometry.opencv(cv2, bgr, spec)
        if flip:
            a = a[..., ::-1]
        if contract.fused_preprocess:
            a = a.transpose(2, 0, 1) if contract.layout == "NCHW" else a
            return np.ascontiguousarray(a, dtype=contract.dtype)
        return contract.inputs_from_frames(np.ascontiguousarray(a)[None])[0]

    return transform


def _reproducible(spec: Any) -> bool:
    """Whether `transform` reproduces this spec: every field it does not know has its default value.

    A preprocessing mode added to `ImageSpec` later (letterbox, say) falls back to the reference
    path until this module learns it, instead of being resized wrongly.
    """
    known = {"height", "width", "resize_shortest_edge", "center_crop", "mean", "std", "rescale_factor", "resample",
             "do_resize", "resize_height", "resize_width", "square_crop", "origin"}
    for f in dataclasses.fields(spec):
        if f.name in known:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
        if getattr(spec, f.name) != default:
            return False
    return spec.resample in geometry.CV2_FILTERS


_END = object()

#: the batch tried beside the artifact's optimal one on a video file, where the caller names none
FILE_BATCH = 8
#: timed calls per candidate batch before `BatchChooser` decides (after one untimed call each)
CHOOSER_TRIALS = 2


def batch_candidates(contract: InputContract, source: Source) -> tuple[int, ...]:
    """The batches `predict_stream` may use where none is given. A network stream or a camera:
    the artifact's optimal batch (`contract.batch[1]`) only, its latency's: no frame waits for the
    next ones to arrive. A file (offline work, read as fast as it decodes): that one and
    `FILE_BATCH` within the artifact's batch range, the faster per frame chosen as the frames go
    (`BatchChooser`): batching pays for a small model, whose calls cost more than its frames;
    a large one can be slower per frame in big batches on a CPU (focalnet-tiny, 2 cores with
    AVX-512: batch 8 took 8-10% more CPU per frame than batch 1)."""
    opt = contract.batch[1]
    if source_kind(parse_source(source)) != "file":
        return (opt,)
    return tuple(dict.fromkeys((opt, max(opt, min(FILE_BATCH, contract.max_batch or FILE_BATCH)))))


class BatchChooser:
    """Which batch to run next: the candidates in turns on the first frames (the first call of
    each untimed: ONNX Runtime plans memory for a new shape then), then for good the one with the
    least median seconds per frame. The frames of the trials are classified like any others."""

    def __init__(self, candidates: tuple[int, ...], trials: int = CHOOSER_TRIALS) -> None:
        self.candidates = candidates
        self._order = list(candidates) * (trials + 1) if len(candidates) > 1 else []
        self._done = 0
        self._seconds: dict[int, list[float]] = {c: [] for c in candidates}
        self.size = self._order[0] if self._order else candidates[0]  #: the batch to run next
        self.chosen = not self._order

    def record(self, frames: int, seconds: float) -> None:
        """One call of `frames` frames took `seconds`."""
        if self.chosen or frames != self.size:  # a short last batch says nothing about its size
            return
        if self._done >= len(self.candidates):
            self._seconds[self.size].append(seconds / frames)
        self._done += 1
        if self._done < len(self._order):
            self.size = self._order[self._done]
        else:
            self.size = min(self.candidates, key=lambda c: (statistics.median(self._seconds[c]), c))
            self.chosen = True
            log.info("batch %d chosen for throughput (seconds per frame: %s)", self.size,
                     ", ".join(f"batch {c} {statistics.median(v):.4f}" for c, v in self._seconds.items()))


class VideoStream:
    """Batches `(frame indices, model input batch)` of a video source, decoded on a thread of its own.

    Args:
        source: a video file, a URL (`rtsp://`, `http(s)://`, ...) or a camera index.
        transform: one decoded BGR (H, W, 3) uint8 frame -> one row of the model's input
            (`frame_transform(contract)`); None: the RGB frame itself.
        every: keep every `every`-th frame (the others are decoded, not converted).
        batch: frames per batch; the last batch may be smaller.
        queue_size: frames decoded ahead at most.
        limit: stop after this many kept frames (a camera or a live stream never ends).
        stats: a `StreamStats` to fill (decode and preprocess time, frames decoded).
        pause: the two threads stop working from the moment a batch is complete until the
            consumer has taken every batch made and waits for the next one: they then work only
            while it waits, never beside it (mutable: `predict_stream` sets it as it measures).

    The source is opened in the constructor, so a missing file, an unreachable URL or a
    missing camera is an `InputError` there; an error while decoding comes out of the iteration.
    Use it as a context manager (or call `close`) to stop the thread early.
    """

    def __init__(self, source: Source, transform: Callable[[np.ndarray], np.ndarray] | None = None, every: int = 1,
                 batch: int = 1, queue_size: int = 32, limit: int | None = None, stats: StreamStats | None = None,
                 pause: bool = False) -> None:
        for name, value in (("every", every), ("batch", batch), ("queue_size", queue_size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"{name} {value!r} not accepted: expected a whole number >= 1")
        self.source = parse_source(source)
        self.name = describe(self.source)
        self.every, self.batch, self.limit, self.pause = int(every), int(batch), limit, pause
        self.transform = transform or (lambda bgr: np.ascontiguousarray(bgr[..., ::-1]))
        self.stats = stats if stats is not None else StreamStats()
        self.stats.source = self.name
        self._queue: queue.Queue = queue.Queue(maxsize=max(queue_size, batch))
        self._raw: queue.Queue = queue.Queue(maxsize=2)  # decoded frames waiting for the preprocessing thread
        self._stop = threading.Event()
        self.idle = threading.Event()  #: cleared (with `pause`) while the consumer works on a batch: the threads wait
        self.idle.set()
        t = time.perf_counter()
        self._cap = _capture(self.source)
        self.stats.decode_s += time.perf_counter() - t
        self._threads = [threading.Thread(target=self._decode, name=f"decode {self.name}", daemon=True),
                         threading.Thread(target=self._preprocess, name=f"preprocess {self.name}", daemon=True)]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _wait_idle(self) -> bool:
        while not self.idle.wait(0.05):
            if self._stop.is_set():
                return False
        return not self._stop.is_set()

    def _decode(self) -> None:
        """Decoding thread: (index, BGR frame) of the kept frames into `_raw`, then `_END` or the error."""
        stats, cap = self.stats, self._cap
        index = kept = 0
        try:
            while self._wait_idle() and (self.limit is None or kept < self.limit):
                t = time.perf_counter()
                if index % self.every:
                    ok, frame = cap.grab(), None
                else:
                    ok, frame = cap.read()
                stats.decode_s += time.perf_counter() - t
                if not ok:
                    break
                stats.decoded += 1
                if frame is not None:
                    if not self._put(self._raw, (index, frame), self._stop):
                        return
                    kept += 1
                index += 1
            if kept == 0 and not self._stop.is_set():
                raise InputError(f"{self.name}: no frame could be decoded")
            self._put(self._raw, _END, self._stop)
        except BaseException as e:  # handed on to the consumer, which raises it
            self._put(self._raw, e, self._stop)
        finally:
            cap.release()

    def _preprocess(self) -> None:
        """Preprocessing thread: `transform` of each decoded frame into the consumer's queue (OpenCV lets go of the GIL)."""
        made = 0
        while not self._stop.is_set():
            try:
                item = self._raw.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END or isinstance(item, BaseException):
                self._put(self._queue, item, self._stop)
                return
            if not self._wait_idle():
                return
            t = time.perf_counter()
            try:
                row = self.transform(item[1])
            except BaseException as e:
                self._put(self._queue, e, self._stop)
                return
            self.stats.preprocess_s += time.perf_counter() - t
            made += 1
            if self.pause and made % self.batch == 0:
                self.idle.clear()  # before the batch is handed out, so no frame is started while it runs
            if not self._put(self._queue, (item[0], row), self._stop):
                return

    def __iter__(self) -> Iterator[tuple[list[int], np.ndarray]]:
        indices: list[int] = []
        rows: list[np.ndarray] = []
        while True:
            if not rows and (not self.pause or self._queue.empty()):
                self.idle.set()  # the consumer waits for frames: the threads may work (paused: only now)
            item = self._queue.get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            indices.append(item[0])
            rows.append(item[1])
            if len(rows) == self.batch:
                yield indices, np.stack(rows)
                indices, rows = [], []
        if rows:
            yield indices, np.stack(rows)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> VideoStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def predict_stream(runner: Any, source: Source, top_k: int = 5, every: int = 1, batch: int | None = None, resize: str = "opencv",  # noqa: PLR0913 - keyword options of the public streaming API (README)
                   limit: int | None = None, stats: StreamStats | None = None,
                   overlap: bool | None = None, queue_size: int = 32) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """(frame index, top-k labels) for every `every`-th frame of `source`, as `runner.predict` gives them.

    `stats` (a `StreamStats`) is filled as the frames go: decode, preprocess and infer seconds,
    frames, wall time and frames per second. `batch` defaults by the kind of source
    (`batch_candidates`): on a network stream or a camera, the artifact's optimal batch
    (latency); on a file, the faster per frame of that batch and `FILE_BATCH`, measured on the
    file's first frames (`BatchChooser`; throughput: offline work).

    `overlap`: let decoding and preprocessing run while the model runs (True), or pause them
    while it does (False). Default: overlap where the model runs on a GPU; on the CPU, decide as
    the frames go: pause while the model is the slowest stage, overlap while decoding is. ONNX
    Runtime's threads take every core, and a decoder beside them slows each parallel operator
    by more than its own share (on 2 cores: +40-60% per frame for focalnet-tiny); when decoding
    is the slowest stage, pausing it would only slow the stream. Paused or not, the two threads
    overlap each other (frame k+1 decoded while frame k is resized). Other arguments as in
    `VideoStream`; `resize` in the module docstring.
    """
    stats = stats if stats is not None else StreamStats()
    start = time.perf_counter()
    transform = frame_transform(runner.contract, resize)
    chooser = BatchChooser((batch,) if batch else batch_candidates(runner.contract, source))
    gpu = any(word in str(runner.device or runner.name) for word in ("CUDA", "Tensorrt", "TensorRT", "tensorrt"))
    adapt = overlap is None and not gpu
    indices: list[int] = []
    rows: list[np.ndarray] = []

    def infer(n: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        t = time.perf_counter()
        tops = runner.top_k(np.stack(rows[:n]), top_k)
        seconds = time.perf_counter() - t
        chooser.record(n, seconds)
        stats.infer_s += seconds
        stats.frames += n
        stats.wall_s = time.perf_counter() - start
        done = indices[:n]
        del indices[:n], rows[:n]
        return zip(done, tops)

    # the stream hands over frames one at a time while the batch may still change, else in whole batches
    with VideoStream(source, transform, every=every, batch=chooser.size if chooser.chosen else 1, queue_size=queue_size,
                     limit=limit, stats=stats, pause=overlap is False) as frames:
        for got, inputs in frames:
            indices.extend(got)
            rows.extend(inputs)
            while len(rows) >= chooser.size:
                yield from infer(chooser.size)
                if adapt:  # pause the threads while the model is the slowest stage (docstring)
                    frames.pause = stats.infer_s / stats.frames > max(stats.decode_s * every / max(stats.decoded, 1),
                                                                       stats.preprocess_s / stats.frames)
        if rows:
            yield from infer(len(rows))
    stats.wall_s = time.perf_counter() - start
