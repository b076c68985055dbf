"""Video frames for `predict` (OpenCV, the optional `video` extra)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import InputError


def read_frames(path: Path, every: int = 1, batch: int = 16) -> Iterator[tuple[list[int], np.ndarray]]:
    """Batches of (frame indices, uint8 RGB frames (N, H, W, 3)) of every `every`-th frame."""
    try:
        import cv2
    except ImportError:
        raise InputError(f"{path}: reading video needs OpenCV: pip install 'focalnet-edge[video]'") from None
    if not path.is_file():
        raise InputError(f"{path}: no such video file")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise InputError(f"{path}: not a readable video file")
    index, seen = 0, 0
    indices: list[int] = []
    frames: list[np.ndarray] = []
    try:
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
    finally:
        cap.release()
    if frames:
        seen += len(frames)
        yield indices, np.stack(frames)
    if seen == 0:
        raise InputError(f"{path}: no frame could be decoded")
