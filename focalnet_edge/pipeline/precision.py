"""The precision stage: the fp16 graph and the quantized graphs (INT8, FP8) behind the accuracy gate."""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..folder import artifacts
from ..folder.artifacts import CALIBRATION
from ..folder.manifest import add_artifact, write_manifest
from ..folder.onnx_io import load_onnx
from .options import PrecisionOptions

log = logging.getLogger(__name__)


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
    from ..calibration import load_calibration_data
    from ..folder.onnx_io import read_contract

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
    from ..calibration import convert_fp16

    if calib is None:
        log.warning("fp16: no calibration data, so no overflow measurement; pass --calib-data to measure")
    from ..calibration.placement import match_nodes

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
    from ..calibration import compute_ranges, load_ranges, save_ranges
    from ..calibration.ranges import cached_smoothing, missing_ranges
    from ..calibration.smoothing import smooth
    from ..folder.io import sha256_file
    from ..folder.onnx_io import load_onnx

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
    from ..calibration import build_int8
    from ..calibration.gate import blocks_of as gate_blocks
    from ..calibration.gate import holdout_note, outputs

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
        note = holdout_note(len(held), held.held_out)  # one held-back set for every form: said once
        if note:
            log.warning("%s gate: %s", "/".join(dict.fromkeys(artifacts.PRECISIONS[n].qtype for n in wanted)), note)
        from ..calibration.placement import WEIGHTED_OPS, match_nodes

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
