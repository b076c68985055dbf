"""Video frames through OpenCV (the optional `video` extra): one reader for predict and calibration."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@contextlib.contextmanager
def open_video(path: Path) -> Iterator[Any]:
    """An opened `cv2.VideoCapture`, released afterwards; one-line errors for what can't be read."""
    try:
        import cv2
    except ImportError:
        raise InputError(f"{path}: reading video needs OpenCV: pip install 'focalnet-edge[video]'") from None
    if not Path(path).is_file():
        raise InputError(f"{path}: no such video file")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise InputError(f"{path}: not a readable video file")
        yield cap
    finally:
        cap.release()


def read_frames(path: Path, every: int = 1, batch: int = 16) -> Iterator[tuple[list[int], np.ndarray]]:
    """Batches of (frame indices, uint8 RGB frames (N, H, W, 3)) of every `every`-th frame."""
    seen = 0
    indices: list[int] = []
    frames: list[np.ndarray] = []
    with open_video(path) as cap:
        index = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            if index % every == 0:
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
        raise InputError(f"{path}: no frame could be decoded")


def sample_frames(path: Path, count: int) -> Iterator[np.ndarray]:
    """Up to `count` uint8 RGB frames spread evenly over the video (seeking, not decoding all)."""
    import cv2

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
