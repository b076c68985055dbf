"""A Triton Inference Server model repository from an output folder.

`deploy(folder, TritonOptions(repo=repo))` writes

    repo/<model>/config.pbtxt
    repo/<model>/labels.txt              (classification heads: Triton's classification extension)
    repo/<model>/<version>/model.plan    (a TensorRT engine: platform tensorrt_plan)
                        or model.onnx    (an ONNX file: platform onnxruntime_onnx)

Names, data types and dims come from the artifact's own graph (an engine's from the ONNX file
it was built from, which fixes its I/O types: the engines are strongly typed), so a fused uint8
frame input is declared as what it is. Dims are written without the batch axis when the graph
has a dynamic batch (`max_batch_size` = the contract's maximum, which bounds an engine's
profile); a static-batch graph gets `max_batch_size: 0` and its full shape.

The model folder is written into a temporary folder next to it and renamed into place
(`folder.io.replacing_folder`), so a
repository that Triton polls never sees half a model. The artifact's sha256 is checked
against the manifest before it is copied.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..folder import artifacts
from ..folder.contract import InputContract
from ..folder.io import replacing_folder
from ..errors import ArtifactError, ConfigError
from ..folder.manifest import Artifact, Manifest, check_artifact, read_manifest
from ..runtime.choose import choose_artifact

#: numpy dtype name -> Triton's DataType enum name (model_config.proto)
TRITON_TYPES = {
    "float32": "TYPE_FP32", "float16": "TYPE_FP16", "float64": "TYPE_FP64", "uint8": "TYPE_UINT8", "int8": "TYPE_INT8",
    "int32": "TYPE_INT32", "int64": "TYPE_INT64", "bool": "TYPE_BOOL",
}
LABELS_FILE = "labels.txt"
#: what Triton's TensorRT backend needs to load a version-compatible plan (it refuses the plan's lean runtime otherwise)
VERSION_COMPATIBLE_FLAG = "--backend-config=tensorrt,version-compatible=true"
VERSION_COMPATIBLE_NOTE = f"a version-compatible TensorRT plan: start tritonserver with {VERSION_COMPATIBLE_FLAG}"
KINDS = ("gpu", "cpu")


@dataclass
class IOTensor:
    name: str
    dtype: str  #: numpy name
    shape: list[int]  #: -1 for a dynamic axis, the batch axis included


@dataclass
class TritonOptions:
    """What `focalnet-edge deploy --to triton` may set."""

    repo: str | os.PathLike | None = None  #: the model repository to write <model>/ into (required)
    name: str | None = None  #: model name (default: from the model source)
    artifact: str | None = None  #: file name or precision (default: the best for `kind`)
    instances: int = 1  #: instance_group count
    kind: str | None = None  #: gpu | cpu (default gpu; engines need gpu)
    max_queue_delay_us: int = 100  #: dynamic batcher's wait for a fuller batch
    version: int = 1
    force: bool = False  #: replace an existing model folder


def graph_io(onnx_path: Path) -> tuple[list[IOTensor], list[IOTensor]]:
    """Inputs and outputs of an ONNX graph, read with onnx (initializers excluded)."""
    from onnx import helper

    from ..folder.onnx_io import load_onnx

    model = load_onnx(onnx_path, external_data=False)
    inits = {i.name for i in model.graph.initializer}

    def spec(v) -> IOTensor:
        t = v.type.tensor_type
        dtype = helper.tensor_dtype_to_np_dtype(t.elem_type).name
        return IOTensor(v.name, dtype, [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim])

    return [spec(v) for v in model.graph.input if v.name not in inits], [spec(v) for v in model.graph.output]


def why_not_servable(kind: str):
    """What a Triton instance of `kind` cannot serve: engines on a CPU instance."""
    def runs(artifact: Artifact) -> str | None:
        return "a TensorRT engine, which Triton serves on a GPU instance only" if kind == "cpu" and artifacts.is_engine(artifact) else None
    return runs


def choose(manifest: Manifest, artifact: str | None, kind: str) -> Artifact:
    """The artifact to deploy: `artifact` (file name or precision), else the best for `kind`
    (`runtime.choose_artifact`: the table's rank as on a GPU, or without one for `kind="cpu"`,
    where engines are left out; verified artifacts first)."""
    return choose_artifact(manifest, artifact, runs=why_not_servable(kind), gpu=kind == "gpu",
                           where=f"a Triton {kind} instance", quiet=True)


def default_name(manifest: Manifest) -> str:
    """A model name from the source: 'microsoft/focalnet-tiny' -> 'focalnet-tiny'."""
    source = manifest.model.source.rstrip("/\\")
    base = re.split(r"[/\\]", source)[-1]
    base = re.sub(r"\.(pth|pt|bin|safetensors)$", "", base)
    return re.sub(r"[^A-Za-z0-9_.-]", "_", base) or "model"


def check_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise ConfigError(f"model name {name!r} not accepted: expected letters, digits, '_', '-' or '.' (it becomes a folder name)")
    return name


def preferred_batch_sizes(contract: InputContract) -> list[int]:
    """The engine profile's OPT and MAX (what the dynamic batcher should aim for), without 1."""
    lo, opt, hi = contract.batch
    return sorted({opt, hi} - {1})


