"""ONNX files in and out, in one place: loading, focalnet-edge metadata, ONNX Runtime sessions.

Models over protobuf's 2 GB limit keep their weights in ONE external data file beside the
graph (`model.onnx` + `model.onnx.data`, `save_onnx`); such a model is handled as a file
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
from google.protobuf.message import Message

from .contract import InputContract
from ..errors import ArtifactError

if TYPE_CHECKING:  # pragma: no cover
    import onnxruntime

META_PREFIX = "focalnet_edge."
CPU = ["CPUExecutionProvider"]

#: bytes of weights above which `save_onnx` writes them as external data (protobuf refuses messages over 2 GiB)
EXTERNAL_DATA_BYTES = 1_800_000_000
#: environment setting: `always` writes every ONNX artifact with external data, `never` none, else by size
EXTERNAL_DATA_ENV = "FOCALNET_EDGE_EXTERNAL_DATA"
_EXTERNAL_MIN_TENSOR = 1024  #: smaller tensors stay in the graph (shapes, axes, scales: what graph-only readers need)
_ALIGN = 4096  #: tensor offsets in the data file (lets ONNX Runtime map them)


def data_path(path: str | os.PathLike) -> Path:
    """Where the external data of the ONNX file `path` lives (`model.onnx` -> `model.onnx.data`)."""
    from .artifacts import external_data_name

    path = Path(path)
    return path.with_name(external_data_name(path.name))


def weight_bytes(model: onnx.ModelProto) -> int:
    """Bytes of the initializers of `model` (from their shapes: in memory or in external data alike)."""
    total = 0
    for t in model.graph.initializer:
        try:
            size = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        except (KeyError, TypeError, ValueError):
            size = 1
        count = 1
        for d in t.dims:
            count *= d
        total += count * size
    return total


def has_external_data(model: onnx.ModelProto) -> bool:
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def wants_external_data(model: onnx.ModelProto) -> bool:
    """Whether `save_onnx` writes `model` with external data: by `FOCALNET_EDGE_EXTERNAL_DATA`, else by size."""
    setting = os.environ.get(EXTERNAL_DATA_ENV, "auto").strip().lower()
    if setting in ("always", "1", "yes", "true"):
        return True
    if setting in ("never", "0", "no", "false"):
        return False
    return weight_bytes(model) > EXTERNAL_DATA_BYTES


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


_GRAPH_FIELD = b"\x3a"  #: ModelProto.graph (field 7, length-delimited)
_INITIALIZER_FIELD = b"\x2a"  #: GraphProto.initializer (field 5, length-delimited)


def _write_streamed(model: onnx.ModelProto, f, base_dir: Path | None) -> None:
    """Write `model` as one protobuf file, its initializers serialized one at a time.

    `onnx.save` serializes the whole model into one buffer and copies it (three times the
    weights in memory at once, measured). Here the model without its initializers is written
    first, then each initializer as a further occurrence of the `graph` field holding just that
    tensor: protobuf parsers merge repeated occurrences of a message field (repeated fields
    concatenate), so the file reads back as the same model, initializers in order.
    """
    shell = onnx.ModelProto()
    for fd, value in model.ListFields():
        if fd.name != "graph":
            _copy_field(shell, fd.name, value)
    for fd, value in model.graph.ListFields():
        if fd.name != "initializer":
            _copy_field(shell.graph, fd.name, value)
    f.write(shell.SerializeToString())
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:  # inlined here, one tensor at a time
            t = _loaded(t, base_dir)
        tensor = t.SerializeToString()
        inner = _INITIALIZER_FIELD + _varint(len(tensor))
        f.write(_GRAPH_FIELD + _varint(len(inner) + len(tensor)) + inner)
        f.write(tensor)


def _loaded(t: onnx.TensorProto, base_dir: Path | None) -> onnx.TensorProto:
    """A copy of the external tensor `t` with its data read from `base_dir` (`t` itself is left as it is)."""
    from onnx.external_data_helper import load_external_data_for_tensor

    if base_dir is None:
        raise ArtifactError(f"tensor {t.name!r} refers to external data, and no folder to read it from was given")
    copy = onnx.TensorProto()
    copy.CopyFrom(t)
    load_external_data_for_tensor(copy, str(base_dir))
    copy.data_location = onnx.TensorProto.DEFAULT
    del copy.external_data[:]
    return copy


def _settle(model: onnx.ModelProto) -> None:
    """Tensors whose data is in memory are stored in the graph (tools leave some marked external after loading them)."""
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL and t.HasField("raw_data"):
            t.data_location = onnx.TensorProto.DEFAULT
            del t.external_data[:]


def _copy_external(t: onnx.TensorProto, base_dir: Path | None, f) -> None:
    """Append the external data of `t` (in `base_dir`) to the open file `f`, in chunks."""
    if base_dir is None:
        raise ArtifactError(f"tensor {t.name!r} refers to external data, and no folder to read it from was given")
    info = {e.key: e.value for e in t.external_data}
    offset = int(info.get("offset") or 0)
    length = int(info["length"]) if info.get("length") else None
    source = Path(base_dir) / info.get("location", "")
    if not info.get("location") or Path(info["location"]).is_absolute() or ".." in Path(info["location"]).parts:
        raise ArtifactError(f"tensor {t.name!r}: external data location {info.get('location')!r} is not a file name beside the graph")
    with open(source, "rb") as src:
        src.seek(offset)
        remaining = length if length is not None else os.fstat(src.fileno()).st_size - offset
        while remaining > 0:
            block = src.read(min(remaining, 1 << 26))
            if not block:
                raise ArtifactError(f"{source}: shorter than tensor {t.name!r} needs")
            f.write(block)
            remaining -= len(block)


def _copy_field(target, name: str, value) -> None:
    """Set field `name` of the message `target` to `value`, as `ListFields` returned it.

    Decided by the value's type, not by the field descriptor's `label`: protobuf 7 removed
    `FieldDescriptor.label`, and the types (a message, a scalar, else a repeated container)
    are the same on protobuf 4 to 7.
    """
    if isinstance(value, Message):
        getattr(target, name).CopyFrom(value)
    elif isinstance(value, (bool, int, float, str, bytes)):
        setattr(target, name, value)
    else:  # repeated scalars or messages
        getattr(target, name).extend(value)


def _subgraphs(node: onnx.NodeProto):
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            yield a.g
        elif a.type == onnx.AttributeProto.GRAPHS:
            yield from a.graphs


def _names_read(node: onnx.NodeProto) -> set[str]:
    """The tensors `node` reads: its inputs and whatever its subgraphs (If, Loop, Scan) take from outer scopes."""
    names = set(node.input)
    for g in _subgraphs(node):
        for inner in g.node:
            names |= _names_read(inner)
    return names


def sort_nodes(graph: onnx.GraphProto) -> int:
    """Put the nodes of `graph` (and of its subgraphs) in topological order, in place; returns how many moved.

    ONNX requires it (onnx.checker, strict shape inference, Polygraphy and TensorRT's parser read
    the nodes in file order), while tools that edit graphs append what they add at the end
    (float16 conversion its input Casts, the quantizers their Q/DQ pairs). Kahn's algorithm,
    taking among the ready nodes the one that came first, so a sorted graph keeps its order and
    an unsorted one moves as little as it must. Nodes that cannot be ordered (a cycle, or an
    input nothing produces) keep their order at the end, for the checker to name.
    """
    import heapq

    for node in graph.node:
        for g in _subgraphs(node):
            sort_nodes(g)
    nodes = list(graph.node)
    producer = {out: k for k, n in enumerate(nodes) for out in n.output if out}
    users: list[list[int]] = [[] for _ in nodes]
    waiting = [0] * len(nodes)
    for k, n in enumerate(nodes):
        deps = {producer[name] for name in _names_read(n) if name in producer} - {k}
        waiting[k] = len(deps)
        for d in deps:
            users[d].append(k)
    ready = [k for k, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        k = heapq.heappop(ready)
        order.append(k)
        for u in users[k]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    placed = set(order)
    order += [k for k in range(len(nodes)) if k not in placed]
    moved = sum(k != i for i, k in enumerate(order))
    if moved:
        copies = []
        for k in order:
            c = onnx.NodeProto()
            c.CopyFrom(nodes[k])
            copies.append(c)
        del graph.node[:]
        graph.node.extend(copies)
    return moved


def save_onnx(model: onnx.ModelProto, path: str | os.PathLike, external: bool | None = None,
              base_dir: str | os.PathLike | None = None) -> Path | None:
    """Write `model` to `path` atomically; with its weights in `<path>.data` when `external`.

    Every graph leaves here with its nodes in topological order (`sort_nodes`), whichever tool
    edited it, so every ONNX file focalnet-edge writes is valid for consumers stricter than
    ONNX Runtime.

    `external` None: when `wants_external_data`. Both files are written to temporary names and
    renamed when complete, the data file first, so no half-written file is ever at a final
    path (a kill between the two renames leaves a pair that the manifest's hashes refuse).
    Writing with external data moves the tensors out of `model` (it then refers to the file),
    one tensor at a time, so no second copy of the weights is made. A stale data file of a
    previous single-file write is removed. Returns the data file's path, or None.

    `base_dir`: the folder that tensors of `model` still stored as external data refer to; their
    data is copied from there (one tensor at a time), so a graph loaded without its weights can
    be written out whole.
    """
    from .io import atomic_path

    path = Path(path)
    data = data_path(path)
    if external is None:
        external = wants_external_data(model)
    sort_nodes(model.graph)
    _settle(model)
    base = Path(base_dir) if base_dir is not None else None
    if not external:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            _write_streamed(model, f, base)
        data.unlink(missing_ok=True)
        return None
    with atomic_path(path) as tmp, atomic_path(data) as tmp_data:
        with open(tmp_data, "wb") as f:
            for t in model.graph.initializer:
                offset = -(-f.tell() // _ALIGN) * _ALIGN
                if t.data_location == onnx.TensorProto.EXTERNAL:  # copied over from `base_dir`
                    f.seek(offset)
                    _copy_external(t, base, f)
                else:
                    if not t.HasField("raw_data"):
                        if t.ByteSize() < _EXTERNAL_MIN_TENSOR:
                            continue
                        t.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(t), t.name))
                    if len(t.raw_data) < _EXTERNAL_MIN_TENSOR:
                        continue
                    f.seek(offset)
                    f.write(t.raw_data)
                    t.ClearField("raw_data")
                t.data_location = onnx.TensorProto.EXTERNAL
                del t.external_data[:]
                for key, value in (("location", data.name), ("offset", str(offset)), ("length", str(f.tell() - offset))):
                    entry = t.external_data.add()
                    entry.key, entry.value = key, value
        onnx.save(model, str(tmp))
    return data


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
    import onnxruntime as ort

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
