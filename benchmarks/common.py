"""Helpers shared by the benchmark scripts: machine description and side-by-side timing."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path


def machine() -> str:
    """CPU model, cores, RAM and the ISA that decides int8 speed (AVX2 / AVX-512 / VNNI), OS, Python."""
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = ", ".join(f"{name} {'yes' if name in flags else 'no'}" for name in ("avx2", "avx512f", "avx512_vnni", "avx_vnni"))
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return (f"{cpu}, {os.cpu_count()} cores{mem} ({isa}), {platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()}")


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each function, timed in turns so drift hits all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def model_source(work: Path, model: str) -> str:
    """The checkpoint of a benchmark model: `demo`, or `tiny` (focalnet-tiny's shape, random weights, made once in `work`)."""
    if model != "tiny":
        return "demo"
    source = work / "tiny-ckpt"
    if not source.is_dir():
        import torch

        from focalnet_edge.model import FocalNetConfig, FocalNetForImageClassification

        torch.manual_seed(0)
        FocalNetForImageClassification(FocalNetConfig(num_labels=1000)).eval().save_pretrained(source)
    return str(source)
