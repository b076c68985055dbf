"""Running TensorRT plans: `TensorRTRunner`, and the checks that a plan can run on this machine.

Only loads and runs; engines are built by the engine stage (`focalnet_edge/engine.py`).

Which plans run where (TensorRT's engine compatibility rules, checked here before TensorRT is
asked, so the answer is one clear sentence instead of a deserialization failure):
- no plan runs on another platform (x86_64 vs aarch64), whatever its compatibility flags;
- a plain plan runs only on the TensorRT version that built it, and only on a GPU of the same
  compute capability;
- a version-compatible plan (`--version-compatible`) runs on the same or a later TensorRT,
  and needs `IRuntime.engine_host_code_allowed` (set here);
- `hardware_compatibility="ampere_plus"` runs on any GPU of compute capability >= 8.0;
  `"same_compute_capability"` on any GPU of the very same compute capability; neither on JetPack
  (TensorRT does not support hardware compatibility on Jetson's integrated GPUs);
- a DLA plan runs only where that DLA core exists (`IRuntime.num_DLA_cores`), and is deserialized
  with the runtime's `DLA_core` set to it.

Nothing in this module has run in this project's CI (no TensorRT or GPU there): it is type
checked against the TensorRT 10.13 stubs and exercised with fakes there, and run for real by
`tests/gpu/` wherever `import tensorrt` and a CUDA GPU work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..contract import InputContract
from ..errors import ArtifactError, InputError
from .base import Runner, _is_torch
from .interop import DeviceBuffer, c_strides, check, cudart, stream_handle, synchronize

if TYPE_CHECKING:  # type-checked against the TensorRT stubs (tests/test_typecheck.py)
    import tensorrt as trt

log = logging.getLogger(__name__)

#: TensorRT DataType member names -> numpy / torch dtype names
DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "UINT8": "uint8",
          "INT32": "int32", "INT64": "int64", "BOOL": "bool"}


def tensorrt_available() -> bool:
    """Whether the real TensorRT imports here (no GPU check).

    A stubs-only install (`tensorrt-stubs` without TensorRT) leaves an importable `tensorrt`
    namespace without `__version__`; that is not TensorRT.
    """
    try:
        import tensorrt
    except ImportError:
        return False
    return isinstance(getattr(tensorrt, "__version__", None), str)


def require_tensorrt() -> Any:
    """The tensorrt module, or one clear `InputError` saying how to install it on each platform."""
    if not tensorrt_available():
        raise InputError(
            "TensorRT is not installed: on an x86_64 desktop or server, pip install 'focalnet-edge[gpu]'; on Jetson "
            "(JetPack 6 or 7) it comes with JetPack: sudo apt install python3-libnvinfer and use a venv made with --system-site-packages"
        )
    import tensorrt as trt

    return trt


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
    try:
        import torch

        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            return {"gpu": torch.cuda.get_device_name(0), "compute_capability": f"{p.major}.{p.minor}",
                    "sm_count": int(p.multi_processor_count), "memory_mib": int(p.total_memory) >> 20, "integrated": bool(p.is_integrated)}
    except ImportError:
        pass
    try:
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            from cuda import cudart  # type: ignore[no-redef]
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


def _version(v: str) -> tuple[int, ...]:
    return tuple(int("".join(c for c in p if c.isdigit()) or 0) for p in str(v).split(".")[:3])


def _cc(v: Any) -> tuple[int, int] | None:
    try:
        major, minor = str(v).split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


def incompatibility(requires: dict[str, Any], here: dict[str, Any]) -> str | None:
    """Why a plan built with `requires` cannot run `here`, or None.

    `here`: {tensorrt, gpu, compute_capability, platform, integrated, dla_cores} of this machine
    (`here_facts`); a key missing from `requires` (a manifest written before it was recorded) is
    not checked.
    """
    built = requires.get("tensorrt")
    if here.get("gpu") in (None, "unknown"):
        return "no CUDA GPU found here"
    platform = requires.get("platform")
    if platform and here.get("platform") and platform != here["platform"]:
        return (f"built on {platform}, this machine is {here['platform']}: TensorRT plans are not portable across platforms "
                "(not even --version-compatible or --hardware-compatibility ones); rebuild it here (focalnet-edge engine OUT)")
    if requires.get("version_compatible"):
        if built and _version(here["tensorrt"]) < _version(built):
            return (f"built with TensorRT {built}, this machine has the older TensorRT {here['tensorrt']}; "
                    "version-compatible engines run only on the same or a later TensorRT")
    elif built and built != here["tensorrt"]:
        return (f"built with TensorRT {built}, this machine has TensorRT {here['tensorrt']}; rebuild the engine here "
                "(focalnet-edge engine OUT) or build it --version-compatible")
    hw = requires.get("hardware_compatibility") or "none"
    if hw != "none" and here.get("integrated"):
        return (f"built with --hardware-compatibility {hw}, which TensorRT does not support on JetPack (Jetson's integrated GPU); "
                "rebuild it here without --hardware-compatibility")
    cc_built, cc_here = _cc(requires.get("compute_capability")), _cc(here.get("compute_capability"))
    if hw == "ampere_plus":
        if cc_here is None or cc_here < (8, 0):
            return f"built for Ampere or later (compute capability >= 8.0), this machine has {here['gpu']} ({here.get('compute_capability')})"
    elif cc_built is not None and cc_here != cc_built:
        fix = "rebuild it here" + (", or build with --hardware-compatibility ampere_plus" if hw == "none" else "")
        return (f"built for {requires.get('gpu')} (compute capability {requires['compute_capability']}), this machine "
                f"has {here['gpu']} ({here.get('compute_capability')}); {fix}")
    core = requires.get("dla_core")
    if core is not None and int(core) >= int(here.get("dla_cores") or 0):
        cores = int(here.get("dla_cores") or 0)
        return (f"built for DLA core {core}, this device has {cores or 'no'} DLA core{'s' if cores != 1 else ''}; "
                "rebuild it here without --dla-core" + (f" or with --dla-core {cores - 1}" if cores else ""))
    return None


def here_facts(requires: dict[str, Any] | None = None) -> dict[str, Any]:
    """What `incompatibility` compares a plan's `requires` with, for this machine (TensorRT imported).

    The DLA core count is asked of TensorRT (`IRuntime.num_DLA_cores`) only for a DLA plan.
    """
    import tensorrt as trt

    here: dict[str, Any] = {"tensorrt": trt.__version__, **gpu_info(), "platform": machine()}
    if requires and requires.get("dla_core") is not None:
        try:
            here["dla_cores"] = int(trt.Runtime(trt.Logger(trt.Logger.WARNING)).num_DLA_cores)
        except Exception:  # no runtime here: no DLA to speak of
            here["dla_cores"] = 0
    return here


def check_engine_compatibility(requires: dict[str, Any], path: Path) -> dict[str, Any]:
    """Refuse, before TensorRT does, a plan built for another platform, TensorRT version, GPU or DLA
    core; return this machine's facts (`here_facts`)."""
    require_tensorrt()
    here = here_facts(requires)
    reason = incompatibility(requires, here)
    if reason:
        raise ArtifactError(f"{path}: {reason}")
    return here


