"""Frames from other libraries: DLPack and the CUDA array interface, read without a copy.

Without a GPU here, CUDA memory is stood in for by host memory behind a
`__cuda_array_interface__` (the description is all the runners read: pointer, shape, strides,
dtype, stream), numpy's own `__dlpack__` capsules are parsed with ctypes and compared with what
numpy says of the same memory, ONNX Runtime's I/O binding runs on the CPU provider with a raw
host pointer, and TensorRT and cuda-python are fakes that record their calls. tests/gpu/ runs
the real thing.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from trt_fake import fake_tensorrt

from focalnet_edge.cli import main
from focalnet_edge.folder.contract import InputContract
from focalnet_edge.errors import InputError
from focalnet_edge.runtime import load
from focalnet_edge.runtime import interop
from focalnet_edge.runtime import tensorrt as trt_mod
from focalnet_edge.runtime.interop import device_buffer, from_dlpack_capsule, host_array


class HostDLPack:
    """Only the DLPack protocol of a numpy array (as JAX or a decoder's CPU frame would offer)."""

    def __init__(self, a):
        self._a = a

    def __dlpack__(self, stream=None, **kwargs):
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


class FakeCudaArray:
    """`__cuda_array_interface__` (v3) over host memory: what CuPy, Numba or pyds would describe."""

    def __init__(self, a, stream=None):
        self._a = a
        self.__cuda_array_interface__ = {
            "shape": a.shape, "typestr": a.dtype.str, "data": (a.ctypes.data, False), "version": 3,
            "strides": None if a.flags.c_contiguous else a.strides, "stream": stream,
        }


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("interop") / "out"
    assert main(["-q", "export", "--model", "demo", "--output", str(out), "--fuse-preprocess", "--batch", "1:4:8"]) == 0
    return out


def _frames(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)


def test_host_dlpack_is_viewed_without_a_copy_strided_included():
    big = _frames(4)
    for a in (big, big[::2], big[:, 8:40, 4:60]):  # contiguous, every other frame, a crop (strided rows)
        view = host_array(HostDLPack(a))
        assert np.shares_memory(view, a) and view.strides == a.strides and np.array_equal(view, a)


def test_host_dlpack_input_gives_the_numpy_result(demo_out):
    x = _frames(10)
    with load(demo_out) as runner:
        expected = runner(x)
        assert np.array_equal(runner(HostDLPack(x)), expected)  # split at the maximum batch 8 like numpy
        # a crop of bigger frames is a strided view: copied once to a contiguous batch, same numbers
        big = np.zeros((10, 80, 96, 3), np.uint8)
        big[:, 8:72, 16:80] = x
        assert np.array_equal(runner(HostDLPack(big[:, 8:72, 16:80])), expected)


@pytest.mark.parametrize("dtype", ["uint8", "float16", "float32", "int64", "bool"])
def test_a_dlpack_capsule_is_read_like_numpy_reads_the_memory(dtype):
    a = (np.arange(2 * 6 * 10 * 3) % 7).astype(dtype).reshape(2, 6, 10, 3)
    for view in (a, a[:, 1:5, ::3], a[1:]):
        buffer = from_dlpack_capsule(view.__dlpack__())
        assert buffer.ptr == view.ctypes.data and buffer.shape == view.shape
        assert buffer.strides == view.strides and buffer.dtype == view.dtype
        assert buffer.contiguous == view.flags.c_contiguous


def test_the_cuda_array_interface_is_described_not_read():
    a = _frames(3)
    buffer = device_buffer(FakeCudaArray(a, stream=0xBEEF))
    assert buffer.ptr == a.ctypes.data and buffer.shape == a.shape and buffer.dtype == np.uint8
    assert buffer.strides == a.strides and buffer.contiguous and buffer.stream == 0xBEEF
    assert host_array(FakeCudaArray(a)) is None  # device memory is never read on the host
    rows = buffer.rows(1, 3)
    assert rows.ptr == a[1:].ctypes.data and rows.shape == (2, 64, 64, 3)
    with pytest.raises(InputError, match="with a mask"):
        interop.from_cuda_array_interface({**FakeCudaArray(a).__cuda_array_interface__, "mask": object()})


def test_pitched_frames_are_recognised_other_strides_are_not():
    surface = np.zeros((2, 64, 256, 3), np.uint8)  # rows of 64x3 bytes at a pitch of 768 bytes, as NvBufSurface pads them
    pitched = device_buffer(FakeCudaArray(surface[:, :, :64]))
    assert not pitched.contiguous and pitched.pitch() == (64 * 3, 256 * 3, 2 * 64)
    one = device_buffer(FakeCudaArray(surface[:1, :, :64]))
    assert one.pitch() == (64 * 3, 256 * 3, 64)
    assert device_buffer(FakeCudaArray(surface[:, :, :64, ::-1])).pitch() is None  # reversed channels: no rows to copy
    assert device_buffer(FakeCudaArray(np.zeros((2, 3, 64, 64), np.uint8).transpose(0, 2, 3, 1))).pitch() is None
    assert device_buffer(FakeCudaArray(_frames(1))).pitch() is None  # contiguous


def test_a_cpu_runner_refuses_cuda_memory_in_one_sentence(demo_out):
    with load(demo_out) as runner, pytest.raises(InputError, match="cannot read CUDA memory: copy the frames to the host"):
        runner(FakeCudaArray(_frames(2)))
    with load(demo_out) as runner, pytest.raises(InputError, match="got dict"):
        runner({"x": 1})


def test_io_binding_by_pointer_gives_the_numpy_result(demo_out):
    """The I/O binding path of the CUDA provider, run on the CPU provider with a host pointer."""
    x = _frames(11)
    with load(demo_out) as runner:
        expected = runner(x)
        buffer = device_buffer(FakeCudaArray(x))
        got = runner._run_bound(buffer, "cpu")  # split 8 + 3, pointers moved, no copy
        assert np.array_equal(got["logits"], expected)


def test_onnxruntime_cuda_refuses_strided_memory_and_waits_for_the_producer(demo_out, monkeypatch):
    from focalnet_edge.runtime import onnxruntime as ort_mod

    waited = []
    monkeypatch.setattr(ort_mod, "synchronize", waited.append)
    with load(demo_out) as runner:
        runner.providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        runner._run_bound = lambda buffer, device: {"logits": np.zeros((buffer.shape[0], 10), np.float32), "device": device}
        big = np.zeros((2, 64, 80, 3), np.uint8)
        with pytest.raises(InputError, match="strided CUDA input .* cannot be bound to ONNX Runtime"):
            runner.run(FakeCudaArray(big[:, :, :64]))
        out = runner.run(FakeCudaArray(_frames(2), stream=0xF00D))
        assert waited == [0xF00D] and out["device"] == "cuda"
        waited.clear()  # issue 24, item 5: the caller's stream too (a DLPack producer ordered its work before it)
        runner.run(FakeCudaArray(_frames(2), stream=0xF00D), stream=types.SimpleNamespace(cuda_stream=0xBEEF))
        assert waited == [0xF00D, 0xBEEF]


# -- TensorRT, over the stub-generated fake and a recording cuda-python ------------------------------------
class FakeCudart(types.SimpleNamespace):
    """The calls `_run_device` makes to cuda-python's runtime API, recorded; memory is host memory."""

    def __init__(self):
        super().__init__(calls=[], cudaMemcpyKind=types.SimpleNamespace(cudaMemcpyDeviceToDevice=3, cudaMemcpyDeviceToHost=2))
        self._blocks = []

    def cudaMallocAsync(self, size, stream):
        block = np.zeros(size, np.uint8)
        self._blocks.append(block)
        self.calls.append(("cudaMallocAsync", size, stream))
        return 0, block.ctypes.data

    def cudaMemcpy2DAsync(self, dst, dpitch, src, spitch, width, height, kind, stream):
        self.calls.append(("cudaMemcpy2DAsync", dpitch, src, spitch, width, height, kind, stream))
        return (0,)

    def cudaMemcpyAsync(self, dst, src, count, kind, stream):
        self.calls.append(("cudaMemcpyAsync", count, kind, stream))
        return (0,)

    def cudaFreeAsync(self, ptr, stream):
        self.calls.append(("cudaFreeAsync", stream))
        return (0,)

    def cudaStreamSynchronize(self, stream):
        self.calls.append(("cudaStreamSynchronize", stream))
        return (0,)


@pytest.fixture
def trt_runner(monkeypatch):
    shapes = {}
    trt = fake_tensorrt("10.3.0", behaviour={
        "ICudaEngine.get_tensor_dtype": lambda self, name: trt.DataType.FLOAT,
        "IExecutionContext.get_tensor_shape": lambda self, name: [shapes["batch"], 10],
        "IExecutionContext.execute_async_v3": True,
        "IExecutionContext.set_input_shape": lambda self, name, shape: shapes.update(batch=shape[0]) or True,
        "IExecutionContext.set_tensor_address": True,
    })
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    rt = FakeCudart()
    monkeypatch.setattr(trt_mod, "cudart", lambda: rt)
    monkeypatch.setattr(trt_mod, "synchronize", lambda stream: rt.calls.append(("synchronize", stream)))
    contract = InputContract(height=64, width=64, fused_preprocess=True, dtype="uint8", layout="NHWC", batch=(1, 4, 8))
    runner = object.__new__(trt_mod.TensorRTRunner)
    runner.profile = [[1, 64, 64, 3], [4, 64, 64, 3], [8, 64, 64, 3]]
    runner.contract = trt_mod.contract_for_profile(contract, runner.profile)
    runner.output_names, runner.path, runner.name = ["logits"], trt_mod.Path("model.engine"), "tensorrt:model.engine"
    runner._engine, runner._context = trt.ICudaEngine(), None
    return runner, rt


def _addresses(runner):
    return [args for name, args, _ in runner._context._calls if name == "set_tensor_address" and args[0] == "frames"]


def test_tensorrt_binds_the_callers_buffer_on_the_callers_stream(trt_runner):
    runner, rt = trt_runner
    runner.contract.name = "frames"
    x = _frames(10)
    out = runner.run(FakeCudaArray(x), stream=types.SimpleNamespace(cuda_stream=0xC0FFEE))  # a torch-like stream
    assert _addresses(runner) == [("frames", x.ctypes.data), ("frames", x[8:].ctypes.data)]  # split 8 + 2, no copy
    executes = [args for name, args, _ in runner._context._calls if name == "execute_async_v3"]
    assert executes == [(0xC0FFEE,), (0xC0FFEE,)]
    assert out["logits"].shape == (10, 10) and isinstance(out["logits"], np.ndarray)
    assert ("cudaStreamSynchronize", 0xC0FFEE) in rt.calls and not any(c[0] == "cudaMemcpy2DAsync" for c in rt.calls)


def test_tensorrt_copies_a_pitched_frame_once_and_waits_for_another_producer_stream(trt_runner):
    runner, rt = trt_runner
    runner.contract.name = "frames"
    surface = np.zeros((3, 64, 100, 3), np.uint8)
    runner.stream = 7  # the runner's stream attribute, when run() is given none
    runner.run(FakeCudaArray(surface[:, :, :64], stream=5))
    assert rt.calls[0] == ("synchronize", 5)  # the producer's stream is not ours: wait for it
    assert rt.calls[1] == ("cudaMallocAsync", 3 * 64 * 64 * 3, 7)
    assert rt.calls[2] == ("cudaMemcpy2DAsync", 64 * 3, surface.ctypes.data, 100 * 3, 64 * 3, 3 * 64, 3, 7)
    scratch = rt._blocks[0].ctypes.data
    assert _addresses(runner) == [("frames", scratch)]
    assert ("cudaFreeAsync", 7) in rt.calls


def test_tensorrt_refuses_what_it_cannot_bind(trt_runner):
    runner, _ = trt_runner
    with pytest.raises(InputError, match="neither contiguous nor pitched rows"):
        runner.run(FakeCudaArray(_frames(2)[..., ::-1]))
    with pytest.raises(InputError, match="expected 64x64"):
        runner.run(FakeCudaArray(np.zeros((1, 32, 64, 3), np.uint8)))
    runner.contract = trt_mod.contract_for_profile(runner.contract, [[4, 64, 64, 3]] * 3)  # one batch size (DLA)
    with pytest.raises(InputError, match="batches of exactly 4"):
        runner.run(FakeCudaArray(_frames(6)))
    with pytest.raises(InputError, match="stream 'x' not understood"):
        runner.run(FakeCudaArray(_frames(4)), stream="x")


# -- issue 24, item 8: cuda-python on Jetson -------------------------------------------------------------------------
@pytest.mark.parametrize("machine,driver,expect", [
    ("x86_64", 12080, "need cuda-python: pip install 'focalnet-edge[gpu]'"),
    ("aarch64", 12060, "pip install 'cuda-python==12.6.*' in the venv (this JetPack's CUDA is 12.6); the [gpu] extra installs nothing on aarch64"),
    ("aarch64", 13000, "pip install 'cuda-python==13.0.*'"),
    ("aarch64", None, "pip install 'cuda-python==MAJOR.MINOR.* (JetPack's CUDA: nvcc --version)'"),
])
def test_missing_cuda_python_names_the_install_that_works_here(monkeypatch, machine, driver, expect):
    import ctypes

    from focalnet_edge.engine import gpu
    from focalnet_edge.errors import InputError

    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, name, None)  # `import` fails
    monkeypatch.setattr(gpu, "machine", lambda: machine)

    class Driver:  # cuDriverGetVersion writes 1000 * major + 10 * minor through its pointer, as libcuda does
        def cuDriverGetVersion(self, out):
            out._obj.value = driver
            return 0

    def cdll(name):
        if driver is None:
            raise OSError(name)
        return Driver()

    monkeypatch.setattr(ctypes, "CDLL", cdll)
    with pytest.raises(InputError) as e:
        interop.cudart()
    assert expect in str(e.value) and "\n" not in str(e.value)
    assert ("focalnet-edge[gpu]" in str(e.value)) is (machine == "x86_64")


