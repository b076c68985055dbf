"""What to deploy to nvinfer, decided before anything is written: the `Plan` (which ONNX and
engine, the normalisation, the resize keys, the labels) and the checks that refuse a folder
nvinfer would run differently from its verification (see the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ...folder.artifacts import NVINFER_PRECISIONS, PRECISIONS, deepstream_name, for_nvinfer, is_engine, trust
from ...folder.contract import InputContract
from ...errors import ArtifactError, ConfigError
from ...folder.manifest import MANIFEST, Artifact, Manifest, check_artifact
from ...runtime.choose import choose_artifact
from ...inputs.geometry import Geometry
from .engine_file import engine_file

#: head -> nvinfer network-type (1 classifier: labels through its parser; 100 other: the raw tensors as NvDsInferTensorMeta)
NETWORK_TYPE = {"logits": 1, "probs": 1, "features": 100}
OBJECT_MIN_SIZE = 32  #: default input-object-min-width/height of the secondary config, in pixels
#: precision -> nvinfer's network-mode value (NvDsInferNetworkMode: 0 FP32, 1 INT8, 2 FP16): the precision table's column
NETWORK_MODE = {p.name: p.network_mode for p in PRECISIONS.values() if p.network_mode is not None}
#: the precisions nvinfer takes, in words ("fp32, fp16 or int8")
NVINFER_WORDS = ", ".join(NVINFER_PRECISIONS[:-1]) + " or " + NVINFER_PRECISIONS[-1]
#: PIL resampling filter -> nvinfer scaling-filter (NvBufSurfTransform_Inter in nvbufsurftransform.h:
#: 0 nearest, 1 bilinear, 2 GPU cubic / VIC 5-tap)
SCALING_FILTER = {0: 0, 2: 1, 3: 2}
NORMALIZE = ("auto", "graph", "nvinfer")


@dataclass
class Normalisation:
    """nvinfer's ``y = scale * (x - offsets[c])`` for this model, and where the rest happens."""

    scale: float
    offsets: tuple[float, float, float]
    in_graph: bool  #: the DeepStream ONNX normalises (nvinfer passes 0..255 through)
    prepend: tuple[list[float], list[float]] | None = None  #: (mul, add) per channel to put into the graph
    max_error: float = 0.0  #: largest |nvinfer's y - the model's normalisation| over x in 0..255
    note: str = ""


@dataclass
class Plan:
    """Everything the files are written from, decided before anything is written."""

    source: Artifact  #: the ONNX the DeepStream graph comes from
    precision: str
    contract: InputContract
    normalisation: Normalisation
    softmax: bool  #: append a Softmax (the folder's head is logits)
    onnx_name: str  #: onnx-file, relative to OUT/deepstream
    engine_name: str  #: model-engine-file, relative to OUT/deepstream
    engine_note: str
    outputs: list[str]  #: output-blob-names
    labels: list[str]  #: empty for a features head (no labels file)
    resize: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    head: str = "logits"
    graph_in_folder: bool = False  #: onnx-file is the folder's DeepStream graph (`engine` wrote and verified it)

    @property
    def network_type(self) -> int:
        return NETWORK_TYPE[self.head]

    @property
    def classifier(self) -> bool:
        return self.network_type == 1

    @property
    def derived(self) -> bool:
        return self.softmax or self.normalisation.prepend is not None

    @property
    def writes_graph(self) -> bool:
        """Whether deploy writes the DeepStream graph itself (the folder holds none that fits)."""
        return self.derived and not self.graph_in_folder


