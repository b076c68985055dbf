"""Video frames through OpenCV (the optional `video` extra), or PyAV where OpenCV is missing.

One opener for every source `predict`, the stream API (`focalnet_edge.inputs.stream`) and calibration
read: a video file, a network stream (`rtsp://`, `rtsps://`, `rtmp://`, `http://`, `https://`,
read by FFmpeg inside OpenCV or PyAV) or a camera index (`0` is the first camera). Every failure
to open is one `InputError` naming the source and what was expected.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..errors import InputError
from ..extras import optional

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")
URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://")
#: how long opening or reading a network stream may stall before it is an error (milliseconds)
NETWORK_TIMEOUT_MS = 10_000

Source = Union[str, os.PathLike, int]


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def is_url(source: Any) -> bool:
    return isinstance(source, str) and source.lower().startswith(URL_SCHEMES)


def parse_source(source: Source) -> str | int | Path:
    """A camera index (int, or a string of digits that is not an existing file), a URL, or a file path."""
    if isinstance(source, bool):
        raise InputError(f"video source {source!r} not understood: expected a file, a URL or a camera index")
    if isinstance(source, (int, np.integer)):
        if source < 0:
            raise InputError(f"camera index {source} not accepted: expected 0 or more")
        return int(source)
    if isinstance(source, str) and source.isdigit() and not Path(source).exists():
        return int(source)
    if is_url(source):
        return str(source)
    if isinstance(source, (str, os.PathLike)):
        return Path(source)
    raise InputError(f"video source {source!r} not understood: expected a file, a URL or a camera index")


def is_stream_source(item: str) -> bool:
    """Whether a command-line item is read as video: a video file, a URL or a camera index."""
    return is_url(item) or (item.isdigit() and not Path(item).exists()) or is_video(item)


#: what a parsed source is: a file (offline work, read as fast as it decodes), a network stream or a camera (live)
SOURCE_KINDS = ("file", "stream", "camera")


def source_kind(source: str | int | Path) -> str:
    """One of `SOURCE_KINDS` for a source as `parse_source` gives it (a URL is a stream even where it
    names a file on a server: it may be live, and it arrives at the network's pace)."""
    return "camera" if isinstance(source, int) else "stream" if isinstance(source, str) else "file"


def describe(source: str | int | Path) -> str:
    return f"camera {source}" if isinstance(source, int) else str(source)


class _PyAVCapture:
    """The part of `cv2.VideoCapture` used here (`read`, `grab`, `release`), over PyAV; frames as BGR."""

    def __init__(self, source: str | int | Path) -> None:
        import av

        if isinstance(source, int):  # Linux cameras through video4linux2
            self._container = av.open(f"/dev/video{source}", format="v4l2")
        else:
            options = {"rw_timeout": str(NETWORK_TIMEOUT_MS * 1000)} if is_url(source) else {}
            self._container = av.open(str(source), options=options, timeout=NETWORK_TIMEOUT_MS / 1000)
        self._frames = self._container.decode(video=0)

    def grab(self) -> bool:
        return next(self._frames, None) is not None

    def read(self) -> tuple[bool, np.ndarray | None]:
        frame = next(self._frames, None)
        return (False, None) if frame is None else (True, frame.to_ndarray(format="bgr24"))

    def release(self) -> None:
        self._container.close()


def _cv2():
    """OpenCV, or None (its own log lines off: `extras.BEFORE_IMPORT`)."""
    return optional("cv2")


def _capture(source: str | int | Path) -> Any:
    """An opened capture of `source`, or one `InputError` saying what could not be opened."""
    what = describe(source)
    if isinstance(source, Path):
        if source.is_dir():
            raise InputError(f"{source}: a folder, not a video file")
        if not source.is_file():
            raise InputError(f"{source}: no such video file")
    cv2 = _cv2()
    if cv2 is None:
        if optional("av") is None:
            raise InputError(f"{what}: reading video needs OpenCV (pip install 'focalnet-edge[video]') or PyAV") from None
        try:
            return _PyAVCapture(source)
        except Exception as e:  # PyAV raises its own error types (av.error.*), OSError among them
            raise InputError(_open_failure(source, f"{type(e).__name__}: {e}")) from None
    if isinstance(source, int):
        cap = cv2.VideoCapture(source)
    elif is_url(source):
        cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS,
                                                        cv2.CAP_PROP_READ_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS])
    else:
        cap = cv2.VideoCapture(str(source))
    if not cap.isOpened():
        cap.release()
        raise InputError(_open_failure(source))
    return cap


def _open_failure(source: str | int | Path, detail: str = "") -> str:
    more = f" ({detail})" if detail else ""
    if isinstance(source, int):
        return f"camera {source}: no such camera, or it is busy{more}; cameras are numbered from 0 (/dev/video0 on Linux)"
    if is_url(source):
        return f"{source}: could not open the stream{more}: unreachable, refused, or not a video FFmpeg can read"
    return f"{source}: not a readable video file{more}"


@contextlib.contextmanager
def open_video(source: Source) -> Iterator[Any]:
    """An opened capture (`cv2.VideoCapture`, or PyAV's in its image), released afterwards."""
    cap = _capture(parse_source(source))
    try:
        yield cap
    finally:
        cap.release()


def read_frames(path: Source, every: int = 1, batch: int = 16) -> Iterator[tuple[list[int], np.ndarray]]:
    """Batches of (frame indices, uint8 RGB frames (N, H, W, 3)) of every `every`-th frame.

    Decodes on the calling thread; `focalnet_edge.inputs.stream.VideoStream` decodes on its own.
    """
    seen = 0
    indices: list[int] = []
    frames: list[np.ndarray] = []
    with open_video(path) as cap:
        index = 0
        while True:
            if index % every:  # a skipped frame is decoded but not converted
                if not cap.grab():
                    break
                index += 1
                continue
            ok, bgr = cap.read()
            if not ok:
                break
            indices.append(index)
            frames.append(np.ascontiguousarray(bgr[..., ::-1]))
            if len(frames) == batch:
                yield indices, np.stack(frames)
                seen += len(frames)
                indices, frames = [], []
            index += 1
    if frames:
        seen += len(frames)
        yield indices, np.stack(frames)
    if seen == 0:
        raise InputError(f"{describe(parse_source(path))}: no frame could be decoded")


def sample_frames(path: Path, count: int) -> Iterator[np.ndarray]:
    """Up to `count` uint8 RGB frames spread evenly over the video (seeking, not decoding all)."""
    cv2 = _cv2()
    if cv2 is None:
        raise InputError(f"{path}: sampling video frames needs OpenCV: pip install 'focalnet-edge[video]'")
    with open_video(path) as cap:
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if total <= 0:
            raise InputError(f"{path}: not a readable video file (no frame count)")
        decoded = 0
        for index in np.unique(np.linspace(0, total - 1, min(count, total)).astype(int)):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, bgr = cap.read()
            if ok:
                decoded += 1
                yield np.ascontiguousarray(bgr[..., ::-1])
    if decoded == 0:
        raise InputError(f"{path}: no frame could be decoded")
