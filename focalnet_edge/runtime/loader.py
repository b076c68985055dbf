"""`load(path)`: the right runner for an output folder or a single artifact."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..artifacts import is_engine, rank, select, trust
from ..engine.plans import engine_runnable_here
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


def why_not_runnable(entry: dict) -> str | None:
    """Why this machine cannot run the entry (engines: no TensorRT, other version or GPU), or None."""
    if not is_engine(entry):
        return None  # ONNX files run everywhere (ONNX Runtime)
    return engine_runnable_here(entry)


def runnable_here(entry: dict) -> bool:
    return why_not_runnable(entry) is None


def choose_artifact(manifest: dict, name: str | None = None, notes: list[str] | None = None) -> dict:
    """The manifest entry to run: `name` (a file name or precision), else the best for this machine.

    The best: the first by `artifacts.rank` (verified, then never verified, then failed; engines by
    precision, then ONNX files) among the entries this machine can run; engines it cannot run are skipped with a note
    (appended to `notes`, and logged).
    """
    entries = manifest["artifacts"]
    if not entries:
        raise ArtifactError(f"the {MANIFEST} lists no artifacts")
    if name:
        found = [e for e in entries.values() if is_engine(e)] if name == "engine" else select(entries, name)
        if not found:
            raise ArtifactError(f"no engine here; the folder has {', '.join(sorted(entries))}")
        ok = [e for e in found if runnable_here(e)] or found  # a precision: its engine where it runs, else its ONNX file
        return min(ok, key=lambda e: rank(e, _has_gpu_provider() or any(is_engine(x) for x in ok)))
    runnable = []
    for entry in entries.values():
        reason = why_not_runnable(entry)
        if reason is None:
            runnable.append(entry)
        else:
            note = f"skipped {entry['path']}: {reason}"
            log.info(note)
            if notes is not None:
                notes.append(note)
    if not runnable:
        raise ArtifactError(f"no artifact here runs on this machine (engines need TensorRT and their GPU): {', '.join(sorted(entries))}")
    gpu = _has_gpu_provider() or any(is_engine(e) for e in runnable)
    chosen = min(runnable, key=lambda e: rank(e, gpu))  # verified first, then unverified, then failed
    if trust(chosen):
        note = f"using {chosen['path']}: {'never verified' if trust(chosen) == 1 else 'it FAILED verification'}; run `focalnet-edge verify` on the folder"
        log.warning(note)
        if notes is not None:
            notes.append(note)
    return chosen


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
