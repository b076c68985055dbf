"""Calibration data: a folder of images, a video file, or an `.npz` of preprocessed arrays.

Images and video frames go through exactly the runtime's preprocessing (`runtime.base`), in
the input format of the artifact being calibrated (raw frames for a fused graph, normalised
pixels otherwise). The sample is deterministic for a given seed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..demo import DEMO_CALIBRATION_DIR, uses_bundled_demo
from ..errors import ConfigError, InputError
from ..folder.contract import InputContract
from ..folder.io import not_a_file
from ..inputs.images import IMAGE_SUFFIXES, walk_images
from ..inputs.video import is_video, sample_frames
from ..limits import require_memory

log = logging.getLogger(__name__)



@dataclass
class CalibrationSet:
    """Inputs in the artifact's format, and the RGB frames they came from (None for .npz)."""

    inputs: np.ndarray
    frames: np.ndarray | None
    source: str
    skipped: int = 0
    held_out: bool = True  #: False: the part judging the gate also calibrated (a single image: `split`)

    def __len__(self) -> int:
        return len(self.inputs)

    def split(self, holdout: float = 0.2, minimum: int = 100, seed: int = 0) -> tuple[CalibrationSet, CalibrationSet]:
        """(calibration part, held-back part); the held-back part judges the INT8 graph.

        At least `minimum` images are held back (100: one disagreement is then 1% of top-1),
        never more than half; with fewer than 200 images the gate says so (`gate.holdout_note`).
        A single image cannot be split: it is both parts, and the second says so (`held_out` False).
        """
        n = len(self)
        k = min(n // 2, max(minimum, int(round(n * holdout))))
        if k < 1:
            return self, replace(self, held_out=False)
        order = np.random.default_rng(seed).permutation(n)
        hold, calib = np.sort(order[:k]), np.sort(order[k:])
        pick = lambda idx: CalibrationSet(  # noqa: E731
            self.inputs[idx], None if self.frames is None else self.frames[idx], self.source, self.skipped
        )
        return pick(calib), pick(hold)


def _sample(items: list, size: int | None, seed: int) -> list:
    if size is None or len(items) <= size:
        return items
    idx = np.sort(np.random.default_rng(seed).choice(len(items), size, replace=False))
    return [items[i] for i in idx]


def _check_memory(contract: InputContract, images: int) -> None:
    """Refuse up front a calibration set that would not fit in memory (its uint8 frames and model inputs are kept)."""
    per_image = contract.height * contract.width * 3 * (1 + np.dtype(contract.dtype).itemsize)
    require_memory(images * per_image, f"--calib-size {images} ({contract.height}x{contract.width} images)",
                   "choose a smaller --calib-size")


def load_calibration_data(
    source: str | Path,
    contract: InputContract,
    size: int | None = 256,
    seed: int = 0,
    progress: bool = False,
) -> CalibrationSet:
    """Read `source` ("demo", an image folder, a video file or an .npz) into a `CalibrationSet`."""
    if size is not None and size < 1:
        raise ConfigError(f"calibration size {size} not accepted: expected a positive number of images")
    if uses_bundled_demo(str(source)):
        source = DEMO_CALIBRATION_DIR
    path = Path(source)
    if path.is_dir():
        return _from_folder(path, contract, size, seed, progress)
    if not path.is_file():
        raise InputError(not_a_file(path, "calibration folder or file"))
    if path.suffix.lower() == ".npz":
        return _from_npz(path, contract, size, seed)
    if is_video(path):
        return _from_video(path, contract, size or 256, progress)
    raise InputError(f"{path}: not a calibration source (expected an image folder, a video file or an .npz)")


def _from_folder(folder: Path, contract: InputContract, size: int | None, seed: int, progress: bool) -> CalibrationSet:
    from tqdm import tqdm

    from ..model.preprocessing import to_pil

    images, others = walk_images(folder)
    skipped = len(others)
    spec = contract.image_spec
    # a deterministic order; unreadable files are skipped and the next ones taken instead
    order = images if size is None or len(images) <= size else [images[i] for i in np.random.default_rng(seed).permutation(len(images))]
    target = len(images) if size is None else min(size, len(images))
    _check_memory(contract, target)
    frames, picked = [], []
    with tqdm(total=target, desc="calibration images", disable=None if progress else True, unit="img") as bar:
        for p in order:
            if len(frames) == target:
                break
            try:
                frames.append(np.asarray(spec.resize_and_crop(to_pil(p))))
                picked.append(p)
                bar.update()
            except InputError as e:
                skipped += 1
                log.warning("skipped %s", e)
    frames = [f for _, f in sorted(zip(picked, frames), key=lambda t: t[0])]
    if skipped:
        log.warning("%s: skipped %d files that are not readable images", folder, skipped)
    if not frames:
        raise InputError(f"{folder}: no usable calibration image (looked for {', '.join(IMAGE_SUFFIXES)})")
    stacked = np.stack(frames)
    return CalibrationSet(contract.inputs_from_frames(stacked), stacked, str(folder), skipped)


def _from_video(path: Path, contract: InputContract, size: int, progress: bool) -> CalibrationSet:
    from PIL import Image
    from tqdm import tqdm

    _check_memory(contract, size)
    spec = contract.image_spec
    frames = [np.asarray(spec.resize_and_crop(Image.fromarray(rgb)))
              for rgb in tqdm(sample_frames(path, size), total=size, desc="video frames", disable=None if progress else True)]
    stacked = np.stack(frames)
    return CalibrationSet(contract.inputs_from_frames(stacked), stacked, str(path))


def _from_npz(path: Path, contract: InputContract, size: int | None, seed: int) -> CalibrationSet:
    try:
        data = np.load(path)
        key = contract.name if contract.name in data.files else data.files[0]
        arrays = data[key]
    except Exception as e:  # zip and pickle errors
        raise InputError(f"{path}: not a readable .npz of arrays ({e.__class__.__name__})") from None
    contract.check_shape(arrays.shape, str(arrays.dtype))
    if len(arrays) == 0 or (arrays.dtype.kind == "f" and not np.isfinite(arrays).all()):
        raise InputError(f"{path}: {key!r} " + ("has 0 rows" if len(arrays) == 0 else "holds NaN or inf") + ": nothing to calibrate with")
    idx = _sample(list(range(len(arrays))), size, seed)
    return CalibrationSet(np.ascontiguousarray(arrays[idx]), None, str(path))
