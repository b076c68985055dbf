"""Running TensorRT plans: `TensorRTRunner`, and fitting a contract to an engine's profile.

Only loads and runs; engines are built, and a plan's requirements checked against this machine,
by the engine package (`focalnet_edge/engine/`: `build.py`, `plans.py`).

Nothing in this module has run in this project's CI (no TensorRT or GPU there): it is type
checked against the TensorRT 10.13 stubs and exercised with fakes there, and run for real by
`tests/gpu/` wherever `import tensorrt` and a CUDA GPU work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..folder.contract import InputContract
from ..engine.gpu import require_tensorrt
from ..engine.plans import DTYPES, check_engine_compatibility, dims, engine_io
from ..errors import ArtifactError, InputError
from .base import Runner, _is_torch
from .interop import DeviceBuffer, c_strides, check, cudart, stream_handle, synchronize
from .trt_contexts import ContextPool

if TYPE_CHECKING:  # type-checked against the TensorRT stubs (tests/test_typecheck.py)
    import tensorrt as trt


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

    Execution contexts (`trt_contexts.ContextPool`): one per optimization profile, each made once,
    on first use; an engine built with `--streams N` has N identical profiles, so N calls on N
    CUDA streams run at once, each in its own context with its own activation memory; with more
    streams than profiles in use, a call waits for a free context, and a context taken over from
    another stream first waits for that stream's work. The default build (one profile) behaves as
    before: calls are serialised on the one context, a call on another stream than the last one
    first waits for it, and calls on one stream stay asynchronous. numpy calls run through a
    Polygraphy `TrtRunner` made over the pool's context (not a context of its own).

    Batches larger than the engine's profile are split; an engine with one batch size (static
    or DLA) gets its last chunk padded, for numpy and torch input alike. Limits come from the
    engine's own optimization profile, not from the manifest.

    Per-call overhead of Polygraphy's runner against the thin path: not measured in this
    project's CI (no GPU); `tests/gpu/test_engines.py::test_per_call_overhead` prints it.
    """

    def __init__(self, path: str | os.PathLike, requires: dict[str, Any] | None = None, contract: dict[str, Any] | None = None,
                 labels: dict[int, str] | None = None, head: str = "logits", outputs: list[str] | None = None, precision: str = "fp32",
                 dla_core: int | None = None) -> None:
        self.path = Path(path)
        require_tensorrt()  # a clear error where TensorRT is missing, before anything else
        import tensorrt as trt

        if requires is None or contract is None:  # the loader's facts (`runtime.load`, `loader.engine_facts`): runners read no manifest
            raise ArtifactError(f"{self.path}: a TensorRT runner needs the engine's requirements and input contract; "
                                "open it with focalnet_edge.runtime.load")
        here = check_engine_compatibility(requires, self.path)
        #: what runs it, in words (bench and errors show it)
        self.device = f"TensorRT {trt.__version__} on {here['gpu']}" + (f" (DLA core {dla_core})" if dla_core is not None else "")
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
        self.labels = dict(labels or {})
        self.head, self.precision = head, precision
        self.output_names = list(outputs or io["outputs"])
        self._context = None  # the contexts: `_pool()`, made on first use
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

    # -- the execution contexts: one per optimization profile (trt_contexts.py) -------------------------------
    @property
    def _context(self) -> trt.IExecutionContext | None:
        """The context on profile 0, once made (the one context of a one-profile engine)."""
        pool = self.__dict__.get("_contexts")
        return pool.contexts[0] if pool is not None else self.__dict__.get("_first_context")

    @_context.setter
    def _context(self, value: trt.IExecutionContext | None) -> None:
        self.__dict__["_contexts"] = None  # a new pool (keeping `value` as its context on profile 0) on next use
        self.__dict__["_first_context"] = value

    def _pool(self) -> ContextPool:
        pool = self.__dict__.get("_contexts")
        if pool is None:
            lock = self.__dict__.setdefault("_pool_lock", threading.Lock())
            with lock:
                pool = self.__dict__.get("_contexts")
                if pool is None:
                    pool = self.__dict__["_contexts"] = ContextPool(self._engine, self.__dict__.get("_first_context"))
        return pool

    def _infer_buffer(self, x: DeviceBuffer, stream: int) -> dict[str, Any]:
        """One chunk through `execute_async_v3` on `stream`; outputs as `_run_device` says."""
        with self._pool().context(stream, synchronize) as (index, ctx):
            return self._enqueue_buffer(ctx, index, x, stream)

    def _enqueue_buffer(self, ctx: trt.IExecutionContext, index: int, x: DeviceBuffer, stream: int) -> dict[str, Any]:
        self._unset_allocators(ctx, index)
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
        with self._pool().context(int(stream.cuda_stream), lambda handle: torch.cuda.ExternalStream(handle).synchronize()) as (index, ctx):
            return self._enqueue_torch(ctx, index, x, stream)

    def _enqueue_torch(self, ctx: trt.IExecutionContext, index: int, x, stream) -> dict[str, Any]:
        import torch

        self._unset_allocators(ctx, index)
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

    @contextlib.contextmanager
    def held_context(self, stream: int, wait: Callable[[int], None] | None = None) -> Iterator[trt.IExecutionContext]:
        """A context of the pool held for the caller's own enqueues on `stream` (timing: engine/timing.py);
        `wait(stream)`: how a later call on another stream waits for this one's work (None: the caller
        synchronises `stream` before giving the context back)."""
        with self._pool().context(stream, wait) as (index, ctx):
            self._unset_allocators(ctx, index)
            yield ctx

    # -- numpy ---------------------------------------------------------------------------------------------------
    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        with self._pool().context(None) as (index, ctx):  # Polygraphy synchronises its stream before returning
            outs = self._polygraphy(index, ctx).infer({self.contract.name: batch})
            return {k: np.array(v) for k, v in outs.items()}  # Polygraphy reuses its host buffers

    def _polygraphy(self, index: int, ctx: trt.IExecutionContext) -> Any:
        """Polygraphy's `TrtRunner` over the pool's context `index` (made once; it makes no context of its own)."""
        from polygraphy.backend.trt import TrtRunner

        runners = self.__dict__.setdefault("_runners", {})
        if index not in runners:
            runners[index] = TrtRunner(ctx)
            runners[index].activate()
        return runners[index]

    def _unset_allocators(self, ctx: trt.IExecutionContext, index: int) -> None:
        """Polygraphy binds outputs through an output allocator; the thin paths bind addresses: unset it (None unsets)."""
        if index in self.__dict__.get("_runners", {}):
            for name in self.output_names:
                ctx.set_output_allocator(name, None)  # type: ignore[arg-type]  # the stub's docstring: "Pass None to unset"

    def close(self) -> None:
        for runner in self.__dict__.pop("_runners", {}).values():
            if runner.is_active:
                runner.deactivate()
        pool = self.__dict__.get("_contexts")
        if pool is not None:
            pool.close()
        self._context = None
