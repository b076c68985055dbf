"""Frames from other libraries without a copy: DLPack, the CUDA array interface, the array interface.

What a runner takes besides numpy arrays and torch tensors:
- host memory that numpy can view: an object with `__dlpack__` on the CPU (`np.from_dlpack`),
  or with `__array_interface__` / the buffer protocol (`np.asarray`); strided views stay views;
- device memory: an object with `__cuda_array_interface__` (CuPy, Numba, PyNvVideoCodec's
  planes, pyds' CuPy views, torch) or with `__dlpack__` on a CUDA device (`kDLCUDA`). It
  becomes a `DeviceBuffer` (pointer, shape, byte strides, dtype, device, the producer's
  stream) that the GPU backends bind directly: TensorRT through `set_tensor_address`, ONNX
  Runtime's CUDA provider through I/O binding. Nothing here touches the memory itself.

The DLPack capsule is read with ctypes against `dlpack.h` (DLManagedTensor, the unversioned
ABI every producer still exports when no `max_version` is asked for); the capsule is kept in
`DeviceBuffer.owner`, so the producer's deleter runs only when the buffer is dropped.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine import gpu
from ..errors import InputError
from ..extras import optional

#: DLDeviceType values of dlpack.h
KDL_CPU, KDL_CUDA, KDL_CUDA_HOST, KDL_CUDA_MANAGED = 1, 2, 3, 13
#: DLDataTypeCode values of dlpack.h -> numpy kind
_DL_KINDS = {0: "i", 1: "u", 2: "f", 6: "b"}


@dataclass(frozen=True)
class DeviceBuffer:
    """A tensor in CUDA memory, described, not owned (`owner` keeps the producer's object alive)."""

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype
    strides: tuple[int, ...]  #: in bytes
    device_id: int = 0
    stream: int | None = None  #: the producer's CUDA stream (CUDA array interface v3), None if not said
    owner: Any = None

    @property
    def contiguous(self) -> bool:
        return self.strides == c_strides(self.shape, self.dtype.itemsize) or int(np.prod(self.shape)) <= 1

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def rows(self, start: int, stop: int) -> DeviceBuffer:
        """Rows `start:stop` of the first axis (a view: the pointer moves, nothing is copied)."""
        return DeviceBuffer(self.ptr + start * self.strides[0], (stop - start, *self.shape[1:]), self.dtype, self.strides,
                            self.device_id, self.stream, self.owner)

    def pitch(self) -> tuple[int, int, int] | None:
        """(row bytes, row pitch, rows) when the buffer is rows of contiguous bytes at one pitch
        (a pitched frame or batch, as decoders and NvBufSurface hand out), else None."""
        itemsize = self.dtype.itemsize
        inner = len(self.shape)
        while inner > 0 and self.strides[inner - 1:] == c_strides(self.shape[inner - 1:], itemsize):
            inner -= 1
        if inner == 0:
            return None  # contiguous: no pitch to speak of
        row_bytes = int(np.prod(self.shape[inner:])) * itemsize
        pitch = self.strides[inner - 1]
        outer = self.shape[:inner]
        if pitch < row_bytes or self.strides[:inner] != c_strides(outer, pitch):
            return None
        return row_bytes, pitch, int(np.prod(outer))


def c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    out, step = [], itemsize
    for n in reversed(shape):
        out.append(step)
        step *= n
    return tuple(reversed(out))


def host_array(obj: Any) -> np.ndarray | None:
    """`obj` as a numpy view of its host memory (no copy), or None when it is not in host memory."""
    if isinstance(obj, np.ndarray):
        return obj
    device = getattr(obj, "__dlpack_device__", None)
    if device is not None and hasattr(obj, "__dlpack__"):
        kind = int(device()[0])
        if kind in (KDL_CPU, KDL_CUDA_HOST):  # pinned host memory is host memory too
            return np.from_dlpack(obj)
        return None
    if hasattr(obj, "__cuda_array_interface__"):
        return None
    if hasattr(obj, "__array_interface__") or hasattr(obj, "__array_struct__"):
        return np.asarray(obj)
    try:
        memoryview(obj)
    except TypeError:
        return None
    return np.asarray(obj)


def device_buffer(obj: Any, stream: int | None = None) -> DeviceBuffer | None:
    """`obj`'s CUDA memory described (CUDA array interface first, then DLPack), or None.

    `stream`: the consumer's stream, passed to `__dlpack__` so that the producer orders its
    work before it (DLPack's protocol; None asks for the legacy default stream).
    """
    cai = getattr(obj, "__cuda_array_interface__", None)
    if cai is not None:
        return from_cuda_array_interface(cai, obj)
    device = getattr(obj, "__dlpack_device__", None)
    if device is not None and hasattr(obj, "__dlpack__") and int(device()[0]) in (KDL_CUDA, KDL_CUDA_MANAGED):
        capsule = obj.__dlpack__(stream=1 if not stream else stream)  # 0 is not allowed: 1 is the legacy default stream
        return from_dlpack_capsule(capsule, owner=(obj, capsule))
    return None


def from_cuda_array_interface(cai: dict[str, Any], owner: Any = None) -> DeviceBuffer:
    """A `DeviceBuffer` from a `__cuda_array_interface__` dict (versions 0 to 3; masks refused)."""
    if cai.get("mask") is not None:
        raise InputError("a CUDA array with a mask (__cuda_array_interface__['mask']) is not accepted: fill the masked values first")
    ptr = int(cai["data"][0] or 0)
    shape = tuple(int(n) for n in cai["shape"])
    dtype = np.dtype(cai["typestr"])
    strides = tuple(int(s) for s in cai["strides"]) if cai.get("strides") is not None else c_strides(shape, dtype.itemsize)
    stream = cai.get("stream")
    return DeviceBuffer(ptr, shape, dtype, strides, 0, int(stream) if stream else None, owner)


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32), ("dtype", _DLDataType),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


