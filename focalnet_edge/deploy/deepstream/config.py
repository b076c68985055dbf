"""The nvinfer config files (GKeyFile syntax, comments on lines of their own) and deepstream.json,
rendered from a `Plan`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ... import __version__
from ...folder.artifacts import PRECISIONS
from ...folder.io import sha256_file
from ...folder.manifest import MANIFEST
from .plan import NETWORK_MODE, OBJECT_MIN_SIZE, Plan

PRIMARY, SECONDARY, LABELS, FACTS = (
    "config_infer_primary.txt",
    "config_infer_secondary.txt",
    "labels.txt",
    "deepstream.json",
)


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
        f"# ONNX: {src.path} (sha256 {src.sha256[:16]}...)"
        + (", with " + " and ".join(
            (["normalisation in front"] if norm.prepend is not None else [])
            + (["a Softmax appended (the folder's head is logits; nvinfer's parser reads probabilities)"] if plan.softmax else [])
        ) if plan.derived else ""),
        f"onnx-file={plan.onnx_name}",
        f"# engine: {plan.engine_note}",
        f"model-engine-file={engine}",
        "# 0 = FP32, 1 = INT8, 2 = FP16"
        + (" (explicit Q/DQ graph: the ranges are in the ONNX, no int8-calib-file)" if PRECISIONS[plan.precision].quantized else ""),
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


def facts(folder: Path, tmp: Path, plan: Plan, batches: tuple[int, int]) -> dict[str, Any]:
    norm = plan.normalisation
    return {
        "tool": {"name": "focalnet-edge", "version": __version__},
        "manifest_sha256": sha256_file(folder / MANIFEST),
        "source": {"path": plan.source.path, "sha256": plan.source.sha256, "precision": plan.precision},
        "onnx": {
            "path": plan.onnx_name,
            "derived": plan.derived,
            "in_output_folder": plan.graph_in_folder,  #: written and verified by `focalnet-edge engine`, not by deploy
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
