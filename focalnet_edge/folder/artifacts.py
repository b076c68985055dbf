"""The one table of what an output folder can hold: artifact names, precisions, formats,
verification thresholds and the order in which `runtime.load` prefers them.

Every other module reads this table (the pipeline for file names, `verify` for thresholds, the
INT8 gate for its target, the loader for its preference, the CLI for its choices), so a new
precision is one new row here plus the stage that writes it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ArtifactError, InputError

if TYPE_CHECKING:
    from .manifest import Artifact

MANIFEST = "manifest.json"
REPORT = "report.json"
CALIBRATION = "calibration.json"
TIMING_CACHE = "timing.cache"
REFERENCES = "references.npz"

ONNX = "onnx"
TENSORRT_PLAN = "tensorrt-plan"

#: an ONNX artifact's weights, when written as external data, are in one file beside it: `model.onnx` -> `model.onnx.data`
EXTERNAL_DATA_SUFFIX = ".data"


def external_data_name(onnx_name: str) -> str:
    """The file name of the external data of the ONNX file `onnx_name` (`model.onnx` -> `model.onnx.data`)."""
    return onnx_name + EXTERNAL_DATA_SUFFIX


@dataclass(frozen=True)
class Thresholds:
    """Pass/fail of an artifact against the PyTorch fp32 reference."""

    max_abs: float | None  #: largest absolute output error per unit of the output's magnitude (None: not checked); `max_abs_at`
    min_cosine: float  #: smallest mean cosine similarity of the outputs
    min_top1: float  #: smallest top-1 agreement (classification heads)
    max_accuracy_drop: float  #: largest accuracy loss in points (labelled images)

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)

    def max_abs_at(self, magnitude: float) -> float | None:
        """The largest absolute error allowed on an output whose reference values reach `magnitude`
        (largest |value|): `max_abs` up to 1, in proportion above. Two correct fp32 implementations
        (PyTorch's and ONNX Runtime's kernels, summing in other orders) differ by rounding that grows
        with the values: a correct graph of a model whose logits reach 11.5 differed by 1.03e-4."""
        return None if self.max_abs is None else self.max_abs * max(1.0, magnitude)


@dataclass(frozen=True)
class QuantForm:
    """How a quantized precision is quantized: one row per form, as onnxruntime's `QuantType`/`QuantFormat`
    and `StaticQuantConfig` describe a target (the forms are measured in calibration/int8.py's docstring)."""

    name: str  #: the manifest's `int8.form`
    activation: str  #: ONNX element type of the activations' Q/DQ (onnxruntime's QInt8 / QUInt8)
    weight: str  #: ONNX element type of the weights' Q/DQ
    activation_symmetric: bool  #: zero point 0 (TensorRT takes nothing else)
    per_channel: bool  #: weights per output channel
    ops: tuple[str, ...]  #: the op types whose inputs are quantized (their outputs stay float)
    float_parts: str | None  #: type of the parts left in float: fixed, or None where `--int8-float` chooses
    placement: str  #: what runs it, in words
    option: str | None = None  #: the `PrecisionOptions` flag that turns the form off (None: always written)
    float_nodes: tuple[str, ...] = ()  #: node-name patterns (fnmatch) of `ops` nodes the form leaves in float


QUANT_FORMS: dict[str, QuantForm] = {
    f.name: f
    for f in (
        QuantForm("tensorrt", activation="INT8", weight="INT8", activation_symmetric=True, per_channel=True,
                  ops=("Conv", "MatMul", "Gemm"), float_parts=None, placement="TensorRT's explicit-quantization rules"),
        QuantForm("cpu", activation="UINT8", weight="INT8", activation_symmetric=False, per_channel=True,
                  ops=("MatMul", "Gemm"), float_parts="fp32", placement="ONNX Runtime's CPU kernels (MatMulIntegerToFloat)",
                  option="cpu_int8",
                  # the focal context's 1x1 projection, a MatMul since model/layers.py runs it channels-last (a Conv,
                  # never quantized by this form, before): quantized, the demo's SQNR fell 39.7 -> 35.3 dB for 9% speed
                  float_nodes=("*/projection_context/*",)),
    )
}

#: the quantized types: ONNX element type every Q/DQ of the graph is re-typed to (None: the form's own int8 types)
QTYPES: dict[str, str | None] = {"int8": None, "fp8": "FLOAT8E4M3FN"}
#: the float types of a quantized graph's float parts (`--int8-float`) -> whether they are converted to float16
FLOAT_PARTS: dict[str, bool] = {"fp16": True, "fp32": False}

#: the stages that make a precision's ONNX file
EXPORT, FP16, QUANTIZE = "export", "fp16", "quantize"


@dataclass(frozen=True)
class Precision:
    """One row of the table: a precision, the files that carry it, the stage that makes it and how TensorRT builds it."""

    name: str  #: fp32 | fp16 | int8 | int8-cpu | fp8 (the manifest's `precision`)
    onnx: str  #: the ONNX file of this precision
    engine: str | None  #: the TensorRT plan built from that ONNX file (None: not a TensorRT input)
    runs_on: str  #: what runs the ONNX file, in words
    thresholds: Thresholds
    gpu_rank: int  #: preference of the ONNX file where a GPU provider is present (lower first)
    cpu_rank: int  #: preference of the ONNX file on a CPU-only machine (lower first)
    engine_rank: int | None = None  #: preference of its engine among engines (lower first)
    stage: str = EXPORT  #: the stage that writes it (EXPORT, FP16, QUANTIZE)
    form: str | None = None  #: its quantization form (a `QUANT_FORMS` row; None: not quantized)
    qtype: str | None = None  #: its quantized type (a `QTYPES` row)
    network_mode: int | None = None  #: DeepStream nvinfer's `network-mode` (None: nvinfer does not take it)
    dla: bool = False  #: whether a DLA core runs its engine (DLA runs fp16 and int8 only)
    tf32: bool = False  #: its verification thresholds allow TF32 in the engine's float32 layers (10-bit mantissas)
    weak_flags: tuple[str, ...] = ()  #: the builder flags of a weakly typed engine (TensorRT 10.x --weakly-typed)
    min_compute_capability: tuple[int, int] | None = None  #: the GPUs TensorRT runs it on (None: every one)

    @property
    def quantized(self) -> bool:
        return self.form is not None


_INT8_THRESHOLDS = Thresholds(max_abs=None, min_cosine=0.98, min_top1=0.99, max_accuracy_drop=0.5)
#: TensorRT runs FP8 from compute capability 8.9 (Ada, Hopper, Blackwell, Jetson Thor); not on Orin (8.7)
FP8_MIN_COMPUTE_CAPABILITY = (8, 9)

PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in (
        Precision("fp32", "model.onnx", "model.fp32.engine", "onnxruntime or TensorRT",
                  Thresholds(max_abs=1e-4, min_cosine=0.99999, min_top1=1.0, max_accuracy_drop=0.0),
                  gpu_rank=1, cpu_rank=0, engine_rank=2, network_mode=0),
        Precision("fp16", "model.fp16.onnx", "model.fp16.engine", "onnxruntime (CUDA/TensorRT EP for speed) or TensorRT strongly typed",
                  Thresholds(max_abs=None, min_cosine=0.999, min_top1=0.995, max_accuracy_drop=0.5),
                  gpu_rank=0, cpu_rank=2, engine_rank=1, stage=FP16, network_mode=2, dla=True, tf32=True, weak_flags=("fp16",)),
        Precision("int8", "model.int8.onnx", "model.int8.engine", "TensorRT (strongly typed) or onnxruntime",
                  _INT8_THRESHOLDS, gpu_rank=2, cpu_rank=3, engine_rank=0, stage=QUANTIZE, form="tensorrt", qtype="int8",
                  network_mode=1, dla=True, tf32=True, weak_flags=("fp16", "int8")),
        Precision("int8-cpu", "model.int8.cpu.onnx", None, "onnxruntime CPU",
                  _INT8_THRESHOLDS, gpu_rank=3, cpu_rank=1, stage=QUANTIZE, form="cpu", qtype="int8"),
        Precision("fp8", "model.fp8.onnx", "model.fp8.engine", "TensorRT (strongly typed; sm >= 8.9 or Jetson Thor) or onnxruntime",
                  _INT8_THRESHOLDS, gpu_rank=4, cpu_rank=4, engine_rank=3, stage=QUANTIZE, form="tensorrt", qtype="fp8",
                  tf32=True, min_compute_capability=FP8_MIN_COMPUTE_CAPABILITY),
    )
}