def engine_runnable_here(entry: dict[str, Any]) -> str | None:
    """Why the manifest entry of a plan cannot run on this machine (for `load` to skip it with a note), or None."""
    if not tensorrt_available():
        return "TensorRT is not installed"
    requires = entry.get("requires") or {}
    return incompatibility(requires, here_facts(requires))


def dims(d: trt.Dims) -> list[int]:
    """A TensorRT `Dims` as a list (the stubs declare `__len__`/`__getitem__`, not `__iter__`)."""
    return [int(d[i]) for i in range(len(d))]


def engine_io(engine: trt.ICudaEngine) -> dict[str, Any]:
    """Inputs' profile-0 shapes (min, opt, max), every I/O tensor's dtype and shape (-1: dynamic), read from the engine itself."""
    import tensorrt as trt

    profile: dict[str, list[list[int]]] = {}
    dtypes: dict[str, str] = {}
    shapes: dict[str, list[int]] = {}
    outputs: list[str] = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        dtypes[name] = DTYPES.get(engine.get_tensor_dtype(name).name, "unknown")
        shapes[name] = dims(engine.get_tensor_shape(name))  # -1 where the profile decides
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            profile[name] = [dims(s) for s in engine.get_tensor_profile_shape(name, 0)]
        else:
            outputs.append(name)
    return {"profile": profile, "dtypes": dtypes, "shapes": shapes, "outputs": outputs}


