"""The input contract of an exported graph: what a caller must feed it.

Written into the ONNX file's metadata and the manifest, read back by every runner, so an
artifact carries everything needed to feed it correctly (and to refuse what it can't take).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError
from ..inputs.geometry import Geometry
from ..model.preprocessing import ImageLike, ImageSpec, to_pil

HEADS = ("logits", "probs", "features", "reconstruction")
#: frame colour orders: three channels, or four as NVMM surfaces and GStreamer appsinks hand them
#: out (RGBA, BGRx, ...), the fourth dropped in the graph
COLOR_ORDERS = ("RGB", "BGR", "RGBA", "BGRA", "RGBx", "BGRx")
#: "input": frames are the input size (resized on the CPU); "any": any size, resized in the graph
FRAME_SIZES = ("input", "any")


@dataclass
class InputContract:
    name: str = "pixel_values"
    dtype: str = "float32"  #: float32 pixel values; with fused preprocessing raw 0..255 frames as uint8 or float32
    layout: str = "NCHW"  #: "NCHW" or "NHWC"
    color_order: str = "RGB"
    height: int = 224
    width: int = 224
    size_multiple: int = 32  #: with dynamic_size, heights and widths must be multiples of this
    dynamic_batch: bool = True
    dynamic_size: bool = False
    batch: tuple[int, int, int] = (1, 1, 32)  #: min, opt, max batch (max bounds TensorRT profiles)
    fused_preprocess: bool = False
    preprocessing: dict[str, Any] = field(default_factory=dict)  #: ImageSpec fields (with the resize mode)
    frame_size: str = "input"  #: "any": uint8 frames of any height and width, resized in the graph

    def __post_init__(self) -> None:
        self.batch = tuple(int(b) for b in self.batch)  # type: ignore[assignment]
        if self.dtype not in ("float32", "float16", "uint8"):
            raise ConfigError(f"input dtype {self.dtype!r} not supported; expected float32, float16 or uint8")
        if self.layout not in ("NCHW", "NHWC"):
            raise ConfigError(f"layout {self.layout!r} not supported; expected NCHW or NHWC")
        if self.color_order not in COLOR_ORDERS:
            raise ConfigError(f"color order {self.color_order!r} not supported; expected one of {', '.join(COLOR_ORDERS)}")
        if self.frame_size not in FRAME_SIZES:
            raise ConfigError(f"frame size {self.frame_size!r} not supported; expected 'any' or 'input'")
        if (self.frame_size == "any" or self.channels == 4) and not self.fused_preprocess:
            raise ConfigError("frames of any size and 4-channel frames need the preprocessing in the graph (--fuse-preprocess)")
        if self.frame_size == "any" and self.dynamic_size:
            raise ConfigError("--frame-size any resizes every frame to the input size: it does not go with --dynamic-size")
        lo, opt, hi = self.batch
        if not 1 <= lo <= opt <= hi:
            raise ConfigError(f"batch {lo}:{opt}:{hi} not accepted: expected MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX")

    @property
    def image_spec(self) -> ImageSpec:
        return ImageSpec(**self.preprocessing) if self.preprocessing else ImageSpec(height=self.height, width=self.width)

    @property
    def resize_mode(self) -> str:
        """crop, stretch or letterbox: how frames become the input size (old contracts: crop)."""
        return self.image_spec.mode

    @property
    def channels(self) -> int:
        return len(self.color_order)

    @property
    def max_batch(self) -> int | None:
        return self.batch[2] if self.dynamic_batch else self.batch[1]

    def shape(self, batch: int | str | None = None, height: int | str | None = None, width: int | str | None = None) -> list[int | str]:
        """The input's shape in its layout; symbolic batch, height and width where dynamic, unless given."""
        batch = batch if batch is not None else "batch" if self.dynamic_batch else self.batch[1]
        any_size = self.frame_size == "any"
        h = height if height is not None else "frame_height" if any_size else "height" if self.dynamic_size else self.height
        w = width if width is not None else "frame_width" if any_size else "width" if self.dynamic_size else self.width
        c = self.channels
        return [batch, c, h, w] if self.layout == "NCHW" else [batch, h, w, c]

    @property
    def spatial_axes(self) -> tuple[int, int]:
        """The (height, width) axes of the input in its layout."""
        return (2, 3) if self.layout == "NCHW" else (1, 2)

    def sample_input(self, batch: int, seed: int = 0) -> np.ndarray:
        """A deterministic input that fits (random 0..255 frames, or random normalised pixels)."""
        rng = np.random.default_rng(seed)
        shape = self.shape(batch, self.height, self.width)
        if self.fused_preprocess:
            return rng.integers(0, 256, shape, dtype=np.uint8).astype(self.dtype)
        return rng.standard_normal(shape, dtype=np.float32).astype(self.dtype, copy=False)

    # -- images -> inputs (the one conversion every runner, calibration and verification use) ----
    def frames_from_images(self, images: list[ImageLike] | ImageLike) -> np.ndarray:
        """Resize and crop like the reference: uint8 (N, H, W, 3) RGB."""
        if not isinstance(images, (list, tuple)):
            images = [images]
        if not images:
            raise InputError("no images given")
        spec = self.image_spec
        return np.stack([np.asarray(spec.resize_and_crop(to_pil(im))) for im in images])

    def inputs_from_frames(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB frames of the contract's size -> this input (raw frames or normalised pixels).

        With `frame_size` "any" the frames are placed so that the graph's resize leaves them as
        they are (`Geometry.identity_canvas`): stretch and letterbox take them unchanged, crop gets them
        inside the canvas it crops them back out of. The model is then fed exactly these pixels.
        """
        if self.fused_preprocess:
            if self.frame_size == "any":
                frames = Geometry.of(self.image_spec).identity_canvas(frames)
            return self.frames_in_layout(frames)
        return self.reference_inputs(frames).astype(self.dtype, copy=False)

    def frames_in_layout(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) RGB frames of any size -> raw frames in this contract's channel order and layout."""
        x = frames[..., ::-1] if self.color_order.startswith("BGR") else frames
        if self.channels == 4:  # the fourth channel (alpha or padding) is dropped by the graph
            x = np.concatenate([x, np.full(x.shape[:-1] + (1,), 255, x.dtype)], axis=-1)
        x = x.transpose(0, 3, 1, 2) if self.layout == "NCHW" else x
        return np.ascontiguousarray(x, dtype=self.dtype)

    def reference_inputs(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB frames -> the float pixel values of the PyTorch reference (NCHW)."""
        spec = self.image_spec
        return np.stack([spec.normalize(f) for f in frames]).astype(np.float32)

    def prepare(self, images: list[ImageLike] | ImageLike) -> np.ndarray:
        """Images (paths, PIL images, uint8 HxWx3 RGB frames) -> this input.

        With `frame_size` "any", images of one size go to the graph as they are (it resizes them);
        a batch of several sizes is brought to the input size on the CPU first, in the same mode,
        since one tensor holds frames of one size.
        """
        if self.frame_size == "any":
            items = list(images) if isinstance(images, (list, tuple)) else [images]
            rgb = [im if isinstance(im, np.ndarray) and im.dtype == np.uint8 and im.ndim == 3 and im.shape[2] == 3
                   else np.asarray(to_pil(im).convert("RGB")) for im in items]  # RGB frames as they are: no copy via PIL
            if rgb and len({f.shape for f in rgb}) == 1:
                return self.frames_in_layout(np.stack(rgb))
            return self.inputs_from_frames(self.frames_from_images(rgb))
        return self.inputs_from_frames(self.frames_from_images(images))

    def check_shape(self, shape: tuple[int, ...], dtype: str) -> None:
        """Raise `InputError` unless an array of this shape and dtype fits the contract."""
        expect = self.shape("N")
        if dtype != self.dtype:
            raise InputError(f"input {self.name!r} has dtype {dtype}, expected {self.dtype} of shape {expect}")
        if len(shape) != 4:
            raise InputError(f"input {self.name!r} has shape {tuple(shape)}, expected rank 4 {expect}")
        c_axis, hw = (1 if self.layout == "NCHW" else 3), self.spatial_axes
        if shape[c_axis] != self.channels:
            raise InputError(
                f"input {self.name!r} has shape {tuple(shape)}: expected {self.channels} channels on axis {c_axis} "
                f"({self.layout}, {self.color_order}, {expect}); is the layout or channel order wrong?"
            )
        h, w = shape[hw[0]], shape[hw[1]]
        if self.frame_size == "any":
            if h < 1 or w < 1:
                raise InputError(f"input {self.name!r} is {h}x{w}: an empty frame has nothing to classify")
        elif self.dynamic_size:
            m = self.size_multiple
            if h % m or w % m or h < m or w < m:
                raise InputError(f"input {self.name!r} is {h}x{w}: height and width must be multiples of {m}")
        elif (h, w) != (self.height, self.width):
            raise InputError(f"input {self.name!r} is {h}x{w}, expected {self.height}x{self.width} ({expect})")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputContract:
        return cls(**data)


def parse_batch(text: str) -> tuple[int, int, int]:
    """'8' -> (1, 8, 8); '1:4:16' -> (1, 4, 16)."""
    try:
        parts = [int(p) for p in str(text).split(":")]
    except ValueError:
        raise ConfigError(f"batch {text!r} not understood: expected N or MIN:OPT:MAX, e.g. 1:8:32") from None
    if len(parts) == 1:
        parts = [1, parts[0], parts[0]]
    if len(parts) != 3:
        raise ConfigError(f"batch {text!r} not understood: expected N or MIN:OPT:MAX, e.g. 1:8:32")
    if not 1 <= parts[0] <= parts[1] <= parts[2]:
        raise ConfigError(f"batch {text!r} not accepted: expected N >= 1, or MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX")
    return InputContract(batch=tuple(parts)).batch  # validates the rest


def parse_image_size(text: str | int | None) -> tuple[int, int] | None:
    """'224' -> (224, 224); '256x192' -> (256, 192) as (height, width)."""
    if text is None:
        return None
    try:
        parts = [int(p) for p in str(text).lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise ConfigError(f"image size {text!r} not understood: expected H or HxW, e.g. 224 or 256x192")
    return parts[0], parts[1]
