"""Top-k over image arguments: batches of files, an unreadable image found in a folder skipped with its reason."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from ..errors import InputError
from ..inputs.images import expand_images

log = logging.getLogger(__name__)


def _predict_skipping(runner, paths: list[Path], named: set[Path], top_k: int) -> list[tuple[Path, list]]:
    """Top-k per image; an unreadable image found in a folder is skipped with its reason, one named is an error."""
    try:
        return list(zip(paths, runner.predict(paths, top_k=top_k)))
    except InputError:
        done = []
        for path in paths:
            try:
                done.append((path, runner.predict([path], top_k=top_k)[0]))
            except InputError as e:
                if path in named:
                    raise
                log.warning("skipped %s", e)
        return done


def predict_images(runner, items: list[str], top_k: int, batch: int = 16) -> Iterator[tuple[Path, list]]:
    """(path, top-k) for each image `items` name (files, folders), `batch` at a time; an `InputError` when every one was skipped."""
    paths = expand_images(items)
    named = {Path(p) for p in items}
    classified = 0
    for start in range(0, len(paths), batch):
        for path, top in _predict_skipping(runner, paths[start : start + batch], named, top_k):
            yield path, top
            classified += 1
    if not classified:  # every image was skipped: nothing was classified
        raise InputError(f"{', '.join(items)}: no readable image among its {len(paths)} files (each skipped, with its reason, above)")
