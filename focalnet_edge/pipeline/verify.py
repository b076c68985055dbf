"""The verification stage: every artifact against the PyTorch fp32 reference (or the stored references)."""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..folder import artifacts
from ..folder.artifacts import REPORT
from ..folder.io import atomic_write_json
from ..folder.manifest import read_manifest, write_manifest
from ..folder.onnx_io import CPU
from ..verify.choose import live_references, reference_for  # noqa: F401 - the build's references


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
    from ..runtime.choose import all_runnable_here
    from ..runtime.loader import load_entry
    from ..verify.compare import verify

    output_dir = Path(output_dir)
    manifest = read_manifest(output_dir)
    entries = manifest.artifacts
    if names:
        chosen = [a for name in names for a in artifacts.select(entries, name)]
    else:
        chosen = all_runnable_here(entries, f"of {output_dir} to verify")
    result = VerifyResult()
    document = manifest.to_json()  # what is written back: the file as read, with the new figures
    for artifact in chosen:
        options = {"providers": CPU} if artifact.format == artifacts.ONNX else {}
        with load_entry(output_dir, artifact, manifest, **options) as runner:  # checks the sha256 of the file that runs
            report = verify(runner, refs, artifact.precision, progress=progress)
        gc.collect()  # the session (a copy of the weights) goes before the next artifact's
        report.artifact = artifact.path
        report.device = runner.device
        document["artifacts"][artifact.path]["verification"] = report.to_dict()
        result.reports.append(report)
    if record:
        write_manifest(output_dir, document)
        save_report(output_dir, result.reports)
    return result


def save_report(output_dir: Path, reports: list[Any]) -> None:
    """Write `reports` as OUT/report.json (strict JSON: NaN figures as null); `ArtifactError` when it cannot be written."""
    atomic_write_json(Path(output_dir) / REPORT, [r.to_dict() for r in reports])