#: what `build --precision` writes besides the fp32 model.onnx (the CLI's choices)
BUILD_PRECISIONS: dict[str, tuple[str, ...]] = {
    "fp32": (),
    "fp16": ("fp16",),
    "int8": ("int8", "int8-cpu"),
    "best": ("fp16", "int8", "int8-cpu"),
    "fp8": ("fp8",),
}
#: `calibrate --precision`'s choices (from an existing fp32 ONNX file; the first is its default)
CALIBRATE_PRECISIONS: tuple[str, ...] = ("int8", "fp16", "fp8")
#: the precisions DeepStream's nvinfer takes (`deploy --to deepstream --precision`'s choices)
NVINFER_PRECISIONS: tuple[str, ...] = tuple(p.name for p in PRECISIONS.values() if p.network_mode is not None)
#: `engine --deepstream`'s choices: the DeepStream graph whose engine is built too (auto: the precision `deploy --to
#: deepstream` chooses; none: no graph; or one of nvinfer's precisions)
DEEPSTREAM_CHOICES: tuple[str, ...] = ("auto", "none", *NVINFER_PRECISIONS)
#: the precisions a DLA core runs
DLA_PRECISIONS: tuple[str, ...] = tuple(p.name for p in PRECISIONS.values() if p.dla)
#: the builder flags a weakly typed engine build sets or clears (a row's `weak_flags` are the ones it sets)
WEAK_FLAGS: tuple[str, ...] = ("fp16", "int8")
#: `--int8-float`'s choices: the float types of a quantized graph's float parts (the first is its default)
INT8_FLOAT_TYPES: tuple[str, ...] = tuple(FLOAT_PARTS)
#: the precisions the quantization stage writes (calibration ranges, the accuracy gate)
QUANTIZED = tuple(p.name for p in PRECISIONS.values() if p.quantized)


