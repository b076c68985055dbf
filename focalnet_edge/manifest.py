"""`manifest.json`: what an output folder holds, from what, how, and how well it matched.

Artifacts are listed with their sha256, so `runtime.load` refuses a file changed after the build.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
from pathlib import Path
from typing import Any

from . import __version__
from .artifacts import MANIFEST
from .errors import ArtifactError
from .io import atomic_write_text, sha256_file


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version(), "focalnet_edge": __version__}
    for name in ("torch", "onnx", "onnxruntime", "onnxslim", "polygraphy", "tensorrt"):
        try:
            from importlib.metadata import version

            out[name] = version(name)
        except Exception:
            out[name] = None
    return out


def new_manifest(ckpt, export_result) -> dict[str, Any]:
    """The manifest of a fresh export: model, input contract, outputs, labels, versions."""
    weights = [f for f in ckpt.files if f.suffix in (".safetensors", ".bin", ".pth", ".pt")]
    return {
        "format": 1,
        "tool": {"name": "focalnet-edge", "version": __version__},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "source": ckpt.source,
            "weights_sha256": {f.name: sha256_file(f) for f in weights},
            "config": ckpt.config.to_dict(),
        },
        "head": export_result.head,
        "input": json.loads(export_result.contract.to_json()),
        "outputs": export_result.outputs,
        "labels": {str(k): v for k, v in export_result.labels.items()},
        "artifacts": {},
        "versions": library_versions(),
    }


def add_artifact(
    manifest: dict[str, Any],
    path: Path,
    precision: str,
    fmt: str,
    requires: dict[str, Any] | None = None,
    **facts: Any,
) -> dict[str, Any]:
    entry = {
        "path": path.name,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "precision": precision,
        "format": fmt,
        "requires": requires or {},
        **facts,
    }
    manifest["artifacts"][path.name] = entry
    return entry


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    path = Path(folder) / MANIFEST
    atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return path


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{folder}: no {MANIFEST} (expected a focalnet-edge output folder)") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path}: not a readable manifest ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("artifacts"), dict):
        raise ArtifactError(f"{path}: not a focalnet-edge manifest (no artifacts)")
    return data


def check_artifact(folder: Path, entry: dict[str, Any]) -> Path:
    """The artifact's path, after checking that it exists and its sha256 matches the manifest.

    A manifest is untrusted input: its paths must be plain file names inside `folder`.
    """
    name = entry.get("path") if isinstance(entry, dict) else None
    if not isinstance(name, str) or not name or name in (".", "..") or Path(name).name != name or "\\" in name:
        raise ArtifactError(f"{Path(folder) / MANIFEST}: artifact path {name!r} is not a file name inside the folder")
    path = Path(folder) / name
    if not path.is_file():
        raise ArtifactError(f"{path}: listed in {MANIFEST} but missing")
    digest = sha256_file(path)
    if digest != entry.get("sha256"):
        raise ArtifactError(
            f"{path}: sha256 {digest[:12]}... does not match {MANIFEST} ({str(entry.get('sha256'))[:12]}...): "
            "the file changed after the build; rebuild it"
        )
    return path