def _dims(values: list[int]) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]"


def _labels_text(manifest: Manifest, classes: int) -> str:
    """labels.txt: line n is the label of class n (the manifest's labels, checked when it was read)."""
    return "".join(f"{label}\n" for label in manifest.ordered_labels(classes))


def config_text(name: str, entry: Artifact, manifest: Manifest, inputs: list[IOTensor], outputs: list[IOTensor],  # noqa: C901 - one config.pbtxt: a branch per Triton field the artifact's kind and options decide
                options: TritonOptions, kind: str) -> tuple[str, str | None]:
    """config.pbtxt for the artifact, and the labels file's text (None without a classification head).

    An engine's batch limits are its optimization profile's (`entry.engine["profile"]`), not the
    manifest's: a DLA engine or an adopted plan may take fewer. A version-compatible plan gets a
    comment naming the server flag it needs (`VERSION_COMPATIBLE_FLAG`).
    """
    contract = manifest.contract
    engine = artifacts.is_engine(entry)
    profile = (entry.engine or {}).get("profile", {}).get(contract.name) if engine else None
    if profile:
        from ..runtime.tensorrt import contract_for_profile

        contract = contract_for_profile(contract, profile)
    batched = contract.dynamic_batch
    if batched and contract.batch[0] > 1:
        raise ConfigError(
            f"batch range {':'.join(map(str, contract.batch))} starts above 1, but Triton's batcher sends batches "
            "from 1 up; rebuild with --batch 1:OPT:MAX"
        )
    max_batch = contract.max_batch if batched else 0

    def shape(t: IOTensor) -> list[int]:
        if not batched:
            return [d if d > 0 else contract.batch[1] for d in t.shape[:1]] + t.shape[1:]
        return t.shape[1:]

    def dtype(t: IOTensor) -> str:
        if t.dtype not in TRITON_TYPES:
            raise ArtifactError(f"{entry.path}: tensor {t.name!r} has type {t.dtype}, which Triton's config has no name for here")
        return TRITON_TYPES[t.dtype]

    lines = [f"# {VERSION_COMPATIBLE_NOTE}"] if engine and entry.requires.get("version_compatible") else []
    lines += [
        f'name: "{name}"',
        f'platform: "{"tensorrt_plan" if engine else "onnxruntime_onnx"}"',
        f"max_batch_size: {max_batch}",
        "version_policy: { latest: { num_versions: 1 } }",
    ]
    for t in inputs:
        fmt = ""
        if t.name == contract.name and len(shape(t)) == 3 and not contract.dynamic_size and contract.frame_size != "any":
            fmt = f"\n    format: FORMAT_{contract.layout}"
        lines.append(f'input [\n  {{\n    name: "{t.name}"\n    data_type: {dtype(t)}{fmt}\n    dims: {_dims(shape(t))}\n  }}\n]')
    classification = manifest.head in ("logits", "probs")
    labels = None
    for i, t in enumerate(outputs):
        label = ""
        if classification and i == 0 and len(t.shape) == 2 and t.shape[1] > 0:
            labels = _labels_text(manifest, t.shape[1])
            label = f'\n    label_filename: "{LABELS_FILE}"'
        lines.append(f'output [\n  {{\n    name: "{t.name}"\n    data_type: {dtype(t)}\n    dims: {_dims(shape(t))}{label}\n  }}\n]')
    if batched:
        sizes = preferred_batch_sizes(contract)
        pref = f"\n  preferred_batch_size: {_dims(sizes)}" if sizes else ""
        lines.append(f"dynamic_batching {{{pref}\n  max_queue_delay_microseconds: {options.max_queue_delay_us}\n}}")
    lines.append(f"instance_group [\n  {{\n    count: {options.instances}\n    kind: KIND_{kind.upper()}\n  }}\n]")
    return "\n".join(lines) + "\n", labels


