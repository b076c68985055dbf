"""What an output folder or one artifact holds, as plain facts for `focalnet-edge info` (and any other reader):
the manifest interpreted here, so the CLI only prints."""

from __future__ import annotations

from pathlib import Path

from ..errors import ArtifactError
from .manifest import MANIFEST, Artifact, check_artifact, read_manifest


def quantization_facts(int8: dict) -> dict:
    """What the manifest's int8/fp8 entry says of a quantized graph: the gate's figures and the placement."""
    def part(key: str) -> dict:
        v = int8.get(key)
        return v if isinstance(v, dict) else {}

    def count(v) -> int | None:
        return len(v) if isinstance(v, list) else None

    gate, placement, smoothing = part("gate"), part("placement"), part("smoothing")
    return {
        "qtype": int8.get("qtype", "int8"), "form": int8.get("form"), "gate_passed": int8.get("gate_passed"),
        "sqnr_db": gate.get("sqnr_db"), "cosine": gate.get("cosine"), "top1": gate.get("top1"), "images": int8.get("holdout_images"),
        "held_out": int8.get("held_out", True),
        "int8_flop_share": placement.get("int8_flop_share"), "quantized_by_type": placement.get("quantized_by_type"),
        "qdq_pairs": placement.get("qdq_pairs"), "not_fusable": count(placement.get("unfused")),
        "float_nodes": count(placement.get("float_nodes")), "kept_float_by_gate": count(int8.get("kept_float")),
        "smoothed_layernorms": smoothing.get("layernorms", 0), "smoothing_alpha": smoothing.get("alpha"),
        "shortfall": gate.get("shortfall") or [],
        "gate_enabled": int8.get("gate_enabled", True), "kept_by_user": count(int8.get("user_float")),
        "float_blocks": {str(k): len(v) for k, v in part("float_blocks").items() if isinstance(v, list)},
        "kept_float_blocks": {str(k): len(v) for k, v in part("kept_float_blocks").items() if isinstance(v, list)},
        "top1_decided": gate.get("top1_decided"), "decided": gate.get("decided"),
    }


def folder_facts(path: Path) -> dict:
    """An output folder: its model, input, outputs, labels, artifacts (verified or not), versions, stages, quantization."""
    m = read_manifest(path)
    quantized = {n: quantization_facts(a.quantization) for n, a in m.artifacts.items() if a.quantization is not None}
    return {
        "folder": str(path),
        "model": m.model.source,
        "head": m.head,
        "input": m.input,
        "outputs": m.outputs,
        "labels": len(m.labels),
        "artifacts": {n: {"precision": a.precision, "format": a.format, "bytes": a.bytes, "requires": a.requires,
                          "verified": a.verified,
                          **({"for": f"DeepStream's nvinfer ({a.deepstream['source']} as nvinfer runs it)"} if a.deepstream else {})}
                      for n, a in m.artifacts.items()},
        "versions": m.versions,
        **({"stages": m.stages} if m.stages else {}),
        **({"quantization": quantized} if quantized else {}),
    }


def onnx_facts(path: Path, entry: Artifact | None) -> dict:
    """An ONNX file: nodes, opset, inputs, outputs, its metadata, and its quantization where its manifest entry has it."""
    from .onnx_io import load_onnx, read_metadata

    model = load_onnx(path, external_data=False)
    facts = {"file": str(path), "nodes": len(model.graph.node), "opset": model.opset_import[0].version,
             "inputs": [i.name for i in model.graph.input], "outputs": [o.name for o in model.graph.output]}
    facts.update(read_metadata(model))
    if entry is not None and entry.quantization is not None:
        facts["quantization"] = {path.name: quantization_facts(entry.quantization)}
    return facts


def artifact_info(path: Path) -> dict:
    """What a folder or an artifact holds; an artifact listed in a manifest is checked against its sha256."""
    entry = None
    if path.is_file() and (path.parent / MANIFEST).is_file():
        entry = read_manifest(path.parent).artifacts.get(path.name)
        if entry is not None:
            check_artifact(path.parent, entry)
    if path.is_dir():
        return folder_facts(path)
    if path.suffix == ".onnx":
        return onnx_facts(path, entry)
    if entry is not None:
        return {"file": str(path), **entry.entry}
    raise ArtifactError(f"{path}: not an output folder, an ONNX file or an artifact listed in a manifest")
