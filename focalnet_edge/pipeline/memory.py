"""Time and peak memory of each stage of a build (the manifest's `stages`)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from ..limits import release_freed_memory

log = logging.getLogger(__name__)



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
    release_freed_memory()
    own = _reset_peak_rss()
    t0 = time.perf_counter()
    log.info("%s: started", name)
    yield
    release_freed_memory()
    entry = {"name": name, "seconds": round(time.perf_counter() - t0, 2), "peak_rss_mb": _peak_rss_mb(own),
             "peak_rss_since": "stage" if own else "process start"}
    record.append(entry)
    log.info("%s: done in %.1f s, peak RSS %.0f MB", name, entry["seconds"], entry["peak_rss_mb"])
