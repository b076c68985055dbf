"""The stages in order, over an output folder: export -> precision -> engine -> verify -> manifest.

Each function takes files (or a checkpoint) and writes files; the CLI only calls them. Every
artifact is written to a temporary path and renamed when complete, and the manifest is rewritten
after each stage listing only complete artifacts, so an interrupted run never leaves a
half-written artifact or a manifest that lies.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from .folder import artifacts
from .folder.artifacts import CALIBRATION, FP32_ONNX, REPORT
from .calibration.smoothing import ALPHA as SMOOTH_ALPHA
from .errors import ArtifactError, InputError
from .folder.labels import CHECKPOINT_FIX, check_labels
from .demo import uses_bundled_demo
from .extras import require_torch
from .folder.io import atomic_write_json
from .folder.manifest import add_artifact, new_manifest, read_manifest, write_manifest
from .folder.onnx_io import CPU, load_onnx
from .verify.references import save_references

if TYPE_CHECKING:  # pragma: no cover - the build stages import torch; the types are for readers
    from .export.onnx_export import ExportResult
    from .model.weights import Checkpoint

log = logging.getLogger(__name__)


@dataclass
class ExportOptions:
    head: str = "logits"
    image_size: tuple[int, int] | None = None
    batch: tuple[int, int, int] = (1, 1, 32)
    dynamic_batch: bool = True
    dynamic_size: bool = False
    opset: int | None = None  #: default 17, 18 with frame_size "any"
    fuse_preprocess: bool = False
    frames_dtype: str = "uint8"
    layout: str | None = None
    color_order: str = "RGB"
    resize_mode: str = "crop"
    frame_size: str = "input"
    simplifier: str = "onnxslim"
    out_features: list[str] | None = None

    def as_kwargs(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _release_freed_memory() -> None:
    """Collect garbage and hand the C heap's freed pages back to the system (glibc's malloc_trim; elsewhere a no-op).

    Between stages this matters: a stage frees gigabytes (weights of an ONNX Runtime session,
    a protobuf model) that glibc otherwise keeps mapped in the process, so the next stage's own
    allocations come on top of them in the system's view.
    """
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux: `5` to /proc/self/clear_refs); False elsewhere."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb(since_reset: bool) -> float:
    """This process's peak RSS in MB: since the last reset (VmHWM), else since it started (getrusage)."""
    if since_reset:
        try:
            with open("/proc/self/status") as f:
                return round(int(next(line.split()[1] for line in f if line.startswith("VmHWM:"))) / 1024, 1)
        except (OSError, StopIteration, ValueError):
            pass
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(peak / (2**20 if sys.platform == "darwin" else 1024), 1)  # bytes on macOS, KiB on Linux
    except (ImportError, OSError):  # pragma: no cover - no resource module (Windows)
        return float("nan")


@contextlib.contextmanager
def timed_stage(name: str, record: list[dict[str, Any]]) -> Iterator[None]:
    """Time a stage and measure its peak RSS; on success append `{name, seconds, peak_rss_mb}` to `record` and log it.

    The peak is the stage's own where Linux lets it be reset (/proc/self/clear_refs), else the
    process's peak so far (`peak_rss_since` says which: "stage" or "process start").
    """
    _release_freed_memory()
    own = _reset_peak_rss()
    t0 = time.perf_counter()
    log.info("%s: started", name)
    yield
    _release_freed_memory()
    entry = {"name": name, "seconds": round(time.perf_counter() - t0, 2), "peak_rss_mb": _peak_rss_mb(own),
             "peak_rss_since": "stage" if own else "process start"}
    record.append(entry)
    log.info("%s: done in %.1f s, peak RSS %.0f MB", name, entry["seconds"], entry["peak_rss_mb"])


def default_output_dir(source: str) -> Path:
    name = Path(str(source).rstrip("/")).name.split(".")[0] or "model"
    return Path("focalnet-edge-out") / name


