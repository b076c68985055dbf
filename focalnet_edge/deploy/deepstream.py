"""DeepStream `nvinfer` files for an output folder: a primary and a secondary classifier config.

`deploy(OUT)` writes `OUT/deepstream/` (atomically: a temporary folder renamed into place):

```
OUT/deepstream/
  config_infer_primary.txt     nvinfer config: classifier on full frames (process-mode=1)
  config_infer_secondary.txt   nvinfer config: classifier on a detector's objects (process-mode=2)
  labels.txt                   one line, the labels separated by ';' (nvinfer's classifier format)
  model.<precision>.deepstream.onnx   only when the folder's graph needs changing (below)
  deepstream.json              what was derived from what: sha256 of every file, the
                               normalisation and resize rules, the warnings
```

What nvinfer does, and how the configs are derived from the input contract (NVIDIA DeepStream,
"Gst-nvinfer" plugin guide, and its config parser `gstnvinfer_property_parser.cpp`):

- nvinfer scales each frame (or object crop) to the network size, converts it to planar float
  RGB/BGR and computes ``y = net-scale-factor * (x - offsets[c])`` with x in 0..255: ONE scale
  for all channels, one offset per channel. A model normalised with ``(x/255 - mean[c]) /
  std[c]`` fits exactly when std is the same for every channel (scale = 1/(255 std), offsets =
  255 mean). With per-channel std (ImageNet's) the normalisation goes into the DeepStream ONNX
  instead (a Mul and an Add in front of the graph; nvinfer then passes 0..255 through with
  scale 1 and offsets 0), or, with ``normalize="nvinfer"``, one scale approximates the three
  and the generated file states the largest error over all 256 pixel values. A folder built
  with ``--fuse-preprocess --frames-dtype float32`` already normalises in the graph.
- A folder with the ``features`` head is deployed as nvinfer's "other" network
  (``network-type=100``) with ``output-tensor-meta=1``: nvinfer attaches the raw output tensors
  as NvDsInferTensorMeta (user meta of the frame in primary mode, of each object in secondary
  mode), which `examples/pyds_probe.py` (`tensor_outputs`) reads; no labels, no threshold.
- Secondary configs carry the keys a detector's objects need: ``input-object-min-width`` /
  ``-height`` (smaller objects are not classified), ``operate-on-class-ids``,
  ``secondary-reinfer-interval`` (frames between re-classifications of a tracked object) and, for
  classifiers, ``classifier-async-mode`` (results attached later, for tracked objects only: it
  needs a tracker upstream).
- nvinfer's default classifier parser reads its output as softmax probabilities and attaches
  the label with the highest probability above ``classifier-threshold``. A folder with the
  ``logits`` head gets a DeepStream ONNX with a Softmax appended (output ``probs``, fp32),
  written with the onnx library and hashed in deepstream.json.
- nvinfer only resizes: it stretches the frame (or object) to the network size by default, or,
  with ``maintain-aspect-ratio=1``, scales it to fit and pads with black, on both sides with
  ``symmetric-padding=1`` (gstnvinfer.cpp: the limiting side to the network size, the other to
  floor(size * ratio), offset floor(spare / 2); it rounds an object's rectangle to even pixels
  first). Its default ``scaling-filter`` is NvBufSurfTransformInter_Default, nearest on GPU and
  VIC; the configs name the model's filter instead. It cannot crop. The folder's resize mode
  (``--resize-mode``, in the input contract) decides the keys: ``stretch`` -> 0/0,
  ``letterbox`` -> 1/1. A folder in ``crop`` mode whose recipe really crops is refused: nvinfer
  would feed the model stretched frames its verification figures do not describe; rebuild with
  ``--resize-mode stretch`` or ``letterbox`` (then verified in that mode). A ``crop`` recipe
  that only warps to the input size (ViT's, the demo's) is a stretch and deploys as one.
- A folder built with ``--frame-size any`` (resize in the graph) is refused: nvinfer feeds the
  network size and does the resize itself.
- nvinfer feeds float tensors, so a folder whose input is uint8 or float16 is refused with the
  build options that make a suitable one; so is a chosen ONNX whose own input is float16 (an fp16
  graph built with ``--fp16-io``, in a folder whose contract says float32).

Paths in the configs are relative to the config file (nvinfer resolves them so), so the output
folder can be copied anywhere as a whole. GKeyFile has no inline comments: every comment is a
line of its own starting with '#'.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import ArtifactError, ConfigError
from ..contract import InputContract
from ..io import sha256_file, umask
from ..artifacts import is_engine
from ..manifest import MANIFEST, check_artifact, read_manifest
from ..runtime.choose import best, choose_artifact

log = logging.getLogger(__name__)

FOLDER = "deepstream"
PRIMARY, SECONDARY, LABELS, FACTS = (
    "config_infer_primary.txt",
    "config_infer_secondary.txt",
    "labels.txt",
    "deepstream.json",
)
#: head -> nvinfer network-type (1 classifier: labels through its parser; 100 other: the raw tensors as NvDsInferTensorMeta)
NETWORK_TYPE = {"logits": 1, "probs": 1, "features": 100}
OBJECT_MIN_SIZE = 32  #: default input-object-min-width/height of the secondary config, in pixels
#: nvinfer's network-mode values (NvDsInferNetworkMode): 0 FP32, 1 INT8, 2 FP16
NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}
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

    source: dict[str, Any]  #: the manifest entry of the ONNX the DeepStream graph comes from
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

    @property
    def network_type(self) -> int:
        return NETWORK_TYPE[self.head]

    @property
    def classifier(self) -> bool:
        return self.network_type == 1

    @property
    def derived(self) -> bool:
        return self.softmax or self.normalisation.prepend is not None


def deploy(  # noqa: PLR0913 - keyword options mirroring the CLI flags; a DeepStream options object like Triton's comes with the deploy table (issue 28)
    folder: str | os.PathLike,
    force: bool = False,
    *,
    precision: str | None = None,
    batch_size: int | None = None,
    secondary_batch_size: int | None = None,
    classifier_threshold: float | None = None,
    gie_unique_id: int | None = None,
    secondary_gie_unique_id: int | None = None,
    operate_on_gie_id: int | None = None,
    operate_on_class_ids: list[int] | str | None = None,
    normalize: str | None = None,
    gpu_id: int | None = None,
    object_min_width: int | None = None,
    object_min_height: int | None = None,
    classifier_async_mode: bool | None = None,
    secondary_reinfer_interval: int | None = None,
) -> Path:
    """Write ``folder/deepstream/`` (configs, labels, DeepStream ONNX if needed); return that path.

    folder: a focalnet-edge output folder (its manifest.json is read, artifacts sha256-checked).
    force: replace an existing ``deepstream/`` (otherwise it is an error to have one).
    precision: which ONNX of the folder to deploy: fp32, fp16 or int8 (explicit Q/DQ; nvinfer's
        INT8 mode then needs no calibration file). Default: fp16 when built, else fp32.
    batch_size: nvinfer ``batch-size`` of the primary classifier (frames per batch); default
        the folder's optimum batch. secondary_batch_size: the same for the secondary (objects per
        batch); default 16, or the folder's maximum batch when smaller.
    classifier_threshold: nvinfer attaches the top label only when its probability is above
        this (default 0.0: always).
    gie_unique_id / secondary_gie_unique_id: the two configs' ``gie-unique-id``;
        operate_on_gie_id: the detector whose objects the secondary classifies;
        operate_on_class_ids: only those of its classes (default all).
    normalize: with per-channel std, "auto"/"graph" put the normalisation into the DeepStream
        ONNX (exact); "nvinfer" approximates it with one net-scale-factor (error stated).
    gpu_id: nvinfer ``gpu-id`` (also part of the engine file name nvinfer writes).
    object_min_width / object_min_height: the secondary's ``input-object-min-width/height``:
        smaller objects are not classified (default OBJECT_MIN_SIZE, 0: every object).
    classifier_async_mode: the secondary classifier's ``classifier-async-mode`` (default False;
        True attaches results a few frames later and works only on tracked objects).
    secondary_reinfer_interval: frames between two classifications of one tracked object (default 0).

    Every option may be None, meaning its default (so a CLI can pass its unset flags through).
    Warnings (an approximated normalisation) are logged, written as comments into
    the configs and listed in deepstream.json.
    """
    threshold = 0.0 if classifier_threshold is None else float(classifier_threshold)
    gie_ids = (
        1 if gie_unique_id is None else int(gie_unique_id),
        2 if secondary_gie_unique_id is None else int(secondary_gie_unique_id),
        1 if operate_on_gie_id is None else int(operate_on_gie_id),
    )
    class_ids = _class_ids(operate_on_class_ids)
    gpu_id = 0 if gpu_id is None else int(gpu_id)
    secondary = {
        "object_min": tuple(OBJECT_MIN_SIZE if v is None else int(v) for v in (object_min_width, object_min_height)),
        "async_mode": bool(classifier_async_mode),
        "reinfer_interval": 0 if secondary_reinfer_interval is None else int(secondary_reinfer_interval),
    }
    if min(*secondary["object_min"], secondary["reinfer_interval"]) < 0:
        raise ConfigError(f"object minimum {secondary['object_min']} and re-infer interval {secondary['reinfer_interval']} "
                          "not accepted: expected pixels and frames >= 0")
    if min(gie_ids) < 1:
        raise ConfigError(f"gie id {min(gie_ids)} not accepted: nvinfer's gie-unique-id must be > 0")
    if gie_ids[0] == gie_ids[1] or gie_ids[1] == gie_ids[2]:
        raise ConfigError(
            f"gie ids not distinct (primary {gie_ids[0]}, secondary {gie_ids[1]}, detector {gie_ids[2]}): "
            "each nvinfer in a pipeline needs its own gie-unique-id"
        )
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"classifier threshold {threshold} not accepted: expected a probability in 0..1")
    folder = Path(folder)
    target = folder / FOLDER
    if target.exists() and not force:
        raise ArtifactError(f"{target}: already exists; pass force=True (--force) to replace it")
    manifest = read_manifest(folder)
    batches = _batches(InputContract.from_dict(manifest["input"]), batch_size, secondary_batch_size)
    plan = make_plan(folder, manifest, precision, batches, normalize or "auto", gpu_id)

    tmp = Path(tempfile.mkdtemp(prefix=f".{FOLDER}.", suffix=".partial", dir=folder))
    try:
        if plan.derived:
            _write_onnx(folder / plan.source["path"], tmp / plan.onnx_name, plan)
        if plan.classifier:
            (tmp / LABELS).write_text(";".join(plan.labels) + "\n", encoding="utf-8")
        common: dict[str, Any] = {"plan": plan, "threshold": threshold, "gpu_id": gpu_id}
        (tmp / PRIMARY).write_text(
            render_config(**common, batch=batches[0], process_mode=1, gie_id=gie_ids[0]), encoding="utf-8"
        )
        (tmp / SECONDARY).write_text(
            render_config(
                **common, batch=batches[1], process_mode=2, gie_id=gie_ids[1],
                operate_on_gie_id=gie_ids[2], operate_on_class_ids=class_ids, secondary=secondary,
            ),
            encoding="utf-8",
        )
        facts = _facts(folder, tmp, plan, batches)
        (tmp / FACTS).write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o777 & ~umask())
        _replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for w in plan.warnings:
        log.warning("deepstream: %s", w)
    return target


# -- deciding -------------------------------------------------------------------------------------
def make_plan(
    folder: Path,
    manifest: dict[str, Any],
    precision: str | None,
    batches: tuple[int, int],
    normalize: str = "auto",
    gpu_id: int = 0,
) -> Plan:
    head = manifest.get("head", "logits")
    if head not in NETWORK_TYPE:
        raise ConfigError(
            f"{folder}: head {head!r} has no nvinfer config; build with --head logits or probs (a classifier) or "
            "features (tensors for a pyds probe)"
        )
    contract = InputContract.from_dict(manifest["input"])
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
    outputs = list(manifest.get("outputs") or [])
    if NETWORK_TYPE[head] == 1 and len(outputs) != 1:
        raise ConfigError(f"{folder}: {len(outputs)} outputs {outputs}; a classifier config needs exactly one")
    source = _source_onnx(folder, manifest, precision)
    _check_source_input(folder, source)
    precision = source["precision"].split("-")[0]
    labels = _labels(manifest, folder) if NETWORK_TYPE[head] == 1 else []
    norm = normalisation(contract, normalize)
    softmax = head == "logits"
    warnings: list[str] = []
    if norm.max_error:
        warnings.append(norm.note)
    resize = resize_rule(contract)

    derived = softmax or norm.prepend is not None
    stem = Path(source["path"]).stem  # model.fp16
    onnx_name = f"{stem}.deepstream.onnx" if derived else f"../{source['path']}"
    engine = _engine_entry(manifest, source) if not derived else None
    if engine is not None:
        check_artifact(folder, engine)
        engine_name = f"../{engine['path']}"
        engine_note = (
            f"the engine focalnet-edge built from {source['path']} (sha256 checked); where this DeepStream's TensorRT "
            "or GPU differ, nvinfer fails to load it and builds its own from onnx-file"
        )
    else:
        # nvinfer builds an engine from onnx-file when this file is missing, and saves it under this
        # name next to the ONNX (<onnx-file>_b<batch>_gpu<id>_<precision>.engine), reused on later runs
        engine_name = f"{onnx_name}_b{{batch}}_gpu{gpu_id}_{precision}.engine"
        engine_note = (
            "not built yet: on its first run nvinfer builds the engine from onnx-file and saves it under this name, "
            "then loads it on later runs"
            + ("" if not derived else "; the folder's own engines take the graph before the changes above")
        )
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
    mode = spec.mode
    if mode == "crop" and not spec.center_crop and not spec.resize_shortest_edge:
        mode = "stretch"  # the recipe only warps to the input size
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


def _class_ids(ids: list[int] | str | None) -> list[int] | None:
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


def _batches(contract: InputContract, primary: int | None, secondary: int | None) -> tuple[int, int]:
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


def _nvinfer_onnx(entry: dict[str, Any]) -> str | None:
    """Why nvinfer cannot build from this entry (it takes the fp32, fp16 and int8 ONNX files), or None."""
    if is_engine(entry) or not str(entry.get("path", "")).endswith(".onnx"):
        return "not an ONNX file (nvinfer builds its engine from onnx-file)"
    if entry.get("precision") not in NETWORK_MODE:
        return f"precision {entry.get('precision')} has no nvinfer network-mode"
    return None


def _source_onnx(folder: Path, manifest: dict[str, Any], precision: str | None) -> dict[str, Any]:
    """The ONNX to deploy: `precision`'s, else the best nvinfer takes by the table's rank on a GPU."""
    if precision is not None:
        if precision not in NETWORK_MODE:
            raise ConfigError(f"precision {precision!r} not supported for nvinfer; expected fp32, fp16 or int8")
        if not any(_nvinfer_onnx(e) is None and e.get("precision") == precision for e in manifest["artifacts"].values()):
            have = sorted({str(e.get("precision")) for e in manifest["artifacts"].values() if not is_engine(e)})
            raise ArtifactError(f"{folder}: no {precision} ONNX in the {MANIFEST} (has: {', '.join(have) or 'none'}); "
                                f"build with --precision {precision}")
    entry = choose_artifact(manifest, precision, runs=_nvinfer_onnx, gpu=True, where="nvinfer (fp32, fp16 or int8 ONNX)",
                            quiet=True)
    check_artifact(folder, entry)
    return entry


def _check_source_input(folder: Path, source: dict[str, Any]) -> None:
    """The chosen ONNX's own input must be float32 too: an fp16 graph exported with --fp16-io takes
    float16 although the folder's (fp32) contract says float32, and nvinfer feeds float32."""
    from ..engine.build import source_contract

    own = source_contract(folder / source["path"])
    if own.dtype != "float32":
        raise ConfigError(
            f"{folder / source['path']}: input {own.name!r} is {own.dtype} (built with --fp16-io), but nvinfer feeds float32 tensors; "
            "deploy --precision fp32 or int8, or rebuild the fp16 graph without --fp16-io"
        )


