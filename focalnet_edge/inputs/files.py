"""Image arguments of a command (files and folders) as the image files they name."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..errors import InputError
from ..folder.io import not_a_file
from .images import IMAGE_SUFFIXES


def image_files(folder: Path) -> list[Path]:
    """The images under `folder`, at any depth, in sorted order (by suffix, case-insensitive)."""
    return sorted(f for f in Path(folder).rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)


def expand_images(items: Iterable[str]) -> list[Path]:
    """Each item a file (taken as it is) or a folder (its images); an `InputError` for anything else, or when none is found."""
    items = list(items)
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out.extend(image_files(p))
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(not_a_file(p, "image file or folder"))
    if not out:
        raise InputError(f"no images in {', '.join(items)}")
    return out
