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
from ..model.preprocessing import ImageSpec
from ..model.weights import Checkpoint
from .contract import InputContract
from .heads import FusedPreprocess, build_head
from .simplify import simplify

log = logging.getLogger(__name__)
MIN_OPSET = 17
META_PREFIX = "focalnet_edge."


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


def _spec_for_size(spec: ImageSpec, height: int, width: int) -> ImageSpec:
    return spec.for_size(height, width)


def sample_input(contract: InputContract, batch: int, seed: int = 0) -> np.ndarray:
    """A deterministic input that fits `contract` (random frames, or random normalised pixels)."""
    rng = np.random.default_rng(seed)
    shape = contract.shape(batch)
    shape = [contract.height if s == "height" else contract.width if s == "width" else s for s in shape]
    if contract.fused_preprocess:  # raw pixel values 0..255, as uint8 or float
        return rng.integers(0, 256, shape, dtype=np.uint8).astype(contract.dtype)
    return rng.standard_normal(shape).astype(contract.dtype)


def ort_outputs(model: onnx.ModelProto | bytes | str, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"]).run(None, feed)


def _max_abs(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.abs(x.astype(np.float64) - y.astype(np.float64)).max()) for x, y in zip(a, b))


def set_metadata(model: onnx.ModelProto, facts: dict[str, Any]) -> None:
    """Write `facts` into metadata_props under the focalnet_edge. prefix (JSON for non-strings)."""
    keep = [p for p in model.metadata_props if not p.key.startswith(META_PREFIX) or p.key[len(META_PREFIX):] not in facts]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in facts.items():
        prop = model.metadata_props.add()
        prop.key = META_PREFIX + key
        prop.value = value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def load_onnx(path: str | Path, external_data: bool = True) -> onnx.ModelProto:
    """`onnx.load`, with a one-line `ArtifactError` naming the file when it is missing or unreadable."""
    try:
        return onnx.load(str(path), load_external_data=external_data)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: no such ONNX file") from None
    except Exception as e:  # protobuf DecodeError and friends
        raise ArtifactError(f"{path}: not a readable ONNX file ({e.__class__.__name__})") from None


def read_metadata(model: onnx.ModelProto) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in model.metadata_props:
        if p.key.startswith(META_PREFIX):
            try:
                out[p.key[len(META_PREFIX):]] = json.loads(p.value)
            except ValueError:
                out[p.key[len(META_PREFIX):]] = p.value
    return out


def export_onnx(
    ckpt: Checkpoint,
    output: str | Path,
    *,
    head: str = "logits",
    image_size: tuple[int, int] | None = None,
    batch: tuple[int, int, int] = (1, 1, 32),
    dynamic_batch: bool = True,
    dynamic_size: bool = False,
    opset: int = MIN_OPSET,
    fuse_preprocess: bool = False,
    frames_dtype: str = "uint8",
    layout: str | None = None,
    color_order: str = "RGB",
    simplifier: str = "onnxslim",
    out_features: list[str] | None = None,
) -> ExportResult:
    """Export `ckpt` to the ONNX file `output` (written atomically) and check its numbers.

    The graph is checked twice with ONNX Runtime on the CPU: before simplification against
    PyTorch, and after simplification against the graph before it.
    """
    if opset < MIN_OPSET:
        raise ConfigError(f"opset {opset} not supported: focalnet-edge exports opset >= {MIN_OPSET} (one LayerNormalization node per norm)")
    module = build_head(ckpt, head, out_features)
    stride = ckpt.config.total_stride
    height, width = image_size or (ckpt.preprocessing.height, ckpt.preprocessing.width)
    module_model = module.model
    module_model.check_input_size(height, width)
    spec = _spec_for_size(ckpt.preprocessing, height, width)
    layout = layout or ("NHWC" if fuse_preprocess else "NCHW")
    contract = InputContract(
        name="frames" if fuse_preprocess else "pixel_values",
        dtype=frames_dtype if fuse_preprocess else "float32",
        layout=layout,
        color_order=color_order if fuse_preprocess else "RGB",
        height=height,
        width=width,
        size_multiple=stride,
        dynamic_batch=dynamic_batch,
        dynamic_size=dynamic_size,
        batch=batch,
        fused_preprocess=fuse_preprocess,
        preprocessing=spec.to_dict(),
    )
    if fuse_preprocess and frames_dtype not in ("uint8", "float32"):
        raise ConfigError(f"frames dtype {frames_dtype!r} not supported; expected uint8 or float32")
    if not fuse_preprocess and (layout != "NCHW" or color_order != "RGB" or frames_dtype != "uint8"):
        raise ConfigError("--layout, --color-order and --frames-dtype apply to raw frames: add --fuse-preprocess")
    if fuse_preprocess:
        module = FusedPreprocess(module, spec.mean, spec.std, spec.rescale_factor, layout, color_order)
    module.eval()
    outputs = module.output_names

    trace_batch = 2 if dynamic_batch else batch[1]
    x = sample_input(contract, trace_batch)
    axes: dict[str, dict[int, str]] = {}
    in_axes: dict[int, str] = {0: "batch"} if dynamic_batch else {}
    if dynamic_size:
        hw = (2, 3) if layout == "NCHW" else (1, 2)
        in_axes.update({hw[0]: "height", hw[1]: "width"})
    if in_axes:
        axes[contract.name] = in_axes
    for name in outputs:
        out_axes = {0: "batch"} if dynamic_batch else {}
        if dynamic_size and head in ("features", "reconstruction"):
            out_axes.update({2: f"{name}_height", 3: f"{name}_width"})
        if out_axes:
            axes[name] = out_axes

    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.from_numpy(x),),
            buf,
            input_names=[contract.name],
            output_names=outputs,
            dynamic_axes=axes or None,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
        reference = [t.numpy() for t in module(torch.from_numpy(x))]
    raw = onnx.load_from_string(buf.getvalue())
    feed = {contract.name: x}
    checks = {"torch_vs_onnx": _max_abs(reference, ort_outputs(raw, feed))}
    slim = simplify(raw, simplifier)
    checks["onnx_vs_simplified"] = _max_abs(ort_outputs(raw, feed), ort_outputs(slim, feed))
    scale = max(1.0, max(float(np.abs(r).max()) for r in reference))
    if checks["torch_vs_onnx"] > 1e-4 * scale or checks["onnx_vs_simplified"] > 1e-4 * scale:
        raise ArtifactError(f"exported graph does not reproduce PyTorch (max abs errors {checks}); please report this")

    slim.producer_name, slim.producer_version = "focalnet-edge", __version__
    slim.doc_string = f"FocalNet {head} head exported by focalnet-edge {__version__} from {ckpt.source}"
    labels = dict(ckpt.config.id2label) if head in ("logits", "probs") else {}
    set_metadata(
        slim,
        {
            "version": __version__,
            "source": ckpt.source,
            "head": head,
            "outputs": outputs,
            "input": json.loads(contract.to_json()),
            "labels": {str(k): v for k, v in labels.items()},
            "precision": "fp32",
        },
    )
    onnx.checker.check_model(slim)
    output = Path(output)
    with atomic_path(output) as tmp:
        onnx.save(slim, str(tmp))
    log.debug("wrote %s (%d nodes, torch vs onnx max abs %.2e)", output, len(slim.graph.node), checks["torch_vs_onnx"])
    return ExportResult(output, contract, outputs, head, opset, simplifier, len(slim.graph.node), checks, labels)