def _nvinfer_engine(source: dict[str, Any]):
    """Why nvinfer cannot load this entry as the engine of `source`, or None.

    DLA engines need nvinfer's enable-dla/use-dla-core and version-compatible (lean) plans need
    host code allowed at deserialisation, which nvinfer does not set; both are left out.
    """
    def runs(entry: dict[str, Any]) -> str | None:
        facts = entry.get("engine") or {}
        if not str(entry.get("path", "")).endswith(".engine") or entry.get("built_from") != source["path"]:
            return f"not an engine built from {source['path']}"
        if facts.get("dla_core") is not None or facts.get("version_compatible"):
            return "a DLA or version-compatible plan, which nvinfer does not load as is"
        return None
    return runs


def _engine_entry(manifest: dict[str, Any], source: dict[str, Any]) -> dict[str, Any] | None:
    """The folder's engine built from `source` that nvinfer can load as is (the table's rank), or None."""
    runs = _nvinfer_engine(source)
    pool = [e for e in manifest["artifacts"].values() if runs(e) is None]
    return best(pool, gpu=True) if pool else None


def _labels(manifest: dict[str, Any], folder: Path) -> list[str]:
    from ..labels import REBUILD_FIX, ordered_labels

    labels = manifest.get("labels") or {}
    n = int(manifest.get("model", {}).get("config", {}).get("num_labels") or len(labels))
    out = ordered_labels(labels, n, f"{folder / MANIFEST}", REBUILD_FIX)  # ';' and line breaks refused
    if not out:
        raise ConfigError(f"{folder}: the {MANIFEST} lists no labels and no num_labels")
    return out