def export_stage(ckpt: Checkpoint, output_dir: Path, options: ExportOptions,
                 force: bool = False, release_checkpoint: bool = False) -> tuple[ExportResult, dict[str, Any]]:
    """Write `model.onnx` and a fresh manifest into `output_dir`.

    Called on a folder that no run of this process has claimed (`focalnet-edge export`), it
    claims it first (`outputs.claim`: refused when foreign or of another model unless `force`,
    locked, staged, committed only on success). `release_checkpoint`: see `export_onnx`.
    """
    require_torch("export")
    from .export import export_onnx
    from .folder.manifest import weights_sha256
    from .folder.outputs import claim, is_staging

    output_dir = Path(output_dir)
    if not is_staging(output_dir):
        with claim(output_dir, force, weights_sha256(ckpt), ckpt.source) as stage:
            result, manifest = export_stage(ckpt, stage.path, options, release_checkpoint=release_checkpoint)
        final = Path(output_dir) / FP32_ONNX
        try:
            result.path = final
        except AttributeError:  # a frozen result
            import dataclasses

            result = dataclasses.replace(result, path=final)
        return result, manifest
    weights = weights_sha256(ckpt)
    result = export_onnx(ckpt, output_dir / FP32_ONNX, **options.as_kwargs(), release_checkpoint=release_checkpoint)
    manifest = new_manifest(ckpt, result, weights)
    add_artifact(
        manifest, result.path, "fp32", artifacts.ONNX,
        requires={"opset": result.opset, "runtime": artifacts.PRECISIONS["fp32"].runs_on},
        nodes=result.nodes, export_checks=result.checks, simplifier=result.simplifier,
    )
    write_manifest(output_dir, manifest)
    return result, manifest


def reference_for(manifest: dict[str, Any], model: str | None = None):
    """The PyTorch reference runner for the artifacts of `manifest` (its own source by default)."""
    require_torch("the PyTorch reference (or verify against the stored references: --reference stored)")
    from .model.weights import load_checkpoint
    from .runtime.torch import TorchRunner

    source = model or manifest["model"]["source"]
    try:
        ckpt = load_checkpoint(source)
    except Exception as e:
        raise InputError(f"cannot load the reference model {source!r} ({e}); pass --reference SRC, or --reference stored") from None
    return TorchRunner(ckpt, head=manifest.get("head", "logits"), out_features=manifest.get("outputs") if manifest.get("head") == "features" else None)


def live_references(output_dir: Path, images, model: str | None = None, progress: bool = False):
    """The PyTorch fp32 outputs on `images`, at the folder's input contract (computed once for all artifacts)."""
    from .folder.contract import InputContract
    from .verify.compare import reference_outputs

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
    from .runtime.choose import runnable_here
    from .runtime.loader import load_entry
    from .verify.compare import verify

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


# -- precision ---------------------------------------------------------------------------------------
@dataclass
class PrecisionOptions:
    calib_data: str | None = None
    calib_size: int = 256
    seed: int = 0
    method: str = "max"
    percentile: float = 99.99
    calib_cache: str | None = None
    min_agreement: float = artifacts.INT8_MIN_AGREEMENT
    max_fallback: int = 8
    keep_io_types: bool = True
    cpu_int8: bool = True  #: also write the ONNX Runtime CPU form of INT8
    int8_float: str = "fp16"  #: float parts of the TensorRT-form INT8 graph: fp16 (fast on GPUs) or fp32
    keep_stem_and_head: bool = True  #: stem, head and downsampling Convs in float (`placement.float_by_default`)
    smooth_alpha: float = SMOOTH_ALPHA  #: LayerNorm outputs smoothed into their GEMMs before INT8/FP8 (0: off)
    gate: bool = True  #: False (--no-gate): the quantized graphs are written as quantized, nothing returned to float
    keep_float: list[str] = field(default_factory=list)  #: --keep-float patterns: nodes kept in float (int8) / fp32 (fp16)


@dataclass
class PrecisionResult:
    holdout: Any = None  #: the held-back calibration images (a CalibrationSet), for verification
    int8: list[Any] = field(default_factory=list)
    fp16: Any = None


def precision_stage(
    output_dir: Path,
    fp32_path: Path,
    precision: str,
    options: PrecisionOptions,
    manifest: dict[str, Any] | None,
    is_demo: bool = False,
    progress: bool = False,
) -> PrecisionResult:
    """Write the graphs `build --precision` asks for besides fp32 into `output_dir`, listed in `manifest`."""
    from .calibration import load_calibration_data
    from .folder.onnx_io import read_contract

    wanted = artifacts.build_precisions(precision)
    result = PrecisionResult()
    if not wanted:
        return result
    contract, _ = read_contract(load_onnx(fp32_path, external_data=False), fp32_path)
    rows = [artifacts.PRECISIONS[w] for w in wanted]
    source = options.calib_data or ("demo" if is_demo else None)
    if any(row.quantized for row in rows) and source is None and not options.calib_cache:
        raise InputError(
            "int8 needs calibration images (fp8 too): pass --calib-data DIR (an image folder, a video or an .npz); "
            "random inputs give useless ranges"
        )
    calib = load_calibration_data(source, contract, options.calib_size, options.seed, progress) if source else None
    part, held = calib.split(seed=options.seed) if calib is not None else (None, None)
    result.holdout = held
    if any(row.stage == artifacts.FP16 for row in rows):
        result.fp16 = fp16_stage(output_dir, fp32_path, calib, options, manifest)
    quantized = tuple(row.name for row in rows if row.quantized and form_wanted(artifacts.QUANT_FORMS[row.form], options))
    if quantized:
        result.int8 = int8_stage(output_dir, fp32_path, part, held, options, manifest, quantized, progress)
    if manifest is not None:
        write_manifest(output_dir, manifest)
    return result


