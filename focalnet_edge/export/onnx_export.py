"""torch -> ONNX: export a head of a checkpoint, simplify, check the numbers, write atomically."""

from __future__ import annotations

import io
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from .. import __version__
from ..errors import ArtifactError, ConfigError
from ..io import atomic_path
from ..onnx_io import ort_session, set_metadata
from ..model.weights import Checkpoint
from ..contract import InputContract
from .heads import FusedPreprocess, build_head
from .simplify import simplify

log = logging.getLogger(__name__)
MIN_OPSET = 17


@dataclass
class ExportResult:
    path: Path
    contract: InputContract
    outputs: list[str]
    head: str
    opset: int
    simplifier: str
    nodes: int
    checks: dict[str, float] = field(default_factory=dict)  #: max abs errors of the export checks
    labels: dict[int, str] = field(default_factory=dict)


def ort_outputs(model: onnx.ModelProto | bytes | str, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort_session(model).run(None, feed)


def _max_abs(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.abs(x.astype(np.float64) - y.astype(np.float64)).max()) for x, y in zip(a, b))


def make_contract(
    ckpt: Checkpoint,
    image_size: tuple[int, int] | None,
    batch: tuple[int, int, int],
    dynamic_batch: bool,
    dynamic_size: bool,
    fuse_preprocess: bool,
    frames_dtype: str,
    layout: str | None,
    color_order: str,
    resize_mode: str = "crop",
    frame_size: str = "input",
) -> InputContract:
    """The input contract of the graph to export (checked before anything is traced)."""
    if fuse_preprocess and frames_dtype not in ("uint8", "float32"):
        raise ConfigError(f"frames dtype {frames_dtype!r} not supported; expected uint8 or float32")
    if not fuse_preprocess and (layout not in (None, "NCHW") or color_order != "RGB" or frames_dtype != "uint8" or frame_size != "input"):
        raise ConfigError("--layout, --color-order, --frames-dtype and --frame-size apply to raw frames: add --fuse-preprocess")
    height, width = image_size or (ckpt.preprocessing.height, ckpt.preprocessing.width)
    return InputContract(
        name="frames" if fuse_preprocess else "pixel_values",
        dtype=frames_dtype if fuse_preprocess else "float32",
        layout=layout or ("NHWC" if fuse_preprocess else "NCHW"),
        color_order=color_order if fuse_preprocess else "RGB",
        height=height,
        width=width,
        size_multiple=ckpt.config.total_stride,
        dynamic_batch=dynamic_batch,
        dynamic_size=dynamic_size,
        batch=batch,
        fused_preprocess=fuse_preprocess,
        preprocessing=ckpt.preprocessing.for_size(height, width).with_mode(resize_mode).to_dict(),
        frame_size=frame_size,
    )


def dynamic_axes(contract: InputContract, outputs: list[str], head: str) -> dict[str, dict[int, str]]:
    """torch.onnx's dynamic_axes: batch (unless static), and height/width with a dynamic size."""
    axes: dict[str, dict[int, str]] = {}
    in_axes: dict[int, str] = {0: "batch"} if contract.dynamic_batch else {}
    if contract.dynamic_size:
        h, w = contract.spatial_axes
        in_axes.update({h: "height", w: "width"})
    if in_axes:
        axes[contract.name] = in_axes
    for name in outputs:
        out_axes = {0: "batch"} if contract.dynamic_batch else {}
        if contract.dynamic_size and head in ("features", "reconstruction"):
            out_axes.update({2: f"{name}_height", 3: f"{name}_width"})
        if out_axes:
            axes[name] = out_axes
    return axes


def trace_and_check(
    module: torch.nn.Module, contract: InputContract, opset: int, simplifier: str, head: str
) -> tuple[onnx.ModelProto, dict[str, float]]:
    """torch.onnx.export of `module`, simplified; both graphs checked with ONNX Runtime on the CPU.

    Before simplification against PyTorch, after simplification against the graph before it;
    each graph runs once.
    """
    outputs = module.output_names
    x = contract.sample_input(2 if contract.dynamic_batch else contract.batch[1])
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.from_numpy(x),),
            buf,
            input_names=[contract.name],
            output_names=outputs,
            dynamic_axes=dynamic_axes(contract, outputs, head) or None,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
        reference = [t.numpy() for t in module(torch.from_numpy(x))]
    raw = onnx.load_from_string(buf.getvalue())
    feed = {contract.name: x}
    raw_out = ort_outputs(raw, feed)
    slim = simplify(raw, simplifier)
    checks = {"torch_vs_onnx": _max_abs(reference, raw_out), "onnx_vs_simplified": _max_abs(raw_out, ort_outputs(slim, feed))}
    scale = max(1.0, max(float(np.abs(r).max()) for r in reference))
    if checks["torch_vs_onnx"] > 1e-4 * scale or checks["onnx_vs_simplified"] > 1e-4 * scale:
        raise ArtifactError(f"exported graph does not reproduce PyTorch (max abs errors {checks}); please report this")
    return slim, checks


