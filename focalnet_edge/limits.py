"""Resource limits: refuse up front what would not fit in memory, instead of crashing half-way.

Used where a user's number decides an allocation: `bench --batch` (input batches) and the
model config (weights of the model it describes).
"""

from __future__ import annotations

import gc
import os

from .errors import ConfigError


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable, else free pages), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def require_memory(nbytes: float, what: str, fix: str, share: float = 0.8) -> None:
    """`ConfigError` when `nbytes` exceed `share` of the memory available now (no check where unknown)."""
    free = available_memory()
    if free is not None and nbytes > share * free:
        raise ConfigError(f"{what} needs about {gib(nbytes)} of memory, more than the {gib(free)} available here; {fix}")


def release_freed_memory() -> None:
    """Collect garbage and hand the C heap's freed pages back to the system (glibc's malloc_trim; elsewhere a no-op).

    A stage, an ONNX Runtime session or the simplifier frees hundreds of MB to gigabytes that
    glibc otherwise keeps mapped, so the next step's allocations would come on top of them in
    the system's view: measured on focalnet-base, the simplifier started 340 MB higher without it.
    """
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
