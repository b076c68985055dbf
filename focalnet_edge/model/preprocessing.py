"""Image preprocessing of a checkpoint (`preprocessor_config.json`), identical everywhere.

The PyTorch reference, the runners, calibration and `predict` all call `ImageSpec.preprocess`
(or its two halves `resize_and_crop` and `normalize`) on images read by `to_pil`
(`focalnet_edge.inputs.images.load_image`), so every artifact is judged on exactly the same tensors.

`preprocessor_config.json` is read the way transformers 5 reads it (`AutoImageProcessor`), per
`image_processor_type`, with each processor class's own defaults for missing keys; the pixels
are those of transformers' PIL backend (the one it uses without torchvision; its torchvision
backend resizes with its own antialiasing and differs by a few grey levels):

- `BitImageProcessor` (FocalNet's processor): resize the shortest edge (bicubic), centre crop
  224, CLIP mean/std by default;
- `ViTImageProcessor`: warp to `size` (224 x 224, bilinear), no centre crop, mean/std 0.5;
- `DeiTImageProcessor`: warp to 256 x 256 (bicubic), centre crop 224, mean/std 0.5;
- `ConvNextImageProcessor`: `size.shortest_edge` s (384): below 384 resize the shortest edge to
  int(s / crop_pct) and centre-crop s x s, from 384 warp to s x s; bicubic, mean/std 0.5;
- the `*Fast` and `*Pil` names of these four are the same processors;
- no `image_processor_type`: a legacy `feature_extractor_type` (`ViTFeatureExtractor` ->
  `ViTImageProcessor`), else the model type's processor (`focalnet` -> `BitImageProcessor`).

The geometry has three modes (`ImageSpec.mode`), the one chosen at export being part of the
input contract so that verification measures what the deployment feeds the model:

- `crop` (default): the processor's own recipe above (transformers' resize + centre crop);
- `stretch`: warp to the input size, aspect ratio not kept (DeepStream nvinfer's default);
- `letterbox`: scale to fit the input size keeping the aspect ratio, pad both sides with black
  (nvinfer's maintain-aspect-ratio=1 + symmetric-padding=1; `letterbox_geometry`).

Any other type is refused with a `ConfigError` naming it; so are values no processor can use
(std <= 0, non-finite mean/std, sizes <= 0). Without a preprocessor config, `image_spec_for`
takes `config.json`'s `image_size` with the FocalNet/ImageNet recipe (resize the shortest edge
to `resize_edge_for(size)`, centre crop, bicubic, ImageNet mean/std) and says so.
"""

from __future__ import annotations

import json
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

log = logging.getLogger(__name__)