def form_wanted(form: artifacts.QuantForm, options: PrecisionOptions) -> bool:
    """Whether `options` ask for the quantization form `form` (a form with an `option` flag can be turned off)."""
    return form.option is None or bool(getattr(options, form.option))


def fp16_stage(output_dir: Path, fp32_path: Path, calib, options: PrecisionOptions, manifest: dict[str, Any] | None):
    """`model.fp16.onnx`, keeping in fp32 the nodes that overflow on the calibration images."""
    from .calibration import convert_fp16

    if calib is None:
        log.warning("fp16: no calibration data, so no overflow measurement; pass --calib-data to measure")
    from .calibration.placement import match_nodes

    row = artifacts.PRECISIONS["fp16"]
    matched = match_nodes(load_onnx(fp32_path, external_data=False), options.keep_float) if options.keep_float else {}
    user = list(dict.fromkeys(n for nodes in matched.values() for n in nodes))
    fp16 = convert_fp16(fp32_path, output_dir / row.onnx, calib.inputs if calib is not None else None, options.keep_io_types,
                        user or None)
    if manifest is not None:
        add_artifact(manifest, fp16.path, row.name, artifacts.ONNX,
                     requires={"opset": load_onnx(fp16.path, external_data=False).opset_import[0].version, "runtime": row.runs_on},
                     kept_fp32=fp16.kept_fp32, io_dtype="float32" if options.keep_io_types else "float16",
                     keep_float={"patterns": list(options.keep_float), "nodes": user})
    return fp16


def int8_source(output_dir: Path, fp32_path: Path, part, options: PrecisionOptions, work: Path,
                progress: bool = False) -> tuple[Path, dict[str, tuple[float, float]], dict[str, Any]]:
    """The graph the quantized forms are made from, its calibration ranges and how they were made.

    The graph is `fp32_path` with its LayerNorm outputs smoothed into the GEMMs that read them
    (`calibration.smoothing`; the same outputs, written into `work`), or `fp32_path` itself with
    `--int8-smoothing 0`. Ranges and smoothing factors come from `--calib-cache` when it exists
    (its smoothing, whatever `--int8-smoothing` says: the ranges hold for that graph only), else
    they are computed on `part`; either way they are saved as OUT/calibration.json (and cached).
    The third value: {"method", "percentile", "images", "smoothing": {"alpha", "layernorms", "seconds"}}.
    """
    from .calibration import compute_ranges, load_ranges, save_ranges
    from .calibration.ranges import cached_smoothing, missing_ranges
    from .calibration.smoothing import smooth
    from .folder.io import sha256_file
    from .folder.onnx_io import load_onnx

    digest = sha256_file(fp32_path)
    alpha, method, percentile = options.smooth_alpha, options.method, options.percentile
    cache = Path(options.calib_cache) if options.calib_cache else None
    if cache is not None and cache.is_file():
        ranges, doc = load_ranges(cache, model_sha256=digest)  # refuses another model's cache
        scales, cached_alpha = cached_smoothing(cache, doc)
        method, percentile, images = str(doc.get("method", method)), doc.get("percentile", percentile), doc.get("images")
        if cached_alpha != alpha:
            log.warning("%s holds ranges for LayerNorm smoothing alpha %g, so that is used, not --int8-smoothing %g; "
                        "delete the cache to calibrate again", cache, cached_alpha, alpha)
        alpha = cached_alpha
        log.info("quantization: calibration ranges from %s (%s, %s images)", cache, method, images)
    elif part is None:
        raise InputError(f"{cache}: no such calibration cache, and no --calib-data to compute one")
    else:
        ranges, scales, images = {}, {}, len(part)
    source = fp32_path
    t0 = time.perf_counter()
    if scales or (not ranges and alpha > 0):
        try:
            scales = smooth(fp32_path, part.inputs if part is not None else None, work / fp32_path.name, alpha, scales or None)
        except ValueError as e:  # only factors read from a cache can fail to fold
            raise InputError(f"{cache}: {e}; delete it, or name another --calib-cache, to calibrate again") from None
        source = work / fp32_path.name if scales else fp32_path
    smoothing = {"alpha": alpha if scales else 0.0, "layernorms": len(scales), "seconds": round(time.perf_counter() - t0, 2)}
    here = output_dir / CALIBRATION
    elsewhere = cache is not None and cache.resolve() != here.resolve()
    if not ranges:
        ranges = compute_ranges(source, part.inputs, method, percentile, progress)
        save_ranges(here, ranges, method, percentile, images, digest, scales, alpha)
        if elsewhere:
            save_ranges(cache, ranges, method, percentile, images, digest, scales, alpha)
    else:
        missing = missing_ranges(load_onnx(source, external_data=False), ranges)
        if missing:
            raise InputError(f"{cache}: calibration cache has no range for {missing[0]!r} ({len(missing)} tensors in all) that a "
                             "Q/DQ reads; delete it, or name another --calib-cache, to calibrate again")
        if elsewhere:  # the folder keeps what its graphs were made with
            save_ranges(here, ranges, method, percentile, images if isinstance(images, int) else 0, digest, scales, alpha)
    log.info("quantization: %d LayerNorm outputs smoothed into their GEMMs (alpha %g)", len(scales), smoothing["alpha"])
    return source, ranges, {"method": method, "percentile": percentile, "images": images, "smoothing": smoothing}


