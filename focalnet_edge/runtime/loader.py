"""`load(path)`: the right runner for an output folder or a single artifact."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from .. import artifacts
from ..errors import ArtifactError
from ..manifest import MANIFEST, check_artifact, read_manifest
from .base import Runner

log = logging.getLogger(__name__)


def _has_gpu_provider() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - a dependency
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


def runnable_here(entry: dict) -> bool:
    """ONNX files run everywhere (ONNX Runtime); engines only where TensorRT imports."""
    from .tensorrt import tensorrt_available

    return not artifacts.is_engine(entry) or tensorrt_available()


def choose_artifact(manifest: dict, name: str | None = None) -> dict:
    """The manifest entry to run: `name` (a file name or a precision), else the best for this machine.

    Verified artifacts come first; among them the order of `artifacts.rank` (engines, then the
    ONNX files in the preference of a GPU or a CPU-only machine).
    """
    entries = manifest["artifacts"]
    if not entries:
        raise ArtifactError(f"the {MANIFEST} lists no artifacts")
    candidates = artifacts.select(entries, name) if name else list(entries.values())
    runnable = [e for e in candidates if runnable_here(e)]
    if not runnable:
        raise ArtifactError(
            f"no artifact {'named ' + repr(name) + ' ' if name else ''}here runs on this machine "
            f"(engines need TensorRT): {', '.join(e['path'] for e in candidates)}"
        )
    passed = [e for e in runnable if e.get("verification", {}).get("passed", True)] or runnable
    from .tensorrt import tensorrt_available

    gpu = _has_gpu_provider() or tensorrt_available()
    return min(passed, key=lambda e: artifacts.rank(e, gpu))


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
