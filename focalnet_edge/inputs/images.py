"""Reading images: the one loader of predict, calibration and verification (no torch here).

`load_image` follows transformers' `load_image` (`transformers/image_utils.py`): the EXIF
orientation is applied and the result is an RGB image. Where transformers' `convert("RGB")`
loses the picture, the rules below keep it:

- transparency (RGBA, LA, PA, a palette or RGB image with a transparent colour) is composited
  onto white, as transformers' image processors do (`convert_to_rgb`); palette, grey, 1-bit,
  CMYK and YCbCr images are converted by Pillow;
- 16-bit images (`I;16*`, 16-bit PNG and TIFF) are scaled from 0..65535 to 0..255
  (`round(v / 257)`); Pillow's `convert("RGB")`, and so transformers, clips them at 255, which
  turns almost every 16-bit photograph white;
- 32-bit integer images (`I`) are scaled from the range their TIFF tags declare (BitsPerSample,
  SampleFormat: 0..2**31-1 for signed, 0..2**32-1 for unsigned 32-bit, negative values clipped
  to 0); without such tags (an `I` image made in memory) from 0..65535 when every value fits,
  which is how Pillow hands over 16-bit data, otherwise from 0..2**31-1;
- float images (`F`, 32-bit float TIFF) are scaled from the smallest of 0..1, 0..255 and
  0..65535 that holds the image's maximum (clipped below 0); NaN or infinite pixels are refused;
- 16-bit RGB(A) PNGs are decoded by Pillow to 8 bits per channel (high byte) and then treated as
  RGB(A);
- animated images (GIF, APNG, WebP): the first frame;
- decompression bombs (more pixels than `PIL.Image.MAX_IMAGE_PIXELS`, Pillow's
  `DecompressionBombWarning` as well as its error) are refused before decoding.

Every failure is an `InputError` with one line naming the file, so the callers can skip the
file and say why. `walk_images` is the one walk of an image folder (predict, calibration,
verification).
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from ..errors import InputError
from ..folder.io import not_a_file

if TYPE_CHECKING:
    from PIL import Image as _PILImage

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")

ImageLike = Union[str, os.PathLike, bytes, "_PILImage.Image", np.ndarray]

_DEEP_MODES = ("I", "F")  # plus every "I;16..." mode


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether `path` is named as an image (its suffix, any case, is one of `IMAGE_SUFFIXES`)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def walk_images(folder: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """(image files, other files) under `folder`, recursively, each in sorted path order.

    Images are told by their suffix (`is_image_file`); folders are walked, never listed; whether
    an image file is readable is `load_image`'s to say, so callers skip (and count) those that
    are not.
    """
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    return [p for p in files if is_image_file(p)], [p for p in files if not is_image_file(p)]


def expand_images(items: Iterable[str]) -> list[Path]:
    """A command's image arguments: each a file (taken as it is) or a folder (its images, `walk_images`);
    an `InputError` for anything else, or when none is found."""
    items = list(items)
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out.extend(walk_images(p)[0])
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(not_a_file(p, "image file or folder"))
    if not out:
        raise InputError(f"no images in {', '.join(items)}")
    return out


def load_image(image: ImageLike) -> _PILImage.Image:
    """A path, an encoded file's bytes, a PIL image or a uint8 (H, W, 1|3|4) frame -> an upright RGB PIL image (rules above)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        if image.width == 0 or image.height == 0:
            raise InputError(f"an empty ({image.width}x{image.height}) image")
        int_range = _integer_range(image)  # read the TIFF tags before the orientation makes a copy
        return to_rgb(_upright(image), int_range)
    if isinstance(image, np.ndarray):
        return to_rgb(_from_array(image))
    if isinstance(image, (bytes, bytearray, memoryview)):  # an encoded file's bytes (e.g. a server request)
        return _open(io.BytesIO(bytes(image)), "encoded image")
    if not isinstance(image, (str, os.PathLike)):
        raise InputError(
            f"a {type(image).__name__} is not an image: expected a path, encoded bytes, a PIL image or a uint8 (height, width, 3) RGB frame"
        )
    return _open(Path(image), Path(image))