def test_tensorrt_concatenates_cupy_chunks_on_its_own_stream(trt_runner, monkeypatch):
    """Issue 24, item 5: multi-chunk CuPy outputs are joined on the stream TensorRT wrote them on."""
    runner, rt = trt_runner
    runner.contract.name = "frames"
    current = [0]  # CuPy's current stream
    joined_on = []

    class ExternalStream:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            self.previous, current[0] = current[0], self.handle

        def __exit__(self, *exc):
            current[0] = self.previous

    class Memory:
        def __init__(self, a):
            self.ptr = a.ctypes.data

    class Array(np.ndarray):
        @property
        def data(self):
            return Memory(self)

    def concatenate(parts):
        joined_on.append(current[0])
        return np.concatenate(parts)

    cupy = types.ModuleType("cupy")
    cupy.cuda = types.SimpleNamespace(ExternalStream=ExternalStream)
    cupy.empty = lambda shape, dtype: np.empty(shape, dtype).view(Array)
    cupy.concatenate = concatenate
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    CupyArray = type("ndarray", (FakeCudaArray,), {"__module__": "cupy._core.core"})  # what a CuPy array's type says
    out = runner.run(CupyArray(_frames(10)), stream=0xC0FFEE)  # 8 + 2
    assert joined_on == [0xC0FFEE] and out["logits"].shape == (10, 10) and current == [0]