def make_plan(
    folder: Path,
    manifest: Manifest,
    precision: str | None,
    batches: tuple[int, int],
    normalize: str = "auto",
    gpu_id: int = 0,
) -> Plan:
    head = manifest.head
    if head not in NETWORK_TYPE:
        raise ConfigError(
            f"{folder}: head {head!r} has no nvinfer config; build with --head logits or probs (a classifier) or "
            "features (tensors for a pyds probe)"
        )
    contract = manifest.contract
    if contract.dtype != "float32":
        raise ConfigError(
            f"{folder}: input {contract.name!r} is {contract.dtype}, but nvinfer feeds float32 tensors; rebuild with "
            + ("--frames-dtype float32" if contract.fused_preprocess else "--keep-io-types")
        )
    if contract.channels != 3:
        raise ConfigError(f"{folder}: input {contract.name!r} takes {contract.color_order} frames; nvinfer feeds 3 channels: "
                          "rebuild with --color-order RGB or BGR")
    if not contract.fused_preprocess and contract.layout != "NCHW":
        raise ConfigError(f"{folder}: input {contract.name!r} is {contract.layout}; expected NCHW pixel values")
    outputs = list(manifest.outputs)
    if NETWORK_TYPE[head] == 1 and len(outputs) != 1:
        raise ConfigError(f"{folder}: {len(outputs)} outputs {outputs}; a classifier config needs exactly one")
    source = _source_onnx(folder, manifest, precision)
    _check_source_input(folder, source)
    precision = source.precision
    labels = _labels(manifest, folder) if NETWORK_TYPE[head] == 1 else []
    norm = normalisation(contract, normalize)
    softmax = head == "logits"
    warnings: list[str] = []
    if norm.max_error:
        warnings.append(norm.note)
    resize = resize_rule(contract)

    derived = softmax or norm.prepend is not None
    onnx_name = deepstream_name(source.path) if derived else f"../{source.path}"  # model.fp16.deepstream.onnx
    engine_name, engine_note = engine_file(folder, manifest, None if derived else source, onnx_name, precision, batches,
                                           gpu_id, warnings)
    if derived:
        engine_note += ("; for a verified engine of this graph, run `focalnet-edge engine OUT` where TensorRT runs, "
                        "then deploy again with --force")
    return Plan(
        source=source,
        precision=precision,
        contract=contract,
        normalisation=norm,
        softmax=softmax,
        onnx_name=onnx_name,
        engine_name=engine_name,
        engine_note=engine_note,
        outputs=["probs"] if NETWORK_TYPE[head] == 1 else outputs,
        labels=labels,
        resize=resize,
        warnings=warnings,
        head=head,
    )


def normalisation(contract: InputContract, normalize: str = "auto") -> Normalisation:
    """nvinfer's net-scale-factor and offsets for this contract (see the module docstring)."""
    if normalize not in NORMALIZE:
        raise ConfigError(f"normalize {normalize!r} not supported; expected one of {', '.join(NORMALIZE)}")
    if contract.fused_preprocess:
        return Normalisation(1.0, (0.0, 0.0, 0.0), in_graph=True, note="the graph normalises (fused preprocessing)")
    spec = contract.image_spec
    r = float(spec.rescale_factor)
    mean = [float(m) for m in spec.mean]
    std = [float(s) for s in spec.std]
    scales = [r / s for s in std]  # per channel: y = scales[c] * (x - offsets[c])
    offsets = tuple(m / r for m in mean)
    if max(scales) - min(scales) <= 1e-9 * max(scales):
        return Normalisation(scales[0], offsets, in_graph=False, note="exact: the same std for every channel")  # type: ignore[arg-type]
    if normalize in ("auto", "graph"):
        return Normalisation(
            1.0,
            (0.0, 0.0, 0.0),
            in_graph=True,
            prepend=(scales, [-m / s for m, s in zip(mean, std)]),
            note="per-channel std: the DeepStream ONNX normalises (a Mul and an Add in front of the model)",
        )
    scale, err = best_single_scale(scales, offsets)
    return Normalisation(
        scale,
        offsets,  # type: ignore[arg-type]
        in_graph=False,
        max_error=err,
        note=(
            f"per-channel std {std} approximated by one net-scale-factor {scale:.9g}: largest error {err:.3g} "
            f"(in normalised units, over pixel values 0..255 and the 3 channels); deploy with normalize='graph' "
            "for an exact normalisation"
        ),
    )


def best_single_scale(scales: list[float], offsets: tuple[float, ...]) -> tuple[float, float]:
    """The one scale s minimising max over c and x in 0..255 of |s (x - o_c) - scales[c] (x - o_c)|.

    The error of channel c is |s - a_c| * M_c with M_c = max(o_c, 255 - o_c) (the farthest pixel
    value from the offset), so the optimum is a channel's own scale or the crossing point of two
    channels' error lines; every candidate is evaluated on all 256 pixel values.
    """
    a = np.asarray(scales, np.float64)
    o = np.asarray(offsets, np.float64)
    m = np.maximum(np.abs(o), np.abs(255.0 - o))
    cands = list(a) + [(a[i] * m[i] + a[j] * m[j]) / (m[i] + m[j]) for i in range(3) for j in range(3) if i != j]
    x = np.arange(256, dtype=np.float64)[None, :]
    best = min(cands, key=lambda s: _max_error(s, a, o, x))
    return float(best), _max_error(best, a, o, x)


