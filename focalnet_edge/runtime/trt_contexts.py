"""The execution contexts of one TensorRT engine: one per CUDA stream in concurrent use.

NvInferRuntime.h (`IExecutionContext`): contexts in concurrent use need distinct optimization
profiles, and a context's activation memory may not be used by another context running in
parallel (`set_device_memory`). So an engine built with `--streams N` (N identical profiles,
`engine/config.py`) gets up to N contexts, context i on profile i, each made once, on first use:

- one profile (the default build): one context, made with TensorRT's default (STATIC) allocation,
  its activation memory allocated once by TensorRT, as before;
- N profiles: contexts made with `ExecutionContextAllocationStrategy.USER_MANAGED`, and one
  device allocation, made once (with the first context), of N slices of the largest per-profile
  size (`get_device_memory_size_for_profile_v2`, 256-byte aligned): one slice per context,
  because contexts in parallel may not share it. One allocation instead of N: one size to
  report, and no allocation when a later context is made.

A call holds a context for one enqueue (`ContextPool.context`). A stream keeps the context it used
last while that context is free (calls on one stream stay asynchronous: stream order); a call on
another stream takes a free context, first waiting for the work the context's last stream left in
flight. When more streams than profiles are in use, calls wait for a free context.

Nothing here has run on TensorRT in this project's CI: it is type checked against the TensorRT
10.13 stubs and exercised with the stub-generated fake (tests/test_trt_contexts.py); tests/gpu/
runs it for real.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..engine.gpu import version_tuple
from ..errors import ArtifactError

if TYPE_CHECKING:  # type-checked against the TensorRT stubs (tests/test_typecheck.py)
    import tensorrt as trt

#: TensorRT's alignment for `set_device_memory`
ALIGNMENT = 256


def device_allocation(nbytes: int) -> tuple[int, Any]:
    """(pointer, owner) of `nbytes` of device memory, through Polygraphy's CUDA wrapper (no torch or cuda-python needed)."""
    from polygraphy import cuda

    block = cuda.DeviceArray.raw((nbytes,))
    return int(block.ptr), block


@contextlib.contextmanager
def private_stream() -> Iterator[int]:
    """A CUDA stream of our own, synchronised and freed on exit (the profile switch of a call given no stream)."""
    from polygraphy import cuda

    stream = cuda.Stream()
    try:
        yield int(stream.ptr)
        stream.synchronize()
    finally:
        stream.free()


class ContextPool:
    """Up to one execution context per optimization profile of `engine`; see the module's docstring.

    `first`: a context already made on profile 0 (kept, not made again).
    """

    def __init__(self, engine: trt.ICudaEngine, first: trt.IExecutionContext | None = None) -> None:
        self.engine = engine
        self.size = max(1, int(engine.num_optimization_profiles))
        self.contexts: list[trt.IExecutionContext | None] = [first] + [None] * (self.size - 1)
        self._cond = threading.Condition()
        self._busy = [False] * self.size
        #: per context, the stream its last enqueue went to and how to wait for it (None: nothing left in flight)
        self._last: list[tuple[int, Callable[[int], None]] | None] = [None] * self.size
        self._memory: tuple[int, int, Any] | None = None  # (base pointer, slice size, owner)

    @contextlib.contextmanager
    def context(self, stream: int | None, wait: Callable[[int], None] | None = None) -> Iterator[tuple[int, trt.IExecutionContext]]:
        """Hold a context (and its profile index) for one enqueue on `stream`.

        `stream` None: the caller synchronises before it returns (Polygraphy's runner), so nothing is
        left in flight. `wait(stream)`: how a later call on another stream waits for this one's work.
        """
        index = self._acquire(stream)
        try:
            yield index, self._context(index, stream)
        finally:
            with self._cond:
                self._last[index] = (stream, wait) if stream is not None and wait is not None else None
                self._busy[index] = False
                self._cond.notify_all()

    def _pick(self, stream: int | None) -> int | None:
        """The free context to use: the one this stream used last, else an idle one, else any free one (None: all busy)."""
        free = [i for i in range(self.size) if not self._busy[i]]
        mine = [i for i in free if self._last[i] is not None and self._last[i][0] == stream]  # type: ignore[index]
        idle = [i for i in free if self._last[i] is None]
        return next(iter(mine or idle or free), None)

    def _acquire(self, stream: int | None) -> int:
        with self._cond:
            index = self._pick(stream)
            while index is None:  # more streams than profiles: wait for a free context
                self._cond.wait()
                index = self._pick(stream)
            self._busy[index] = True
            last = self._last[index]
        if last is not None and last[0] != stream:  # another stream's work is in flight in this context: wait for it
            last[1](last[0])
            self._last[index] = None
        return index

    def _context(self, index: int, stream: int | None) -> trt.IExecutionContext:
        ctx = self.contexts[index]
        if ctx is not None:
            return ctx
        if self.size == 1:
            ctx = self.engine.create_execution_context()  # TensorRT allocates its activation memory, once
        else:
            import tensorrt as trt

            ctx = self.engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
            base, size, _ = self._allocate()
            ctx.set_device_memory(base + index * size, size)
            if index:
                self._set_profile(ctx, index, stream)
        if ctx is None:
            raise ArtifactError(f"TensorRT could not create an execution context for optimization profile {index}")
        self.contexts[index] = ctx
        return ctx

    @staticmethod
    def _set_profile(ctx: trt.IExecutionContext, index: int, stream: int | None) -> None:
        """Switch `ctx` to profile `index`, in order on the caller's stream (or on a private one, synchronised)."""
        if stream is not None:
            switched = ctx.set_optimization_profile_async(index, stream)
        else:
            with private_stream() as handle:
                switched = ctx.set_optimization_profile_async(index, handle)
        if not switched:
            raise ArtifactError(f"TensorRT could not switch an execution context to optimization profile {index}")

    def memory_bytes(self) -> int:
        """Activation memory of one context: the largest of the profiles' sizes, aligned."""
        import tensorrt as trt

        if version_tuple(trt.__version__) >= (10, 1):
            sizes = [self.engine.get_device_memory_size_for_profile_v2(i) for i in range(self.size)]
        else:
            sizes = [self.engine.get_device_memory_size_for_profile(i) for i in range(self.size)]
        largest = max(int(s) for s in sizes)
        return -(-largest // ALIGNMENT) * ALIGNMENT

    def _allocate(self) -> tuple[int, int, Any]:
        """The one allocation of activation memory for all contexts (made with the first)."""
        with self._cond:
            if self._memory is None:
                size = self.memory_bytes()
                base, owner = device_allocation(size * self.size) if size else (0, None)
                self._memory = (base, size, owner)
            return self._memory

    def close(self) -> None:
        """Drop the contexts, then free their memory (a context must not outlive it)."""
        self.contexts = [None] * self.size
        memory, self._memory = self._memory, None
        if memory is not None and memory[2] is not None:
            memory[2].free()