def contract_for_profile(contract: InputContract, profile: list[list[int]]) -> InputContract:
    """`contract` limited to what an engine's optimization profile accepts (batch and size).

    A DLA engine or a static profile takes exactly one batch size: the runner then pads the last
    chunk, as for a static ONNX batch. Sizes outside the profile are refused by `check_profile`.
    """
    lo, opt, hi = profile
    h_axis, w_axis = contract.spatial_axes
    fields = {**contract.__dict__, "batch": (lo[0], opt[0], hi[0]), "dynamic_batch": lo[0] != hi[0]}
    if (lo[h_axis], lo[w_axis]) == (hi[h_axis], hi[w_axis]) and contract.frame_size != "any":  # (any: frame, not input, sizes)
        fields.update(dynamic_size=False, height=opt[h_axis], width=opt[w_axis])
    return InputContract(**fields)


def check_profile(contract: InputContract, profile: list[list[int]], shape: tuple[int, ...]) -> None:
    """Raise `InputError` when `shape`'s height or width lies outside the engine's profile."""
    lo, _, hi = profile
    for axis, what in zip(contract.spatial_axes, ("height", "width")):
        if not lo[axis] <= shape[axis] <= hi[axis]:
            raise InputError(f"input {contract.name!r} has {what} {shape[axis]}: this engine was built for {what}s "
                             f"{lo[axis]} to {hi[axis]} (its optimization profile); rebuild it with --profile-sizes")