def _max_error(s: float, a: np.ndarray, o: np.ndarray, x: np.ndarray) -> float:
    return float(np.abs((s - a[:, None]) * (x - o[:, None])).max())


def resize_rule(contract: InputContract) -> dict[str, Any]:
    """nvinfer's maintain-aspect-ratio / symmetric-padding / scaling-filter for the contract's resize mode."""
    spec = contract.image_spec
    g = Geometry.of(spec)  # the one reading of the preprocessing: a crop recipe without crop or shortest edge only warps
    mode = "letterbox" if g.resize == "fit" else "crop" if g.crops or g.resize == "shortest_edge" else "stretch"
    if contract.frame_size == "any":
        raise ConfigError(
            "the folder's graph takes frames of any size and resizes them itself (--frame-size any); nvinfer feeds the "
            "network size and resizes on its own: rebuild without --frame-size any"
        )
    if mode == "crop":
        raise ConfigError(
            f"the folder's preprocessing is resize + centre crop to {contract.height}x{contract.width} (--resize-mode crop), "
            "which nvinfer cannot do, so its verification figures would not describe the deployment: rebuild with "
            "--resize-mode stretch (nvinfer's default) or --resize-mode letterbox (maintain-aspect-ratio + symmetric-padding)"
        )
    rule: dict[str, Any] = {"mode": mode, "maintain_aspect_ratio": int(mode == "letterbox"),
                            "symmetric_padding": int(mode == "letterbox")}
    rule["scaling_filter"] = SCALING_FILTER.get(int(spec.resample))
    return rule


def parse_class_ids(ids: list[int] | str | None) -> list[int] | None:
    """[0, 2] or "0,2" -> [0, 2]; None or empty -> None (all classes)."""
    if ids is None or ids == "" or ids == []:
        return None
    try:
        out = [int(i) for i in (ids.replace(";", ",").split(",") if isinstance(ids, str) else ids)]
    except (TypeError, ValueError):
        raise ConfigError(f"operate-on-class-ids {ids!r} not understood: expected class ids like 0,2") from None
    if min(out) < 0:
        raise ConfigError(f"operate-on-class-ids {ids!r} not accepted: class ids are >= 0")
    return out


def batch_sizes(contract: InputContract, primary: int | None, secondary: int | None) -> tuple[int, int]:
    lo, opt, _ = contract.batch
    top = contract.max_batch or opt
    out = []
    for b, default in ((primary, opt), (secondary, min(16, top))):
        b = int(default if b is None else b)
        if not contract.dynamic_batch and b != opt:
            raise ConfigError(f"batch size {b} not accepted: the folder's graph has a static batch of {opt}")
        if not lo <= b <= top:
            raise ConfigError(
                f"batch size {b} not accepted: the folder's graph takes batches {lo}..{top}; rebuild with --batch 1:{b}:{b}"
            )
        out.append(b)
    return out[0], out[1]


def _nvinfer_onnx(artifact: Artifact) -> str | None:
    """Why nvinfer cannot build from this artifact (it takes the fp32, fp16 and int8 ONNX files), or None."""
    if is_engine(artifact) or not artifact.path.endswith(".onnx"):
        return "not an ONNX file (nvinfer builds its engine from onnx-file)"
    if for_nvinfer(artifact):
        return "a DeepStream graph already (its source is deployed)"
    if artifact.precision not in NETWORK_MODE:
        return f"precision {artifact.precision} has no nvinfer network-mode"
    return None


