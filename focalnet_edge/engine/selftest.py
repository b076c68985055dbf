"""`focalnet-edge selftest OUT`: the device kit. On a device with only the runtime installed (no
torch), one command builds or loads the folder's engines, verifies each against the stored
references (`references.npz`), times each (GPU compute time over the profile's min/opt/max batch,
as trtexec reports it: engine/timing.py) and records the board, power mode and clocks
(engine/device_facts.py), in one report a user pastes into a bug report.

Engines the manifest lists and this machine runs are loaded; where there is none, they are
built here (`engine_command`, as `focalnet-edge engine OUT`). Without TensorRT (or a GPU) the
report says so in one line and still verifies the folder's ONNX files on ONNX Runtime's CPU
provider; it does not pass (exit 2, as `engine` without TensorRT). It passes (exit 0) only when
at least one engine ran and every engine verified.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..folder.artifacts import is_engine
from ..folder.manifest import read_manifest
from . import build, device_facts, gpu
from .config import EngineOptions

#: what the report keeps of each verification (`verify.compare.Report`)
REPORT_FIELDS = ("precision", "images", "max_abs_error", "mean_cosine", "top1_agreement", "device", "passed", "failures")


@dataclass
class Selftest:
    folder: str
    device: dict[str, Any]
    missing: str | None = None  #: why engines cannot run here (one line), or None
    engines: list[dict[str, Any]] = field(default_factory=list)  #: per engine: verification and timings
    onnx: list[dict[str, Any]] = field(default_factory=list)  #: per ONNX file verified on ONNX Runtime (without TensorRT)
    notes: list[str] = field(default_factory=list)
    reference: str | None = None

    @property
    def passed(self) -> bool:
        return self.missing is None and bool(self.engines) and all(e["passed"] for e in self.engines)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 2 if self.missing else 1

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def device_section() -> dict[str, Any]:
    """Platform, TensorRT, GPU and the device tools' facts."""
    trt_version = None
    if gpu.tensorrt_available():
        trt_version = gpu.require_tensorrt().__version__
    return {"platform": gpu.machine(), "tensorrt": trt_version, **gpu.gpu_info(), **device_facts.collect()}


def missing_line(reason: str) -> str:
    """The one line saying engines cannot run here: the install hint where TensorRT is missing."""
    try:
        gpu.require_tensorrt()
    except InputError as e:
        return str(e)
    return f"engines cannot be built or run here: {reason}"


def _verify(folder: Path, refs: Any, names: list[str], record: bool) -> list[dict[str, Any]]:
    from ..pipeline.verify import verify_stage

    if not names:
        return []
    result = verify_stage(folder, refs, names, record=record)
    return [{"artifact": r.artifact, **{k: getattr(r, k) for k in REPORT_FIELDS}} for r in result.reports]


def _engines_here(folder: Path, options: EngineOptions | None, notes: list[str]) -> tuple[list[str], bool]:
    """The engines to test: those listed that run here, else built here now. (names, built now)."""
    from ..runtime.choose import runnable_here

    manifest = read_manifest(folder)
    listed = [name for name, a in manifest.artifacts.items() if is_engine(a) and runnable_here(a)]
    if listed:
        notes.append(f"loaded {', '.join(listed)} (listed in the manifest, runnable here)")
        return listed, False
    from .command import engine_command

    built = engine_command(folder, options)
    notes.extend(built.notes)
    return [e["path"] for e in built.engines], True


def _time(folder: Path, name: str, iterations: int, warmup: int) -> list[dict[str, Any]]:
    from ..runtime.loader import load
    from .timing import time_engine

    with load(folder / name) as runner:
        return time_engine(runner, iterations, warmup)


def selftest(output_dir: str | os.PathLike, options: EngineOptions | None = None, iterations: int = 50, warmup: int = 10,
             timing: bool = True) -> Selftest:
    """Run the device kit over an output folder (see the module's docstring)."""
    from ..verify.references import load_references

    folder = Path(output_dir)
    manifest = read_manifest(folder)
    refs = load_references(folder, manifest)  # before any work: a folder without references is refused in one line
    report = Selftest(folder=str(folder), device=device_section(), reference=f"{refs.source}, {len(refs)} images")
    reason = build.unavailable_reason()
    if reason is not None:
        report.missing = missing_line(reason)
        onnx = [name for name, a in manifest.artifacts.items() if not is_engine(a)]
        report.onnx = _verify(folder, refs, onnx, record=False)
        return report
    names, built_now = _engines_here(folder, options, report.notes)
    report.engines = _verify(folder, refs, names, record=built_now)  # a build records its verification, as `engine` does
    for entry in report.engines:
        entry["timing"] = _time(folder, entry["artifact"], iterations, warmup) if timing else []
    return report


def _timing_lines(timings: list[dict[str, Any]]) -> list[str]:
    return [f"    batch {t['batch']:>3}: median {t['median_ms']:.3f} ms, p99 {t['p99_ms']:.3f} ms, "
            f"{t['throughput']:.1f} images/s ({t['clock']}, {t['iterations']} iterations)" for t in timings]


def _device_lines(d: dict[str, Any]) -> list[str]:
    lines = [f"device: {d.get('model') or d.get('gpu')} ({d['platform']}), GPU {d.get('gpu')} sm {d.get('compute_capability')}, "
             f"TensorRT {d.get('tensorrt') or 'not installed'}"]
    mode = d.get("power_mode")
    lines.append(f"power mode: {mode['mode']} (id {mode['id']})" if mode else "power mode: unknown (no nvpmodel)")
    for row in d.get("nvidia_smi") or []:
        lines.append(f"nvidia-smi: {row['name']}, driver {row['driver_version']}, {row['pstate']}, sm {row['clocks.sm']} MHz "
                     f"(max {row['clocks.max.sm']}), mem {row['clocks.mem']} MHz, {row['power.draw']} W / {row['power.limit']} W")
    lines.extend(f"tegrastats: {t['line']}" for t in d.get("tegrastats") or [])
    return lines


def format_text(report: Selftest) -> str:
    """The report as text, one fact per line."""
    lines = [f"focalnet-edge selftest {report.folder}", *_device_lines(report.device), f"reference: {report.reference}"]
    if report.missing:
        lines.append(f"engines: {report.missing}")
    lines.extend(f"note: {n}" for n in report.notes)
    for kind, rows in (("engine", report.engines), ("onnx", report.onnx)):
        for r in rows:
            verdict = "PASS" if r["passed"] else "FAIL"
            lines.append(f"{kind} {r['artifact']} ({r['precision']}): {verdict}, max abs {r['max_abs_error']:.3g}, "
                         f"top-1 {r['top1_agreement']}, {r['images']} images on {r['device']}")
            lines.extend(f"    failed: {f}" for f in r["failures"])
            lines.extend(_timing_lines(r.get("timing") or []))
    lines.append(f"result: {'PASS' if report.passed else 'FAIL'}")
    return "\n".join(lines) + "\n"
