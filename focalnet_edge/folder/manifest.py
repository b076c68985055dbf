"""`manifest.json`: what an output folder holds, from what, how, and how well it matched.

Artifacts are listed with their sha256, so `runtime.load` refuses a file changed after the build.
A manifest is untrusted input (folders are copied between machines and edited by hand):
`read_manifest` parses it into its types (`Manifest`, `Artifact`, `ModelSource`; labels decoded to
`dict[int, str]` once), checking every field the tool reads on the way, so a malformed one is one
`ArtifactError` naming the field, never a `KeyError` or `TypeError` later; `write_manifest`
writes strict JSON (a non-finite number becomes null).
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import platform
from pathlib import Path
from dataclasses import dataclass
from typing import Any

from .. import __version__
from .artifacts import MANIFEST, ONNX, TENSORRT_PLAN, external_data_name
from ..errors import ArtifactError, FocalNetEdgeError
from .io import atomic_write_text, dumps_json, sha256_file
from .fields import Fields, bad, contract_problem, is_int, is_object, is_sha256, is_str, is_str_list
from .labels import REBUILD_FIX, decode_labels

TOOL = "focalnet-edge"
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


def read_manifest(folder: Path) -> Manifest:
    """The manifest of an output folder, parsed into its types (`ArtifactError` naming the first field the tool cannot use)."""
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{folder}: no {MANIFEST} (expected a focalnet-edge output folder)") from None
    except IsADirectoryError:
        raise ArtifactError(f"{path}: is a folder, expected the manifest file") from None
    except NotADirectoryError:
        raise ArtifactError(f"{folder}: is a file, expected a focalnet-edge output folder") from None
    except OSError as e:
        raise ArtifactError(f"{path}: cannot be read ({e.strerror or e})") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path}: not a readable manifest ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("artifacts"), dict):
        raise ArtifactError(f"{path}: not a focalnet-edge manifest (no artifacts)")
    return Manifest(data, path)


@dataclass(frozen=True)
class ModelSource:
    """What the folder was built from."""

    source: str  #: the --model given to the build
    weights_sha256: dict[str, str]  #: weight file name -> sha256: what identifies the model
    config: Any  #: the checkpoint's config (transformers' config.json fields)

    @property
    def num_labels(self) -> Any:
        """The config's `num_labels` (None where it has none)."""
        return self.config.get("num_labels") if isinstance(self.config, dict) else None

    @classmethod
    def parse(cls, data: Any, path: Path) -> ModelSource:
        if not isinstance(data, dict):
            raise bad(path, "model", data, "an object")
        f = Fields(data, path, "model.")
        return cls(
            source=f.get("source", is_str, "a string"),
            weights_sha256=f.get("weights_sha256", lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()),
                                 "an object of file name -> sha256", default={}),
            config=data.get("config"),
        )


@dataclass(frozen=True)
class ExternalData:
    """The weights of a large ONNX file, written beside it."""

    path: str
    sha256: str
    bytes: Any = None


@dataclass(frozen=True)
class Artifact:
    """One artifact of the folder: its file, its checksum, its precision and format, what it needs to run."""

    path: str  #: the file name, inside the folder
    sha256: str
    precision: str  #: a row of the precision table (`artifacts.PRECISIONS`)
    format: str  #: `ONNX` or `TENSORRT_PLAN`
    bytes: int
    requires: dict[str, Any]  #: what running it needs (TensorRT version, GPU, DLA core...)
    verification: dict[str, Any] | None  #: the figures of its last verification
    external_data: ExternalData | None
    input: dict[str, Any] | None  #: an engine's own input contract, where it differs from the folder's
    entry: dict[str, Any]  #: the object as written, with the facts of the stage that made it
    built_from: str | None = None  #: an engine's ONNX file (its I/O is read from there)
    engine: dict[str, Any] | None = None  #: an engine's build facts (its profile, DLA core, version compatibility)
    #: a DeepStream graph's (or its engine's) facts: its source, what was added, its head and outputs (None: not one)
    deepstream: dict[str, Any] | None = None

    @property
    def is_engine(self) -> bool:
        return self.format == TENSORRT_PLAN

    @property
    def verified(self) -> bool | None:
        """Whether its verification passed (None: never verified)."""
        return (self.verification or {}).get("passed")

    @property
    def quantization(self) -> dict[str, Any] | None:
        """The quantization facts (calibration, gate, placement) of an INT8/FP8 graph."""
        facts = self.entry.get("int8")
        return facts if isinstance(facts, dict) else None

    @classmethod
    def parse(cls, name: str, entry: Any, path: Path) -> Artifact:
        where = f"artifacts[{name!r}]"
        if not isinstance(entry, dict):
            raise bad(path, where, entry, "an object")
        f = Fields(entry, path, where + ".")
        f.get("path", lambda v: v == name, f"the file name {name!r} (its key)")
        sha = f.get("sha256", is_sha256, "64 hex digits")
        precision = f.get("precision", is_str, "a string")
        fmt = f.get("format", lambda v: v in (ONNX, TENSORRT_PLAN), f"{ONNX!r} or {TENSORRT_PLAN!r}")
        size = f.get("bytes", lambda v: is_int(v, 0), "a size in bytes", default=0)
        requires, verification, ext = (f.optional(key, is_object, "an object") for key in ("requires", "verification", "external_data"))
        external = None
        if ext is not None:
            e = Fields(ext, path, where + ".external_data.")
            external = ExternalData(e.get("path", lambda v: v == external_data_name(name), f"{external_data_name(name)!r}"),
                                    e.get("sha256", is_sha256, "64 hex digits"), ext.get("bytes"))
        contract = entry.get("input")
        return cls(name, sha, precision, fmt, size, requires or {}, verification, external,
                   contract if isinstance(contract, dict) else None, entry,
                   f.optional("built_from", is_str, "a file name"), f.optional("engine", is_object, "an object"),
                   _deepstream(f))

    @classmethod
    def unchecked(cls, name: str, entry: dict[str, Any]) -> Artifact:
        """The facts of an entry of a manifest still being written (not read back and checked): for choosing only."""
        requires, verification, deepstream = entry.get("requires"), entry.get("verification"), entry.get("deepstream")
        return cls(str(entry.get("path", name)), str(entry.get("sha256", "")), str(entry.get("precision", "")),
                   str(entry.get("format", "")), 0, requires if isinstance(requires, dict) else {},
                   verification if isinstance(verification, dict) else None, None, None, entry,
                   deepstream=deepstream if isinstance(deepstream, dict) else None)


