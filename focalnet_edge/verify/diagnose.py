"""`focalnet-edge diagnose`: where an artifact's error comes from, block by block, against PyTorch fp32.

For each FocalNet block (its checkpoint module path: `embeddings`, `encoder.stages.S.layers.L`,
`encoder.stages.S.downsample`, and the head, `classifier`, with the final LayerNorm and pooling
before it) the block's output in the artifact is
compared with the same module's output in the PyTorch fp32 model on the same images: SQNR and
cosine, and the error the block adds beyond its input's (the noise-to-signal ratio of its
output less that of the block before it, in dB: what the block itself contributes, the
inherited error taken out).

Memory stays bounded: the artifact's graph gets the PyTorch block outputs of one batch as extra
inputs and reduces each tapped tensor against its reference to four numbers per image inside
the graph (sums of squares of the error, the reference and the output, and their dot product),
so ONNX Runtime frees every activation as in a plain inference; nothing but one batch's block
outputs (PyTorch's) is held at a time. TensorRT engines cannot be tapped after they are built:
diagnose their ONNX source, which is what the engine was built from.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from ..folder import artifacts
from ..calibration.placement import module_block
from ..errors import ArtifactError, ConfigError
from ..folder.onnx_io import has_external_data, load_onnx, ort_session

if TYPE_CHECKING:
    from ..folder.manifest import Artifact, Manifest

log = logging.getLogger(__name__)

#: the artifact diagnosed when none is named, from the precision table: the quantized forms TensorRT builds,
#: then the CPU's, then the float ones the export does not write (int8, fp8, int8-cpu, fp16; fp32 is the reference)
DEFAULT_ORDER = tuple(p.name for p in sorted((p for p in artifacts.PRECISIONS.values() if p.stage != artifacts.EXPORT),
                                             key=lambda p: (not p.quantized, p.engine is None)))
BATCH = 8  #: images per run: memory is one batch of block outputs, not the image count
#: modules diagnosed as part of the block after them: the final LayerNorm belongs to the head (its
#: normalisation rescales the relative error of the residual stream, which is no error of its own)
MERGED_INTO_NEXT = ("layernorm",)
#: ops whose outputs are never a block's output (shape arithmetic, constants)
_NOT_ACTIVATIONS = ("Constant", "Shape", "Gather", "Unsqueeze", "Concat", "ConstantOfShape", "Range", "Cast")


@dataclass
class BlockError:
    """The artifact's error at one block's output against PyTorch fp32."""

    block: str  #: checkpoint module path
    tensor: str  #: the ONNX tensor tapped
    sqnr_db: float  #: of the block's output
    cosine: float  #: mean over images
    added_db: float  #: SQNR of the error the block adds beyond its input's (lower: worse; inf: none)
    index: int = 0  #: position in the network (0: first block)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in d.items()}


@dataclass
class Diagnosis:
    artifact: str
    precision: str
    images: int
    reference: str
    blocks: list[BlockError] = field(default_factory=list)  #: worst first (lowest `added_db`)
    skipped: list[str] = field(default_factory=list)  #: blocks without a matching tensor, and why

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": self.artifact, "precision": self.precision, "images": self.images, "reference": self.reference,
                "blocks": [b.to_dict() for b in self.blocks], "skipped": self.skipped}


def block_outputs(model: onnx.ModelProto) -> dict[str, str]:
    """Block (module path) -> the tensor that leaves it, in network order: the last activation a
    block's nodes make that a node outside the block (or the graph's output) reads."""
    from ..calibration.fp16 import float_tensors

    floats = set(float_tensors(model))
    readers: dict[str, set[str | None]] = {}
    for n in model.graph.node:
        for i in n.input:
            readers.setdefault(i, set()).add(module_block(n.name))
    graph_outputs = {o.name for o in model.graph.output}
    out: dict[str, str] = {}
    for n in model.graph.node:
        block = module_block(n.name)
        if block is None or block in MERGED_INTO_NEXT or n.op_type in _NOT_ACTIVATIONS:
            continue
        for t in n.output:
            if t in floats and (t in graph_outputs or readers.get(t, set()) - {block}):
                out.pop(block, None)  # re-inserted: dict order follows the block's last output
                out[block] = t
    return out


AXES_AS_INPUT = {"ReduceSum": 13}  #: the opset from which a reduction takes its axes as an input (the others: 18)


def _reduce(nodes: list, opset: int, name: str, op: str, x: str) -> str:
    """Append a per-image reduction (over every axis but the first) of `x` (a (B, -1) tensor)."""
    from onnx import TensorProto, helper

    if opset >= AXES_AS_INPUT.get(op, 18):
        axes = f"{name}__axes"
        nodes += [helper.make_node("Constant", [], [axes], value=helper.make_tensor(axes, TensorProto.INT64, [1], [1])),
                  helper.make_node(op, [x, axes], [name], name=name, keepdims=0)]
    else:
        nodes.append(helper.make_node(op, [x], [name], name=name, axes=[1], keepdims=0))
    return name


def error_probe(model: onnx.ModelProto, tapped: dict[str, str]) -> tuple[onnx.ModelProto, dict[str, tuple[str, str]]]:
    """A copy of `model` that takes each tapped tensor's reference, flattened to (B, -1), as an input
    and outputs, per block, (B, 4) sums per image: error^2, reference^2, output^2, output x
    reference (float64), reduced right after the tensor is made. The model's own outputs are dropped.
    Returns the probe and block -> (its reference input, its statistics output)."""
    from onnx import TensorProto, helper

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    opset = next((o.version for o in probe.opset_import if o.domain in ("", "ai.onnx")), 17)
    by_tensor = {t: b for b, t in tapped.items()}
    shape = "focalnet_edge_diag__flat"
    nodes = [helper.make_node("Constant", [], [shape], value=helper.make_tensor(shape, TensorProto.INT64, [2], [0, -1]))]
    io: dict[str, tuple[str, str]] = {}
    for node in probe.graph.node:
        nodes.append(node)
        for t in node.output:
            if t not in by_tensor:
                continue
            base = f"focalnet_edge_diag_{len(io)}"
            ref, stats = f"{base}_ref", f"{base}_stats"
            io[by_tensor[t]] = (ref, stats)
            y, r, e = f"{base}_y", f"{base}_r", f"{base}_e"
            # float64 sums: float32 over a block's ~1e5 values per image drifts by ~1e-4 (a cosine over 1)
            nodes += [helper.make_node("Cast", [t], [f"{base}_f"], name=f"{base}_f", to=TensorProto.DOUBLE),
                      helper.make_node("Reshape", [f"{base}_f", shape], [y], name=y),
                      helper.make_node("Cast", [ref], [f"{base}_rd"], name=f"{base}_rd", to=TensorProto.DOUBLE),
                      helper.make_node("Reshape", [f"{base}_rd", shape], [r], name=r),
                      helper.make_node("Sub", [y, r], [e], name=e),
                      helper.make_node("Mul", [y, r], [f"{base}_yr"], name=f"{base}_yr")]
            sums = [_reduce(nodes, opset, f"{base}_ee", "ReduceSumSquare", e), _reduce(nodes, opset, f"{base}_rr", "ReduceSumSquare", r),
                    _reduce(nodes, opset, f"{base}_yy", "ReduceSumSquare", y), _reduce(nodes, opset, f"{base}_dot", "ReduceSum", f"{base}_yr")]
            axis = f"{base}_ax"
            nodes.append(helper.make_node("Constant", [], [axis], value=helper.make_tensor(axis, TensorProto.INT64, [1], [1])))
            nodes += [helper.make_node("Unsqueeze", [s, axis], [f"{s}_u"], name=f"{s}_u") for s in sums]
            nodes.append(helper.make_node("Concat", [f"{s}_u" for s in sums], [stats], name=stats, axis=1))
    del probe.graph.node[:]
    probe.graph.node.extend(nodes)
    probe.graph.input.extend(helper.make_tensor_value_info(ref, TensorProto.FLOAT, None) for ref, _ in io.values())
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_tensor_value_info(stats, TensorProto.DOUBLE, ["batch", 4]) for _, stats in io.values())
    return probe, io


def _torch_taps(module, blocks: list[str]):
    """Forward hooks on the PyTorch modules of `blocks` (found by module path suffix); returns
    (the dict they fill with each block's output as float32 numpy, the hook handles, blocks not found)."""
    names = dict(module.named_modules())
    captured: dict[str, np.ndarray] = {}
    handles, missing = [], []
    for block in blocks:
        found = sorted((n for n in names if n == block or n.endswith("." + block)), key=len)
        if not found:
            missing.append(block)
            continue

        def hook(_m, _inp, out, block=block):
            t = out[0] if isinstance(out, (tuple, list)) else out
            t = getattr(t, "logits", t)
            captured[block] = t.detach().float().cpu().numpy()

        handles.append(names[found[0]].register_forward_hook(hook))
    return captured, handles, missing


def pick_artifact(manifest: Manifest | dict[str, Any], name: str | None) -> Any:
    """The artifact to diagnose: `name` (file or precision), else the first of `DEFAULT_ORDER` built.
    A `Manifest` gives its `Artifact`; the JSON of one (unchecked) gives its entry."""
    from ..folder.manifest import Artifact, Manifest

    if not isinstance(manifest, Manifest):
        return _pick({n: Artifact.unchecked(n, e) for n, e in manifest["artifacts"].items()}, name).entry
    return _pick(manifest.artifacts, name)


def _pick(entries: dict[str, Artifact], name: str | None) -> Artifact:
    if name:
        chosen = [a for a in artifacts.select(entries, name) if a.format == artifacts.ONNX]
        if not chosen:
            raise ConfigError(f"--artifact {name}: a TensorRT engine cannot be tapped after it is built; diagnose the ONNX file it "
                              "was built from (its precision, e.g. --artifact int8), the same graph run by ONNX Runtime")
        return chosen[0]
    for precision in DEFAULT_ORDER:
        found = [a for a in entries.values()
                 if a.precision == precision and a.format == artifacts.ONNX and not artifacts.for_nvinfer(a)]
        if found:
            return found[0]
    raise ArtifactError(f"no fp16, int8 or fp8 artifact to diagnose here ({', '.join(entries) or 'none listed'}); "
                        "build one with --precision fp16|int8|fp8, or name one with --artifact")


def diagnose(folder: str | Path, artifact: str | None = None, images: str | None = None, model: str | None = None,
             batch: int = BATCH, limit: int | None = None, progress: bool = False) -> Diagnosis:
    """The per-block error of an artifact of output folder `folder` against PyTorch fp32 (see the module).

    Images: `images` (a folder), else the frames the build stored with its references. `model`:
    the checkpoint of the reference (default: the manifest's source).
    """
    import torch
    from tqdm import tqdm

    from ..folder.io import temporary_path
    from ..folder.manifest import check_artifact, read_manifest
    from .choose import reference_for
    from .references import load_references
    from .compare import load_image_set

    folder = Path(folder)
    manifest = read_manifest(folder)
    entry = pick_artifact(manifest, artifact)
    path = check_artifact(folder, entry)
    fp32 = check_artifact(folder, manifest.artifacts[artifacts.FP32_ONNX]) if artifacts.FP32_ONNX in manifest.artifacts else None
    if fp32 is None:
        raise ArtifactError(f"{folder}: no {artifacts.FP32_ONNX} listed: the block outputs are found in the fp32 graph")
    taps = block_outputs(load_onnx(fp32, external_data=False))
    if not taps:
        raise ArtifactError(f"{fp32}: no FocalNet block found in the node names (a graph exported by focalnet-edge names them)")
    graph = load_onnx(path, external_data=False)
    have = {o for n in graph.graph.node for o in n.output}
    skipped = [f"{b}: tensor {t} is not in {path.name}" for b, t in taps.items() if t not in have]
    taps = {b: t for b, t in taps.items() if t in have}
    contract = manifest.contract
    reference = reference_for(manifest, model)
    reference.for_contract(contract)
    captured, handles, missing = _torch_taps(reference.module, list(taps))
    skipped += [f"{b}: no such PyTorch module" for b in missing]
    taps = {b: t for b, t in taps.items() if b not in missing}
    probe, feeds = error_probe(graph, taps)
    del graph
    if images:
        found = load_image_set(images, None)
        chunks = (contract.frames_from_images(found.paths[i : i + batch]) for i in range(0, len(found.paths[:limit]), batch))
        count, source = len(found.paths[:limit]), images
    else:
        refs = load_references(folder, manifest)
        stored = refs.frames[:limit]
        chunks = (stored[i : i + batch] for i in range(0, len(stored), batch))
        count, source = len(stored), "the build's stored verification images"
    sums = {b: np.zeros(4) for b in taps}
    cos_sum = {b: 0.0 for b in taps}
    seen = 0
    try:
        # beside the artifact, where its external data resolves; a read-only folder (a deployed image)
        # without external data: in the temporary folder
        beside = path if os.access(path.parent, os.W_OK) or has_external_data(probe) else Path(tempfile.gettempdir()) / path.name
        with temporary_path(beside, "diagnose-probe") as tmp:
            onnx.save(probe, str(tmp))
            del probe
            sess = ort_session(tmp, optimize=False, priority_order=True)
            input_name = sess.get_inputs()[0].name
            out_blocks = {stats: b for b, (_, stats) in feeds.items()}
            for frames in tqdm(chunks, total=(count + batch - 1) // batch, desc="diagnose", unit="batch", disable=None if progress else True):
                captured.clear()
                with torch.inference_mode():
                    reference.run(contract.reference_inputs(frames))
                feed = {input_name: contract.inputs_from_frames(frames)}
                for b in taps:
                    feed[feeds[b][0]] = np.ascontiguousarray(captured[b].reshape(len(frames), -1), np.float32)
                for name, stats in zip(out_blocks, sess.run(list(out_blocks), feed)):
                    b = out_blocks[name]
                    stats = stats.astype(np.float64)
                    sums[b] += stats.sum(0)
                    cos_sum[b] += float((stats[:, 3] / np.sqrt(np.maximum(stats[:, 1] * stats[:, 2], 1e-300))).sum())
                seen += len(frames)
                captured.clear()
            del sess
    finally:
        for h in handles:
            h.remove()
    if not seen:
        raise ArtifactError("no image to diagnose with")
    blocks, previous = [], 0.0
    for k, b in enumerate(taps):
        ee, rr = sums[b][0], sums[b][1]
        nsr = ee / max(rr, 1e-300)
        added = max(nsr - previous, 0.0)
        blocks.append(BlockError(b, taps[b], _db(nsr), cos_sum[b] / seen, _db(added), k))
        previous = nsr
    blocks.sort(key=lambda e: (e.added_db, e.index))
    return Diagnosis(entry.path, entry.precision, seen, f"pytorch fp32 ({model or manifest.model.source}) on {source}",
                     blocks, skipped)


def _db(nsr: float) -> float:
    """10 log10(1 / noise-to-signal ratio): inf for no noise."""
    return float("inf") if nsr <= 0 else float(-10 * np.log10(nsr))
