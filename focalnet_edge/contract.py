"""The input contract of an exported graph: what a caller must feed it.

Written into the ONNX file's metadata and the manifest, read back by every runner, so an
artifact carries everything needed to feed it correctly (and to refuse what it can't take).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .errors import ConfigError, InputError
from .model.preprocessing import ImageLike, ImageSpec, to_pil

HEADS = ("logits", "probs", "features", "reconstruction")


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
    preprocessing: dict[str, Any] = field(default_factory=dict)  #: ImageSpec fields

    def __post_init__(self) -> None:
        self.batch = tuple(int(b) for b in self.batch)  # type: ignore[assignment]
        if self.dtype not in ("float32", "float16", "uint8"):
            raise ConfigError(f"input dtype {self.dtype!r} not supported; expected float32, float16 or uint8")
        if self.layout not in ("NCHW", "NHWC"):
            raise ConfigError(f"layout {self.layout!r} not supported; expected NCHW or NHWC")
        if self.color_order not in ("RGB", "BGR"):
            raise ConfigError(f"color order {self.color_order!r} not supported; expected RGB or BGR")
        lo, opt, hi = self.batch
        if not 1 <= lo <= opt <= hi:
            raise ConfigError(f"batch {lo}:{opt}:{hi} not accepted: expected MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX")

    @property
    def image_spec(self) -> ImageSpec:
        return ImageSpec(**self.preprocessing) if self.preprocessing else ImageSpec(height=self.height, width=self.width)

    @property
    def max_batch(self) -> int | None:
        return self.batch[2] if self.dynamic_batch else self.batch[1]

    def shape(self, batch: int | str = "batch", height: int | str | None = None, width: int | str | None = None) -> list[int | str]:
        """The input's shape in its layout; symbolic height/width where dynamic unless given."""
        h = height if height is not None else "height" if self.dynamic_size else self.height
        w = width if width is not None else "width" if self.dynamic_size else self.width
        return [batch, 3, h, w] if self.layout == "NCHW" else [batch, h, w, 3]

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
        return rng.standard_normal(shape).astype(self.dtype)

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
        """uint8 RGB frames of the contract's size -> this input (raw frames or normalised pixels)."""
        if self.fused_preprocess:
            x = frames[..., ::-1] if self.color_order == "BGR" else frames
            x = x.transpose(0, 3, 1, 2) if self.layout == "NCHW" else x
            return np.ascontiguousarray(x, dtype=self.dtype)
        return self.reference_inputs(frames).astype(self.dtype, copy=False)

    def reference_inputs(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB frames -> the float pixel values of the PyTorch reference (NCHW)."""
        spec = self.image_spec
        return np.stack([spec.normalize(f) for f in frames]).astype(np.float32)

    def prepare(self, images: list[ImageLike] | ImageLike) -> np.ndarray:
        """Images (paths, PIL images, uint8 HxWx3 RGB frames) -> this input."""
        return self.inputs_from_frames(self.frames_from_images(images))

    def check_shape(self, shape: tuple[int, ...], dtype: str) -> None:
        """Raise `InputError` unless an array of this shape and dtype fits the contract."""
        expect = self.shape("N")
        if dtype != self.dtype:
            raise InputError(f"input {self.name!r} has dtype {dtype}, expected {self.dtype} of shape {expect}")
        if len(shape) != 4:
            raise InputError(f"input {self.name!r} has shape {tuple(shape)}, expected rank 4 {expect}")
        c_axis, hw = (1 if self.layout == "NCHW" else 3), self.spatial_axes
        if shape[c_axis] != 3:
            raise InputError(
                f"input {self.name!r} has shape {tuple(shape)}: expected 3 channels on axis {c_axis} "
                f"({self.layout}, {expect}); is the layout or channel order wrong?"
            )
        h, w = shape[hw[0]], shape[hw[1]]
        if self.dynamic_size:
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
    return InputContract(batch=tuple(parts)).batch  # validates


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
