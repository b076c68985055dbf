"""Writing ONNX files: nodes sorted, written atomically, weights of large models beside the graph.

Models over protobuf's 2 GB limit keep their weights in ONE external data file beside the
graph (`model.onnx` + `model.onnx.data`, tensor offsets aligned to 4096 bytes so ONNX Runtime
can map them); smaller ones are one file. The data file is written with onnx's external-data
helpers (`onnx.external_data_helper`), the graph in parts serialized by protobuf itself
(`_write_inline`): no wire format is written by hand here. `onnx_io` re-exports these names: it is the one door to ONNX files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import onnx
from onnx import external_data_helper as xdata

from ..errors import ArtifactError

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


def _settle(model: onnx.ModelProto) -> None:
    """Tensors whose data is in memory are stored in the graph (tools leave some marked external after loading them)."""
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL and t.HasField("raw_data"):
            t.data_location = onnx.TensorProto.DEFAULT
            del t.external_data[:]


def _load(t: onnx.TensorProto, base_dir: Path | None) -> None:
    """Read the data of the external tensor `t` from `base_dir` into it (onnx checks the location and bounds)."""
    if base_dir is None:
        raise ArtifactError(f"tensor {t.name!r} refers to external data, and no folder to read it from was given")
    try:
        xdata.load_external_data_for_tensor(t, str(base_dir))
    except (OSError, ValueError, onnx.checker.ValidationError) as e:
        raise ArtifactError(f"tensor {t.name!r}: its external data in {base_dir} cannot be read ({str(e).splitlines()[0][:160]})") from None


class ExternalData:
    """One external data file being written in `folder`: each tensor `add`ed has its bytes moved out to it.

    The bytes go through onnx's `save_external_data` (which pads to the offset it is given and
    records location, offset and length on the tensor); a tensor stored in another folder
    (`base_dir`) is read in first, one tensor at a time, so no second copy of the weights is
    ever in memory.
    """

    def __init__(self, folder: Path, name: str):
        self.folder, self.name, self.size = Path(folder), name, 0
        (self.folder / name).touch()

    def add(self, t: onnx.TensorProto, base_dir: Path | None = None) -> None:
        if t.data_location == onnx.TensorProto.EXTERNAL and not t.HasField("raw_data"):
            _load(t, base_dir)
        elif not t.HasField("raw_data"):
            if t.ByteSize() < _EXTERNAL_MIN_TENSOR:
                return
            t.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(t), t.name))
        if len(t.raw_data) < _EXTERNAL_MIN_TENSOR:
            t.data_location = onnx.TensorProto.DEFAULT
            del t.external_data[:]
            return
        offset = -(-self.size // _ALIGN) * _ALIGN
        xdata.set_external_data(t, self.name, offset=offset)
        xdata.save_external_data(t, str(self.folder))
        self.size = offset + len(t.raw_data)
        t.ClearField("raw_data")

    def add_all(self, tensors: Iterable[onnx.TensorProto], base_dir: Path | None = None) -> None:
        for t in tensors:
            self.add(t, base_dir)


def _write_inline(model: onnx.ModelProto, f, base_dir: Path | None = None) -> None:
    """Write `model` to the open file `f` as one protobuf file, in parts, each serialized by protobuf itself.

    Serializing a whole model (`onnx.save_model`) holds its weights about four times over at
    once (upb's growing buffer, then the bytes object): measured 1.33 GB on top of
    focalnet-base's 336 MB. Protobuf's encoding lets a message be written in parts: parsers
    merge a message field that occurs more than once, and repeated fields concatenate
    (protobuf's encoding guide, "last one wins" and merging). So each field of the model but
    its graph, each field of the graph but its initializers, then each initializer goes out as
    a ModelProto holding just that part; the file reads back as the same model, initializers
    in order, with one tensor in memory at a time. Given `base_dir`, a tensor in external data
    there is read in for its part (`model` keeps referring to it); else it is written as the
    reference it is.
    """
    for fd, value in model.ListFields():
        if fd.name != "graph":
            f.write(onnx.ModelProto(**{fd.name: value}).SerializeToString())
    for fd, value in model.graph.ListFields():
        if fd.name != "initializer":
            f.write(onnx.ModelProto(graph=onnx.GraphProto(**{fd.name: value})).SerializeToString())
    for t in model.graph.initializer:
        if base_dir is not None and t.data_location == onnx.TensorProto.EXTERNAL:
            copy = onnx.TensorProto()
            copy.CopyFrom(t)
            _load(copy, base_dir)
            t = copy
        f.write(onnx.ModelProto(graph=onnx.GraphProto(initializer=[t])).SerializeToString())


def _publish(tmp: Path, final: Path) -> None:
    from .io import umask

    os.chmod(tmp, 0o666 & ~umask())
    os.replace(tmp, final)


def save_onnx(model: onnx.ModelProto, path: str | os.PathLike, external: bool | None = None,
              base_dir: str | os.PathLike | None = None) -> Path | None:
    """Write `model` to `path` atomically; with its weights in `<path>.data` when `external`.

    Every graph leaves here with its nodes in topological order (`sort_nodes`), whichever tool
    edited it, so every ONNX file focalnet-edge writes is valid for consumers stricter than
    ONNX Runtime.

    `external` None: when `wants_external_data`. Both files are written in a temporary folder
    beside `path` and renamed when complete, the data file first, so no half-written file is
    ever at a final path (a kill between the two renames leaves a pair that the manifest's
    hashes refuse). Writing with external data moves the tensors out of `model` (it then
    refers to the file), one tensor at a time, so no second copy of the weights is made. A
    stale data file of a previous single-file write is removed. Returns the data file's path,
    or None.

    `base_dir`: the folder that tensors of `model` still stored as external data refer to;
    their data is read from there (with external data one tensor at a time), so a graph
    loaded without its weights can be written out whole.
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
        if base is None and has_external_data(model):
            name = next(t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL)
            raise ArtifactError(f"tensor {name!r} refers to external data, and no folder to read it from was given")
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            _write_inline(model, f, base)
        data.unlink(missing_ok=True)
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{path.name}.save-", suffix=".partial", dir=path.parent))
    except OSError as e:
        raise ArtifactError(f"{path.parent}: cannot write there ({e.strerror or e})") from None
    try:
        ExternalData(work, data.name).add_all(model.graph.initializer, base)
        with open(work / path.name, "wb") as f:
            _write_inline(model, f)
        _publish(work / data.name, data)
        _publish(work / path.name, path)
    except OSError as e:
        raise ArtifactError(f"{path}: could not be written ({e.strerror or e})") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return data