def to_rgb(image: _PILImage.Image, int_range: int | None = None) -> _PILImage.Image:
    """Any PIL mode -> RGB with the scaling rules of this module (RGB without transparency: as is)."""
    from PIL import Image

    has_alpha = "A" in image.getbands() or image.info.get("transparency") is not None
    if image.mode == "RGB" and not has_alpha:
        return image
    if image.mode in _DEEP_MODES or image.mode.startswith("I;16"):
        return Image.fromarray(_deep_to_uint8(image, int_range)).convert("RGB")
    try:
        if has_alpha:  # transformers' convert_to_rgb: composite onto white
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        return image.convert("RGB")
    except ValueError as e:  # a mode Pillow cannot convert (e.g. LAB)
        raise InputError(f"an image of colour mode {image.mode} cannot be converted to RGB ({e})") from None


def _open(source: Path | io.BytesIO, path: Path | str) -> _PILImage.Image:
    """Decode `source` (a file or bytes); errors name `path`."""
    from PIL import Image, UnidentifiedImageError

    from ..folder.io import not_a_file, special_file

    if isinstance(source, Path) and special_file(source) not in (None, "a folder"):
        raise InputError(not_a_file(source, "image file"))  # a FIFO would block the open
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                im.seek(0)  # animated images: the first frame
                im.load()
                int_range = _integer_range(im)
                image = _upright(im)
    except FileNotFoundError:
        raise InputError(f"{path}: no such image file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        detail = str(e).split(",")[0].rstrip(".")
        raise InputError(
            f"{path}: refused as a possible decompression bomb ({detail}; the limit is PIL.Image.MAX_IMAGE_PIXELS)"
        ) from None
    except IsADirectoryError:
        raise InputError(f"{path}: a folder, not an image file") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, MemoryError) as e:
        raise InputError(f"{path}: not a readable image ({e.__class__.__name__})") from None
    try:
        return to_rgb(image, int_range)
    except InputError as e:
        raise InputError(f"{path}: {e}") from None


def _upright(image: _PILImage.Image) -> _PILImage.Image:
    """The EXIF orientation applied (phone photos), as transformers' `load_image` does."""
    from PIL import ImageOps

    return ImageOps.exif_transpose(image)


def _from_array(image: np.ndarray) -> _PILImage.Image:
    from PIL import Image

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise InputError(
            f"array image of dtype {image.dtype} and shape {image.shape} not accepted: "
            "expected a uint8 (height, width, 3) RGB frame"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(f"an empty frame of shape {image.shape}: expected a uint8 (height, width, 3) RGB frame")
    return Image.fromarray(image[..., 0] if image.shape[2] == 1 else np.ascontiguousarray(image))


def _first(value):
    return value[0] if isinstance(value, (tuple, list)) and value else value


def _integer_range(image: _PILImage.Image) -> int | None:
    """The largest value of a 32-bit integer (`I`) image per its TIFF tags, if it has them."""
    tags = getattr(image, "tag_v2", None)
    if image.mode != "I" or tags is None:
        return None
    bits, sample_format = _first(tags.get(258)), _first(tags.get(339, 1))
    if not isinstance(bits, int) or not 1 < bits <= 32:
        return None
    return 2 ** (bits - 1) - 1 if sample_format == 2 else 2**bits - 1


def _deep_to_uint8(image: _PILImage.Image, int_range: int | None) -> np.ndarray:
    """16-bit, 32-bit integer and float pixels -> uint8 0..255 (the rules in the module docstring)."""
    a = np.asarray(image)
    if image.mode.startswith("I;16"):
        top = 65535.0
    elif image.mode == "I":
        if int_range is not None and int_range > 2**31 - 1:  # unsigned 32-bit read by Pillow as signed
            a = a.astype(np.int64) % 2**32
        top = float(int_range if int_range is not None else 65535 if a.size == 0 or a.max() <= 65535 else 2**31 - 1)
    else:  # F
        if not np.isfinite(a).all():
            raise InputError("a float image with NaN or infinite pixel values")
        peak = float(a.max()) if a.size else 0.0
        top = next((t for t in (1.0, 255.0, 65535.0) if peak <= t), peak)
    x = np.clip(a.astype(np.float64), 0.0, top) * (255.0 / top)
    return np.round(x).astype(np.uint8)
