"""The one resize geometry: which size a frame is scaled to, where it lands, and its Pillow and OpenCV executors.

An input contract's preprocessing (`ImageSpec`: its resize mode, sizes and crops) fixes the
geometry, read here once (`Geometry.of`); every executor carries it out with its own library's
resize and nothing else of its own:

- Pillow (`pillow`): PIL's resize, the reference (transformers' PIL backend);
- OpenCV (`opencv`): `cv2.resize`, the stream's fast path (`inputs/stream.py`);
- ONNX nodes (`export/resize.py`, `--frame-size any`): the same rule computed in the graph from
  the frame's shape (`Geometry.resize`, `size`, `crops`, `first_crop_shift`);
- DeepStream's nvinfer does `stretch` and `letterbox` itself, with the keys
  `deploy/deepstream/plan.resize_rule` writes; it cannot crop.

A frame of h x w is (1) resized to `Geometry.resized(h, w)` and (2) placed on the output: output
pixel (y, x) is resized pixel (y + dy, x + dx), `(dy, dx) = Geometry.shift(nh, nw)`, and black (0,
before normalisation) where that is outside the resized frame. The modes:

- `stretch`: warp to the input size (nvinfer's default);
- `letterbox`: scale to fit keeping the aspect ratio, centred on black (`letterbox_geometry`,
  nvinfer's maintain-aspect-ratio=1 + symmetric-padding=1: the padding before is the floor);
- `crop`: the processor's recipe: no resize, a warp, or the shortest edge to S
  (transformers' `get_resize_output_image_size`: the long edge to int(S * long / short), computed
  here in integers, which is the same number), then the centre crop(s) in turn, each at
  floor((have - want) / 2) (transformers' `center_crop`; where the frame is smaller it is padded,
  placed at ceil((want - have) / 2), which is the same shift). Without a centre crop the resized
  frame is the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from PIL import Image as _PILImage

    from ..model.preprocessing import ImageSpec

RESIZE_MODES = ("crop", "stretch", "letterbox")
#: PIL resampling filter -> OpenCV interpolation when enlarging (shrinking uses INTER_AREA)
CV2_FILTERS = {0: "INTER_NEAREST", 1: "INTER_LANCZOS4", 2: "INTER_LINEAR", 3: "INTER_CUBIC", 4: "INTER_AREA", 5: "INTER_LINEAR"}


def letterbox_geometry(height: int, width: int, out_height: int, out_width: int) -> tuple[int, int, int, int]:
    """(scaled height, scaled width, top, left) of a height x width frame letterboxed into out_height x out_width.

    nvinfer's rule (gstnvinfer.cpp, maintain-aspect-ratio=1, symmetric-padding=1): the side that
    limits is scaled to the output, the other to floor(out * side / other side); the scaled frame
    is placed at floor((out - scaled) / 2) and the rest is black (0 before normalisation). The
    comparison and the floors are done in integers, exactly as the double arithmetic rounds.
    """
    if out_width * height <= out_height * width:
        scaled = (max(1, out_width * height // width), out_width)
    else:
        scaled = (out_height, max(1, out_height * width // height))
    return scaled[0], scaled[1], (out_height - scaled[0]) // 2, (out_width - scaled[1]) // 2


@dataclass(frozen=True)
class Geometry:
    """A preprocessing's geometry (module docstring): how a frame is resized, then placed."""

    resize: str  #: "none", "warp" (to `size`), "fit" (letterbox into `size`) or "shortest_edge" (to `size[0]`)
    size: tuple[int, int]  #: (height, width) of a warp or a fit; (S, S) for a shortest edge; the output for "none"
    out: tuple[int, int]  #: the output (height, width): the input size
    crops: tuple[tuple[int, int], ...] = ()  #: the centre crops, in turn (crop mode)
    placed: bool = True  #: False: the resized frame is the output as it is (crop mode without a centre crop)

    @classmethod
    def of(cls, spec: ImageSpec) -> Geometry:
        """The geometry of `spec` (the one reading of its mode, sizes and crops)."""
        out = (spec.height, spec.width)
        if spec.mode == "stretch":
            return cls("warp", out, out)
        if spec.mode == "letterbox":
            return cls("fit", out, out)
        if not spec.do_resize:
            resize, size = "none", out
        elif spec.resize_shortest_edge:
            resize, size = "shortest_edge", (spec.resize_shortest_edge, spec.resize_shortest_edge)
        else:
            resize, size = "warp", (spec.resize_height or spec.height, spec.resize_width or spec.width)
        if not spec.center_crop:
            return cls(resize, size, out, placed=False)
        crops = ((spec.square_crop, spec.square_crop), out) if spec.square_crop else (out,)
        return cls(resize, size, out, crops)

    def resized(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) a height x width frame is resized to (itself where there is no resize)."""
        if self.resize == "warp":
            return self.size
        if self.resize == "fit":
            return letterbox_geometry(height, width, *self.size)[:2]
        if self.resize == "shortest_edge":
            s = self.size[0]
            return (s * height // width, s) if width <= height else (s, s * width // height)
        return height, width

    def shift(self, height: int, width: int) -> tuple[int, int]:
        """(dy, dx): output pixel (y, x) is pixel (y + dy, x + dx) of a resized frame of height x width."""
        if self.resize == "fit":
            return -((self.size[0] - height) // 2), -((self.size[1] - width) // 2)
        dy = dx = 0
        for ch, cw in self.crops:
            dy, dx = dy + (height - ch) // 2, dx + (width - cw) // 2
            height, width = ch, cw
        return dy, dx

    def first_crop_shift(self) -> tuple[int, int]:
        """The shift of the crops after the first (constant: the first crop fixes the size they start from)."""
        return self.shift(*self.crops[0]) if self.crops else (0, 0)

    def place(self, resized: np.ndarray) -> np.ndarray:
        """A resized (h, w, ...) frame on the output (a view where no padding is needed)."""
        if not self.placed:
            return resized
        (H, W), (h, w) = self.out, resized.shape[:2]
        dy, dx = self.shift(h, w)
        if 0 <= dy and 0 <= dx and dy + H <= h and dx + W <= w:
            return resized[dy : dy + H, dx : dx + W]
        out = np.zeros((H, W) + resized.shape[2:], resized.dtype)
        y0, x0 = max(0, -dy), max(0, -dx)  # the part of the output the frame covers
        y1, x1 = min(H, h - dy), min(W, w - dx)
        if y1 > y0 and x1 > x0:
            out[y0:y1, x0:x1] = resized[y0 + dy : y1 + dy, x0 + dx : x1 + dx]
        return out

    def identity_canvas(self, frames: np.ndarray) -> np.ndarray:
        """(N, height, width, C) frames of the output size -> frames this geometry maps back onto them.

        stretch and letterbox leave a frame of the output size as it is; crop resizes first: the
        frame goes into a canvas of the size the resize leaves alone (the warp size, or S x S or
        more for a shortest edge S), where the centre crop takes it back from.
        """
        if not self.crops:
            return frames
        n, h, w = frames.shape[:3]
        if self.resize == "shortest_edge":
            ch, cw = max(h, self.size[0]), max(w, self.size[1])
        elif self.resize == "warp":
            ch, cw = self.size
        else:
            ch, cw = h, w
        if (ch, cw) == (h, w):
            return frames
        top, left = self.shift(ch, cw)
        canvas = np.zeros((n, ch, cw) + frames.shape[3:], frames.dtype)
        canvas[:, top : top + h, left : left + w] = frames
        return canvas


def pillow(image: _PILImage.Image, spec: ImageSpec) -> _PILImage.Image:
    """The geometry of `spec` on an RGB PIL image, with PIL's resampling (`spec.resample`): the reference."""
    from PIL import Image

    g = Geometry.of(spec)
    w, h = image.size
    nh, nw = g.resized(h, w)
    if (nh, nw) != (h, w):
        image = image.resize((nw, nh), resample=spec.resample)
    if not g.placed or (g.out == (nh, nw) and g.shift(nh, nw) == (0, 0)):
        return image
    return Image.fromarray(np.ascontiguousarray(g.place(np.asarray(image))))


