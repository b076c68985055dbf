"""`manifest.json`: what an output folder holds, from what, how, and how well it matched.

Artifacts are listed with their sha256, so `runtime.load` refuses a file changed after the build.
A manifest is untrusted input (folders are copied between machines and edited by hand):
`read_manifest` checks the type of every field the tool reads, so a malformed one is one
`ArtifactError` naming the field, never a `KeyError` or `TypeError` later; `write_manifest`
writes strict JSON (a non-finite number becomes null).
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import re
from pathlib import Path
from typing import Any

from .. import __version__
from .artifacts import MANIFEST, ONNX, TENSORRT_PLAN, external_data_name
from ..errors import ArtifactError, FocalNetEdgeError
from .io import atomic_write_text, dumps_json, sha256_file
from .labels import REBUILD_FIX, check_labels

TOOL = "focalnet-edge"
_SHA256 = re.compile(r"[0-9a-f]{64}")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version(), "focalnet_edge": __version__}
    for name in ("torch", "onnx", "onnxruntime", "onnxslim", "polygraphy", "tensorrt"):
        try:
            from importlib.metadata import version

            out[name] = version(name)
        except Exception:
            out[name] = None
    return out


def new_manifest(ckpt, export_result, weights: dict[str, str] | None = None) -> dict[str, Any]:
    """The manifest of a fresh export: model, input contract, outputs, labels, versions (`weights`: `weights_sha256(ckpt)`)."""
    return {
        "format": 1,
        "tool": {"name": TOOL, "version": __version__},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "source": ckpt.source,
            "weights_sha256": weights if weights is not None else weights_sha256(ckpt),
            "config": ckpt.config.to_dict(),
        },
        "head": export_result.head,
        "input": json.loads(export_result.contract.to_json()),
        "outputs": export_result.outputs,
        "labels": {str(k): v for k, v in export_result.labels.items()},
        "artifacts": {},
        "versions": library_versions(),
    }


def weights_sha256(ckpt) -> dict[str, str]:
    """The sha256 of each weight file of a checkpoint, by file name: what identifies the model of a folder."""
    return {f.name: sha256_file(f) for f in ckpt.files if f.suffix in WEIGHT_SUFFIXES}


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
    data = path.with_name(external_data_name(path.name))
    if fmt == ONNX and data.is_file():  # its weights, written beside it by `onnx_io.save_onnx`
        entry["external_data"] = {"path": data.name, "sha256": sha256_file(data), "bytes": data.stat().st_size}
    manifest["artifacts"][path.name] = entry
    return entry


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    """Write `manifest.json` atomically, as strict JSON (inf and NaN become null)."""
    path = Path(folder) / MANIFEST
    atomic_write_text(path, dumps_json(manifest, indent=2, sort_keys=False) + "\n")
    return path


def load_manifest_json(folder: Path) -> dict[str, Any] | None:
    """The JSON object in `folder/manifest.json` unchecked, or None when there is none or it is unreadable."""
    try:
        data = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def is_ours(manifest: dict[str, Any] | None) -> bool:
    """Whether a manifest's JSON was written by focalnet-edge (its `tool.name`), however malformed the rest."""
    tool = manifest.get("tool") if isinstance(manifest, dict) else None
    return isinstance(tool, dict) and tool.get("name") == TOOL


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of an output folder, after checking every field the tool reads (`ArtifactError` else)."""
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{folder}: no {MANIFEST} (expected a focalnet-edge output folder)") from None
    except IsADirectoryError:
        raise ArtifactError(f"{path}: is a folder, expected the manifest file") from None
    except OSError as e:
        raise ArtifactError(f"{path}: cannot be read ({e.strerror or e})") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path}: not a readable manifest ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("artifacts"), dict):
        raise ArtifactError(f"{path}: not a focalnet-edge manifest (no artifacts)")
    check_manifest(data, path)
    return data


def _bad(path: Path, field: str, value: Any, expected: str) -> ArtifactError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return ArtifactError(f"{path}: {field} is {shown}, expected {expected}; the manifest is damaged, rebuild the folder")


def _int(v: Any, lo: int = 1) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _number(v: Any, positive: bool = False) -> bool:
    import math

    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > 0 or not positive)


#: the type test of each field of an input contract and of its preprocessing (what `InputContract`
#: and `ImageSpec` take without checking types themselves)
_CONTRACT_FIELDS = {
    "name": lambda v: isinstance(v, str) and v != "", "dtype": lambda v: isinstance(v, str),
    "layout": lambda v: isinstance(v, str), "color_order": lambda v: isinstance(v, str),
    "height": _int, "width": _int, "size_multiple": _int,
    "dynamic_batch": lambda v: isinstance(v, bool), "dynamic_size": lambda v: isinstance(v, bool),
    "fused_preprocess": lambda v: isinstance(v, bool),
    "batch": lambda v: isinstance(v, list) and len(v) == 3 and all(_int(b) for b in v),
    "preprocessing": lambda v: isinstance(v, dict), "frame_size": lambda v: isinstance(v, str),
}
_SPEC_FIELDS = {
    "height": _int, "width": _int, "resize_shortest_edge": lambda v: v is None or _int(v),
    "center_crop": lambda v: isinstance(v, bool), "rescale_factor": lambda v: _number(v, positive=True),
    "resample": lambda v: _int(v, 0) and v <= 5, "extra": lambda v: isinstance(v, dict), "mode": lambda v: isinstance(v, str),
    "mean": lambda v: isinstance(v, list) and len(v) in (1, 3) and all(_number(x) for x in v),
    "std": lambda v: isinstance(v, list) and len(v) in (1, 3) and all(_number(x, positive=True) for x in v),
}


def contract_problem(data: Any) -> str | None:
    """What is wrong with the types of an input contract's JSON (None: nothing), before building it."""
    if not isinstance(data, dict):
        return f"{type(data).__name__}, not an object"
    for key, value in data.items():
        test = _CONTRACT_FIELDS.get(key)  # unknown fields: the constructor refuses them
        if test is not None and not test(value):
            return f"{key} is {value!r:.40}"
    for key, value in data.get("preprocessing", {}).items():
        test = _SPEC_FIELDS.get(key)
        if test is not None and not test(value):
            return f"preprocessing {key} is {value!r:.40}"
    return None