# -- writing --------------------------------------------------------------------------------------
def _write_onnx(source: Path, path: Path, plan: Plan) -> None:
    """The folder's ONNX, with normalisation in front and/or a Softmax behind (onnx library only)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from ..onnx_io import load_onnx, save_onnx, set_metadata

    model = load_onnx(source)
    graph = model.graph
    contract = plan.contract
    if plan.normalisation.prepend is not None:
        (old_input,) = [i for i in graph.input if i.name == contract.name]
        frames = onnx.ValueInfoProto()
        frames.CopyFrom(old_input)
        frames.name = "frames"
        mul, add = plan.normalisation.prepend
        graph.initializer.extend([
            numpy_helper.from_array(np.asarray(mul, np.float32).reshape(1, 3, 1, 1), "deepstream_scale"),
            numpy_helper.from_array(np.asarray(add, np.float32).reshape(1, 3, 1, 1), "deepstream_shift"),
        ])
        nodes = [
            helper.make_node("Mul", ["frames", "deepstream_scale"], ["frames_scaled"], name="deepstream_normalise_mul"),
            helper.make_node("Add", ["frames_scaled", "deepstream_shift"], [contract.name], name="deepstream_normalise_add"),
        ]
        kept = [i for i in graph.input if i.name != contract.name]
        del graph.input[:]
        graph.input.extend([frames, *kept])
        for n in reversed(nodes):
            graph.node.insert(0, n)
    if plan.softmax:
        (out,) = list(graph.output)
        x = out.name
        if out.type.tensor_type.elem_type != TensorProto.FLOAT:
            graph.node.append(helper.make_node("Cast", [x], [f"{x}_fp32"], to=TensorProto.FLOAT, name="deepstream_cast"))
            x = f"{x}_fp32"
        graph.node.append(helper.make_node("Softmax", [x], ["probs"], axis=-1, name="deepstream_softmax"))
        probs = onnx.ValueInfoProto()
        probs.CopyFrom(out)
        probs.name = "probs"
        probs.type.tensor_type.elem_type = TensorProto.FLOAT
        del graph.output[:]
        graph.output.extend([probs])
    new_contract = json.loads(contract.to_json())
    if plan.normalisation.prepend is not None:
        new_contract.update(name="frames", fused_preprocess=True)
    set_metadata(model, {
        "head": "probs" if plan.classifier else plan.head,
        "outputs": plan.outputs,
        "input": new_contract,
        "deepstream": {
            "source": plan.source["path"],
            "source_sha256": plan.source["sha256"],
            "softmax_appended": plan.softmax,
            "normalisation_in_graph": plan.normalisation.prepend is not None,
        },
    })
    save_onnx(model, path)  # sorted there; a large graph keeps its weights beside it (path.data), which nvinfer's parser reads
    try:
        onnx.checker.check_model(str(path))  # the file: any size, no second copy in memory
    except onnx.checker.ValidationError as e:
        raise ArtifactError(f"{source}: the DeepStream graph derived from it is not valid ONNX ({e})") from None


def render_config(  # noqa: PLR0913 - keyword-only, one parameter per nvinfer key it renders
    plan: Plan,
    *,
    batch: int,
    process_mode: int,
    gie_id: int,
    threshold: float,
    gpu_id: int = 0,
    operate_on_gie_id: int | None = None,
    operate_on_class_ids: list[int] | None = None,
    secondary: dict[str, Any] | None = None,
) -> str:
    """One nvinfer config file (GKeyFile syntax: comments only on lines of their own).

    `secondary`: object_min (width, height), async_mode, reinfer_interval of a secondary config."""
    c, norm, resize = plan.contract, plan.normalisation, plan.resize
    primary = process_mode == 1
    engine = plan.engine_name.format(batch=batch)
    lines = [
        f"# nvinfer config written by focalnet-edge {__version__}: FocalNet classifier as a "
        + ("primary GIE on full frames" if primary else f"secondary GIE on the objects of GIE {operate_on_gie_id}"),
        "# Paths are relative to this file. Comments must stay on lines of their own (GKeyFile).",
        "[property]",
        f"gpu-id={gpu_id}",
        "# 1 = classifier (labels through nvinfer's parser), 100 = other (raw tensors as NvDsInferTensorMeta)",
        f"network-type={plan.network_type}",
        "# 1 = primary (full frames), 2 = secondary (objects from another GIE)",
        f"process-mode={process_mode}",
        f"gie-unique-id={gie_id}",
    ]
    if not primary:
        lines += [
            "# the detector whose objects this classifies",
            f"operate-on-gie-id={operate_on_gie_id}",
        ]
        if operate_on_class_ids:
            lines += ["# only objects of these detector classes", f"operate-on-class-ids={_list(int(i) for i in operate_on_class_ids)}"]
        sec = secondary or {"object_min": (OBJECT_MIN_SIZE, OBJECT_MIN_SIZE), "async_mode": False, "reinfer_interval": 0}
        lines += [
            "# objects smaller than this (pixels) are not classified",
            f"input-object-min-width={sec['object_min'][0]}",
            f"input-object-min-height={sec['object_min'][1]}",
            "# frames between two inferences on one tracked object (0: every frame; needs a tracker to count)",
            f"secondary-reinfer-interval={sec['reinfer_interval']}",
        ]
        if plan.classifier:
            lines += [
                "# 1: attach results asynchronously, a few frames later; works only on objects with tracker ids",
                f"classifier-async-mode={int(sec['async_mode'])}",
            ]
    src = plan.source
    lines += [
        f"# ONNX: {src['path']} (sha256 {src['sha256'][:16]}...)"
        + (", with " + " and ".join(
            (["normalisation in front"] if norm.prepend is not None else [])
            + (["a Softmax appended (the folder's head is logits; nvinfer's parser reads probabilities)"] if plan.softmax else [])
        ) if plan.derived else ""),
        f"onnx-file={plan.onnx_name}",
        f"# engine: {plan.engine_note}",
        f"model-engine-file={engine}",
        "# 0 = FP32, 1 = INT8, 2 = FP16"
        + (" (explicit Q/DQ graph: the ranges are in the ONNX, no int8-calib-file)" if plan.precision == "int8" else ""),
        f"network-mode={NETWORK_MODE[plan.precision]}",
        f"batch-size={batch}",
        "# network input, channels;height;width",
        f"infer-dims=3;{c.height};{c.width}",
        "# 0 = NCHW, 1 = NHWC",
        f"network-input-order={0 if c.layout == 'NCHW' else 1}",
        "# 0 = RGB, 1 = BGR",
        f"model-color-format={0 if c.color_order == 'RGB' else 1}",
        "# nvinfer computes y = net-scale-factor * (x - offsets[c]) for x in 0..255: " + norm.note,
    ]
    if norm.max_error:
        lines += [f"# APPROXIMATION: largest error {norm.max_error:.3g} in normalised units"]
    lines += [
        f"net-scale-factor={_num(norm.scale)}",
        f"offsets={_list(_num(o) for o in norm.offsets)}",
        f"# resize: the model's preprocessing is {resize['mode']!r}; "
        + {
            "stretch": "nvinfer stretches each frame/object to the network size, as the verified preprocessing did "
            "(nvinfer cannot centre-crop: a crop recipe is refused at deploy)",
            "letterbox": "nvinfer scales each frame/object to fit and pads both sides with black, as the verified "
            "preprocessing did",
        }[resize["mode"]],
        f"maintain-aspect-ratio={resize['maintain_aspect_ratio']}",
        f"symmetric-padding={resize['symmetric_padding']}",
    ]
    if resize["scaling_filter"] is not None:
        lines += [
            (
                "# 0 = nearest, 1 = bilinear, 2 = GPU cubic (the model's resampling filter; nvinfer's default is nearest; "
                "PIL antialiases when shrinking, nvinfer's filter does not)"
            ),
            f"scaling-filter={resize['scaling_filter']}",
        ]
    if not plan.classifier:
        lines += [
            f"# outputs: {', '.join(plan.outputs)} (the features head), attached as NvDsInferTensorMeta for a probe to "
            "read (examples/pyds_probe.py, tensor_outputs); nvinfer parses nothing",
            f"output-blob-names={_list(plan.outputs)}",
            "output-tensor-meta=1",
        ]
        return "\n".join(lines) + "\n"
    lines += [
        f"# output: {plan.outputs[0]} (fp32 probabilities over {len(plan.labels)} labels)",
        f"output-blob-names={plan.outputs[0]}",
        "# one line: the labels separated by ';'",
        f"labelfile-path={LABELS}",
        "# attach the top label only when its probability is above this",
        f"classifier-threshold={_num(threshold)}",
    ]
    return "\n".join(lines) + "\n"


def _num(x: float) -> str:
    """A float for g_ascii_strtod, to 12 significant digits (255 * 0.406 is 103.53, not 103.53000000000002)."""
    x = float(f"{float(x):.12g}")
    return repr(0.0 if x == 0 else x)


def _list(items) -> str:
    return ";".join(str(i) for i in items)


def _facts(folder: Path, tmp: Path, plan: Plan, batches: tuple[int, int]) -> dict[str, Any]:
    norm = plan.normalisation
    return {
        "tool": {"name": "focalnet-edge", "version": __version__},
        "manifest_sha256": sha256_file(folder / MANIFEST),
        "source": {"path": plan.source["path"], "sha256": plan.source["sha256"], "precision": plan.precision},
        "onnx": {
            "path": plan.onnx_name,
            "derived": plan.derived,
            "softmax_appended": plan.softmax,
            "normalisation_in_graph": norm.prepend is not None,
            "input": "frames" if norm.prepend is not None else plan.contract.name,
            "output": ";".join(plan.outputs),
        },
        "engine": {"path": plan.engine_name.format(batch="<batch-size>"), "note": plan.engine_note},
        "batch_size": {"primary": batches[0], "secondary": batches[1]},
        "network_type": plan.network_type,
        "normalisation": {
            "net_scale_factor": norm.scale,
            "offsets": list(norm.offsets),
            "in_graph": norm.in_graph,
            "max_error": norm.max_error,
            "note": norm.note,
        },
        "resize": dict(plan.resize),
        "files": {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.name != FACTS},
        "warnings": plan.warnings,
    }


def _replace_dir(tmp: Path, target: Path) -> None:
    """Rename `tmp` onto `target`; an existing `target` is moved aside first and removed after."""
    old = None
    try:
        if target.exists():
            old = target.with_name(f".{target.name}.old.{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
    except OSError as e:
        if old is not None and not target.exists():
            os.replace(old, target)
        raise ArtifactError(f"{target}: could not be written ({e.strerror or e})") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