def opencv(cv2: Any, frame: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """The geometry of `spec` on an (H, W, C) uint8 frame with `cv2.resize`.

    Shrinking is an area average (INTER_AREA, which like Pillow's filters looks at every source
    pixel; `_shrink`), enlarging uses the spec's filter (`CV2_FILTERS`), nearest stays nearest.
    """
    g = Geometry.of(spec)
    h, w = frame.shape[:2]
    nh, nw = g.resized(h, w)
    if (nh, nw) != (h, w):
        if nw <= w and nh <= h and spec.resample != 0:
            frame = _shrink(cv2, frame, (nw, nh))
        else:
            frame = cv2.resize(frame, (nw, nh), interpolation=getattr(cv2, CV2_FILTERS[spec.resample]))
    return g.place(frame)


def _divisor(n: int, most: float) -> int:
    return max(d for d in range(1, max(1, int(most)) + 1) if n % d == 0)


def _shrink(cv2: Any, a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`cv2.resize(a, size, INTER_AREA)` in two steps: first by whole factors that divide the frame
    (OpenCV's fast area path, a plain block average), then the small remainder.

    On a 1080p frame to 64x64 this takes a third of one step's time; the pixels differ from one
    step's by 0.2 to 0.8 grey levels on average (tests/test_stream.py compares both with Pillow).
    """
    h, w = a.shape[:2]
    kx, ky = _divisor(w, w / size[0]), _divisor(h, h / size[1])
    if kx > 1 or ky > 1:
        a = cv2.resize(a, (w // kx, h // ky), interpolation=cv2.INTER_AREA)
    return cv2.resize(a, size, interpolation=cv2.INTER_AREA) if a.shape[1::-1] != size else a