class TensorRTRunner(Runner):
    """Runs a plan file. numpy in -> numpy out; torch CUDA tensors in -> torch CUDA tensors out.

    Streams: torch CUDA input runs on the caller's stream, `torch.cuda.current_stream()`, through
    a thin path over `IExecutionContext.execute_async_v3`: the input is read and the outputs are
    written in stream order, so inside `with torch.cuda.stream(s):` no synchronisation is needed
    and none is done; outputs are fresh tensors from torch's allocator on that stream (no copy,
    no reused buffer). numpy input goes through Polygraphy's `TrtRunner`, which copies to the
    device, runs on its own stream and synchronises it before returning host arrays.

    CUDA memory of any other library (`__cuda_array_interface__`, `__dlpack__`: CuPy,
    PyNvVideoCodec, pyds) is bound by pointer as well, on the caller's stream (`_run_device`).

    Execution contexts: Polygraphy's (numpy) and the thin path's share the engine's one
    optimization profile, so calls are serialised, and a call on another stream than the last one
    first waits for that stream (`_exclusive`); on one stream, calls stay asynchronous. Concurrent
    streams would need one profile per context (not built).

    Batches larger than the engine's profile are split; an engine with one batch size (static
    or DLA) gets its last chunk padded, for numpy and torch input alike. Limits come from the
    engine's own optimization profile, not from the manifest.

    Per-call overhead of Polygraphy's runner against the thin path: not measured in this
    project's CI (no GPU); `tests/gpu/test_engines.py::test_per_call_overhead` prints it.
    """

    def __init__(self, path: str | os.PathLike, requires: dict[str, Any] | None = None, contract: dict[str, Any] | None = None,
                 labels: dict[str, str] | None = None, head: str = "logits", outputs: list[str] | None = None, precision: str = "fp32",
                 dla_core: int | None = None) -> None:
        self.path = Path(path)
        require_tensorrt()  # a clear error where TensorRT is missing, before anything else
        import tensorrt as trt

        if requires is None or contract is None:
            facts = _facts_from_manifest(self.path)
            requires, contract, labels = facts["requires"], facts["input"], facts["labels"]
            head, outputs, precision = facts["head"], facts["outputs"], facts["precision"]
            dla_core = requires.get("dla_core") if dla_core is None else dla_core
        here = check_engine_compatibility(requires, self.path)
        #: what runs it, in words (bench and errors show it)
        self.device = f"TensorRT {trt.__version__} on {here['gpu']}" + (f" (DLA core {dla_core})" if dla_core is not None else "")
        from polygraphy.backend.trt import TrtRunner

        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if dla_core is not None:
            self._runtime.DLA_core = dla_core
        if requires.get("version_compatible"):
            self._runtime.engine_host_code_allowed = True
        self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise ArtifactError(f"{self.path}: TensorRT {trt.__version__} could not load this plan")
        base = InputContract.from_dict(contract)
        io = engine_io(self._engine)
        if base.name not in io["profile"]:
            raise ArtifactError(f"{self.path}: the engine's input is {', '.join(io['profile'])}, the manifest says {base.name!r}")
        self.profile = io["profile"][base.name]
        self.contract = contract_for_profile(base, self.profile)
        self.labels = {int(k): v for k, v in (labels or {}).items()}
        self.head, self.precision = head, precision
        self.output_names = list(outputs or io["outputs"])
        self._context: trt.IExecutionContext | None = None  # the torch path's execution context, made on first use
        self._runner = TrtRunner(self._engine)
        self._runner.activate()
        self.name = f"tensorrt:{self.path.name}"

    def run(self, batch, stream: Any = None) -> dict[str, Any]:
        if _is_torch(batch) or isinstance(batch, np.ndarray):
            dtype = str(batch.dtype).replace("torch.", "")
            self.contract.check_shape(tuple(batch.shape), dtype)
            check_profile(self.contract, self.profile, tuple(batch.shape))
            if _is_torch(batch) and batch.is_cuda:  # stays on the device, on the caller's stream
                return self._run_torch(batch)
        return super().run(batch, stream)

    # -- CUDA memory of any library (CUDA array interface, DLPack) -------------------------------------------
    def _run_device(self, buffer: DeviceBuffer, stream: Any) -> dict[str, Any]:
        """CUDA memory bound directly (`set_tensor_address`) and run on the caller's stream.

        The stream: `stream`, else `self.stream`, else the producer's (CUDA array interface
        v3), else the legacy default stream. When the producer's stream is another one, it is
        synchronised first. A pitched input (rows of contiguous bytes at a larger pitch, as
        decoders and NvBufSurface give) is copied into a contiguous device buffer with one
        `cudaMemcpy2DAsync` on the stream (TensorRT takes no strides); other strided layouts are
        refused with what to do. Outputs: CuPy arrays for CuPy input (allocated by CuPy, written by
        TensorRT, in stream order, no synchronisation); otherwise numpy arrays copied to the host
        after the stream is synchronised (classifier outputs are small).
        """
        check_profile(self.contract, self.profile, buffer.shape)
        handle = stream_handle(stream) if stream is not None else buffer.stream or 0
        if buffer.stream and buffer.stream != handle:
            synchronize(buffer.stream)
        rt: Any = None
        scratch: Any = None
        if not buffer.contiguous:
            pitched = buffer.pitch()
            if pitched is None:
                raise InputError(f"a strided CUDA input (shape {buffer.shape}, strides {buffer.strides} bytes) is neither "
                                 "contiguous nor pitched rows: make it contiguous on the device first "
                                 "(cupy.ascontiguousarray(x), x.contiguous())")
            rt = cudart()
            row_bytes, pitch, rows = pitched
            scratch = check(rt.cudaMallocAsync(row_bytes * rows, handle), "cudaMallocAsync")
            check(rt.cudaMemcpy2DAsync(scratch, row_bytes, buffer.ptr, pitch, row_bytes, rows,
                                       rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice, handle), "cudaMemcpy2DAsync")
            buffer = dataclasses.replace(buffer, ptr=int(scratch), strides=c_strides(buffer.shape, buffer.dtype.itemsize))
        try:
            parts = [self._infer_buffer(chunk, handle) for chunk in self._device_chunks(buffer)]
        finally:
            if scratch is not None:
                check(rt.cudaFreeAsync(scratch, handle), "cudaFreeAsync")  # stream-ordered: after the engine read it
        if type(buffer.owner).__module__.startswith("cupy"):
            import cupy

            if len(parts) == 1:
                return parts[0]
            with cupy.cuda.ExternalStream(handle):  # on the stream TensorRT wrote them on, not CuPy's current one
                return {k: cupy.concatenate([p[k] for p in parts]) for k in parts[0]}
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    # -- one call at a time on the engine's one optimization profile -----------------------------------------
    @contextlib.contextmanager
    def _exclusive(self, stream: int | None, wait: Callable[[int], None] | None = None) -> Iterator[None]:
        """Hold the runner for one enqueue on `stream` (None: Polygraphy's own, synchronised before it returns).

        Both execution contexts (Polygraphy's and the thin path's) use the engine's one
        optimization profile, and a context's activation memory is one block; NvInferRuntime.h
        allows contexts on one profile only when they are not in concurrent use. So calls are
        serialised (a lock), and a call on another stream first waits, with `wait`, for the work
        the previous call left in flight on its stream. Calls on one stream stay asynchronous.
        """
        lock = self.__dict__.setdefault("_lock", threading.RLock())
        with lock:
            in_flight = self.__dict__.get("_in_flight")
            if in_flight is not None and in_flight[0] != stream:
                in_flight[1](in_flight[0])
                self._in_flight = None
            yield
            self._in_flight = (stream, wait) if stream is not None and wait is not None else None

    def _infer_buffer(self, x: DeviceBuffer, stream: int) -> dict[str, Any]:
        """One chunk through `execute_async_v3` on `stream`; outputs as `_run_device` says."""
        with self._exclusive(stream, synchronize):
            return self._enqueue_buffer(x, stream)

    def _enqueue_buffer(self, x: DeviceBuffer, stream: int) -> dict[str, Any]:
        if self._context is None:
            self._context = self._engine.create_execution_context()
        ctx = self._context
        ctx.set_input_shape(self.contract.name, tuple(x.shape))
        ctx.set_tensor_address(self.contract.name, x.ptr)
        cupy_out = type(x.owner).__module__.startswith("cupy")
        rt: Any = None if cupy_out else cudart()
        outs, device = {}, {}
        for name in self.output_names:
            dtype = np.dtype(DTYPES[self._engine.get_tensor_dtype(name).name])
            shape = tuple(dims(ctx.get_tensor_shape(name)))
            if cupy_out:
                import cupy

                with cupy.cuda.ExternalStream(stream):
                    out = cupy.empty(shape, dtype)
                outs[name], ptr = out, out.data.ptr
            else:
                outs[name] = np.empty(shape, dtype)
                ptr = device[name] = int(check(rt.cudaMallocAsync(max(outs[name].nbytes, 1), stream), "cudaMallocAsync"))
            ctx.set_tensor_address(name, ptr)
        if not ctx.execute_async_v3(stream):
            raise ArtifactError(f"{self.path}: TensorRT failed to enqueue a batch of shape {tuple(x.shape)}")
        if not cupy_out:
            for name, ptr in device.items():
                check(rt.cudaMemcpyAsync(outs[name].ctypes.data, ptr, outs[name].nbytes,
                                         rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync")
                check(rt.cudaFreeAsync(ptr, stream), "cudaFreeAsync")
            check(rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        return outs

    # -- torch CUDA tensors ----------------------------------------------------------------------------------
    def _run_torch(self, x) -> dict[str, Any]:
        """Split and pad like `Runner._run_chunks`, with torch ops (no host copy)."""
        import torch

        c = self.contract
        n = int(x.shape[0])
        if n == 0:
            raise InputError(f"input {c.name!r} has batch 0: nothing to run")
        step = (c.max_batch or n) if c.dynamic_batch else c.batch[1]
        parts = []
        for i in range(0, n, step):
            chunk = x[i : i + step]
            pad = 0 if c.dynamic_batch else step - int(chunk.shape[0])
            if pad:
                chunk = torch.cat([chunk, chunk[-1:].expand(pad, *chunk.shape[1:])])
            out = self._infer_torch(chunk.contiguous())
            parts.append({k: v[: v.shape[0] - pad] if pad else v for k, v in out.items()})
        if len(parts) == 1:
            return parts[0]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def _infer_torch(self, x) -> dict[str, Any]:
        """One chunk through `execute_async_v3` on `torch.cuda.current_stream()`."""
        import torch

        stream = torch.cuda.current_stream(x.device)
        with self._exclusive(int(stream.cuda_stream), lambda handle: torch.cuda.ExternalStream(handle).synchronize()):
            return self._enqueue_torch(x, stream)

    def _enqueue_torch(self, x, stream) -> dict[str, Any]:
        import torch

        if self._context is None:
            self._context = self._engine.create_execution_context()
        ctx = self._context
        ctx.set_input_shape(self.contract.name, tuple(x.shape))
        ctx.set_tensor_address(self.contract.name, x.data_ptr())
        outs = {}
        for name in self.output_names:
            dtype = getattr(torch, DTYPES[self._engine.get_tensor_dtype(name).name])
            out = torch.empty(tuple(dims(ctx.get_tensor_shape(name))), dtype=dtype, device=x.device)
            ctx.set_tensor_address(name, out.data_ptr())
            outs[name] = out
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise ArtifactError(f"{self.path}: TensorRT failed to enqueue a batch of shape {tuple(x.shape)}")
        return outs

    # -- numpy ---------------------------------------------------------------------------------------------------
    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        with self._exclusive(None):  # Polygraphy synchronises its stream before returning
            outs = self._runner.infer({self.contract.name: batch})
            return {k: np.array(v) for k, v in outs.items()}  # Polygraphy reuses its host buffers

    def close(self) -> None:
        if getattr(self, "_runner", None) is not None and self._runner.is_active:
            self._runner.deactivate()
        self._context = None


def _facts_from_manifest(path: Path) -> dict[str, Any]:
    """What the runner needs from the manifest next to `path`: the engine's own input contract first."""
    from ..manifest import MANIFEST, read_manifest

    if not (path.parent / MANIFEST).is_file():
        raise ArtifactError(f"{path}: an engine needs the manifest.json it was built with, next to it (or adopt it: focalnet-edge engine OUT --adopt)")
    manifest = read_manifest(path.parent)
    entry = manifest["artifacts"].get(path.name)
    if entry is None:
        raise ArtifactError(f"{path}: not listed in {path.parent / MANIFEST}; register it with focalnet-edge engine {path.parent} --adopt {path.name} --from MODEL.onnx")
    return {"requires": entry.get("requires") or {}, "input": entry.get("input") or manifest["input"], "labels": manifest.get("labels"),
            "head": manifest.get("head", "logits"), "outputs": manifest.get("outputs"), "precision": entry["precision"]}
