"""ONNX files in and out, in one place: loading, focalnet-edge metadata, ONNX Runtime sessions.

Writing (`save_onnx`, `sort_nodes`, the external-data rule) is `onnx_write`'s job; its names
are re-exported here. Models over protobuf's 2 GB limit keep their weights in ONE external
data file beside the graph (`model.onnx` + `model.onnx.data`, `save_onnx`); such a model is handled as a file
wherever its weights are not needed in Python: ONNX Runtime and TensorRT's parser read the data
file from the graph's folder, and graph-only reads (`load_onnx(..., external_data=False)`) never
touch it.

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
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from .contract import InputContract
from .onnx_write import (  # noqa: F401 - writing lives in onnx_write; this module is the one door to ONNX files
    EXTERNAL_DATA_BYTES,
    EXTERNAL_DATA_ENV,
    data_path,
    has_external_data,
    save_onnx,
    sort_nodes,
    wants_external_data,
    weight_bytes,
)
from ..errors import ArtifactError

if TYPE_CHECKING:  # pragma: no cover
    import onnxruntime

META_PREFIX = "focalnet_edge."
CPU = ["CPUExecutionProvider"]


def load_onnx(path: str | os.PathLike, external_data: bool = True) -> onnx.ModelProto:
    """`onnx.load`, with a one-line `ArtifactError` naming the file when it is missing or unreadable.

    `external_data` False reads the graph only (weights in a data file stay there): enough for
    metadata, node lists and shape inference, and cheap for a model of any size.
    """
    if not Path(path).is_file():
        raise ArtifactError(f"{path}: no such ONNX file")
    try:
        return onnx.load(str(path), load_external_data=external_data)
    except Exception as e:  # protobuf DecodeError and friends; onnx's ValidationError for a missing data file
        missing = _missing_external_data(path) if external_data else []
        if missing:
            raise ArtifactError(f"{path}: its external data {', '.join(missing)} is missing (it must sit beside the .onnx file)") from None
        raise ArtifactError(f"{path}: not a readable ONNX file ({e.__class__.__name__})") from None


def _missing_external_data(path: str | os.PathLike) -> list[str]:
    """The external data files the graph of `path` names that are not beside it."""
    try:
        graph = onnx.load(str(path), load_external_data=False)
    except Exception:
        return []
    names = {e.value for t in graph.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
             for e in t.external_data if e.key == "location"}
    return sorted(n for n in names if not (Path(path).parent / n).is_file())


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
    from .labels import REBUILD_FIX, check_labels

    check_labels(labels, f"{path} (focalnet_edge.labels)", REBUILD_FIX)
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
    priority_order: bool = False,
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
        priority_order: ONNX Runtime's priority-based node order, which runs a side branch
            (e.g. a probe's reduction of a tensor) as soon as its input exists, so each tensor
            is freed early; the default order kept every probed tensor of focalnet-tiny alive
            (5.6 GB instead of 0.8 GB at 16 images).
    """
    from ..extras import require_onnxruntime

    ort = require_onnxruntime(str(model) if isinstance(model, (str, os.PathLike)) else "running an ONNX graph")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if not spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        so.intra_op_num_threads = threads
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if priority_order:
        so.execution_order = ort.ExecutionOrder.PRIORITY_BASED
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


def static_batch(session_or_model: Any) -> int | None:
    """The fixed batch of the first input of an ONNX Runtime session or a ModelProto (None: dynamic)."""
    if isinstance(session_or_model, onnx.ModelProto):
        dims = session_or_model.graph.input[0].type.tensor_type.shape.dim
        first = dims[0].dim_value if len(dims) and dims[0].HasField("dim_value") else None
    else:
        first = session_or_model.get_inputs()[0].shape[0]
    return first if isinstance(first, int) and first > 0 else None


def input_batches(inputs: np.ndarray, batch: int, fixed: int | None = None) -> Iterator[tuple[np.ndarray, int]]:
    """`inputs` in chunks a graph takes, with how many rows of each are real: `batch` rows, or with a
    static batch `fixed` (`static_batch`) exactly that many, the last chunk padded by repeating its
    last row (a maximum over rows is unchanged by the repeats; row-wise outputs drop them)."""
    step = fixed or batch
    for i in range(0, len(inputs), step):
        chunk = inputs[i : i + step]
        rows = len(chunk)
        if fixed and rows < fixed:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - rows, axis=0)])
        yield chunk, rows


def run_rows(session: onnxruntime.InferenceSession, inputs: np.ndarray, batch: int = 32,
             feed: dict[str, np.ndarray] | None = None) -> list[np.ndarray]:
    """Every output of `session` over `inputs` (first input), `batch` rows at a time or in its static
    batch, concatenated along the batch with any padding dropped (outputs must be batch-major)."""
    name = session.get_inputs()[0].name
    parts = [[o[:rows] for o in session.run(None, {name: chunk, **(feed or {})})]
             for chunk, rows in input_batches(inputs, batch, static_batch(session))]
    return [np.concatenate(column) for column in zip(*parts)]
