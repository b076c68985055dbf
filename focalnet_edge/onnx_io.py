"""ONNX files in and out, in one place: loading, focalnet-edge metadata, ONNX Runtime sessions.

Every stage (export, calibration, runtime, verification, benchmarks) reads ONNX files, their
`focalnet_edge.*` metadata and ONNX Runtime sessions through these functions, so a missing
or unreadable file is always the same one-line `ArtifactError`, and every session gets the
same options (spinning off: several sessions in one process otherwise steal each other's
cores). Imports neither torch nor a build stage.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from .contract import InputContract
from .errors import ArtifactError

if TYPE_CHECKING:  # pragma: no cover
    import onnxruntime

META_PREFIX = "focalnet_edge."
CPU = ["CPUExecutionProvider"]


def load_onnx(path: str | os.PathLike, external_data: bool = True) -> onnx.ModelProto:
    """`onnx.load`, with a one-line `ArtifactError` naming the file when it is missing or unreadable."""
    try:
        return onnx.load(str(path), load_external_data=external_data)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: no such ONNX file") from None
    except Exception as e:  # protobuf DecodeError and friends
        raise ArtifactError(f"{path}: not a readable ONNX file ({e.__class__.__name__})") from None


def read_metadata(model: onnx.ModelProto) -> dict[str, Any]:
    """The `focalnet_edge.*` metadata_props of `model`, JSON values decoded."""
    return decode_metadata({p.key: p.value for p in model.metadata_props})


def set_metadata(model: onnx.ModelProto, facts: dict[str, Any]) -> None:
    """Write `facts` into metadata_props under the focalnet_edge. prefix (JSON for non-strings)."""
    keep = [p for p in model.metadata_props if not p.key.startswith(META_PREFIX) or p.key[len(META_PREFIX):] not in facts]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in facts.items():
        prop = model.metadata_props.add()
        prop.key = META_PREFIX + key
        prop.value = value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def read_contract(model: onnx.ModelProto, path: str | os.PathLike) -> tuple[InputContract, dict[str, Any]]:
    """The input contract and all metadata of a focalnet-edge ONNX file."""
    return contract_from_metadata(read_metadata(model), path)


def decode_metadata(props: dict[str, str]) -> dict[str, Any]:
    """The `focalnet_edge.*` entries of a key -> value map (e.g. ONNX Runtime's `custom_metadata_map`), JSON decoded."""
    out: dict[str, Any] = {}
    for key, value in props.items():
        if key.startswith(META_PREFIX):
            try:
                out[key[len(META_PREFIX):]] = json.loads(value)
            except ValueError:
                out[key[len(META_PREFIX):]] = value
    return out


def contract_from_metadata(meta: dict[str, Any], path: str | os.PathLike) -> tuple[InputContract, dict[str, Any]]:
    """The input contract of decoded focalnet-edge metadata (`read_metadata`, `decode_metadata`), checked."""
    if "input" not in meta:
        raise ArtifactError(f"{path}: not a focalnet-edge ONNX file (no focalnet_edge.input metadata); export it with focalnet-edge export")
    from .manifest import contract_problem

    problem = contract_problem(meta["input"])
    if problem:
        raise ArtifactError(f"{path}: its focalnet_edge.input metadata is not an input contract ({problem})")
    try:
        contract = InputContract.from_dict(meta["input"])
        contract.image_spec  # noqa: B018 - checks the preprocessing fields too
    except (TypeError, ValueError, AttributeError) as e:
        raise ArtifactError(f"{path}: its focalnet_edge.input metadata is not an input contract ({str(e)[:120]})") from None
    labels = meta.get("labels", {})
    if not isinstance(labels, dict) or not all(str(k).lstrip("-").isdigit() and isinstance(v, str) for k, v in labels.items()):
        raise ArtifactError(f"{path}: its focalnet_edge.labels metadata is not an object of class index -> label")
    for key, kind in (("head", str), ("precision", str), ("outputs", list)):
        if key in meta and not isinstance(meta[key], kind):
            raise ArtifactError(f"{path}: its focalnet_edge.{key} metadata is {meta[key]!r:.40}, expected a {kind.__name__}")
    return contract, meta


def ort_session(
    model: onnx.ModelProto | bytes | str | os.PathLike,
    providers: list[str] | None = None,
    threads: int | None = None,
    spinning: bool = False,
    optimize: bool = True,
    profile_prefix: str | None = None,
) -> onnxruntime.InferenceSession:
    """An ONNX Runtime session over a file, a ModelProto or serialized bytes.

    Args:
        providers: execution providers in order; default the CPU only (pass others explicitly,
            and read `session.get_providers()[0]` for the one that was taken).
        threads: intra-op threads (default: ONNX Runtime's, one per physical core).
        spinning: let idle threads spin (off: idle sessions must not steal the cores).
        optimize: ONNX Runtime's graph optimizations; off keeps every tensor of the graph as
            it is (for probes that read intermediate tensors).
        profile_prefix: write ONNX Runtime's per-node profile to files with this prefix.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if not spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        so.intra_op_num_threads = threads
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    source = str(source) if isinstance(source, (str, Path, os.PathLike)) else source
    try:
        return ort.InferenceSession(source, so, providers=providers or CPU)
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
        what = source if isinstance(source, str) else "the ONNX graph"
        raise ArtifactError(f"{what}: ONNX Runtime cannot load it ({str(e).splitlines()[0][:200]})") from None
