"""Image preprocessing of a checkpoint (`preprocessor_config.json`), identical everywhere.

The PyTorch reference, the runners, calibration and `predict` all call `ImageSpec.preprocess`,
so every artifact is judged on exactly the same tensors.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..errors import ConfigError, InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")

ImageLike = Union[str, os.PathLike, bytes, "PIL.Image.Image", np.ndarray]  # noqa: F821


@dataclass
class ImageSpec:
    """How an image becomes `pixel_values`: resize, centre crop, rescale, normalise (RGB, CHW)."""

    height: int = 224
    width: int = 224
    resize_shortest_edge: int | None = 256  #: None: resize straight to height x width
    center_crop: bool = True
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    rescale_factor: float = 1 / 255
    resample: int = 2  #: PIL resampling filter (2 = bilinear, 3 = bicubic)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_preprocessor_config(cls, data: dict[str, Any]) -> ImageSpec:
        size = data.get("size", {"shortest_edge": 256})
        crop = data.get("crop_size", {"height": 224, "width": 224})
        if isinstance(size, int):
            size = {"shortest_edge": size}
        if isinstance(crop, int):
            crop = {"height": crop, "width": crop}
        do_crop = bool(data.get("do_center_crop", True))
        if do_crop:
            height, width = int(crop["height"]), int(crop["width"])
        elif "height" in size:
            height, width = int(size["height"]), int(size["width"])
        else:
            raise ConfigError(f"preprocessor config gives no output size (size={size}, no centre crop)")
        shortest = size.get("shortest_edge") if data.get("do_resize", True) else None
        if not data.get("do_resize", True):
            shortest = None
        mean = tuple(data.get("image_mean", IMAGENET_MEAN)) if data.get("do_normalize", True) else (0.0, 0.0, 0.0)
        std = tuple(data.get("image_std", IMAGENET_STD)) if data.get("do_normalize", True) else (1.0, 1.0, 1.0)
        rescale = float(data.get("rescale_factor", 1 / 255)) if data.get("do_rescale", True) else 1.0
        return cls(
            height=height,
            width=width,
            resize_shortest_edge=int(shortest) if shortest else None,
            center_crop=do_crop,
            mean=mean,
            std=std,
            rescale_factor=rescale,
            resample=int(data.get("resample", 2)),
        )

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> ImageSpec:
        try:
            return cls.from_preprocessor_config(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{path}: not a readable preprocessor config ({e})") from None

    def to_preprocessor_config(self) -> dict[str, Any]:
        return {
            "image_processor_type": "BitImageProcessor",
            "do_resize": True,
            "size": {"shortest_edge": self.resize_shortest_edge}
            if self.resize_shortest_edge
            else {"height": self.height, "width": self.width},
            "resample": self.resample,
            "do_center_crop": self.center_crop,
            "crop_size": {"height": self.height, "width": self.width},
            "do_rescale": True,
            "rescale_factor": self.rescale_factor,
            "do_normalize": True,
            "image_mean": list(self.mean),
            "image_std": list(self.std),
            "do_convert_rgb": True,
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        return d

    # -- the preprocessing itself ------------------------------------------------------------
    def resize_and_crop(self, image: PIL.Image.Image) -> PIL.Image.Image:  # noqa: F821
        """Resize and centre-crop a PIL image to (height, width), RGB."""
        image = image.convert("RGB")
        w, h = image.size
        if self.resize_shortest_edge:
            s = self.resize_shortest_edge
            new = (s, int(s * h / w)) if w <= h else (int(s * w / h), s)
            if new != (w, h):
                image = image.resize(new, resample=self.resample)
        elif (w, h) != (self.width, self.height):
            image = image.resize((self.width, self.height), resample=self.resample)
        if self.center_crop:
            w, h = image.size
            if w < self.width or h < self.height:
                image = image.resize((max(w, self.width), max(h, self.height)), resample=self.resample)
                w, h = image.size
            left, top = (w - self.width) // 2, (h - self.height) // 2
            image = image.crop((left, top, left + self.width, top + self.height))
        return image

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


def to_pil(image: ImageLike):
    """Open a path or an encoded file's bytes, pass a PIL image through, or wrap a uint8 (H, W, 3) RGB array."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, Image.Image):
        return image
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 3, 4):
            raise InputError(
                f"array image of dtype {image.dtype} and shape {image.shape} not accepted: "
                "expected a uint8 (height, width, 3) RGB frame"
            )
        return Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)
    if isinstance(image, (bytes, bytearray, memoryview)):  # an encoded file's bytes (e.g. from a server request)
        path, source = "encoded image", io.BytesIO(bytes(image))
    else:
        path = source = Path(image)
    try:
        with Image.open(source) as im:
            im.load()
            return im.copy()
    except FileNotFoundError:
        raise InputError(f"{path}: no such image file") from None
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"{path}: not a readable image ({e.__class__.__name__})") from None