class _DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]


def from_dlpack_capsule(capsule: Any, owner: Any = None) -> DeviceBuffer:
    """A `DeviceBuffer` read from a "dltensor" capsule (any device: the caller checks where it lives)."""
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    address = get(capsule, b"dltensor")
    t = _DLManagedTensor.from_address(address).dl_tensor
    if t.dtype.lanes != 1 or t.dtype.code not in _DL_KINDS:
        raise InputError(f"a DLPack tensor of type code {t.dtype.code}, {t.dtype.bits} bits, {t.dtype.lanes} lanes is not accepted")
    dtype = np.dtype(f"{_DL_KINDS[t.dtype.code]}{t.dtype.bits // 8}") if t.dtype.code != 6 else np.dtype(bool)
    shape = tuple(int(t.shape[i]) for i in range(t.ndim))
    strides = (tuple(int(t.strides[i]) * dtype.itemsize for i in range(t.ndim)) if t.strides
               else c_strides(shape, dtype.itemsize))  # DLPack strides count elements; NULL means C order
    return DeviceBuffer(int(t.data or 0) + int(t.byte_offset), shape, dtype, strides, int(t.device.device_id), None,
                        owner if owner is not None else capsule)


def stream_handle(stream: Any) -> int:
    """A CUDA stream as its handle: an int, torch's (`.cuda_stream`), CuPy's (`.ptr`), or one with `__cuda_stream__`."""
    if stream is None:
        return 0
    if isinstance(stream, (int, np.integer)):
        return int(stream)
    if hasattr(stream, "__cuda_stream__"):
        return int(stream.__cuda_stream__()[1])
    for attribute in ("cuda_stream", "ptr", "handle"):
        if hasattr(stream, attribute):
            return int(getattr(stream, attribute))
    raise InputError(f"stream {stream!r} not understood: expected a CUDA stream handle (int), a torch or CuPy stream")


def cudart() -> Any:
    """cuda-python's runtime API (`cuda.bindings.runtime`, or `cuda.cudart` before 12.6), or one clear error."""
    runtime = optional(*gpu.CUDA_RUNTIME)
    if runtime is None:
        raise InputError(f"CUDA frames that need a copy or a stream synchronisation need cuda-python: {cuda_python_install()}")
    return runtime


def cuda_python_install() -> str:
    """How to install cuda-python here. x86_64: the [gpu] extra. aarch64 (Jetson): the [gpu] extra
    installs nothing there, so the cuda-python release of the CUDA that JetPack ships (12.2 or 12.6 on
    JetPack 6, 13.x on JetPack 7), read from the driver (`cuDriverGetVersion`) where it answers."""
    if gpu.machine() != "aarch64":
        return "pip install 'focalnet-edge[gpu]'"
    version = driver_cuda_version()
    spec = f"cuda-python=={version}.*" if version else "cuda-python==MAJOR.MINOR.* (JetPack's CUDA: nvcc --version)"
    return (f"on Jetson, pip install '{spec}' in the venv" + (f" (this JetPack's CUDA is {version})" if version else "")
            + "; the [gpu] extra installs nothing on aarch64")


def driver_cuda_version() -> str | None:
    """The CUDA version the driver supports ("12.6"), through libcuda's cuDriverGetVersion; None without a driver."""
    import os

    try:
        cuda = ctypes.CDLL("libcuda.so.1" if os.name != "nt" else "nvcuda.dll")
    except OSError:
        return None
    version = ctypes.c_int()
    if cuda.cuDriverGetVersion(ctypes.byref(version)) or not version.value:
        return None
    return f"{version.value // 1000}.{version.value % 1000 // 10}"


def check(result: Any, what: str) -> Any:
    """The value of a cuda-python call `(err, *values)`, or an `InputError` naming the call."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise InputError(f"CUDA {what} failed: {err}")
    return values[0] if len(values) == 1 else values or None


def synchronize(stream: int | None) -> None:
    """Wait for a producer's stream (CUDA array interface v3: the consumer must, before reading)."""
    if stream:
        rt = cudart()
        check(rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
