"""How long an engine computes a batch on the GPU, as trtexec's "GPU Compute Time" reports it.

The input is copied to the device once; then `execute_async_v3` is enqueued `iterations` times
back to back on one stream, with a CUDA event recorded between enqueues, and each batch's time
is the elapsed time between its two events: host-device copies and Python are left out, as in
trtexec. The events and memory come from libcudart through Polygraphy's CUDA wrapper (ctypes),
so neither torch nor cuda-python is needed. Where libcudart cannot be loaded, `gpu_compute`
returns None and the caller times whole calls on the host instead (and says so).

Nothing here has run on a GPU in this project's CI: the event arithmetic is tested with a fake
libcudart (tests/test_selftest.py); tests/gpu/ runs it for real.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import numpy as np

from .plans import DTYPES, dims


def cuda_runtime() -> Any | None:
    """libcudart (the ctypes handle Polygraphy loaded), or None where it cannot be loaded."""
    try:
        from polygraphy import cuda

        return cuda.wrapper().handle
    except Exception:  # OSError (no libcudart) or Polygraphy's own exception: no GPU timing here
        return None


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"{what} failed with CUDA error {status}")


def event_times_ms(lib: Any, stream: int, enqueue: Callable[[], None], iterations: int) -> list[float]:
    """Each of `iterations` enqueues' time on `stream` between CUDA events (ms)."""
    events = [ctypes.c_void_p() for _ in range(iterations + 1)]
    made = []
    try:
        for event in events:
            _check(lib.cudaEventCreate(ctypes.byref(event)), "cudaEventCreate")
            made.append(event)
        handle = ctypes.c_void_p(stream)
        _check(lib.cudaEventRecord(events[0], handle), "cudaEventRecord")
        for event in events[1:]:
            enqueue()
            _check(lib.cudaEventRecord(event, handle), "cudaEventRecord")
        _check(lib.cudaEventSynchronize(events[-1]), "cudaEventSynchronize")
        times = []
        for start, end in zip(events, events[1:]):
            ms = ctypes.c_float()
            _check(lib.cudaEventElapsedTime(ctypes.byref(ms), start, end), "cudaEventElapsedTime")
            times.append(float(ms.value))
        return times
    finally:
        for event in made:
            lib.cudaEventDestroy(event)


def summary(batch: int, times_ms: list[float], clock: str) -> dict[str, Any]:
    """trtexec's figures of per-batch times: min, mean, median, p90, p99, max (ms), and images per second."""
    t = np.asarray(times_ms, dtype=np.float64)
    return {"batch": batch, "clock": clock, "iterations": len(t), "min_ms": min(times_ms), "mean_ms": float(t.mean()),
            "median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)), "p99_ms": float(np.percentile(t, 99)),
            "max_ms": max(times_ms), "throughput": float(batch * 1000 / t.mean()) if t.mean() > 0 else None}


def gpu_compute(runner: Any, batch: int, iterations: int = 50, warmup: int = 10) -> dict[str, Any] | None:
    """GPU compute time of `runner` (a `TensorRTRunner`) at `batch`, or None without libcudart."""
    lib = cuda_runtime()
    if lib is None:
        return None
    from polygraphy import cuda

    x = runner.contract.sample_input(batch)
    stream = cuda.Stream()
    blocks: list[Any] = []
    try:
        inp = cuda.DeviceArray(shape=x.shape, dtype=x.dtype)
        blocks.append(inp)
        inp.copy_from(x, stream)
        with runner.held_context(stream.ptr) as ctx:  # synchronised before it is given back: nothing left in flight
            try:
                ctx.set_input_shape(runner.contract.name, tuple(x.shape))
                ctx.set_tensor_address(runner.contract.name, inp.ptr)
                for name in runner.output_names:
                    itemsize = np.dtype(DTYPES[runner._engine.get_tensor_dtype(name).name]).itemsize
                    out = cuda.DeviceArray.raw((max(int(np.prod(dims(ctx.get_tensor_shape(name)))) * itemsize, 1),))
                    blocks.append(out)
                    ctx.set_tensor_address(name, out.ptr)

                def enqueue() -> None:
                    if not ctx.execute_async_v3(stream.ptr):
                        raise RuntimeError(f"TensorRT failed to enqueue a batch of {batch}")

                for _ in range(warmup):
                    enqueue()
                times = event_times_ms(lib, stream.ptr, enqueue, iterations)
            finally:
                stream.synchronize()
        return summary(batch, times, "gpu compute (CUDA events)")
    finally:
        stream.synchronize()
        for block in blocks:
            block.free()
        stream.free()


def host_time(runner: Any, batch: int, iterations: int = 50, warmup: int = 10) -> dict[str, Any]:
    """Whole calls timed on the host (copies and Python included): where no GPU timing is possible."""
    from ..runtime.bench import call_times_ms

    times = call_times_ms(runner, batch, warmup, iterations)
    return summary(batch, times, "host (whole calls, copies included)")


def sweep_batches(contract: Any) -> list[int]:
    """The batch sizes of the profile: min, opt and max (one where the profile is static)."""
    return sorted(set(contract.batch)) if contract.dynamic_batch else [contract.batch[1]]


def time_engine(runner: Any, iterations: int = 50, warmup: int = 10) -> list[dict[str, Any]]:
    """The batch sweep: at each of the profile's min, opt and max batch, GPU compute time, else host time."""
    from ..runtime.bench import check_batch_memory

    results = []
    for batch in sweep_batches(runner.contract):
        check_batch_memory(runner.contract, batch)
        results.append(gpu_compute(runner, batch, iterations, warmup) or host_time(runner, batch, iterations, warmup))
    return results