def check_manifest(data: dict[str, Any], path: Path) -> None:  # noqa: C901 - a hand validator of the manifest's fields; replaced by the typed manifest (issue 28)
    """Raise `ArtifactError` naming the first field of `data` whose type or value the tool cannot use."""
    from .contract import InputContract

    model = data.get("model")
    if not isinstance(model, dict):
        raise _bad(path, "model", model, "an object")
    if not isinstance(model.get("source"), str):
        raise _bad(path, "model.source", model.get("source"), "a string")
    weights = model.get("weights_sha256", {})
    if not isinstance(weights, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in weights.items()):
        raise _bad(path, "model.weights_sha256", weights, "an object of file name -> sha256")
    if not isinstance(data.get("head", "logits"), str):
        raise _bad(path, "head", data.get("head"), "a string")
    outputs = data.get("outputs", [])
    if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
        raise _bad(path, "outputs", outputs, "a list of output names")
    labels = data.get("labels", {})
    if not isinstance(labels, dict) or not all(isinstance(k, str) and k.lstrip("-").isdigit() and isinstance(v, str)
                                               for k, v in labels.items()):
        raise _bad(path, "labels", labels, "an object of class index -> label")
    check_labels(labels, str(path), REBUILD_FIX)
    if not isinstance(data.get("input"), dict):
        raise _bad(path, "input", data.get("input"), "an input contract object")
    problem = contract_problem(data["input"])
    if problem:
        raise ArtifactError(f"{path}: input is not an input contract ({problem}); the manifest is damaged, rebuild the folder")
    try:
        InputContract.from_dict(data["input"]).image_spec  # noqa: B018 - builds and checks the preprocessing too
    except (TypeError, ValueError, AttributeError, FocalNetEdgeError) as e:
        raise ArtifactError(f"{path}: input is not an input contract ({str(e)[:120]}); the manifest is damaged, rebuild the folder") from None
    for key in ("references", "versions"):
        if key in data and not isinstance(data[key], dict):
            raise _bad(path, key, data[key], "an object")
    for name, entry in data["artifacts"].items():
        where = f"artifacts[{name!r}]"
        if not isinstance(entry, dict):
            raise _bad(path, where, entry, "an object")
        if entry.get("path") != name:
            raise _bad(path, f"{where}.path", entry.get("path"), f"the file name {name!r} (its key)")
        if not isinstance(entry.get("sha256"), str) or not _SHA256.fullmatch(entry["sha256"]):
            raise _bad(path, f"{where}.sha256", entry.get("sha256"), "64 hex digits")
        if not isinstance(entry.get("precision"), str):
            raise _bad(path, f"{where}.precision", entry.get("precision"), "a string")
        if entry.get("format") not in (ONNX, TENSORRT_PLAN):
            raise _bad(path, f"{where}.format", entry.get("format"), f"{ONNX!r} or {TENSORRT_PLAN!r}")
        if not isinstance(entry.get("bytes", 0), int) or isinstance(entry.get("bytes", 0), bool) or entry.get("bytes", 0) < 0:
            raise _bad(path, f"{where}.bytes", entry.get("bytes"), "a size in bytes")
        for key in ("requires", "verification", "external_data"):
            if key in entry and not isinstance(entry[key], dict):
                raise _bad(path, f"{where}.{key}", entry.get(key), "an object")
        if "external_data" in entry:
            ext = entry["external_data"]
            if ext.get("path") != external_data_name(name):
                raise _bad(path, f"{where}.external_data.path", ext.get("path"), f"{external_data_name(name)!r}")
            if not isinstance(ext.get("sha256"), str) or not _SHA256.fullmatch(ext["sha256"]):
                raise _bad(path, f"{where}.external_data.sha256", ext.get("sha256"), "64 hex digits")
    stages = data.get("stages", [])
    if not isinstance(stages, list) or not all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in stages):
        raise _bad(path, "stages", stages, "a list of {name, seconds, peak_rss_mb} objects")


def check_artifact(folder: Path, entry: dict[str, Any]) -> Path:
    """The artifact's path, after checking that it exists and its sha256 matches the manifest.

    A manifest is untrusted input: its paths must be plain file names inside `folder`.
    """
    name = entry.get("path") if isinstance(entry, dict) else None
    if not isinstance(name, str) or not name or name in (".", "..") or Path(name).name != name or "\\" in name:
        raise ArtifactError(f"{Path(folder) / MANIFEST}: artifact path {name!r} is not a file name inside the folder")
    path = Path(folder) / name
    files = [(path, entry.get("sha256"))]
    if isinstance(entry.get("external_data"), dict):  # the weights of a large ONNX file, beside it
        files.append((Path(folder) / external_data_name(name), entry["external_data"].get("sha256")))
    for file, expected in files:
        if not file.is_file():
            raise ArtifactError(f"{file}: listed in {MANIFEST} but missing")
        digest = sha256_file(file)
        if digest != expected:
            raise ArtifactError(
                f"{file}: sha256 {digest[:12]}... does not match {MANIFEST} ({str(expected)[:12]}...): "
                "the file changed after the build; rebuild it"
            )
    return path
