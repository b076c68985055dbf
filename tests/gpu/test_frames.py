"""GPU frames without a copy, for real: CuPy and DLPack-only CUDA input to a TensorRT engine and to
ONNX Runtime's CUDA provider, pitched frames included, on the caller's stream.

Skipped (tests/gpu/conftest.py) without TensorRT and a CUDA GPU; the tests that need CuPy or
onnxruntime-gpu's CUDA provider skip without them, saying so.
"""

from __future__ import annotations

import numpy as np
import pytest

from focalnet_edge.engine.config import EngineOptions
from focalnet_edge.pipeline import BuildOptions, ExportOptions, build
from focalnet_edge.runtime import OnnxRuntimeRunner, load


@pytest.fixture(scope="module")
def fused(tmp_path_factory):
    pytest.importorskip("torch", reason="the fused demo folder is exported here, which needs torch")
    out = tmp_path_factory.mktemp("frames")
    build(BuildOptions(model="demo", output=out, precision="fp16", backend="tensorrt",
                       export=ExportOptions(fuse_preprocess=True, batch=(1, 8, 32)), engine=EngineOptions()))
    return out


def _frames(n):
    return np.random.default_rng(0).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)


class DLPackOnly:
    """Only `__dlpack__` / `__dlpack_device__` of a CUDA tensor (as PyNvVideoCodec's frames offer)."""

    def __init__(self, t):
        self._t = t

    def __dlpack__(self, stream=None, **kwargs):
        return self._t.__dlpack__(stream=stream, **kwargs)

    def __dlpack_device__(self):
        return self._t.__dlpack_device__()


def test_cupy_frames_run_on_the_engine_without_a_copy(fused):
    cp = pytest.importorskip("cupy", reason="CuPy is needed for CUDA arrays from another library")
    x = _frames(40)
    with load(fused / "model.fp16.engine") as engine:
        expected = np.asarray(engine(x), np.float32)
        stream = cp.cuda.Stream(non_blocking=True)
        with stream:
            frames = cp.asarray(x)
            y = engine(frames, stream=stream)  # split 32 + 8, bound by pointer
        stream.synchronize()
        assert isinstance(y, cp.ndarray) and y.shape == expected.shape
        assert (cp.asnumpy(y).argmax(-1) == expected.argmax(-1)).all()
        surface = cp.zeros((40, 64, 128, 3), cp.uint8)  # pitched: each row padded to 128 pixels
        surface[:, :, :64] = frames
        pitched = engine(surface[:, :, :64])
        assert (cp.asnumpy(pitched).argmax(-1) == expected.argmax(-1)).all()


def test_a_dlpack_only_cuda_frame_runs_on_the_engine(fused):
    torch = pytest.importorskip("torch")
    x = _frames(4)
    with load(fused / "model.fp16.engine") as engine:
        expected = np.asarray(engine(x), np.float32)
        y = engine(DLPackOnly(torch.from_numpy(x).cuda()))
    assert isinstance(y, np.ndarray) and (y.argmax(-1) == expected.argmax(-1)).all()


def test_cupy_frames_through_onnxruntime_io_binding(fused):
    cp = pytest.importorskip("cupy", reason="CuPy is needed for CUDA arrays from another library")
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu's CUDAExecutionProvider is not installed")
    x = _frames(12)
    with OnnxRuntimeRunner(fused / "model.onnx", providers=["CUDAExecutionProvider"]) as runner:
        expected = runner(x)
        got = runner(cp.asarray(x))
        assert np.allclose(got, expected, atol=1e-4)
        with pytest.raises(Exception, match="cannot be bound to ONNX Runtime"):
            runner(cp.zeros((2, 64, 80, 3), cp.uint8)[:, :, :64])


def test_a_dlpack_frame_on_the_callers_stream_through_onnxruntime(fused):
    """Issue 24, item 5: the DLPack producer orders its work before the caller's stream; ONNX Runtime, on a
    stream of its own, waits for that stream before reading."""
    torch = pytest.importorskip("torch")
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu's CUDAExecutionProvider is not installed")
    x = _frames(16)
    with OnnxRuntimeRunner(fused / "model.onnx", providers=["CUDAExecutionProvider"]) as runner:
        expected = runner(x)
        stream = torch.cuda.Stream()
        for _ in range(5):  # a race shows up as a wrong result now and then, not every time
            with torch.cuda.stream(stream):
                t = torch.from_numpy(x).pin_memory().cuda(non_blocking=True)
                t.mul_(1)
                got = runner(DLPackOnly(t), stream=stream)
            assert np.allclose(got, expected, atol=1e-4)
