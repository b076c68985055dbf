"""tests/gpu/: what needs TensorRT and a CUDA GPU. Skipped, with the reason, everywhere else.

PyTorch is not needed: the GPU is found through the CUDA driver (`engine.gpu.gpu_info`), and
on a stock JetPack (TensorRT, no CUDA torch) the engine tests run on a folder built elsewhere and
copied, verified against its stored references (tests/gpu/gpu_folder.py):

    focalnet-edge build --precision best --batch 1:8:32 --output demo-out     # on a desktop with torch
    FOCALNET_EDGE_GPU_FOLDER=demo-out pytest tests/gpu                          # on the device

Tests that compare with PyTorch itself, or export a graph, skip without torch, saying so.
"""

from __future__ import annotations

import pytest


def _missing() -> str | None:
    from focalnet_edge.engine.gpu import gpu_info, tensorrt_available

    if not tensorrt_available():
        return ("TensorRT is not installed (x86_64: pip install 'focalnet-edge[gpu]'; Jetson: apt install python3-libnvinfer "
                "in a venv made with --system-site-packages)")
    if gpu_info()["gpu"] == "unknown":
        return "no CUDA GPU found (asked torch, cuda-python and the CUDA driver)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _missing()
    if reason:
        skip = pytest.mark.skip(reason=reason)
        for item in items:
            if "tests/gpu/" in str(item.fspath).replace("\\", "/"):
                item.add_marker(skip)