def _source_onnx(folder: Path, manifest: Manifest, precision: str | None) -> Artifact:
    """The ONNX to deploy: `precision`'s, else the best nvinfer takes by the table's rank on a GPU."""
    if precision is not None:
        if precision not in NETWORK_MODE:
            raise ConfigError(f"precision {precision!r} not supported for nvinfer; expected {NVINFER_WORDS}")
        if not any(_nvinfer_onnx(a) is None and a.precision == precision for a in manifest.artifacts.values()):
            have = sorted({a.precision for a in manifest.artifacts.values() if not is_engine(a)})
            raise ArtifactError(f"{folder}: no {precision} ONNX in the {MANIFEST} (has: {', '.join(have) or 'none'}); "
                                f"build with --precision {precision}")
    entry = choose_artifact(manifest, precision, runs=_nvinfer_onnx, gpu=True, where=f"nvinfer ({NVINFER_WORDS} ONNX)",
                            quiet=True)
    check_artifact(folder, entry)
    return entry


def _check_source_input(folder: Path, source: Artifact) -> None:
    """The chosen ONNX's own input must be float32 too: an fp16 graph exported with --fp16-io takes
    float16 although the folder's (fp32) contract says float32, and nvinfer feeds float32."""
    from ...engine.build import source_contract

    own = source_contract(folder / source.path)
    if own.dtype != "float32":
        raise ConfigError(
            f"{folder / source.path}: input {own.name!r} is {own.dtype} (built with --fp16-io), but nvinfer feeds float32 tensors; "
            "deploy --precision fp32 or int8, or rebuild the fp16 graph without --fp16-io"
        )


def graph_facts(plan: Plan) -> dict[str, Any]:
    """What the DeepStream graph of `plan` is: its source, what was added to it, its head and outputs (the ONNX's
    metadata and, for a graph written into the output folder, its manifest entry: one record, compared by deploy)."""
    prepend = plan.normalisation.prepend
    return {
        "source": plan.source.path,
        "source_sha256": plan.source.sha256,
        "softmax_appended": plan.softmax,
        "normalisation_in_graph": prepend is not None,
        "normalisation": None if prepend is None else {"scale": [float(x) for x in prepend[0]], "shift": [float(x) for x in prepend[1]]},
        "head": "probs" if plan.classifier else plan.head,
        "outputs": list(plan.outputs),
    }


def use_folder_graph(folder: Path, manifest: Manifest, plan: Plan, batches: tuple[int, int], gpu_id: int) -> Plan:
    """`plan` pointed at the folder's DeepStream graph and its engine, where `focalnet-edge engine` wrote the very
    graph this plan derives (same source file, normalisation and Softmax) and verified it; else `plan` as it is,
    and deploy writes the graph itself."""
    if not plan.derived:
        return plan
    graph = manifest.artifacts.get(deepstream_name(plan.source.path))
    if graph is None or graph.deepstream is None or is_engine(graph):
        others = [a for a in manifest.artifacts.values() if a.deepstream is not None and not is_engine(a)]
        plan.warnings += [f"the folder holds {a.path}, `focalnet-edge engine`'s graph of {a.deepstream['source']} "
                          f"({a.precision}); deploy --precision {a.precision} uses it and its engine" for a in others]
        return plan
    wanted = graph_facts(plan)
    if {k: graph.deepstream.get(k) for k in wanted} != wanted:
        if graph.deepstream.get("source_sha256") != wanted["source_sha256"]:
            plan.warnings.append(f"{graph.path} was derived from an earlier {plan.source.path}: deploy writes its own graph; "
                                 f"`focalnet-edge engine OUT --deepstream {plan.precision}` writes it again with a verified engine")
        return plan  # else this deployment asked for another normalisation (--normalize nvinfer): its own graph, as asked
    if trust(graph) == 2:
        plan.warnings.append(f"{graph.path} failed its verification: deploy writes its own graph")
        return plan
    check_artifact(folder, graph)
    engine_name, engine_note = engine_file(folder, manifest, graph, f"../{graph.path}", plan.precision, batches, gpu_id, plan.warnings)
    return replace(plan, onnx_name=f"../{graph.path}", graph_in_folder=True, engine_name=engine_name, engine_note=engine_note)


def _labels(manifest: Manifest, folder: Path) -> list[str]:
    n = int(manifest.model.num_labels or len(manifest.labels))
    out = manifest.ordered_labels(n)  # ';' and line breaks refused when the manifest was read
    if not out:
        raise ConfigError(f"{folder}: the {MANIFEST} lists no labels and no num_labels")
    return out


