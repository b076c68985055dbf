"""Calibration ranges: computed with onnxruntime's calibrators, kept in a calibration cache (`calibration.json`).

The ranges are those of the activations a Q/DQ reads (the inputs of the GEMM/Conv nodes every
quantization form quantizes, `placement.WEIGHTED_OPS`); a cache also holds the LayerNorm smoothing
factors the ranges were measured after (`smoothing.py`), and the fp32 model's sha256 it was made for.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx

from ..errors import ConfigError, InputError
from ..folder.io import atomic_write_text
from ..folder.onnx_io import input_batches, load_onnx, static_batch
from .placement import WEIGHTED_OPS

METHODS = ("max", "entropy", "percentile", "distribution")
#: Range method, by measurement (`benchmarks/int8_calibration.py`, focalnet-tiny with realistic
#: statistics, 220 images, 100 held back): max 29.9 dB, percentile 99.999 31.6 dB, 99.99 31.5 dB
#: with the subject's outlier LayerNorm channels, max 35.9 dB without them; top-1 agreement
#: unchanged (0.96-0.98) and percentile costs ~1.7x the CPU of max. Kept: max; percentile 99.999
#: is the option for models with outlier channels.
DEFAULT_METHOD = "max"
RECALIBRATE = "delete it, or name another --calib-cache, to calibrate again"
SCALE_LIMITS = (1e-4, 1e4)  #: smoothing factors a cache may hold (computed ones stay within 1e-2..1e2 before normalising)


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over an array of inputs."""

    def __init__(self, name: str, inputs: np.ndarray, batch: int = 16, fixed: int | None = None) -> None:
        self.name = name
        self.chunks = [chunk for chunk, _ in input_batches(inputs, batch, fixed)]  # a static batch: padded by repeats

    def get_next(self):
        return {self.name: self.chunks.pop(0)} if self.chunks else None

    def __len__(self) -> int:
        return len(self.chunks)

    def __iter__(self):
        while (item := self.get_next()) is not None:
            yield item


