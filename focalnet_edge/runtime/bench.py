"""`focalnet-edge bench`: latency percentiles and throughput per artifact and batch size."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..folder import artifacts
from ..errors import ArtifactError
from ..folder.manifest import read_manifest
from .choose import all_runnable_here
from .loader import load, load_entry

log = logging.getLogger(__name__)


def input_bytes(contract, batch: int) -> int:
    """Bytes of one input batch of `contract` (and as much again for the copies a call makes)."""
    shape = contract.shape(batch, contract.height, contract.width)
    return 2 * int(np.prod(shape, dtype=np.float64)) * np.dtype(contract.dtype).itemsize


def check_batch_memory(contract, batch: int) -> None:
    """`ConfigError` before allocating a batch that would not fit in the memory available."""
    from ..limits import require_memory

    require_memory(input_bytes(contract, batch), f"--batch {batch} ({contract.shape(batch, contract.height, contract.width)} "
                   f"{contract.dtype})", "choose a smaller --batch")


def call_times_ms(runner, batch: int, warmup: int, iterations: int) -> list[float]:
    """Milliseconds of each of `iterations` whole calls on a sample batch (after `warmup` untimed ones)."""
    x = runner.contract.sample_input(batch)
    for _ in range(warmup):
        runner(x)
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        runner(x)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def bench_runner(runner, batch: int, warmup: int, iterations: int) -> dict[str, float]:
    check_batch_memory(runner.contract, batch)
    ms = np.array(call_times_ms(runner, batch, warmup, iterations))
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "throughput": float(batch * 1000 / ms.mean()),
    }


def bench_folder(path: Path, artifact: str | None, batches: list[int], warmup: int, iterations: int, progress: bool = False) -> list[dict[str, Any]]:
    """Benchmark each artifact (one at a time, so no idle session steals cores) at each batch.

    `artifact` is a file name or a precision of the folder's manifest (default: every artifact
    this machine runs).
    """
    from tqdm import tqdm

    if path.is_dir():
        manifest = read_manifest(path)
        for batch in batches:  # up front, before any artifact runs
            check_batch_memory(manifest.contract, batch)
        chosen = artifacts.select(manifest.artifacts, artifact) if artifact else all_runnable_here(manifest.artifacts, f"of {path} to bench", nvinfer=False)
        targets = [(a.path, a.precision, lambda a=a: load_entry(path, a, manifest)) for a in chosen]
    elif path.is_file():
        precision = "?"
        if (path.parent / artifacts.MANIFEST).is_file():
            entry = read_manifest(path.parent).artifacts.get(path.name)
            precision = entry.precision if entry else precision
        targets = [(path.name, precision, lambda: load(path))]
    else:
        raise ArtifactError(f"{path}: no such output folder or artifact")
    results = []
    for name, precision, open_runner in tqdm(targets, desc="bench", disable=None if progress else True, unit="artifact"):
        with open_runner() as runner:
            for batch in batches:
                r = bench_runner(runner, batch, warmup, iterations)
                results.append({"artifact": name, "precision": precision, "batch": batch, "device": runner.device, **r})
    return results