def quantizes(choice: str) -> bool:
    """Whether `build --precision choice` (or `calibrate --precision choice`) writes a quantized graph."""
    return any(p in QUANTIZED for p in build_precisions(choice))


def quantized_precision(form: str, qtype: str) -> Precision:
    """The row quantized in `form` to `qtype` (`InputError` when no row is)."""
    for row in PRECISIONS.values():
        if (row.form, row.qtype) == (form, qtype):
            return row
    raise InputError(f"no precision is quantized in form {form!r} to {qtype!r}; "
                     f"the table has {', '.join(f'{p.form}/{p.qtype}' for p in PRECISIONS.values() if p.quantized)}")


def qdq_types(row: Precision) -> set[str]:
    """The ONNX element types of the Q/DQ zero points of row `row`'s graph (empty: not quantized)."""
    if not row.quantized:
        return set()
    retype = QTYPES[row.qtype]
    form = QUANT_FORMS[row.form]
    return {retype} if retype else {form.activation, form.weight}


#: the INT8 accuracy gate's default target: the int8 row's top-1 agreement
INT8_MIN_AGREEMENT = PRECISIONS["int8"].thresholds.min_top1
#: the gate's other targets: mean cosine (the int8 row's) and logit SQNR against fp32. 25 dB is
#: noise at 0.3% of the logits' power (cosine ~0.998): the trained demo measures ~30 dB, the
#: placement issue 11 replaced 23.8 dB on focalnet-tiny
INT8_MIN_COSINE = PRECISIONS["int8"].thresholds.min_cosine
INT8_MIN_SQNR_DB = 25.0

FP32_ONNX = PRECISIONS["fp32"].onnx
BY_ONNX: dict[str, Precision] = {p.onnx: p for p in PRECISIONS.values()}  #: ONNX name -> its row
ENGINE_SOURCES: dict[str, str] = {p.onnx: p.engine for p in PRECISIONS.values() if p.engine}  #: ONNX name -> engine name

