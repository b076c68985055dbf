"""The stages in order, over an output folder: export -> precision -> engine -> verify -> manifest.

Each function takes files (or a checkpoint) and writes files; the CLI only calls them. Every
artifact is written to a temporary path and renamed when complete, and the manifest is written
last, so an interrupted run never leaves a half-written artifact or a manifest that lies.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ArtifactError, InputError
from .export import ExportResult, export_onnx
from .io import atomic_write_text
from .manifest import add_artifact, check_artifact, new_manifest, read_manifest, write_manifest
from .model.weights import Checkpoint, load_checkpoint

log = logging.getLogger(__name__)

FP32_ONNX = "model.onnx"
REPORT = "report.json"


@dataclass
class ExportOptions:
    head: str = "logits"
    image_size: tuple[int, int] | None = None
    batch: tuple[int, int, int] = (1, 1, 32)
    dynamic_batch: bool = True
    dynamic_size: bool = False
    opset: int = 17
    fuse_preprocess: bool = False
    layout: str | None = None
    color_order: str = "RGB"
    simplifier: str = "onnxslim"
    out_features: list[str] | None = None

    def as_kwargs(self) -> dict[str, Any]:
        return dict(self.__dict__)


def default_output_dir(source: str) -> Path:
    name = Path(str(source).rstrip("/")).name.split(".")[0] or "model"
    return Path("focalnet-edge-out") / name


def export_stage(ckpt: Checkpoint, output_dir: Path, options: ExportOptions) -> tuple[ExportResult, dict[str, Any]]:
    """Write `model.onnx` and a fresh manifest into `output_dir`."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ArtifactError(f"{output_dir}: exists and is not a folder")
    result = export_onnx(ckpt, output_dir / FP32_ONNX, **options.as_kwargs())
    manifest = new_manifest(ckpt, result)
    add_artifact(
        manifest, output_dir, result.path, "fp32", "onnx",
        requires={"opset": result.opset, "runtime": "onnxruntime or TensorRT (via `focalnet-edge build`)"},
        nodes=result.nodes, export_checks=result.checks, simplifier=result.simplifier,
    )
    write_manifest(output_dir, manifest)
    return result, manifest


def reference_for(manifest: dict[str, Any], model: str | None = None):
    """The PyTorch reference runner for the artifacts of `manifest` (its own source by default)."""
    from .runtime.torch import TorchRunner

    source = model or manifest["model"]["source"]
    try:
        ckpt = load_checkpoint(source)
    except Exception as e:
        raise InputError(f"cannot load the reference model {source!r} ({e}); pass --model") from None
    return TorchRunner(ckpt, head=manifest.get("head", "logits"), out_features=manifest.get("outputs") if manifest.get("head") == "features" else None)


@dataclass
class VerifyResult:
    reports: list[Any] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.reports)


def verify_stage(
    output_dir: Path,
    images,
    artifacts: list[str] | None = None,
    reference=None,
    thresholds: dict[str, float | None] | None = None,
    progress: bool = False,
) -> VerifyResult:
    """Verify artifacts of `output_dir` against the PyTorch reference; record figures in the manifest."""
    from .runtime.loader import load
    from .verify import verify

    output_dir = Path(output_dir)
    manifest = read_manifest(output_dir)
    reference = reference or reference_for(manifest)
    names = artifacts or [n for n, e in manifest["artifacts"].items() if e["format"] == "onnx" or _engine_runs(e)]
    result = VerifyResult()
    for name in names:
        entry = manifest["artifacts"].get(name)
        if entry is None:
            raise ArtifactError(f"{output_dir}: no artifact {name!r} in the manifest")
        check_artifact(output_dir, entry)
        with load(output_dir / name) as runner:
            reference.for_contract(runner.contract) if hasattr(reference, "for_contract") else None
            report = verify(runner, reference, images, entry["precision"], thresholds, progress=progress)
        report.artifact = name
        entry["verification"] = report.to_dict()
        result.reports.append(report)
    write_manifest(output_dir, manifest)
    atomic_write_text(output_dir / REPORT, json.dumps([r.to_dict() for r in result.reports], indent=2) + "\n")
    return result


def _engine_runs(entry: dict[str, Any]) -> bool:
    if entry.get("format") != "tensorrt-plan":
        return False
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True
