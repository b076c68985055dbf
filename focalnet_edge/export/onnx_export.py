"""torch -> ONNX: export a head of a checkpoint, simplify, check the numbers, write atomically."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from .. import __version__
from ..errors import ArtifactError, ConfigError
from ..folder.labels import CHECKPOINT_FIX, check_labels
from ..folder.onnx_io import data_path, ort_session, save_onnx, set_metadata
from ..model.weights import Checkpoint
from ..folder.contract import InputContract
from ..limits import release_freed_memory
from .heads import FusedPreprocess, build_head
from .simplify import simplify
from .trace import trace

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


def ort_outputs(model: onnx.ModelProto | bytes | str | Path, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The outputs of one run; the session (a copy of the weights) is released before returning."""
    session = ort_session(model, optimize=False)
    try:
        return session.run(None, feed)
    finally:
        del session
        release_freed_memory()



def _max_abs(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.abs(x.astype(np.float64) - y.astype(np.float64)).max()) for x, y in zip(a, b))


#: the options of raw frames (`--fuse-preprocess`) and their values when not given
FRAME_OPTIONS = {"layout": None, "color_order": "RGB", "frames_dtype": "uint8", "frame_size": "input"}


def make_contract(  # noqa: PLR0913 - the export flags that make the input contract; an options argument comes with the CLI's argument groups (issue 28)
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
    if not fuse_preprocess:  # an option of raw frames given without them is refused, never ignored
        given = [f"--{k.replace('_', '-')} {v}" for k, v in
                 (("layout", layout), ("color_order", color_order), ("frames_dtype", frames_dtype), ("frame_size", frame_size))
                 if v != FRAME_OPTIONS[k]]
        if given:
            raise ConfigError(f"{', '.join(given)}: {'these apply' if len(given) > 1 else 'applies'} to raw frames, "
                              "and this graph takes pixel values; add --fuse-preprocess (or leave them out)")
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


def write_onnx(model: onnx.ModelProto, output: Path, facts: dict[str, Any], base_dir: Path | None = None) -> None:
    """Stamp focalnet-edge's metadata on `model` and write it atomically to `output` (check it with `check_file`).

    Written with external data (`output.data`) when the weights are too large for one protobuf
    file (`onnx_io.save_onnx`); the tensors then leave `model` for the file. `base_dir`: where
    tensors of `model` still on disk are (the folder of the file it was simplified from).
    """
    model.producer_name, model.producer_version = "focalnet-edge", __version__
    set_metadata(model, {"version": __version__, **facts})
    save_onnx(model, output, base_dir=base_dir)


def check_file(output: Path) -> None:
    """onnx's checker on the written file (any size; call once the in-memory graph is released)."""
    try:
        onnx.checker.check_model(str(output))
    except onnx.checker.ValidationError as e:
        _remove(output)
        raise ArtifactError(f"{output}: the exported graph is not valid ONNX ({str(e).splitlines()[0][:200]}); please report this") from None


def _remove(output: Path) -> None:
    output.unlink(missing_ok=True)
    data_path(output).unlink(missing_ok=True)


def export_onnx(  # noqa: PLR0913, C901 - one check per refused flag combination; keyword-only export flags of the public Python API (README); an options object would change that API
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
    release_checkpoint: bool = False,
) -> ExportResult:
    """Export `ckpt` to the ONNX file `output` (written atomically) and check its numbers.

    resize_mode: crop, stretch or letterbox (`ImageSpec.mode`), recorded in the contract.
    frame_size: "any" puts the resize into the graph (`export.resize`; opset >= 18, the default
        then), which takes uint8 frames of any size; "input": frames of the input size.
    opset: default 17, 18 with frame_size "any".
    release_checkpoint: empty `ckpt.state_dict` once the graph is traced, so the weights are
        not held in PyTorch while ONNX Runtime and the simplifier hold theirs (`build` does; the
        checkpoint is then unusable).
    """
    from .resize import MIN_OPSET as RESIZE_OPSET, body_contract, check_spec

    in_graph = frame_size == "any"
    opset = opset if opset is not None else RESIZE_OPSET if in_graph else MIN_OPSET
    if opset < MIN_OPSET:
        raise ConfigError(f"opset {opset} not supported: focalnet-edge exports opset >= {MIN_OPSET} (one LayerNormalization node per norm)")
    if in_graph and opset < RESIZE_OPSET:
        raise ConfigError(f"opset {opset} not supported with --frame-size any: the resize in the graph needs opset >= {RESIZE_OPSET}")
    labels = dict(ckpt.config.id2label) if head in ("logits", "probs") else {}
    check_labels(labels, ckpt.source, CHECKPOINT_FIX)
    contract = make_contract(ckpt, image_size, batch, dynamic_batch, dynamic_size, fuse_preprocess, frames_dtype, layout, color_order,
                             resize_mode, frame_size)
    if in_graph:
        check_spec(contract.image_spec)
    traced = body_contract(contract) if in_graph else contract
    module = build_head(ckpt, head, out_features)
    if traced.dynamic_size:  # a graph of one size pads (constant amounts); one of any size has no padding in it
        module.model.check_input_size(contract.height, contract.width)
    batch_traced = 2 if contract.dynamic_batch else contract.batch[1]
    ckpt.config.check_input_memory(traced.height, traced.width, batch_traced,
                                   f"exporting at input size {traced.height}x{traced.width} (batch {batch_traced})",
                                   "choose a smaller --image-size (default: the checkpoint's image_size)")
    if fuse_preprocess:
        spec = contract.image_spec
        module = FusedPreprocess(module, spec.mean, spec.std, spec.rescale_factor, traced.layout, traced.color_order)
    module.eval()
    output = Path(output)
    x = traced.sample_input(batch_traced)
    feed = {traced.name: x}  # the traced body's input (frames of the input size with --frame-size any)
    with torch.no_grad():
        reference = [t.numpy() for t in module(torch.from_numpy(x))]
    outputs = module.output_names
    # Memory: the graph goes through files, never two copies of the weights at once in this
    # process beyond the model's own (torch's export, the raw file, the simplified file).
    with tempfile.TemporaryDirectory(prefix=f".{output.name}.export-", suffix=".partial", dir=_work_parent(output)) as work:
        raw_path = Path(work) / "raw.onnx"
        trace(module, traced, opset, head, x, raw_path)
        del module
        if release_checkpoint:  # the weights live in the files from here on
            ckpt.state_dict.clear()
        release_freed_memory()
        raw_out = ort_outputs(raw_path, feed)
        exported = simplify(str(raw_path), simplifier)  # its weights stay in `work`
        release_freed_memory()  # what the simplifier left behind
        simplified_out = None
        if in_graph:  # the resize goes in front of the body in memory: its weights come off the work file first
            from onnx.external_data_helper import load_external_data_for_model

            load_external_data_for_model(exported, work)
            simplified_out = ort_outputs(exported, feed)
            exported, resize_identity = _with_resize(exported, contract, traced)
        exported.doc_string = f"FocalNet {head} head exported by focalnet-edge {__version__} from {ckpt.source}"
        nodes = len(exported.graph.node)
        write_onnx(exported, output, {
            "source": ckpt.source,
            "head": head,
            "outputs": outputs,
            "input": json.loads(contract.to_json()),
            "labels": {str(k): v for k, v in labels.items()},
            "precision": "fp32",
        }, base_dir=Path(work))
        del exported
        release_freed_memory()
    check_file(output)
    if simplified_out is None:  # the written file itself
        simplified_out = ort_outputs(output, feed)
    checks = {"torch_vs_onnx": _max_abs(reference, raw_out), "onnx_vs_simplified": _max_abs(raw_out, simplified_out)}
    if in_graph:
        checks["resize_identity"] = resize_identity
    scale = max(1.0, max(float(np.abs(r).max()) for r in reference))
    if checks["torch_vs_onnx"] > 1e-4 * scale or checks["onnx_vs_simplified"] > 1e-4 * scale:
        _remove(output)
        raise ArtifactError(f"exported graph does not reproduce PyTorch (max abs errors {checks}); please report this")
    log.debug("wrote %s (%d nodes, torch vs onnx max abs %.2e)", output, nodes, checks["torch_vs_onnx"])
    return ExportResult(output, contract, outputs, head, opset, simplifier, nodes, checks, labels)


def _work_parent(output: Path) -> Path:
    """Where the export's work files go: beside the output (same disk; /tmp may be memory)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    return output.parent
