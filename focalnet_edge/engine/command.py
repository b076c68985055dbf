"""The CLI's `engine` command (wired by cli.py): build a copied folder's engines here, or adopt a plan."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..folder.manifest import read_manifest, write_manifest
from . import build, check, gpu
from .adopt import adopt_plan
from .build import EngineBuild
from .config import EngineOptions


def engine_command(output_dir: str | os.PathLike, options: EngineOptions | None = None, adopt: str | None = None,
                   source: str | None = None) -> EngineBuild:
    """`focalnet-edge engine OUT [--adopt PLAN --from model.fp16.onnx [--version-compatible]] [builder flags]`.

    Builds the engines of a copied output folder on this machine (no torch needed), or adopts a
    plan built by trtexec/nvinfer, and adds them to `OUT/manifest.json`. Returns what was made:
    `.notes` to print, `.engines[i]["path"]` the new engine names, which the CLI verifies next
    against the stored references (as `focalnet-edge verify OUT --artifact NAME` would).
    """
    folder = Path(output_dir)
    document = read_manifest(folder).to_json()  # what is written back: the file as read, with the new entries
    if adopt is not None:
        if not source:
            raise InputError("--adopt needs --from: the ONNX file the plan was built from (e.g. model.fp16.onnx)")
        built = adopt_plan(folder, Path(adopt), source, document, version_compatible=bool(options and options.version_compatible))
    else:
        reason = build.unavailable_reason()
        if reason is not None:
            gpu.require_tensorrt()  # the install message where TensorRT is missing
            raise InputError(f"engines cannot be built here: {reason}")
        options = options or EngineOptions()
        notes, graph = deepstream_graph(folder, document, options)
        notes += check.record_checks(folder, document)
        built = build.build_engines(folder, document, options)
        built.notes[:0] = notes
        built.graphs = [graph] if graph else []
    build.record(document, folder, built)
    write_manifest(folder, document)
    return built


def deepstream_graph(folder: Path, document: dict[str, Any], options: EngineOptions) -> tuple[list[str], str | None]:
    """The DeepStream graph whose engine is built with the others (deploy/deepstream/folder_graph.py)."""
    from ..deploy.deepstream.folder_graph import add_graph  # deploy reads the engine layer: imported at call time

    return add_graph(folder, document, options.deepstream, options.dla_core, options.version_compatible)
