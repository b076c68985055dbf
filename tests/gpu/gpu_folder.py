"""The demo folder of the GPU tests without PyTorch: a folder built elsewhere and named by
FOCALNET_EDGE_GPU_FOLDER, its engines built here and verified against its stored references."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

#: a folder built elsewhere (`focalnet-edge build --precision best --batch 1:8:32`), for devices without torch
GPU_FOLDER = "FOCALNET_EDGE_GPU_FOLDER"


def copy_without_engines(out: Path, dest: Path) -> Path:
    """A copy of an output folder with its engines, timing cache and their manifest entries removed."""
    import json

    shutil.copytree(out, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    for name in list(manifest["artifacts"]):
        if name.endswith(".engine"):
            (dest / name).unlink()
            del manifest["artifacts"][name]
    manifest.pop("timing_cache", None)
    (dest / "timing.cache").unlink(missing_ok=True)
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


def given_folder() -> Path | None:
    """The folder named by FOCALNET_EDGE_GPU_FOLDER, or None."""
    given = os.environ.get(GPU_FOLDER)
    if not given:
        return None
    if not (Path(given) / "manifest.json").is_file():
        raise pytest.UsageError(f"{GPU_FOLDER}={given}: not an output folder (no manifest.json)")
    return Path(given)


def engines_on_the_stored_references(folder: Path):
    """Engines built into `folder` on this device and verified against its references.npz: no torch."""
    from focalnet_edge.engine.command import engine_command
    from focalnet_edge.engine.config import EngineOptions
    from focalnet_edge.folder.manifest import read_manifest
    from focalnet_edge.pipeline import verify_stage
    from focalnet_edge.verify.references import load_references

    built = engine_command(folder, EngineOptions())
    refs = load_references(folder, read_manifest(folder))
    return verify_stage(folder, refs, built.graphs + [e["path"] for e in built.engines])


def needs_torch_or_folder():
    """Skip, naming both ways, where neither torch nor FOCALNET_EDGE_GPU_FOLDER is there."""
    try:
        import torch  # noqa: F401
    except ImportError:
        pytest.skip(f"torch is needed to build the demo folder here; or set {GPU_FOLDER} to a folder built elsewhere")