#: the infix of a DeepStream graph and its engine: the folder's graph as nvinfer runs it (its normalisation in front,
#: a Softmax behind), written by `engine` beside its source so that its engine is built and verified on the device:
#: `model.fp16.onnx` -> `model.fp16.deepstream.onnx` -> `model.fp16.deepstream.engine`
DEEPSTREAM = ".deepstream"


def deepstream_name(name: str) -> str:
    """`model.fp16.onnx` -> `model.fp16.deepstream.onnx`; `model.fp16.engine` -> `model.fp16.deepstream.engine`."""
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}{DEEPSTREAM}{dot}{suffix}"


def engine_sources(entries: dict[str, Any]) -> dict[str, str]:
    """ONNX name -> engine name of the TensorRT-bound ONNX files listed in `entries` (a manifest's `artifacts`, JSON):
    the table's rows in its order, then the DeepStream graphs (entries with `deepstream` facts) of those rows."""
    out = {onnx: engine for onnx, engine in ENGINE_SOURCES.items() if onnx in entries}
    for onnx, engine in ENGINE_SOURCES.items():
        graph = deepstream_name(onnx)
        entry = entries.get(graph)
        if isinstance(entry, dict) and isinstance(entry.get("deepstream"), dict) and entry.get("format") == ONNX:
            out[graph] = deepstream_name(engine)
    return out


def for_nvinfer(artifact: Artifact) -> bool:
    """Whether the artifact is a DeepStream graph or its engine (nvinfer's input and output: never chosen unless named)."""
    return artifact.deepstream is not None


def precision(name: str) -> Precision:
    """The row of precision `name`, or an `InputError` naming the ones there are."""
    try:
        return PRECISIONS[name]
    except KeyError:
        raise InputError(f"precision {name!r} not supported; expected one of {', '.join(PRECISIONS)}") from None


def build_precisions(choice: str) -> tuple[str, ...]:
    """The precisions `build --precision choice` writes besides fp32."""
    if choice not in BUILD_PRECISIONS:
        raise InputError(f"precision {choice!r} not supported; expected one of {', '.join(BUILD_PRECISIONS)}")
    return BUILD_PRECISIONS[choice]


def thresholds(name: str) -> Thresholds:
    return PRECISIONS.get(name, PRECISIONS["fp32"]).thresholds


def is_engine(artifact: Artifact) -> bool:
    return artifact.format == TENSORRT_PLAN


def trust(artifact: Artifact) -> int:
    """0: verification passed, 1: never verified (adopted, or listed by hand), 2: verification failed."""
    verification = artifact.verification
    if not isinstance(verification, dict) or "passed" not in verification:
        return 1
    return 0 if verification["passed"] else 2


def rank(artifact: Artifact, gpu: bool) -> tuple[int, int, int]:
    """Sort key of a manifest's artifact for `runtime.load` and deploy: verified before unverified before
    failed; then engines first on a GPU, then ONNX files, each in the table's order."""
    row = PRECISIONS.get(artifact.precision, None)
    if row is None:
        return (trust(artifact), 3, 0)
    if is_engine(artifact):
        return (trust(artifact), 0 if gpu else 2, row.engine_rank if row.engine_rank is not None else len(PRECISIONS))
    return (trust(artifact), 1, row.gpu_rank if gpu else row.cpu_rank)


def select(artifacts: dict[str, Artifact], name: str) -> list[Artifact]:
    """The artifacts that `name` means: a file name (one artifact) or a precision (its ONNX and engine)."""
    if name in artifacts:
        return [artifacts[name]]
    found = [a for a in artifacts.values() if a.precision == name and not for_nvinfer(a)]
    if not found:
        raise ArtifactError(
            f"no artifact {name!r} here: give a file name ({', '.join(sorted(artifacts)) or 'none listed'}) "
            f"or a precision ({', '.join(sorted({str(a.precision) for a in artifacts.values()}))})"
        )
    return found
