"""`load(path)`: the right runner for an output folder or a single artifact."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import ArtifactError
from ..manifest import MANIFEST, check_artifact, read_manifest
from .base import Runner

log = logging.getLogger(__name__)

#: artifact preference where a GPU provider is present, and on a CPU-only machine
GPU_ORDER = ("engine", "fp16", "fp32", "int8", "int8-cpu")
CPU_ORDER = ("fp32", "int8-cpu", "fp16", "int8")


def _kind(entry: dict) -> str:
    return "engine" if entry.get("format") == "tensorrt-plan" else entry.get("precision", "fp32")


def _has_gpu_provider() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - a dependency
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


def runnable_here(entry: dict) -> bool:
    """ONNX files run everywhere (ONNX Runtime); engines only where TensorRT imports."""
    from .tensorrt import tensorrt_available

    return _kind(entry) != "engine" or tensorrt_available()


def choose_artifact(manifest: dict, name: str | None = None) -> dict:
    """The manifest entry to run: `name` (a file name or precision), else the best for this machine."""
    entries = manifest["artifacts"]
    if not entries:
        raise ArtifactError(f"the {MANIFEST} lists no artifacts")
    if name:
        for entry in entries.values():
            if name in (entry["path"], entry.get("precision"), _kind(entry)):
                return entry
        raise ArtifactError(f"no artifact {name!r} here; the folder has {', '.join(sorted(entries))}")
    passed = [e for e in entries.values() if e.get("verification", {}).get("passed", True)]
    runnable = [e for e in passed or entries.values() if runnable_here(e)]
    if not runnable:
        raise ArtifactError(f"no artifact here runs on this machine (engines need TensorRT): {', '.join(sorted(entries))}")
    from .tensorrt import tensorrt_available

    order = GPU_ORDER if _has_gpu_provider() or tensorrt_available() else CPU_ORDER
    return min(runnable, key=lambda e: order.index(_kind(e)) if _kind(e) in order else len(order))


def load(path: str | os.PathLike, artifact: str | None = None, **runner_options) -> Runner:
    """A runner for `path`: an output folder (best artifact, or `artifact`) or one artifact file.

    Artifacts listed in a `manifest.json` are checked against their sha256 first.
    `runner_options` go to the runner (e.g. providers, threads).
    """
    path = Path(path)
    if path.is_dir():
        manifest = read_manifest(path)
        entry = choose_artifact(manifest, artifact)
        file = check_artifact(path, entry)
    elif path.is_file():
        file = path
        if (path.parent / MANIFEST).is_file():
            manifest = read_manifest(path.parent)
            entry = manifest["artifacts"].get(path.name)
            if entry is not None:
                check_artifact(path.parent, entry)
    else:
        raise ArtifactError(f"{path}: no such artifact or output folder")
    if file.suffix == ".onnx":
        from .onnxruntime import OnnxRuntimeRunner

        return OnnxRuntimeRunner(file, **runner_options)
    if file.suffix in (".engine", ".plan"):
        from .tensorrt import TensorRTRunner

        return TensorRTRunner(file, **runner_options)
    raise ArtifactError(f"{file}: unknown artifact type (expected .onnx or .engine)")
