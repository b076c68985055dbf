"""`build`: the stages in order over a staged output folder, committed only when every gate and verification passed."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..demo import uses_bundled_demo
from ..errors import InputError
from ..extras import require_onnxruntime, require_torch
from ..folder import artifacts
from ..folder.artifacts import FP32_ONNX
from ..folder.labels import CHECKPOINT_FIX, check_labels
from ..folder.manifest import read_manifest, write_manifest
from ..folder.onnx_io import CPU
from ..verify.references import save_references
from .engines import engine_stage
from .export import default_output_dir, export_stage
from .memory import timed_stage
from .options import BuildOptions
from .precision import precision_stage
from .verify import live_references, verify_stage

log = logging.getLogger(__name__)


@dataclass
class BuildResult:
    output_dir: Path
    manifest: dict[str, Any]
    reports: list[Any]
    latency_ms: dict[str, float]
    images_used: str
    notes: list[str] = field(default_factory=list)
    failed: str | None = None  #: why the build was not committed (a gate or a verification failed)
    kept: Path | None = None  #: where the failed build was kept for diagnosis (`output_dir` is unchanged)
    ungated: list[str] = field(default_factory=list)  #: quantized artifacts written with --no-gate: reported, not judged

    @property
    def passed(self) -> bool:
        """Every verified artifact passed (those written with --no-gate are reported, not judged)."""
        judged = [r for r in self.reports if r.artifact not in self.ungated]
        return self.failed is None and bool(self.reports) and all(r.passed for r in judged)


def build_failures(reports: list[Any], gates: list[Any], ungated: list[str] = ()) -> str | None:
    """Why a build must not replace the output folder: failed verifications and INT8/FP8 gates (None: none failed).

    Artifacts written with --no-gate (`ungated`) are reported, not judged: they fail nothing.
    """
    verification = [r.artifact for r in reports if not r.passed and r.artifact not in ungated]
    gate = [Path(g.path).name for g in gates if g.gate_passed is False]
    failed = ([f"verification failed: {', '.join(verification)}"] if verification else []) \
        + ([f"accuracy gate not met: {', '.join(gate)}"] if gate else []) + ([] if reports else ["nothing was verified"])
    return "; ".join(failed) or None


def measure_latency(runner, batch: int = 1, repeats: int = 5) -> float:
    """Median milliseconds of one call at `batch` on this machine (a quick figure, not a benchmark)."""
    from ..runtime.bench import bench_runner

    return bench_runner(runner, batch, warmup=1, iterations=repeats)["p50_ms"]


def check_deepstream_choice(options: BuildOptions) -> None:
    """`--deepstream PRECISION` must name a precision this build writes (before any work, not after the export)."""
    chosen = getattr(options.engine, "deepstream", "auto")
    written = (artifacts.PRECISIONS["fp32"].name, *artifacts.build_precisions(options.precision))
    if chosen not in ("auto", "none") and chosen not in written:
        raise InputError(f"--deepstream {chosen}: this build writes {', '.join(written)}; build with --precision {chosen} "
                         "(or best), or name one of those")


def check_input_paths(options: BuildOptions) -> None:
    """The paths a build reads, checked before any work (one `InputError` naming the flag and the path)."""
    from ..verify.compare import image_folder

    cal = options.calibration
    for flag, value in (("--images", options.images), ("--labels", options.labels),
                        ("--calib-data", None if cal.calib_data == "demo" else cal.calib_data)):
        if value is not None and not Path(value).exists():
            raise InputError(f"{flag} {value}: no such file or folder")
    if options.images is not None:
        try:
            image_folder(options.images)  # a folder of images, before the export's minutes
        except InputError as e:
            raise InputError(f"--images {e}") from None
    if cal.calib_cache and Path(cal.calib_cache).exists() and not Path(cal.calib_cache).is_file():
        raise InputError(f"--calib-cache {cal.calib_cache}: is a folder, expected a calibration JSON file")


def build(options: BuildOptions, progress: bool = False, force: bool = False) -> BuildResult:
    """`focalnet-edge build`: export, precision, engines where TensorRT runs, verification, manifest.

    Every input is checked before the first write, and the run writes into a staging folder
    that replaces the output folder only when every stage succeeded and every gate and
    verification passed (`outputs.claim`): a failed or interrupted build leaves the previous
    folder exactly as it was; a build that ran but failed a gate or a verification is kept
    beside it (`BuildResult.kept`). A folder that is not
    ours, or ours but of another model, is refused unless `force`; a second build of the same
    folder at the same time fails at once, naming the first one's pid.
    """
    artifacts.build_precisions(options.precision)  # reject a bad precision before any work
    check_deepstream_choice(options)
    require_torch("focalnet-edge build")
    require_onnxruntime("focalnet-edge build (every artifact is verified on ONNX Runtime)")
    from ..folder.manifest import weights_sha256
    from ..model.weights import load_checkpoint
    from ..folder.outputs import check_destination, claim
    from ..runtime.loader import load_entry
    from ..verify.compare import verification_images

    if options.backend == "tensorrt":
        from ..engine.gpu import require_tensorrt

        require_tensorrt()
    final = Path(options.output) if options.output else default_output_dir(options.model)
    check_destination(final)
    cal = options.calibration
    check_input_paths(options)
    ckpt = load_checkpoint(options.model, variant=options.variant)
    notes: list[str] = []

    stages: list[dict[str, Any]] = []  #: time and peak RSS per stage, into the manifest
    labels = ckpt.config.id2label if options.export.head in ("logits", "probs") else {}
    check_labels(labels, ckpt.source, CHECKPOINT_FIX)  # before any work (export checks it too, for `export` alone)
    with claim(final, force, weights_sha256(ckpt), ckpt.source) as stage:
        out = stage.path
        log.info("export: %s -> %s", options.model, final / FP32_ONNX)
        with timed_stage("export", stages):
            fp32_result, manifest = export_stage(ckpt, out, options.export, release_checkpoint=True)
        del ckpt  # emptied by the export (its weights are in the files); the reference loads its own copy
        log.info("export: %d nodes, max abs vs PyTorch %.1e", fp32_result.nodes, fp32_result.checks["torch_vs_onnx"])
        if artifacts.build_precisions(options.precision):
            log.info("precision: %s", options.precision)
        with timed_stage(f"precision ({options.precision})", stages):
            prec = precision_stage(out, fp32_result.path, options.precision, options.calibration, manifest,
                                   is_demo=uses_bundled_demo(options.model), progress=progress)
        with timed_stage("engines", stages):
            notes += engine_stage(out, manifest, options)

        images, used, note = verification_images(options.images, labels, options.labels, uses_bundled_demo(options.model), prec.holdout)
        notes += [note] if note else []
        log.info("verify: every artifact against PyTorch fp32 on %s", used)
        with timed_stage("references (PyTorch fp32)", stages):
            refs = live_references(out, images, progress=progress)
        with timed_stage("verify", stages):
            verified = verify_stage(out, refs, progress=progress)
        with timed_stage("latency", stages):
            written = read_manifest(out)
            manifest = written.to_json()  # what is written back: the file as read, with the figures below
            manifest["references"] = save_references(out, refs)
            latency = {}
            for name, artifact in written.artifacts.items():
                if artifact.format == artifacts.ONNX:
                    with load_entry(out, artifact, written, providers=CPU) as runner:  # a CPU figure, whatever else is installed
                        latency[name] = measure_latency(runner, batch=options.export.batch[1])
                        device = runner.device
                    manifest["artifacts"][name]["latency_ms_here"] = {"batch": options.export.batch[1], "ms": round(latency[name], 3), "device": device}
        manifest["verification_images"] = used
        manifest["stages"] = stages
        write_manifest(out, manifest)
        ungated = [] if cal.gate else [a.path for a in written.artifacts.values() if a.quantization is not None]
        if ungated:
            notes.append(f"--no-gate: {', '.join(ungated)} written as quantized, nothing returned to float; their verification is "
                         "reported, not judged (the exit status does not depend on it)")
        failed = build_failures(verified.reports, prec.int8, ungated)
        if failed:
            stage.reject(failed)
    return BuildResult(final, manifest, verified.reports, latency, used, notes, failed, stage.kept, ungated)
