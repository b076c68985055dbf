"""The verification stage: every artifact against the PyTorch fp32 reference (or the stored references)."""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ArtifactError, InputError
from ..extras import require_torch
from ..folder import artifacts
from ..folder.artifacts import REPORT
from ..folder.io import atomic_write_json
from ..folder.manifest import read_manifest, write_manifest
from ..folder.onnx_io import CPU


def reference_for(manifest: dict[str, Any], model: str | None = None):
    """The PyTorch reference runner for the artifacts of `manifest` (its own source by default)."""
    require_torch("the PyTorch reference (or verify against the stored references: --reference stored)")
    from ..model.weights import load_checkpoint
    from ..runtime.torch import TorchRunner

    source = model or manifest["model"]["source"]
    try:
        ckpt = load_checkpoint(source)
    except Exception as e:
        raise InputError(f"cannot load the reference model {source!r} ({e}); pass --reference SRC, or --reference stored") from None
    return TorchRunner(ckpt, head=manifest.get("head", "logits"), out_features=manifest.get("outputs") if manifest.get("head") == "features" else None)


def live_references(output_dir: Path, images, model: str | None = None, progress: bool = False):
    """The PyTorch fp32 outputs on `images`, at the folder's input contract (computed once for all artifacts)."""
    from ..folder.contract import InputContract
    from ..verify.compare import reference_outputs

    manifest = read_manifest(output_dir)
    contract = InputContract.from_dict(manifest["input"])
    reference = reference_for(manifest, model)
    reference.for_contract(contract)
    return reference_outputs(reference, images, contract, progress=progress, source=f"pytorch fp32 ({model or manifest['model']['source']})")


@dataclass
class VerifyResult:
    reports: list[Any] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True only when something was verified and everything verified passed."""
        return bool(self.reports) and all(r.passed for r in self.reports)


def verify_stage(output_dir: Path, refs, names: list[str] | None = None, progress: bool = False,
                 record: bool = True) -> VerifyResult:
    """Verify artifacts of `output_dir` against reference outputs.

    `refs` are `References` (live PyTorch outputs, or the folder's stored ones). `names` are
    file names or precisions (default: every artifact this machine runs). ONNX files run on
    ONNX Runtime's CPU provider, named explicitly, so the figures never come from another
    provider that happens to be installed; the provider used is recorded.
    `record`: write the figures into the manifest and report.json (a build, or the engine stage
    verifying the engines it made); without it nothing is written (`verify`: a later check, on
    any images, never replaces the build's figures; it saves report.json itself, `save_report`).
    """
    from ..runtime.choose import runnable_here
    from ..runtime.loader import load_entry
    from ..verify.compare import verify

    output_dir = Path(output_dir)
    manifest = read_manifest(output_dir)
    entries = manifest["artifacts"]
    if names:
        chosen = [e for name in names for e in artifacts.select(entries, name)]
    else:
        chosen = [e for e in entries.values() if runnable_here(e)]
    if not chosen:
        raise ArtifactError(f"{output_dir}: no artifact to verify on this machine ({', '.join(entries) or 'none listed'})")
    result = VerifyResult()
    for entry in chosen:
        options = {"providers": CPU} if entry["format"] == artifacts.ONNX else {}
        with load_entry(output_dir, entry, **options) as runner:  # checks the sha256 of the file that runs
            report = verify(runner, refs, entry["precision"], progress=progress)
        gc.collect()  # the session (a copy of the weights) goes before the next artifact's
        report.artifact = entry["path"]
        report.device = runner.device
        entry["verification"] = report.to_dict()
        result.reports.append(report)
    if record:
        write_manifest(output_dir, manifest)
        save_report(output_dir, result.reports)
    return result


def save_report(output_dir: Path, reports: list[Any]) -> None:
    """Write `reports` as OUT/report.json (strict JSON: NaN figures as null); `ArtifactError` when it cannot be written."""
    atomic_write_json(Path(output_dir) / REPORT, [r.to_dict() for r in reports])
