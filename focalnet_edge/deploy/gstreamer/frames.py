"""Raw video frames (as GStreamer lays them out) -> RGB or grey PIL images, and regions clipped to them.

One row per format the element accepts; each reads the planes at the offsets and strides the
caps (or the buffer's GstVideoMeta) give, so padded rows (RGB of width 150 has 452-byte rows)
are skipped. RGB and grey frames are given as numpy views of the mapped buffer (no copy: the
buffer stays mapped until the result is attached); the other packed formats go through
Pillow's raw decoder in one pass (its rawmodes reorder BGR and drop the fourth byte: about 5 ms
for a 1080p frame, where numpy's strided copies take 40 ms). Either is what `Runner.predict`
takes, so the resize and normalisation are the project's one preprocessing
(`InputContract.prepare`), not a second one here, on the pixels of `predict` on the same frame.

YUV (I420, NV12) is converted with the matrix and range of the caps' colorimetry (BT.601,
BT.709, ... through `GstVideo.video_color_matrix_get_Kr_Kb`), chroma repeated to full size;
videoconvert's default chroma filter differs from that by a grey level or two at colour edges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image


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


def _check(size: int, layout: Layout, i: int, rows: int, row_bytes: int) -> None:
    start, stride = layout.offsets[i], layout.strides[i]
    if stride < row_bytes or start + (rows - 1) * stride + row_bytes > size:
        raise ValueError(f"plane {i} ({rows} rows of {row_bytes} bytes, stride {stride}, offset {start}) is outside the {size}-byte buffer")


def _plane(data: np.ndarray, layout: Layout, i: int, rows: int, row_bytes: int) -> np.ndarray:
    _check(data.size, layout, i, rows, row_bytes)  # as_strided does not check
    return np.lib.stride_tricks.as_strided(data[layout.offsets[i] :], (rows, row_bytes), (layout.strides[i], 1))


def _view(channels: int) -> Callable[[memoryview, Layout], np.ndarray]:
    def convert(data: memoryview, lay: Layout) -> np.ndarray:
        rows = _plane(np.frombuffer(data, np.uint8), lay, 0, lay.height, lay.width * channels)
        return rows.reshape(lay.height, lay.width, channels)  # a view: rows keep their stride

    return convert


def _raw(mode: str, rawmode: str, bytes_per_pixel: int) -> Callable[[memoryview, Layout], Image.Image]:
    def convert(data: memoryview, lay: Layout) -> Image.Image:
        _check(len(data), lay, 0, lay.height, lay.width * bytes_per_pixel)
        return Image.frombytes(mode, (lay.width, lay.height), data[lay.offsets[0] :], "raw", rawmode, lay.strides[0], 1)  # a copy

    return convert


def _yuv_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray, lay: Layout) -> Image.Image:
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
    return Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))


def _i420(data: memoryview, lay: Layout) -> Image.Image:
    a, ch, cw = np.frombuffer(data, np.uint8), (lay.height + 1) // 2, (lay.width + 1) // 2
    return _yuv_to_rgb(_plane(a, lay, 0, lay.height, lay.width), _plane(a, lay, 1, ch, cw), _plane(a, lay, 2, ch, cw), lay)


def _nv12(data: memoryview, lay: Layout) -> Image.Image:
    a, ch, cw = np.frombuffer(data, np.uint8), (lay.height + 1) // 2, (lay.width + 1) // 2
    uv = _plane(a, lay, 1, ch, cw * 2).reshape(ch, cw, 2)
    return _yuv_to_rgb(_plane(a, lay, 0, lay.height, lay.width), uv[..., 0], uv[..., 1], lay)


#: GStreamer format name -> converter (the element's caps are these formats, in this order)
FORMATS: dict[str, Callable[[memoryview, Layout], Image.Image | np.ndarray]] = {
    "RGB": _view(3),
    "BGR": _raw("RGB", "BGR", 3),
    "RGBx": _raw("RGB", "RGBX", 4),
    "RGBA": _raw("RGB", "RGBX", 4),  # alpha dropped: frames carry none that means anything to the model
    "BGRx": _raw("RGB", "BGRX", 4),
    "BGRA": _raw("RGB", "BGRX", 4),
    "GRAY8": _view(1),  # predict turns it into RGB as it does any grey image
    "I420": _i420,
    "NV12": _nv12,
}


def to_image(data, fmt: str, layout: Layout) -> Image.Image | np.ndarray:
    """The frame in `data` (bytes-like: the mapped buffer) as `predict` takes it: a uint8 (h, w, 3|1)
    view of `data` (RGB, GRAY8: valid while it is mapped) or an RGB PIL image of its own."""
    return FORMATS[fmt](memoryview(data).cast("B"), layout)


def crop(image: Image.Image | np.ndarray, rect: tuple[int, int, int, int]) -> Image.Image | np.ndarray:
    """The (x, y, w, h) rectangle of an image from `to_image` (a view of an array, a copy of a PIL image)."""
    x, y, w, h = rect
    return image[y : y + h, x : x + w] if isinstance(image, np.ndarray) else image.crop((x, y, x + w, y + h))


def clip_region(x: int, y: int, w: int, h: int, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The part of the rectangle inside a width x height frame, or None when nothing of it is."""
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(width, x + w), min(height, y + h)
    return (x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None
