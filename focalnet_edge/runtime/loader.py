"""`load(path)`: the right runner for an output folder or a single artifact."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ArtifactError
from ..folder.manifest import MANIFEST, check_artifact, read_manifest
from .base import Runner
from .choose import choose_artifact


def load_entry(folder: str | os.PathLike, entry: dict[str, Any], **runner_options) -> Runner:
    """The runner of one manifest entry of `folder`, after checking its sha256 (the file checked is the file run)."""
    return _runner(check_artifact(Path(folder), entry), **runner_options)


def load(path: str | os.PathLike, artifact: str | None = None, **runner_options) -> Runner:
    """A runner for `path`: an output folder (best artifact, or `artifact`) or one artifact file.

    `artifact` is a file name or a precision. Artifacts listed in a `manifest.json` are checked
    against their sha256 first. `runner_options` go to the runner (e.g. providers, threads).
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ArtifactError(f"load() needs the path of an output folder or an artifact, got {path!r}")
    path = Path(path)
    if path.is_dir():
        return load_entry(path, choose_artifact(read_manifest(path), artifact), **runner_options)
    if path.is_file():
        if (path.parent / MANIFEST).is_file():
            entry = read_manifest(path.parent)["artifacts"].get(path.name)
            if entry is not None:
                return load_entry(path.parent, entry, **runner_options)
        return _runner(path, **runner_options)
    raise ArtifactError(f"{path}: no such artifact or output folder")


def _runner(file: Path, **runner_options) -> Runner:
    if file.suffix == ".onnx":
        from .onnxruntime import OnnxRuntimeRunner

        return OnnxRuntimeRunner(file, **runner_options)
    if file.suffix in (".engine", ".plan"):
        from .tensorrt import TensorRTRunner

        return TensorRTRunner(file, **runner_options)
    raise ArtifactError(f"{file}: unknown artifact type (expected .onnx or .engine)")
