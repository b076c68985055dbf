"""The bundled demo model: where its files, held-out images and calibration images are.

A small FocalNet trained on scikit-learn's digits, coloured and upscaled, by
`scripts/train_demo.py` (the data set and the training live in `scripts/digits.py`). This
module is read at run time, so it imports neither torch nor scikit-learn.

``--model demo`` names it unless a file or folder called ``demo`` exists in the working
directory: a local path always wins (`uses_bundled_demo`), and the loader logs which was used.
"""

from __future__ import annotations

import os
from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent / "data" / "demo"
DEMO_CALIBRATION_DIR = DEMO_DIR / "calibration"
DEMO_IMAGES_DIR = DEMO_DIR / "images"  #: held-out test images, one folder per class


def uses_bundled_demo(source: str | os.PathLike) -> bool:
    """Whether `source` means the bundled demo: the word ``demo`` with no local path of that name."""
    return str(source) == "demo" and not Path("demo").exists()


def demo_images() -> list[tuple[Path, int]]:
    """The bundled held-out images with their class index (folder name)."""
    return sorted((p, int(p.parent.name)) for p in DEMO_IMAGES_DIR.glob("*/*.png"))