def test_tensorrt_waits_for_the_last_stream_before_using_the_context_on_another(trt_runner):
    """Issue 24, item 3: both contexts use the engine's one profile; never two streams on them at once."""
    runner, rt = trt_runner
    runner.contract.name = "frames"
    runner.run(FakeCudaArray(_frames(2)), stream=1)
    runner.run(FakeCudaArray(_frames(2)), stream=1)
    assert ("synchronize", 1) not in rt.calls  # one stream: asynchronous
    runner.run(FakeCudaArray(_frames(2)), stream=2)
    executes = [i for i, (name, args, _) in enumerate(runner._context._calls) if name == "execute_async_v3"]
    assert len(executes) == 3 and rt.calls.count(("synchronize", 1)) == 1
    # the wait came before the enqueue on stream 2: it is the last "synchronize" before the last execute
    waits = [i for i, c in enumerate(rt.calls) if c == ("synchronize", 1)]
    mallocs_on_2 = [i for i, c in enumerate(rt.calls) if c[0] == "cudaMallocAsync" and c[-1] == 2]
    assert waits[0] < mallocs_on_2[0]


def test_tensorrt_calls_from_two_threads_do_not_interleave_on_the_context(trt_runner):
    import threading
    import time

    runner, rt = trt_runner
    runner.contract.name = "frames"
    context = runner._engine.create_execution_context()
    runner._context = context
    trt = sys.modules["tensorrt"]

    def slow_shape(self, name):
        time.sleep(0.01)  # between this call's input and output addresses: another thread would step in here
        return [2, 10]

    trt._behaviour["IExecutionContext.get_tensor_shape"] = slow_shape
    threads = [threading.Thread(target=runner.run, args=(FakeCudaArray(_frames(2)),), kwargs={"stream": s}) for s in (1, 2, 3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    names = [name for name, _, _ in context._calls]
    assert names.count("execute_async_v3") == 4
    for i, name in enumerate(names):  # each enqueue: shape, addresses, execute, with nothing of another call between
        if name == "set_input_shape":
            assert names[i + 1 : i + 5] == ["set_tensor_address", "get_tensor_shape", "set_tensor_address", "execute_async_v3"], names
