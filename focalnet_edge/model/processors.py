"""`preprocessor_config.json` read the way transformers 5 reads it (`AutoImageProcessor`): the fields of an `ImageSpec`.

Per `image_processor_type`, with each processor class's own defaults for missing keys (the
table `PROCESSORS`); the pixels are those of transformers' PIL backend (the one it uses without
torchvision; its torchvision backend resizes with its own antialiasing and differs by a few
grey levels):

- `BitImageProcessor` (FocalNet's processor): resize the shortest edge (bicubic), centre crop
  224, CLIP mean/std by default;
- `ViTImageProcessor`: warp to `size` (224 x 224, bilinear), no centre crop, mean/std 0.5;
- `DeiTImageProcessor`: warp to 256 x 256 (bicubic), centre crop 224, mean/std 0.5;
- `ConvNextImageProcessor`: `size.shortest_edge` s (384): below 384 resize the shortest edge to
  int(s / crop_pct) and centre-crop s x s, from 384 warp to s x s; bicubic, mean/std 0.5;
- the `*Fast` and `*Pil` names of these four are the same processors;
- no `image_processor_type`: a legacy `feature_extractor_type` (`ViTFeatureExtractor` ->
  `ViTImageProcessor`), else the model type's processor (`focalnet` -> `BitImageProcessor`).

Any other type is refused with a `ConfigError` naming it and the keys of the file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..errors import ConfigError

_HALF = (0.5, 0.5, 0.5)  # transformers' IMAGENET_STANDARD_MEAN / _STD
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # transformers' OPENAI_CLIP_MEAN / _STD
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_CROP_PCT = Fraction(224, 256)


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


def processor_fields(data: Any, model_type: str, source: str) -> tuple[dict[str, Any], str]:
    """(`ImageSpec` fields, where they came from) of a preprocessor config's JSON (`source` names it in errors)."""
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
        fields = _spec_fields(data, proc, base)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    return fields, f"{Path(source).name}: {base}" + (f" (from {how})" if how != "image_processor_type" else "")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not a readable preprocessor config ({e.__class__.__name__}: {str(e).splitlines()[0][:120]})") from None


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


def _spec_fields(data: dict[str, Any], proc: _Processor, name: str) -> dict[str, Any]:  # noqa: C901 - one branch per key of transformers' image processors, each with its default
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
    return dict(height=out_hw[0], width=out_hw[1], mean=mean, std=std, rescale_factor=rescale, **fields)