def compute_ranges(fp32_path: str | Path, inputs: np.ndarray, method: str = DEFAULT_METHOD, percentile: float = 99.99,
                   progress: bool = False, batch: int = 16, extra: Iterable[str] = ()) -> dict[str, tuple[float, float]]:
    """Ranges of the activations read by Conv/MatMul/Gemm (and of the tensors `extra`, inputs of
    Add nodes: benchmarks/residual_qdq.py measures Q/DQ placements on the residual Adds with them)
    by `method`, computed by onnxruntime's calibrators on the CPU.

    `max`: the largest magnitude seen; `percentile`: that percentile of the magnitudes (a
    2048-bin histogram); `entropy`: the threshold minimising the KL divergence between the
    float histogram (2048 bins) and its 128-level quantized copy (TensorRT's entropy
    calibration); `distribution`: onnxruntime's histogram edges (made for FP8 scales; as int8
    ranges they are the histogram's full span).

    Two things keep this cheap on a 28 M-parameter model: only the tensors a Q/DQ will read are
    calibrated (onnxruntime's calibrators take every input and output of the chosen op types:
    3x the tensors, and the histogram methods spend their time in numpy on each), and the data
    go to the calibrator one batch at a time (onnxruntime keeps every tensor of every image it
    is given in one call until the call ends: 8 GB for 156 focalnet-tiny images).
    """
    from tqdm import tqdm

    if method not in METHODS:
        raise ConfigError(f"calibration method {method!r} not supported; expected one of {', '.join(METHODS)}")
    if not 0 < percentile <= 100:
        raise ConfigError(f"calibration percentile {percentile} not accepted: expected a value in (0, 100]")
    model = load_onnx(fp32_path)
    name, fixed = model.graph.input[0].name, static_batch(model)
    consts = {i.name for i in model.graph.initializer} | {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    wanted = {i for n in model.graph.node if n.op_type in WEIGHTED_OPS for i in n.input if i and i not in consts} | set(extra)
    del model
    with tempfile.TemporaryDirectory(prefix="focalnet-edge-calib.") as tmp:
        calibrator = _calibrator(method, Path(fp32_path), wanted, Path(tmp) / "augmented.onnx", percentile)
        starts = range(0, len(inputs), batch)
        for i in tqdm(starts, desc=f"int8 calibration ({method})", unit="batch", disable=None if progress else True):
            with contextlib.redirect_stdout(io.StringIO()):  # onnxruntime prints a line per call
                calibrator.collect_data(_Reader(name, inputs[i : i + batch], batch, fixed))
        with contextlib.redirect_stdout(io.StringIO()):
            data = calibrator.compute_data()
    out = {}
    for key in data:
        lo, hi = data[key].range_value
        out[key] = (float(np.asarray(lo).min()), float(np.asarray(hi).max()))
    return out


def _calibrator(method: str, path: Path, wanted: set[str], augmented: Path, percentile: float):
    """onnxruntime's calibrator for `method` (as `create_calibrator` makes it), limited to the tensors `wanted`."""
    from onnxruntime.quantization import calibrate as c

    base, kwargs = {
        "max": (c.MinMaxCalibrater, {}),
        "entropy": (c.EntropyCalibrater, {"symmetric": True, "num_bins": 2048, "num_quantized_bins": 128}),
        "percentile": (c.PercentileCalibrater, {"symmetric": True, "num_bins": 2048, "percentile": percentile}),
        "distribution": (c.DistributionCalibrater, {"num_bins": 2048, "scenario": "same"}),
    }[method]

    class Only(base):
        def select_tensors_to_calibrate(self, model):
            tensors, infos = super().select_tensors_to_calibrate(model)
            return tensors & wanted, infos

    calibrator = Only(path, [*WEIGHTED_OPS, "Add"], str(augmented), **kwargs)
    calibrator.augment_graph()
    calibrator.create_inference_session()
    return calibrator


def save_ranges(path: str | Path, ranges: dict[str, tuple[float, float]], method: str, percentile: float, images: int, model_sha256: str,
                smoothing: dict[str, np.ndarray] | None = None, alpha: float | None = None) -> None:
    """Write a calibration cache: the ranges and, when the graph was smoothed first, the smoothing
    factors per LayerNorm output (the ranges are those of the smoothed graph)."""
    doc = {"format": 1, "method": method, "percentile": percentile, "images": images, "model_sha256": model_sha256,
           "ranges": {k: list(v) for k, v in ranges.items()}}
    if alpha:  # smoothed with this alpha (no factors: the graph had no LayerNorm to fold)
        doc["smoothing"] = {"alpha": alpha, "scales": {k: [float(x) for x in v] for k, v in (smoothing or {}).items()}}
    atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")


def load_ranges(path: str | Path, model_sha256: str | None = None) -> tuple[dict[str, tuple[float, float]], dict]:
    """The ranges of a calibration cache; `InputError` when empty, non-finite, lo > hi, or (given
    `model_sha256`, the fp32 model's) made for another model."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        ranges = {str(k): (float(v[0]), float(v[1])) for k, v in doc["ranges"].items()}
    except FileNotFoundError:
        raise InputError(f"{path}: no such calibration cache") from None
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a focalnet-edge calibration cache ({e.__class__.__name__})") from None
    bad = next((k for k, (lo, hi) in ranges.items() if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi)), None)
    if not ranges or bad is not None:
        raise InputError(f"{path}: calibration cache " + (f"range of {bad!r} is {list(ranges[bad])}, expected finite lo <= hi"
                         if bad is not None else "holds no ranges") + f"; {RECALIBRATE}")
    if model_sha256 is not None and doc.get("model_sha256") != model_sha256:
        raise InputError(f"{path}: calibration cache was made for another model (sha256 {str(doc.get('model_sha256'))[:12]}...); "
                         f"{RECALIBRATE}")
    return ranges, doc


def cached_smoothing(path: str | Path, doc: dict) -> tuple[dict[str, np.ndarray], float]:
    """The smoothing factors and alpha of a calibration cache (({}, 0.0) for caches written without smoothing)."""
    block = doc.get("smoothing")
    if block is None:
        return {}, 0.0
    try:
        items = block.get("scales", {}).items()
        if not all(isinstance(v, list) and v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
                   for _, v in items):
            raise TypeError
        scales = {str(k): np.asarray(v, np.float32) for k, v in items}
    except (TypeError, ValueError, AttributeError, OverflowError):
        raise InputError(f"{path}: calibration cache has unreadable smoothing factors (lists of numbers expected); {RECALIBRATE}") from None
    bad = next((k for k, v in scales.items() if not np.all(np.isfinite(v)) or np.any(v < SCALE_LIMITS[0]) or np.any(v > SCALE_LIMITS[1])), None)
    if bad is not None:
        raise InputError(f"{path}: calibration cache smoothing factors of {bad!r} are not numbers in [{SCALE_LIMITS[0]:g}, "
                         f"{SCALE_LIMITS[1]:g}]; {RECALIBRATE}")
    alpha = block.get("alpha")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0 < alpha <= 1:
        raise InputError(f"{path}: calibration cache smoothing alpha is {alpha!r}, expected a number in (0, 1]; {RECALIBRATE}")
    return scales, float(alpha)


def missing_ranges(model: onnx.ModelProto, ranges: dict[str, tuple[float, float]], exclude: list[str] | None = None) -> list[str]:
    """The activations a Q/DQ of `model` would read (inputs of its GEMM/Conv nodes) that `ranges` lacks."""
    skip = set(exclude or [])
    consts = {i.name for i in model.graph.initializer} | {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    for n in model.graph.node:  # exporters pass shared weights through Identity
        if n.op_type == "Identity" and n.input[0] in consts:
            consts.add(n.output[0])
    wanted = {i for n in model.graph.node if n.op_type in WEIGHTED_OPS and n.name not in skip for i in n.input if i and i not in consts}
    return sorted(wanted - set(ranges))
