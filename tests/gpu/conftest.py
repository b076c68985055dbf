"""tests/gpu/: what needs TensorRT and a CUDA GPU. Skipped, with the reason, everywhere else."""

from __future__ import annotations

import pytest


def _missing() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "TensorRT is not installed (pip install 'focalnet-edge[gpu]', or python3-libnvinfer on JetPack 6)"
    try:
        import torch

        if not torch.cuda.is_available():
            return "no CUDA GPU visible to torch"
    except ImportError:
        return "torch is needed to find the GPU"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _missing()
    if reason:
        skip = pytest.mark.skip(reason=reason)
        for item in items:
            if "tests/gpu/" in str(item.fspath).replace("\\", "/"):
                item.add_marker(skip)
