"""`focalnet-edge bench`: latency percentiles and throughput per artifact and batch size."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ArtifactError
from .manifest import read_manifest
from .runtime.loader import load, runnable_here

log = logging.getLogger(__name__)


def bench_runner(runner, batch: int, warmup: int, iterations: int) -> dict[str, float]:
    x = runner.contract.sample_input(batch)
    for _ in range(warmup):
        runner(x)
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        runner(x)
        times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1000
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "throughput": float(batch * 1000 / ms.mean()),
    }


def bench_folder(path: Path, artifact: str | None, batches: list[int], warmup: int, iterations: int, progress: bool = False) -> list[dict[str, Any]]:
    """Benchmark each artifact (one at a time, so no idle session steals cores) at each batch."""
    from tqdm import tqdm

    if path.is_file():
        targets = [(path.parent, path.name, "?")]
        try:
            entry = read_manifest(path.parent)["artifacts"].get(path.name)
            if entry:
                targets = [(path.parent, path.name, entry["precision"])]
        except ArtifactError:
            pass
    elif path.is_dir():
        entries = read_manifest(path)["artifacts"]
        names = [artifact] if artifact else [n for n, e in entries.items() if runnable_here(e)]
        unknown = [n for n in names if n not in entries]
        if unknown:
            raise ArtifactError(f"{path}: no artifact {unknown[0]!r}; it has {', '.join(entries)}")
        targets = [(path, n, entries[n]["precision"]) for n in names]
    else:
        raise ArtifactError(f"{path}: no such output folder or artifact")
    results = []
    for folder, name, precision in tqdm(targets, desc="bench", disable=None if progress else True, unit="artifact"):
        with load(folder / name) as runner:
            device = getattr(runner, "providers", ["TensorRT"])[0]
            for batch in batches:
                r = bench_runner(runner, batch, warmup, iterations)
                results.append({"artifact": name, "precision": precision, "batch": batch, "device": device, **r})
    return results
