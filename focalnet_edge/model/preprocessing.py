"""Image preprocessing of a checkpoint (`preprocessor_config.json`), identical everywhere: `ImageSpec`.

The PyTorch reference, the runners, calibration and `predict` all call `ImageSpec.preprocess`
(or its two halves `resize_and_crop` and `normalize`) on images read by `to_pil`
(`focalnet_edge.inputs.images.load_image`), so every artifact is judged on exactly the same tensors.

`preprocessor_config.json` is read the way transformers 5 reads it (`processors.py`: the
processor classes as a table, each with its own defaults); the pixels are those of
transformers' PIL backend, and the resize geometry is `focalnet_edge.inputs.geometry`'s.

The geometry has three modes (`ImageSpec.mode`), the one chosen at export being part of the
input contract so that verification measures what the deployment feeds the model:

- `crop` (default): the processor's own recipe (transformers' resize + centre crop);
- `stretch`: warp to the input size, aspect ratio not kept (DeepStream nvinfer's default);
- `letterbox`: scale to fit the input size keeping the aspect ratio, pad both sides with black
  (nvinfer's maintain-aspect-ratio=1 + symmetric-padding=1; `letterbox_geometry`).

Values no processor can use (std <= 0, non-finite mean/std, sizes <= 0) are refused with a
`ConfigError` naming them. Without a preprocessor config, `image_spec_for`
takes `config.json`'s `image_size` with the FocalNet/ImageNet recipe (resize the shortest edge
to `resize_edge_for(size)`, centre crop, bicubic, ImageNet mean/std) and says so.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..inputs import geometry
from ..inputs.geometry import RESIZE_MODES, letterbox_geometry
from ..inputs.images import ImageLike, load_image, to_rgb
from .processors import processor_fields, read_json, resize_edge_for

log = logging.getLogger(__name__)

__all__ = ["RESIZE_MODES", "ImageLike", "ImageSpec", "letterbox_geometry", "image_spec_for", "image_spec_for_folder", "resize_edge_for", "to_pil"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Pillow's resampling filters by number (`Image.Resampling`'s values, stable across Pillow releases;
#: the enum itself is Pillow >= 9.1): what `resample` holds
RESAMPLE_NAMES: dict[int, str] = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}

to_pil = load_image  #: the one image loader (rules in `focalnet_edge.inputs.images`)


@dataclass
class ImageSpec:
    """How an image becomes `pixel_values`: resize, centre crop, rescale, normalise (RGB, CHW).

    Resize: the shortest edge to `resize_shortest_edge` (aspect kept, transformers' int rounding),
    or, when it is None, warp to `resize_height` x `resize_width` (None: the output size); no
    resize when `do_resize` is false. Then `square_crop` (ConvNext's crop_pct crop, only when a
    centre crop follows it) and the centre crop to `height` x `width`, zero-padded where the image
    is smaller, as transformers' `center_crop` does.
    """

    height: int = 224
    width: int = 224
    resize_shortest_edge: int | None = 256
    center_crop: bool = True
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    rescale_factor: float = 1 / 255
    resample: int = 2  #: PIL resampling filter (2 = bilinear, 3 = bicubic)
    do_resize: bool = True
    resize_height: int | None = None
    resize_width: int | None = None
    square_crop: int | None = None
    mode: str = "crop"  #: crop (the recipe above), stretch or letterbox (module docstring)
    origin: str = field(default="", compare=False)  #: where the values came from (logged, in the manifest)

    def __post_init__(self) -> None:
        self.mean = _channels("image_mean", self.mean)
        self.std = _channels("image_std", self.std)
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"image_std {list(self.std)} has a value <= 0: a standard deviation must be positive")
        for name in ("height", "width", "resize_shortest_edge", "resize_height", "resize_width", "square_crop"):
            value = getattr(self, name)
            if value is None and name in ("height", "width"):
                raise ConfigError(f"preprocessing {name} is missing")
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1):
                raise ConfigError(f"preprocessing {name} {value!r} is not a positive whole number of pixels")
            if value is not None:
                setattr(self, name, int(value))
        if not isinstance(self.rescale_factor, (int, float)) or not math.isfinite(self.rescale_factor) or self.rescale_factor <= 0:
            raise ConfigError(f"rescale_factor {self.rescale_factor!r} is not a finite positive number")
        if self.mode not in RESIZE_MODES:
            raise ConfigError(f"resize mode {self.mode!r} not supported; expected one of {', '.join(RESIZE_MODES)}")
        if isinstance(self.resample, bool) or self.resample not in (0, 1, 2, 3, 4, 5):
            raise ConfigError(f"resample {self.resample!r} is not a PIL resampling filter (0..5; 2 bilinear, 3 bicubic)")
        self.resample = int(self.resample)

    # -- reading and writing preprocessor configs ----------------------------------------------
    @classmethod
    def from_preprocessor_config(cls, data: dict[str, Any], model_type: str = "focalnet", source: str = "preprocessor config") -> ImageSpec:
        """`preprocessor_config.json` as transformers reads it (the processor types of `processors.py`)."""
        fields, origin = processor_fields(data, model_type, source)
        try:
            spec = cls(**fields)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
        spec.origin = origin
        return spec

    @classmethod
    def from_file(cls, path: str | os.PathLike, model_type: str = "focalnet") -> ImageSpec:
        return cls.from_preprocessor_config(read_json(Path(path)), model_type, str(path))

    def to_preprocessor_config(self) -> dict[str, Any]:
        """The spec as a transformers config (BitImageProcessor; ConvNext for its double crop).

        Written for the `crop` geometry, the processor's own: a spec in another mode is written as
        the recipe it was derived from (transformers has no letterbox).
        """
        out: dict[str, Any] = {"image_processor_type": "BitImageProcessor", "do_resize": self.do_resize}
        if self.resize_shortest_edge:
            out["size"] = {"shortest_edge": self.resize_shortest_edge}
        else:
            out["size"] = {"height": self.resize_height or self.height, "width": self.resize_width or self.width}
        if self.square_crop and self.center_crop and self.do_resize and self.resize_shortest_edge:
            crop_pct = self.square_crop / self.resize_shortest_edge
            if resize_edge_for(self.square_crop, crop_pct) != self.resize_shortest_edge:
                raise ConfigError(f"preprocessing {self} has no transformers preprocessor config")
            out.update(image_processor_type="ConvNextImageProcessor", size={"shortest_edge": self.square_crop}, crop_pct=crop_pct)
        out.update(
            resample=self.resample,
            do_center_crop=self.center_crop,
            crop_size={"height": self.height, "width": self.width},
            do_rescale=True,
            rescale_factor=self.rescale_factor,
            do_normalize=True,
            image_mean=list(self.mean),
            image_std=list(self.std),
            do_convert_rgb=True,
        )
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def for_size(self, height: int, width: int) -> ImageSpec:
        """The same recipe for an output of height x width (resize sizes scaled by `resize_edge_for`)."""
        if (height, width) == (self.height, self.width):
            return self
        d = self.to_dict()
        short, new_short = min(self.height, self.width), min(height, width)
        if self.resize_shortest_edge:
            d["resize_shortest_edge"] = resize_edge_for(new_short, Fraction(short, self.resize_shortest_edge))
        if self.resize_height:
            d["resize_height"] = resize_edge_for(height, Fraction(self.height, self.resize_height))
        if self.resize_width:
            d["resize_width"] = resize_edge_for(width, Fraction(self.width, self.resize_width))
        if self.square_crop:
            d["square_crop"] = resize_edge_for(new_short, Fraction(short, self.square_crop))
        d.update(height=height, width=width, origin=f"{self.origin}; scaled to {height}x{width}" if self.origin else "")
        return ImageSpec(**d)

    def with_mode(self, mode: str) -> ImageSpec:
        """The same spec with another resize mode (checked)."""
        return self if mode == self.mode else ImageSpec(**{**self.to_dict(), "mode": mode})

    # -- the preprocessing itself ------------------------------------------------------------
    def resize_and_crop(self, image: PIL.Image.Image) -> PIL.Image.Image:  # noqa: F821
        """Bring a PIL image to (height, width), RGB, in this spec's mode (PIL's resampling; `inputs.geometry`)."""
        return geometry.pillow(to_rgb(image), self)

    def normalize(self, rgb_hwc_uint8: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) RGB -> float32 (3, H, W), rescaled and normalised."""
        x = rgb_hwc_uint8.astype(np.float32) * np.float32(self.rescale_factor)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def preprocess(self, image: ImageLike) -> np.ndarray:
        """A path, PIL image or uint8 (H, W, 3) RGB frame -> float32 (3, height, width)."""
        return self.normalize(np.asarray(self.resize_and_crop(to_pil(image))))

    def preprocess_batch(self, images: list[ImageLike]) -> np.ndarray:
        return np.stack([self.preprocess(im) for im in images]) if images else np.zeros(
            (0, 3, self.height, self.width), np.float32
        )


