"""This machine as TensorRT sees it: whether TensorRT imports, the platform, the GPU, and the one
parser each for TensorRT versions and compute capabilities (plans, builds and the support check
compare them through these two functions only).
"""

from __future__ import annotations

import os
import re
from typing import Any

from ..extras import optional, require


def tensorrt_available() -> bool:
    """Whether the real TensorRT imports here (no GPU check; a stubs-only `tensorrt` is not TensorRT)."""
    return optional("tensorrt") is not None


def require_tensorrt() -> Any:
    """The tensorrt module, or one clear `InputError` saying how to install it on each platform."""
    return require("tensorrt")


#: cuda-python's runtime API: `cuda.bindings.runtime` (>= 12.6), else `cuda.cudart`
CUDA_RUNTIME = ("cuda.bindings.runtime", "cuda.cudart")


def machine() -> str:
    """This machine's platform as TensorRT's plans know it: "x86_64" or "aarch64" (plans are not
    portable across platforms)."""
    import platform

    m = platform.machine()
    return {"AMD64": "x86_64", "amd64": "x86_64", "arm64": "aarch64", "ARM64": "aarch64"}.get(m, m)


def gpu_info() -> dict[str, Any]:
    """CUDA device 0: name, compute capability, SM count, memory (MiB) and whether it is
    integrated (a Jetson's GPU shares the host's memory); name and capability "unknown" without a GPU.

    Asks torch where it is imported with CUDA, else cuda-python, else the CUDA driver itself
    (libcuda, through ctypes): a Jetson without torch or cuda-python still finds its GPU. The
    name alone does not tell GPUs apart ("Orin" is the AGX, NX and Nano alike); the SM count and
    memory do.
    """
    torch = optional("torch")
    if torch is not None and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        return {"gpu": torch.cuda.get_device_name(0), "compute_capability": f"{p.major}.{p.minor}",
                "sm_count": int(p.multi_processor_count), "memory_mib": int(p.total_memory) >> 20, "integrated": bool(p.is_integrated)}
    cudart = optional(*CUDA_RUNTIME)
    if cudart is None:
        return _driver_gpu_info()
    try:
        err, props = cudart.cudaGetDeviceProperties(0)
        if int(err) != 0:
            raise RuntimeError(err)
        name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        return {"gpu": name.rstrip("\x00"), "compute_capability": f"{props.major}.{props.minor}", "sm_count": int(props.multiProcessorCount),
                "memory_mib": int(props.totalGlobalMem) >> 20, "integrated": bool(props.integrated)}
    except Exception:
        return _driver_gpu_info()


#: CUdevice_attribute values of the CUDA driver API (cuda.h)
_CC_MAJOR, _CC_MINOR, _SM_COUNT, _INTEGRATED = 75, 76, 16, 18


def _driver_gpu_info() -> dict[str, Any]:
    """Device 0 through the CUDA driver API (cuInit, cuDeviceGet, cuDeviceGetName, cuDeviceGetAttribute, cuDeviceTotalMem_v2)."""
    import ctypes

    unknown: dict[str, Any] = {"gpu": "unknown", "compute_capability": "unknown"}
    try:
        cuda = ctypes.CDLL("libcuda.so.1" if os.name != "nt" else "nvcuda.dll")
    except OSError:
        return unknown
    device, major, minor, sms, integrated = (ctypes.c_int() for _ in range(5))
    memory = ctypes.c_size_t()
    name = ctypes.create_string_buffer(256)
    if (cuda.cuInit(0) or cuda.cuDeviceGet(ctypes.byref(device), 0) or cuda.cuDeviceGetName(name, len(name), device)
            or cuda.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, device)
            or cuda.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, device)):
        return unknown
    info: dict[str, Any] = {"gpu": name.value.decode(errors="replace"), "compute_capability": f"{major.value}.{minor.value}"}
    if not cuda.cuDeviceGetAttribute(ctypes.byref(sms), _SM_COUNT, device):
        info["sm_count"] = sms.value
    if not cuda.cuDeviceTotalMem_v2(ctypes.byref(memory), device):
        info["memory_mib"] = memory.value >> 20
    if not cuda.cuDeviceGetAttribute(ctypes.byref(integrated), _INTEGRATED, device):
        info["integrated"] = bool(integrated.value)
    return info


def version_tuple(version: Any) -> tuple[int, int, int]:
    """'10.13.0.35' -> (10, 13, 0); '10.1-GA' -> (10, 1, 0): the leading digits of the first three parts (0 where none)."""
    parts = (str(version).split(".") + ["0", "0"])[:3]
    a, b, c = (int(m.group()) if (m := re.match(r"\d+", p.strip())) else 0 for p in parts)
    return a, b, c


def compute_capability(value: Any) -> tuple[int, int] | None:
    """'8.7' -> (8, 7); anything unreadable ("unknown", None) -> None."""
    try:
        major, minor = str(value).split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None
