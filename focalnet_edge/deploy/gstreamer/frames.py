"""Raw video frames (as GStreamer lays them out) -> uint8 (height, width, 3) RGB arrays, and crops.

One row per format the element accepts; each reads the planes at the offsets and strides the
caps (or the buffer's GstVideoMeta) give, so padded rows (RGB of width 222 has 668-byte rows)
are skipped. The RGB array is what `Runner.predict` takes, so the resize and normalisation are
the project's one preprocessing (`InputContract.prepare`), not a second one here.

YUV (I420, NV12) is converted with the matrix and range of the caps' colorimetry (BT.601,
BT.709, ... through `GstVideo.video_color_matrix_get_Kr_Kb`), chroma repeated to full size;
videoconvert's default chroma filter differs from that by a grey level or two at colour edges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Layout:
    """Where a frame's planes are in its buffer (bytes) and how its YUV maps to RGB."""

    width: int
    height: int
    offsets: tuple[int, ...]
    strides: tuple[int, ...]
    kr: float = 0.299  #: luma coefficients of the colour matrix (BT.601 by default)
    kb: float = 0.114
    full_range: bool = False  #: YUV: 0..255 luma, else 16..235 (and chroma 16..240)


def _plane(data: np.ndarray, layout: Layout, i: int, rows: int, row_bytes: int) -> np.ndarray:
    start, stride = layout.offsets[i], layout.strides[i]
    if stride < row_bytes or start + (rows - 1) * stride + row_bytes > data.size:  # as_strided does not check
        raise ValueError(f"plane {i} ({rows} rows of {row_bytes} bytes, stride {stride}, offset {start}) is outside the {data.size}-byte buffer")
    return np.lib.stride_tricks.as_strided(data[start:], (rows, row_bytes), (stride, 1))


def _packed(channels: int, order: tuple[int, ...]) -> Callable[[np.ndarray, Layout], np.ndarray]:
    def convert(data: np.ndarray, lay: Layout) -> np.ndarray:
        px = _plane(data, lay, 0, lay.height, lay.width * channels).reshape(lay.height, lay.width, channels)
        return px[..., list(order)]  # fancy indexing: an owned, contiguous copy

    return convert


def _gray(data: np.ndarray, lay: Layout) -> np.ndarray:
    y = _plane(data, lay, 0, lay.height, lay.width)
    return np.repeat(y[..., None], 3, axis=2)  # as Pillow's L -> RGB


def _yuv_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray, lay: Layout) -> np.ndarray:
    h, w = lay.height, lay.width
    u = np.repeat(np.repeat(u, 2, axis=0), 2, axis=1)[:h, :w]
    v = np.repeat(np.repeat(v, 2, axis=0), 2, axis=1)[:h, :w]
    luma, chroma = ((0.0, 255.0), 255.0) if lay.full_range else ((16.0, 219.0), 224.0)
    yy = (y.astype(np.float32) - luma[0]) / luma[1]
    pb = (u.astype(np.float32) - 128.0) / chroma
    pr = (v.astype(np.float32) - 128.0) / chroma
    r = yy + 2 * (1 - lay.kr) * pr
    b = yy + 2 * (1 - lay.kb) * pb
    g = (yy - lay.kr * r - lay.kb * b) / (1 - lay.kr - lay.kb)
    rgb = np.stack([r, g, b], axis=-1) * 255.0
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _i420(data: np.ndarray, lay: Layout) -> np.ndarray:
    ch, cw = (lay.height + 1) // 2, (lay.width + 1) // 2
    return _yuv_to_rgb(_plane(data, lay, 0, lay.height, lay.width), _plane(data, lay, 1, ch, cw), _plane(data, lay, 2, ch, cw), lay)


def _nv12(data: np.ndarray, lay: Layout) -> np.ndarray:
    ch, cw = (lay.height + 1) // 2, (lay.width + 1) // 2
    uv = _plane(data, lay, 1, ch, cw * 2).reshape(ch, cw, 2)
    return _yuv_to_rgb(_plane(data, lay, 0, lay.height, lay.width), uv[..., 0], uv[..., 1], lay)


#: GStreamer format name -> converter to RGB (the element's caps are these formats, in this order)
FORMATS: dict[str, Callable[[np.ndarray, Layout], np.ndarray]] = {
    "RGB": _packed(3, (0, 1, 2)),
    "BGR": _packed(3, (2, 1, 0)),
    "RGBx": _packed(4, (0, 1, 2)),
    "RGBA": _packed(4, (0, 1, 2)),
    "BGRx": _packed(4, (2, 1, 0)),
    "BGRA": _packed(4, (2, 1, 0)),
    "GRAY8": _gray,
    "I420": _i420,
    "NV12": _nv12,
}
YUV = ("I420", "NV12")


def to_rgb(data, fmt: str, layout: Layout) -> np.ndarray:
    """The frame in `data` (bytes-like, the mapped buffer) as an owned uint8 (height, width, 3) RGB array."""
    return FORMATS[fmt](np.frombuffer(data, np.uint8), layout)


def clip_region(x: int, y: int, w: int, h: int, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The part of the rectangle inside a width x height frame, or None when nothing of it is."""
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(width, x + w), min(height, y + h)
    return (x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None