def int8_stage(output_dir: Path, fp32_path: Path, part, held, options: PrecisionOptions, manifest: dict[str, Any] | None,
               wanted: tuple[str, ...] = artifacts.build_precisions("int8"), progress: bool = False) -> list[Any]:
    """The quantized graphs `wanted` asks for, each behind the accuracy gate.

    `model.int8.onnx` (TensorRT form), `model.int8.cpu.onnx` (ONNX Runtime CPU form) and
    `model.fp8.onnx` (FLOAT8E4M3FN Q/DQ, TensorRT form, for sm >= 8.9 and Jetson Thor), all made
    from the smoothed graph (`int8_source`). The calibration ranges and the fp32 graph's outputs
    on the held-back images are computed once for all of them; each manifest entry's `timings_s`
    has the seconds of both ("calibration", "reference") and of its own gate's phases.
    """
    from .calibration import build_int8
    from .calibration.gate import blocks_of as gate_blocks
    from .calibration.gate import outputs

    if held is None:  # before anything is written
        raise InputError("the accuracy gate needs held-back images: pass --calib-data along with --calib-cache")
    # the smoothed graph goes to a work folder in the output folder (space for a copy of the weights is
    # needed there anyway); ".partial": a killed run's leftover is removed by the next run in the folder
    with tempfile.TemporaryDirectory(prefix=".int8-source.", suffix=".partial", dir=output_dir) as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        source, ranges, made = int8_source(output_dir, fp32_path, part, options, work, progress)
        t_ranges = time.perf_counter() - t0
        t0 = time.perf_counter()
        reference = outputs(str(fp32_path), held.inputs)
        shared = {"calibration": round(t_ranges, 2), "reference": round(time.perf_counter() - t0, 2)}
        log.info("int8: calibration ranges %.1f s, fp32 outputs on %d %s images %.1f s", t_ranges, len(held),
                 "held-back" if held.held_out else "calibration (none held back)", shared["reference"])
        from .calibration.placement import WEIGHTED_OPS, match_nodes

        matched = match_nodes(load_onnx(source, external_data=False), options.keep_float, WEIGHTED_OPS) if options.keep_float else {}
        user = list(dict.fromkeys(n for nodes in matched.values() for n in nodes))
        results = []
        for name in wanted:
            row = artifacts.PRECISIONS[name]
            form = artifacts.QUANT_FORMS[row.form]
            float_type = form.float_parts or options.int8_float  # the CPU form's is fixed: ORT's CPU kernels want fp32
            r = build_int8(source, output_dir / row.onnx, ranges, held.inputs, form.name, options.min_agreement,
                           options.max_fallback, options.keep_stem_and_head, qtype=row.qtype, float_type=float_type,
                           calibration_inputs=part.inputs if part is not None else None, reference=reference, progress=progress,
                           held_out=held.held_out, run_gate=options.gate, keep_float=user)
            r.timings = {**shared, **{k: v for k, v in r.timings.items() if k != "reference"}}
            r.timings["total"] = round(sum(v for k, v in r.timings.items() if k != "total"), 2)
            if r.gate_passed is False:
                log.warning("%s: the accuracy gate is not met (%s) after returning %d nodes to float (tried: %s)", row.onnx,
                            "; ".join(r.shortfall) or f"agreement {r.agreement:.4f}", len(r.kept_float), ", ".join(r.tried) or "none")
            if r.kept_float:
                log.info("%s: returned to float by the gate, by block: %s", row.onnx,
                         "; ".join(f"{b}: {', '.join(n)}" for b, n in gate_blocks(r.kept_float).items()))
            results.append(r)
            if manifest is not None:
                add_artifact(manifest, r.path, row.name, artifacts.ONNX, requires={"runtime": row.runs_on},
                             int8={**r.to_manifest(), "float": float_type, "method": made["method"], "calibration": CALIBRATION,
                                   "smoothing": made["smoothing"], "keep_float": {"patterns": list(options.keep_float), "nodes": user}})
        return results