def _with_resize(body: onnx.ModelProto, contract: InputContract, traced: InputContract) -> tuple[onnx.ModelProto, float]:
    """The body behind the in-graph resize, checked: frames that the resize leaves alone give the body's outputs."""
    from .resize import prepend_resize

    n = 2 if contract.dynamic_batch else contract.batch[1]
    rgb = np.random.default_rng(0).integers(0, 256, (n, contract.height, contract.width, 3), dtype=np.uint8)
    expect = ort_outputs(body, {traced.name: traced.frames_in_layout(rgb)})
    model = prepend_resize(body, contract)
    got = ort_outputs(model, {contract.name: contract.inputs_from_frames(rgb)})
    err = _max_abs(expect, got)
    scale = max(1.0, max(float(np.abs(r).max()) for r in expect))
    if err > 1e-4 * scale:
        raise ArtifactError(f"the resize in the graph does not leave frames of the input size alone (max abs error {err:.3g}); please report this")
    return model, err


def write_onnx(model: onnx.ModelProto, output: Path, facts: dict[str, Any]) -> None:
    """Stamp focalnet-edge's metadata on `model`, check it, and write it atomically to `output`."""
    model.producer_name, model.producer_version = "focalnet-edge", __version__
    set_metadata(model, {"version": __version__, **facts})
    onnx.checker.check_model(model)
    with atomic_path(output) as tmp:
        onnx.save(model, str(tmp))


def export_onnx(
    ckpt: Checkpoint,
    output: str | Path,
    *,
    head: str = "logits",
    image_size: tuple[int, int] | None = None,
    batch: tuple[int, int, int] = (1, 1, 32),
    dynamic_batch: bool = True,
    dynamic_size: bool = False,
    opset: int | None = None,
    fuse_preprocess: bool = False,
    frames_dtype: str = "uint8",
    layout: str | None = None,
    color_order: str = "RGB",
    simplifier: str = "onnxslim",
    out_features: list[str] | None = None,
    resize_mode: str = "crop",
    frame_size: str = "input",
) -> ExportResult:
    """Export `ckpt` to the ONNX file `output` (written atomically) and check its numbers.

    resize_mode: crop, stretch or letterbox (`ImageSpec.mode`), recorded in the contract.
    frame_size: "any" puts the resize into the graph (`export.resize`; opset >= 18, the default
        then), which takes uint8 frames of any size; "input": frames of the input size.
    opset: default 17, 18 with frame_size "any".
    """
    from .resize import MIN_OPSET as RESIZE_OPSET, body_contract, check_spec

    in_graph = frame_size == "any"
    opset = opset if opset is not None else RESIZE_OPSET if in_graph else MIN_OPSET
    if opset < MIN_OPSET:
        raise ConfigError(f"opset {opset} not supported: focalnet-edge exports opset >= {MIN_OPSET} (one LayerNormalization node per norm)")
    if in_graph and opset < RESIZE_OPSET:
        raise ConfigError(f"opset {opset} not supported with --frame-size any: the resize in the graph needs opset >= {RESIZE_OPSET}")
    contract = make_contract(ckpt, image_size, batch, dynamic_batch, dynamic_size, fuse_preprocess, frames_dtype, layout, color_order,
                             resize_mode, frame_size)
    if in_graph:
        check_spec(contract.image_spec)
    traced = body_contract(contract) if in_graph else contract
    module = build_head(ckpt, head, out_features)
    module.model.check_input_size(contract.height, contract.width)
    if fuse_preprocess:
        spec = contract.image_spec
        module = FusedPreprocess(module, spec.mean, spec.std, spec.rescale_factor, traced.layout, traced.color_order)
    module.eval()
    exported, checks = trace_and_check(module, traced, opset, simplifier, head)
    if in_graph:
        exported, checks["resize_identity"] = _with_resize(exported, contract, traced)
    labels = dict(ckpt.config.id2label) if head in ("logits", "probs") else {}
    exported.doc_string = f"FocalNet {head} head exported by focalnet-edge {__version__} from {ckpt.source}"
    output = Path(output)
    write_onnx(exported, output, {
        "source": ckpt.source,
        "head": head,
        "outputs": module.output_names,
        "input": json.loads(contract.to_json()),
        "labels": {str(k): v for k, v in labels.items()},
        "precision": "fp32",
    })
    log.debug("wrote %s (%d nodes, torch vs onnx max abs %.2e)", output, len(exported.graph.node), checks["torch_vs_onnx"])
    return ExportResult(output, contract, module.output_names, head, opset, simplifier, len(exported.graph.node), checks, labels)