def _deepstream(f: Fields) -> dict[str, Any] | None:
    """The `deepstream` facts of an entry: the head and outputs its runner reports are read from them."""
    facts = f.optional("deepstream", is_object, "an object")
    if facts is not None:
        sub = Fields(facts, f.path, f.where + "deepstream.")
        sub.get("head", is_str, "a string")
        sub.get("outputs", lambda v: is_str_list(v) and bool(v), "a list of output names")
        sub.get("source", is_str, "a file name")
    return facts


def _labels(data: dict[str, Any], path: Path) -> dict[int, str]:
    labels = data.get("labels", {})
    if not isinstance(labels, dict) or not all(isinstance(k, str) and k.lstrip("-").isdigit() and isinstance(v, str)
                                               for k, v in labels.items()):
        raise bad(path, "labels", labels, "an object of class index -> label")
    return decode_labels(labels, str(path), REBUILD_FIX)


def _contract(data: Any, path: Path):
    from .contract import InputContract

    if not isinstance(data, dict):
        raise bad(path, "input", data, "an input contract object")
    problem = contract_problem(data)
    if problem:
        raise ArtifactError(f"{path}: input is not an input contract ({problem}); the manifest is damaged, rebuild the folder")
    try:
        contract = InputContract.from_dict(data)
        contract.image_spec  # noqa: B018 - builds and checks the preprocessing too
    except (TypeError, ValueError, AttributeError, FocalNetEdgeError) as e:
        raise ArtifactError(f"{path}: input is not an input contract ({str(e)[:120]}); the manifest is damaged, rebuild the folder") from None
    return contract


class Manifest:
    """A folder's manifest.json, parsed and checked once (`read_manifest`): readers use its typed attributes.

    A stage that extends a folder takes `to_json()` (the document as read), adds to it and writes it back with
    `write_manifest`, so the file keeps every field it had, byte for byte. It is not the JSON itself: nothing
    reads an unchecked field of it.
    """

    def __init__(self, data: dict[str, Any], path: Path):
        self._document = data
        f = Fields(data, path)
        self.path = path  #: the manifest.json it was read from
        self.model = ModelSource.parse(data.get("model"), path)
        self.head: str = f.get("head", is_str, "a string", default="logits")
        self.outputs: list[str] = f.get("outputs", is_str_list, "a list of output names", default=[])
        self.labels: dict[int, str] = _labels(data, path)  #: class index -> label, decoded and checked once
        self.contract = _contract(data.get("input"), path)  #: the folder's `InputContract`
        self.input: dict[str, Any] = data["input"]  #: the contract as written
        self.references: dict[str, Any] | None = f.optional("references", is_object, "an object")
        self.versions: dict[str, Any] | None = f.optional("versions", is_object, "an object")
        self.artifacts: dict[str, Artifact] = {name: Artifact.parse(name, entry, path) for name, entry in data["artifacts"].items()}
        self.stages: list[dict[str, Any]] = f.get(
            "stages", lambda v: isinstance(v, list) and all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in v),
            "a list of {name, seconds, peak_rss_mb} objects", default=[])

    def to_json(self) -> dict[str, Any]:
        """The JSON document as read, a copy a stage may extend and write back (`write_manifest`): every field kept."""
        return copy.deepcopy(self._document)

    def ordered_labels(self, classes: int) -> list[str]:
        """The labels of classes 0..classes-1 in order (a class without a label is named by its index)."""
        return [self.labels.get(i, str(i)) for i in range(classes)]


def check_artifact(folder: Path, artifact: Artifact | dict[str, Any]) -> Path:
    """The artifact's path, after checking that it exists and its sha256 matches the manifest.

    A manifest is untrusted input: its paths must be plain file names inside `folder`.
    """
    entry = artifact.entry if isinstance(artifact, Artifact) else artifact
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