def image_spec_for(preprocessor: dict[str, Any] | None, model_config: Any = None, source: str = "preprocessor_config.json") -> ImageSpec:
    """The preprocessing of a checkpoint: its preprocessor config, else config.json's image_size.

    `model_config` is a FocalNetConfig or a config.json dict (or None). Without a preprocessor
    config: resize the shortest edge to `resize_edge_for(size)`, centre crop, bicubic, ImageNet
    mean/std (the FocalNet recipe). `origin` says which was used; an output size that differs
    from config.json's image_size is logged and noted there.
    """
    hw = _config_image_hw(model_config)
    model_type = (model_config.get("model_type") if isinstance(model_config, dict) else None) or "focalnet"
    if preprocessor is None:
        h, w = hw or (224, 224)
        spec = ImageSpec(h, w, resize_edge_for(min(h, w)), True, IMAGENET_MEAN, IMAGENET_STD, 1 / 255, 3)
        spec.origin = (
            f"no preprocessor config: the model config's image_size {h}x{w}, shortest edge resized to "
            f"{spec.resize_shortest_edge}, centre crop, bicubic, ImageNet mean/std"
        )
        log.warning("%s", spec.origin)
        return spec
    spec = ImageSpec.from_preprocessor_config(preprocessor, model_type, source)
    if hw and (spec.height, spec.width) != hw:
        note = f"its output {spec.height}x{spec.width} differs from config.json image_size {hw[0]}x{hw[1]}"
        log.warning("%s: %s", source, note)
        spec.origin += f"; {note}"
    return spec


