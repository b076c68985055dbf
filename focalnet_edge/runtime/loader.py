"""`load(path)`: the right runner for an output folder or a single artifact.

The loader is the one reader of `manifest.json` for running (Polygraphy's loader/runner split): it reads
the manifest once, chooses the artifact, checks its sha256, and hands the runner the facts it needs (an
engine's requirements, input contract, labels, head, outputs, precision). No runner reads the manifest.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ArtifactError
from ..folder.manifest import MANIFEST, Artifact, Manifest, check_artifact, read_manifest
from .base import Runner
from .choose import choose_artifact


def engine_facts(manifest: Manifest, artifact: Artifact) -> dict[str, Any]:
    """What a TensorRT runner needs of the manifest and its engine `artifact`: the engine's own input contract first."""
    own = artifact.deepstream or {}  # a DeepStream graph's engine: its graph's head and outputs (probs), not the folder's
    return {"requires": artifact.requires, "input": artifact.input or manifest.input, "labels": manifest.labels,
            "head": own.get("head", manifest.head), "outputs": own.get("outputs", manifest.outputs) or None,
            "precision": artifact.precision}


def engine_facts_at(path: Path) -> dict[str, Any]:
    """`engine_facts` of the engine file `path`, from the manifest beside it."""
    if not (path.parent / MANIFEST).is_file():
        raise ArtifactError(f"{path}: an engine needs the manifest.json it was built with, next to it (or adopt it: focalnet-edge engine OUT --adopt)")
    manifest = read_manifest(path.parent)
    if path.name not in manifest.artifacts:
        raise ArtifactError(f"{path}: not listed in {path.parent / MANIFEST}; register it with focalnet-edge engine {path.parent} --adopt {path.name} --from MODEL.onnx")
    return engine_facts(manifest, manifest.artifacts[path.name])


def load_entry(folder: str | os.PathLike, artifact: Artifact, manifest: Manifest | None = None, **runner_options) -> Runner:
    """The runner of one artifact of `folder`'s manifest, after checking its sha256 (the file checked is the file run).
    `manifest`: the folder's, where the caller has read it (else it is read here, for an engine's facts)."""
    file = check_artifact(Path(folder), artifact)
    if file.suffix in (".engine", ".plan"):
        facts = engine_facts(manifest if manifest is not None else read_manifest(Path(folder)), artifact)
        return _runner(file, facts, **runner_options)
    return _runner(file, None, **runner_options)


def load(path: str | os.PathLike, artifact: str | None = None, **runner_options) -> Runner:
    """A runner for `path`: an output folder (best artifact, or `artifact`) or one artifact file.

    `artifact` is a file name or a precision. Artifacts listed in a `manifest.json` are checked
    against their sha256 first. `runner_options` go to the runner (e.g. providers, threads).
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ArtifactError(f"load() needs the path of an output folder or an artifact, got {path!r}")
    path = Path(path)
    if path.is_dir():
        manifest = read_manifest(path)
        return load_entry(path, choose_artifact(manifest, artifact), manifest, **runner_options)
    if path.is_file():
        if (path.parent / MANIFEST).is_file():
            manifest = read_manifest(path.parent)
            artifact = manifest.artifacts.get(path.name)
            if artifact is not None:
                return load_entry(path.parent, artifact, manifest, **runner_options)
        return _runner(path, None, **runner_options)
    raise ArtifactError(f"{path}: no such artifact or output folder")


def _runner(file: Path, facts: dict[str, Any] | None, **runner_options) -> Runner:
    if file.suffix == ".onnx":
        from .onnxruntime import OnnxRuntimeRunner

        return OnnxRuntimeRunner(file, **runner_options)
    if file.suffix in (".engine", ".plan"):
        from ..engine.gpu import require_tensorrt
        from .tensorrt import TensorRTRunner

        require_tensorrt()  # a clear error where TensorRT is missing, before anything else
        facts = facts if facts is not None else engine_facts_at(file)
        dla_core = runner_options.pop("dla_core", None)
        return TensorRTRunner(file, requires=facts["requires"], contract=facts["input"], labels=facts["labels"], head=facts["head"],
                              outputs=facts["outputs"], precision=facts["precision"],
                              dla_core=facts["requires"].get("dla_core") if dla_core is None else dla_core, **runner_options)
    raise ArtifactError(f"{file}: unknown artifact type (expected .onnx or .engine)")
