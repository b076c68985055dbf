"""The timing cache's key: a `timing.cache` is reused only on the TensorRT and GPU that made it.

The cache itself is read and written through file objects by the build (`build.build_engine`),
so Polygraphy leaves no `.lock` files in the output folder; this module says whose it is and
whether the one in a folder may be fed into a build here.
"""

from __future__ import annotations

from typing import Any

from ..folder.artifacts import TIMING_CACHE

#: what a timing cache is keyed by besides the TensorRT version: the GPU's name alone is "Orin" on
#: the AGX, NX and Nano alike, so its SM count and memory go in too (what CUDA reports of the device)
TIMING_CACHE_GPU_KEYS = ("gpu", "compute_capability", "sm_count", "memory_mib", "platform")


def timing_cache_key(trt_version: str, gpu: dict[str, Any]) -> dict[str, Any]:
    """What a timing cache was made with; it is reused only where all of it matches."""
    return {"path": TIMING_CACHE, "tensorrt": trt_version, **{k: gpu.get(k) for k in TIMING_CACHE_GPU_KEYS}}


def reuse_note(recorded: dict[str, Any] | None, here: dict[str, Any]) -> str | None:
    """Why the folder's timing cache, recorded with key `recorded`, is not reused `here`, or None when it is."""
    if recorded == here:
        return None
    old = recorded or {}
    differ = ", ".join(f"{k} {old.get(k, '?')} there, {here[k]} here" for k in here if k != "path" and old.get(k) != here[k])
    return f"{TIMING_CACHE}: made on another machine ({differ}), not reused; it is replaced"