# -- build -------------------------------------------------------------------------------------------
@dataclass
class BuildOptions:
    model: str = "demo"
    output: Path | None = None
    variant: str | None = None
    precision: str = "fp16"
    export: ExportOptions = field(default_factory=ExportOptions)
    calibration: PrecisionOptions = field(default_factory=PrecisionOptions)
    images: str | None = None  #: verification images (default: the demo's, or the held-back calibration images)
    labels: str | None = None
    backend: str = "auto"
    engine: Any = None  #: EngineOptions, for the TensorRT stage


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
    from .runtime.bench import bench_runner

    return bench_runner(runner, batch, warmup=1, iterations=repeats)["p50_ms"]


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
    require_torch("focalnet-edge build")
    from .folder.manifest import weights_sha256
    from .model.weights import load_checkpoint
    from .folder.outputs import check_destination, claim
    from .runtime.loader import load_entry
    from .verify.compare import verification_images

    if options.backend == "tensorrt":
        from .engine.gpu import require_tensorrt

        require_tensorrt()
    final = Path(options.output) if options.output else default_output_dir(options.model)
    check_destination(final)
    cal = options.calibration
    for flag, value in (("--images", options.images), ("--labels", options.labels),
                        ("--calib-data", None if cal.calib_data == "demo" else cal.calib_data)):
        if value is not None and not Path(value).exists():
            raise InputError(f"{flag} {value}: no such file or folder")
    if cal.calib_cache and Path(cal.calib_cache).exists() and not Path(cal.calib_cache).is_file():
        raise InputError(f"--calib-cache {cal.calib_cache}: is a folder, expected a calibration JSON file")
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
            manifest = read_manifest(out)
            manifest["references"] = save_references(out, refs)
            latency = {}
            for name, entry in manifest["artifacts"].items():
                if entry["format"] == artifacts.ONNX:
                    with load_entry(out, entry, providers=CPU) as runner:  # a CPU figure, whatever else is installed
                        latency[name] = measure_latency(runner, batch=options.export.batch[1])
                        device = runner.device
                    entry["latency_ms_here"] = {"batch": options.export.batch[1], "ms": round(latency[name], 3), "device": device}
        manifest["verification_images"] = used
        manifest["stages"] = stages
        write_manifest(out, manifest)
        ungated = [] if cal.gate else [e["path"] for e in manifest["artifacts"].values() if isinstance(e.get("int8"), dict)]
        if ungated:
            notes.append(f"--no-gate: {', '.join(ungated)} written as quantized, nothing returned to float; their verification is "
                         "reported, not judged (the exit status does not depend on it)")
        failed = build_failures(verified.reports, prec.int8, ungated)
        if failed:
            stage.reject(failed)
    return BuildResult(final, manifest, verified.reports, latency, used, notes, failed, stage.kept, ungated)


def tensorrt_check_stage(output_dir: Path, manifest: dict[str, Any]) -> list[str]:
    """Check the TensorRT-bound ONNX files against onnx-tensorrt's support matrix (no TensorRT needed), once.

    The result goes into each file's manifest entry (`tensorrt_check`), which the engine stage reads.
    """
    from .engine.check import record_checks

    notes = record_checks(Path(output_dir), manifest)
    write_manifest(Path(output_dir), manifest)
    return notes


