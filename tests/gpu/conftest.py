"""tests/gpu/: what needs TensorRT and a CUDA GPU. Skipped, with the reason, everywhere else."""

from __future__ import annotations

import pytest


def _missing() -> str | None:
    from focalnet_edge.runtime.tensorrt import tensorrt_available

    if not tensorrt_available():
        return ("TensorRT is not installed (x86_64: pip install 'focalnet-edge[gpu]'; Jetson: apt install python3-libnvinfer "
                "in a venv made with --system-site-packages)")
    try:
        import torch

        if not torch.cuda.is_available():
            return "no CUDA GPU visible to torch"
    except ImportError:
        return "torch is needed to find the GPU and to build the reference"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _missing()
    if reason:
        skip = pytest.mark.skip(reason=reason)
        for item in items:
            if "tests/gpu/" in str(item.fspath).replace("\\", "/"):
                item.add_marker(skip)