__all__ = ["RESIZE_MODES", "ImageLike", "ImageSpec", "letterbox_geometry", "image_spec_for", "image_spec_for_folder", "resize_edge_for", "to_pil"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_HALF = (0.5, 0.5, 0.5)  # transformers' IMAGENET_STANDARD_MEAN / _STD
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # transformers' OPENAI_CLIP_MEAN / _STD
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_CROP_PCT = Fraction(224, 256)

to_pil = load_image  #: the one image loader (rules in `focalnet_edge.inputs.images`)


def resize_edge_for(crop: int, crop_pct: float | Fraction = DEFAULT_CROP_PCT) -> int:
    """The shortest edge to resize to before a centre crop of `crop` pixels: int(crop / crop_pct).

    The rule of transformers' ConvNextImageProcessor and timm (`floor(size / crop_pct)`):
    224 -> 256, 384 -> 438. With a Fraction the division is exact.
    """
    return int(Fraction(crop) / crop_pct) if isinstance(crop_pct, Fraction) else int(crop / crop_pct)


@dataclass(frozen=True)
class _Processor:
    """The class defaults of one transformers image processor (its PIL backend, transformers 5)."""

    resample: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    size: dict[str, int]
    crop_size: dict[str, int] | None
    do_center_crop: bool | None
    default_to_square: bool
    crop_pct: float | None = None


PROCESSORS: dict[str, _Processor] = {
    "BitImageProcessor": _Processor(3, _CLIP_MEAN, _CLIP_STD, {"shortest_edge": 224}, {"height": 224, "width": 224}, True, False),
    "ViTImageProcessor": _Processor(2, _HALF, _HALF, {"height": 224, "width": 224}, None, None, True),
    "DeiTImageProcessor": _Processor(3, _HALF, _HALF, {"height": 256, "width": 256}, {"height": 224, "width": 224}, True, True),
    "ConvNextImageProcessor": _Processor(3, _HALF, _HALF, {"shortest_edge": 384}, None, None, False, 224 / 256),
}
_MODEL_TYPE_PROCESSOR = {"focalnet": "BitImageProcessor"}  # transformers' IMAGE_PROCESSOR_MAPPING_NAMES


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
        """`preprocessor_config.json` as transformers reads it (the types in the module docstring)."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        name, how = _processor_type(data, model_type)
        base = name[:-4] if name.endswith("Fast") else name[:-3] if name.endswith("Pil") else name
        proc = PROCESSORS.get(base)
        if proc is None:
            raise ConfigError(
                f"{source}: image processor {name!r} (from {how}) is not read by focalnet-edge, which reads "
                f"{', '.join(PROCESSORS)} and their Fast variants (keys in the file: {', '.join(sorted(data)) or 'none'}); "
                "rewrite it as a BitImageProcessor config, or remove it to use config.json's image_size with ImageNet "
                "statistics (then --image-size H[xW] exports at another size)"
            )
        try:
            spec = _spec_from_processor(data, proc, base)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
        spec.origin = f"{Path(source).name}: {base}" + (f" (from {how})" if how != "image_processor_type" else "")
        return spec

    @classmethod
    def from_file(cls, path: str | os.PathLike, model_type: str = "focalnet") -> ImageSpec:
        return cls.from_preprocessor_config(_read_json(Path(path)), model_type, str(path))

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
        data = _read_json(nested)
        if isinstance(data, dict) and "image_processor" in data:
            return image_spec_for(data["image_processor"], model_config, f"{nested} (image_processor)")
    path = folder / "preprocessor_config.json"
    return image_spec_for(_read_json(path) if path.is_file() else None, model_config, str(path))


# -- helpers ------------------------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not a readable preprocessor config ({e.__class__.__name__}: {str(e).splitlines()[0][:120]})") from None


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


def _processor_type(data: dict[str, Any], model_type: str) -> tuple[str, str]:
    """(class name, where it came from), in AutoImageProcessor's order."""
    name = data.get("image_processor_type")
    if isinstance(name, str):
        return name, "image_processor_type"
    legacy = data.get("feature_extractor_type")
    if isinstance(legacy, str):
        return legacy.replace("FeatureExtractor", "ImageProcessor"), f"feature_extractor_type {legacy!r}"
    if model_type in _MODEL_TYPE_PROCESSOR:
        return _MODEL_TYPE_PROCESSOR[model_type], f"model_type {model_type!r}"
    raise ConfigError(f"no image_processor_type and model_type {model_type!r} has no known image processor")


def _size_dict(value: Any, default_to_square: bool, name: str) -> dict[str, int]:
    """transformers' get_size_dict: an int is a square (default_to_square) or a shortest edge; a list is (h, w)."""
    if isinstance(value, dict):
        size = dict(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        size = {"height": value, "width": value} if default_to_square else {"shortest_edge": value}
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        size = {"height": value[0], "width": value[1]}
    else:
        raise ConfigError(f"{name} {value!r} is not a size (a dict, a number or [height, width])")
    for key, v in size.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or v < 1:
            raise ConfigError(f"{name} {value!r}: {key} must be a positive whole number of pixels")
    return {k: int(v) for k, v in size.items()}


def _spec_from_processor(data: dict[str, Any], proc: _Processor, name: str) -> ImageSpec:  # noqa: C901 - one branch per key of transformers' image processors, each with its default
    def get(key: str, default: Any) -> Any:  # a key present with null stays None, as in transformers
        return data[key] if key in data else default

    do_resize = bool(get("do_resize", True))
    do_crop = bool(get("do_center_crop", proc.do_center_crop))
    size_value, crop_value = get("size", proc.size), get("crop_size", proc.crop_size)
    if do_resize and size_value is None:
        raise ConfigError("do_resize is true but there is no size")
    if do_crop and crop_value is None:
        raise ConfigError("do_center_crop is true but there is no crop_size")
    size = _size_dict(size_value, bool(get("default_to_square", proc.default_to_square)), "size") if do_resize else {}
    crop = _size_dict(crop_value, True, "crop_size") if do_crop else {}
    if do_crop and set(crop) != {"height", "width"}:
        raise ConfigError(f"crop_size {crop_value!r} must give height and width")
    resample = get("resample", proc.resample)
    fields: dict[str, Any] = dict(
        resample=2 if resample is None else resample,  # transformers' PIL resize: None means bilinear
        do_resize=do_resize,
        resize_shortest_edge=None,
        center_crop=do_crop,
    )
    out_hw = (crop["height"], crop["width"]) if do_crop else None
    if do_resize and name == "ConvNextImageProcessor":
        if set(size) != {"shortest_edge"}:
            raise ConfigError(f"size {size_value!r}: ConvNextImageProcessor needs a shortest_edge")
        s = size["shortest_edge"]
        crop_pct = get("crop_pct", proc.crop_pct)
        if s < 384:  # resize the shortest edge to s / crop_pct, then centre-crop s x s
            if isinstance(crop_pct, bool) or not isinstance(crop_pct, (int, float)) or not math.isfinite(crop_pct) or crop_pct <= 0:
                raise ConfigError(f"crop_pct {crop_pct!r} is not a positive number")
            fields.update(resize_shortest_edge=resize_edge_for(s, float(crop_pct)), center_crop=True)
            if do_crop:
                fields["square_crop"] = s
            else:
                out_hw = (s, s)
        else:  # from 384: warp to s x s
            fields.update(resize_height=s, resize_width=s)
            out_hw = out_hw or (s, s)
    elif do_resize and set(size) == {"shortest_edge"}:
        fields["resize_shortest_edge"] = size["shortest_edge"]
    elif do_resize and set(size) == {"height", "width"}:
        fields.update(resize_height=size["height"], resize_width=size["width"])
        out_hw = out_hw or (size["height"], size["width"])
    elif do_resize:
        raise ConfigError(f"size {size_value!r} is not read (expected shortest_edge, or height and width)")
    if out_hw is None:
        raise ConfigError(
            f"{name} with size {size_value!r} and no centre crop gives no fixed output size; "
            "add do_center_crop with a crop_size, or give size as height and width"
        )
    if get("do_rescale", True):
        rescale = get("rescale_factor", 1 / 255)
        if rescale is None:
            raise ConfigError("do_rescale is true but rescale_factor is null")
    else:
        rescale = 1.0
    if get("do_normalize", True):
        mean, std = get("image_mean", proc.mean), get("image_std", proc.std)
        if mean is None or std is None:
            raise ConfigError("do_normalize is true but image_mean or image_std is null")
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if fields.get("resize_height") == out_hw[0] and fields.get("resize_width") == out_hw[1]:
        fields.update(resize_height=None, resize_width=None)  # warp straight to the output size
    return ImageSpec(height=out_hw[0], width=out_hw[1], mean=mean, std=std, rescale_factor=rescale, **fields)