def engine_stage(output_dir: Path, manifest: dict[str, Any], options: BuildOptions) -> list[str]:
    """TensorRT engines of the ONNX artifacts, where TensorRT and a GPU are present (see focalnet_edge/engine/build.py).

    `--backend tensorrt`: a missing TensorRT or a failed build is an error. `--backend auto`:
    either becomes a note, since the ONNX files are complete and verified without engines.
    """
    from .errors import ConfigError

    notes = tensorrt_check_stage(output_dir, manifest)
    if options.backend == "onnxruntime":
        return notes
    from .engine.build import build_engines, record, unavailable_reason
    from .engine.config import EngineOptions

    reason = unavailable_reason()
    if reason is not None:
        if options.backend == "tensorrt":
            from .engine.gpu import require_tensorrt

            require_tensorrt()
            raise InputError(f"--backend tensorrt: {reason}")
        return notes + [f"engines: {reason} here, so the ONNX artifacts were written and verified; "
                        "build the engines on the target with `focalnet-edge engine OUT`"]
    failures: list[str] = []

    def failed(name: str, error: Exception) -> None:
        failures.append(f"engines: {name} was not built ({str(error).splitlines()[0][:200] if str(error) else type(error).__name__}); "
                        "the ONNX artifacts are complete and verified")

    try:
        built = build_engines(output_dir, manifest, options.engine or EngineOptions(),
                              on_error=failed if options.backend == "auto" else None)
    except (ArtifactError, ConfigError, InputError):
        raise
    except Exception as e:  # TensorRT's or Polygraphy's own failure, with --backend tensorrt
        raise ArtifactError(f"--backend tensorrt: building the engines failed ({str(e).splitlines()[0][:200] if str(e) else type(e).__name__})") from None
    record(manifest, output_dir, built)
    write_manifest(Path(output_dir), manifest)
    return notes + built.notes + failures


def adopt_onnx(path: Path, output_dir: Path, image_size: tuple[int, int] | None = None, force: bool = False) -> Path:
    """`path` inside `output_dir` as model.onnx, with focalnet-edge metadata (inferred for foreign files).

    Another model's files are never replaced without `force` (`outputs.check_adoption`): a
    folder of ours holding another fp32 model (its model.onnx would change under a manifest
    that then lies), or a folder not ours holding files of the names this tool writes.
    """
    from .folder.contract import InputContract
    from .folder.io import atomic_path, sha256_file
    from .model.preprocessing import ImageSpec, resize_edge_for
    from .folder.onnx_io import has_external_data, read_metadata, save_onnx, set_metadata, sort_nodes
    from .folder.outputs import check_adoption

    model = load_onnx(path)
    target = Path(output_dir) / FP32_ONNX
    adopting = Path(path).resolve() != target.resolve()
    if adopting:
        check_adoption(Path(output_dir), force, sha256_file(path))
    changed = "input" not in read_metadata(model)
    if changed:
        inp = model.graph.input[0]
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
        if inp.type.tensor_type.elem_type != onnx.TensorProto.FLOAT or len(dims) != 4 or dims[1] != 3:
            raise InputError(f"{path}: input {inp.name!r} is not float32 (N, 3, H, W); export with `focalnet-edge export` instead")
        h, w = image_size or (dims[2] or 224, dims[3] or 224)
        spec = ImageSpec(height=h, width=w, resize_shortest_edge=resize_edge_for(min(h, w)))
        contract = InputContract(name=inp.name, height=h, width=w, dynamic_batch=dims[0] is None,
                                 dynamic_size=dims[2] is None, batch=(1, 1, 32) if dims[0] is None else (1, dims[0], dims[0]),
                                 preprocessing=spec.to_dict())
        outs = model.graph.output
        rank = len(outs[0].type.tensor_type.shape.dim)
        set_metadata(model, {"input": json.loads(contract.to_json()), "head": "logits" if len(outs) == 1 and rank == 2 else "features",
                             "outputs": [o.name for o in outs], "labels": {}, "precision": "fp32", "source": str(path)})
    if adopting:
        changed = sort_nodes(model.graph) > 0 or changed
        if changed or has_external_data(load_onnx(path, external_data=False)):
            save_onnx(model, target)  # sorted, atomic, large weights beside it
        else:  # a valid file of ours (or already complete): the same bytes, so the same sha256
            with atomic_path(target) as tmp:
                shutil.copyfile(path, tmp)
    return target