def _external_files(onnx_path: Path) -> list[Path]:
    """Files an ONNX model keeps its weights in (external data), relative to it."""
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    from ..folder.onnx_io import load_onnx

    model = load_onnx(onnx_path, external_data=False)
    names = {ExternalDataInfo(t).location for t in model.graph.initializer if uses_external_data(t)}
    return [onnx_path.parent / n for n in sorted(names)]


@dataclass
class DeployResult:
    model_dir: Path
    artifact: str
    platform: str
    config: str
    server_flags: list[str] = field(default_factory=list)  #: what tritonserver must be started with for this model


def deploy(folder: str | os.PathLike, options: TritonOptions | None = None) -> DeployResult:  # noqa: C901 - option checks, the artifact choice and the staged write of one model folder
    """Write the Triton model folder for one artifact of `folder` into the repository `options.repo`."""
    options = options or TritonOptions()
    if not options.repo:
        raise ConfigError("--to triton needs --repo DIR (the Triton model repository to write into)")
    folder, repo = Path(folder), Path(options.repo)
    if options.instances < 1:
        raise ConfigError(f"--instances {options.instances} not accepted: expected 1 or more")
    if options.version < 1:
        raise ConfigError(f"--version {options.version} not accepted: Triton's model versions are 1 or more")
    if options.max_queue_delay_us < 0:
        raise ConfigError(f"--max-queue-delay-us {options.max_queue_delay_us} not accepted: expected 0 or more")
    kind = options.kind or "gpu"
    if kind not in KINDS:
        raise ConfigError(f"--kind {kind!r} not accepted: expected gpu or cpu")
    manifest = read_manifest(folder)
    entry = choose(manifest, options.artifact, kind)
    engine = artifacts.is_engine(entry)
    if engine and kind == "cpu":
        raise ConfigError(f"{entry.path} is a TensorRT engine, which runs on a GPU only; use --kind gpu or an ONNX artifact")
    name = check_name(options.name or default_name(manifest))
    source = check_artifact(folder, entry)
    io_source = folder / (entry.built_from or "") if engine else source
    if engine and (not entry.built_from or not io_source.is_file()):
        raise ArtifactError(f"{source}: the ONNX file it was built from ({entry.built_from}) is missing; its I/O is read from there")
    inputs, outputs = graph_io(io_source)
    text, labels = config_text(name, entry, manifest, inputs, outputs, options, kind)

    final = repo / name
    if final.exists() and not options.force:
        raise ArtifactError(f"{final}: the model folder exists; pass --force to replace it")
    with replacing_folder(final) as tmp:
        (tmp / "config.pbtxt").write_text(text, encoding="utf-8")
        if labels is not None:
            (tmp / LABELS_FILE).write_text(labels, encoding="utf-8")
        version_dir = tmp / str(options.version)
        version_dir.mkdir()
        shutil.copyfile(source, version_dir / ("model.plan" if engine else "model.onnx"))
        if not engine:
            for extra in _external_files(source):
                shutil.copyfile(extra, version_dir / extra.name)
    flags = [VERSION_COMPATIBLE_FLAG] if engine and entry.requires.get("version_compatible") else []
    return DeployResult(final, entry.path, "tensorrt_plan" if engine else "onnxruntime_onnx", text, flags)


def summary(result: DeployResult, options: TritonOptions) -> str:
    """The line `deploy --to triton` prints."""
    return (f"wrote {result.model_dir} ({result.platform}, from {result.artifact}); "
            f"serve it with: tritonserver --model-repository {Path(str(options.repo)).resolve()}{''.join(' ' + f for f in result.server_flags)}")