def image_spec_for_folder(folder: str | os.PathLike, model_config: Any = None) -> ImageSpec:
    """A checkpoint folder's preprocessing, looked up as transformers does.

    `processor_config.json` with an `image_processor` entry first, then `preprocessor_config.json`,
    then the fallback of `image_spec_for`.
    """
    folder = Path(folder)
    nested = folder / "processor_config.json"
    if nested.is_file():
        data = read_json(nested)
        if isinstance(data, dict) and "image_processor" in data:
            return image_spec_for(data["image_processor"], model_config, f"{nested} (image_processor)")
    path = folder / "preprocessor_config.json"
    return image_spec_for(read_json(path) if path.is_file() else None, model_config, str(path))


# -- helpers ------------------------------------------------------------------------------------
def _channels(name: str, value: Any) -> tuple[float, ...]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value] * 3  # transformers accepts one value for all channels
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} {value!r} is not a list of 3 numbers") from None
    if len(out) != 3 or not all(math.isfinite(v) for v in out):
        raise ConfigError(f"{name} {list(value)} is not 3 finite numbers (one per RGB channel)")
    return out


def _config_image_hw(model_config: Any) -> tuple[int, int] | None:
    if model_config is None:
        return None
    hw = getattr(model_config, "image_hw", None)
    if hw is None:
        size = model_config.get("image_size") if isinstance(model_config, dict) else getattr(model_config, "image_size", None)
        if size is None:
            return None
        hw = (size, size) if isinstance(size, int) else tuple(size)
    return int(hw[0]), int(hw[1])


