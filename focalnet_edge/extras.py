"""The optional heavy dependencies, imported on first use through one helper, and the one-line
error naming what installs each; and the one lazy `__getattr__` of the packages whose public
names pull such a dependency in.

The runtime (predict, bench, info, check, verify against stored references, engines) needs
no PyTorch; building from a checkpoint does (the `build` extra). TensorRT and cuda-python come
with the `gpu` extra on x86_64 and with JetPack on Jetson; OpenCV with the `video` extra.
GStreamer's `gi` is imported plainly by the element (`deploy/gstreamer/element.py`), which only
GStreamer's Python plugin loader loads, where `gi` is always present.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .errors import InputError

BUILD_EXTRA = "pip install 'focalnet-edge[build]' (PyTorch, onnxslim, safetensors, huggingface_hub)"

#: the one line `require(name, what)` raises where `name` is missing ({what}: what needed it)
MISSING = {
    "torch": "{what} needs PyTorch, which is not installed here: " + BUILD_EXTRA,
    "onnxruntime": "{what} needs ONNX Runtime, which is not installed here: pip install 'focalnet-edge[cpu]' (PyPI's CPU build); "
                   "on an x86_64 CUDA machine 'focalnet-edge[gpu]' instead (onnxruntime-gpu; never both: they install one "
                   "module); on a Jetson, NVIDIA's onnxruntime-gpu wheel for its JetPack (README, \"On the device\")",
    "tensorrt": "TensorRT is not installed: on an x86_64 desktop or server, pip install 'focalnet-edge[gpu]'; on Jetson "
                "(JetPack 6 or 7) it comes with JetPack: sudo apt install python3-libnvinfer and use a venv made with --system-site-packages",
}

#: environment set (unless already set) before a module's first import: OpenCV's and FFmpeg's own
#: log lines off, so a source that cannot be opened is one line of ours
BEFORE_IMPORT = {"cv2": {"OPENCV_LOG_LEVEL": "OFF", "OPENCV_FFMPEG_LOGLEVEL": "-8"}}  # -8: AV_LOG_QUIET

#: what tells the real module from a stand-in: a stubs-only install (`tensorrt-stubs` without
#: TensorRT) leaves an importable `tensorrt` namespace without `__version__`
IS_REAL: dict[str, Callable[[ModuleType], bool]] = {"tensorrt": lambda m: isinstance(getattr(m, "__version__", None), str)}


def optional(*names: str) -> ModuleType | None:
    """The first of `names` that imports here (a real one, per `IS_REAL`), or None.

    Several names are alternatives for one dependency: `optional("cuda.bindings.runtime",
    "cuda.cudart")` is cuda-python's runtime API in its >= 12.6 and older layouts.
    """
    for name in names:
        for key, value in BEFORE_IMPORT.get(name, {}).items():
            os.environ.setdefault(key, value)
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if IS_REAL.get(name, lambda m: True)(module):
            return module
    return None


def require(name: str, what: str = "") -> ModuleType:
    """`name` imported, or one `InputError` saying what needs it and how to install it (`MISSING`)."""
    module = optional(name)
    if module is None:
        raise InputError(MISSING[name].format(what=what or name))
    return module


def torch_available() -> bool:
    """Whether `import torch` works here (imports it: call only where torch is wanted anyway)."""
    return optional("torch") is not None


def require_onnxruntime(what: str) -> ModuleType:
    """`onnxruntime` (from whichever distribution installed it: the `cpu` or `gpu` extra, or JetPack's wheel), or one
    `InputError` naming the extras; an `onnxruntime` distribution below the `cpu` extra's bound is one line too."""
    module = require("onnxruntime", what)
    from .versions import check, same_bound

    check("cpu")
    found = same_bound("cpu", "onnxruntime", "onnxruntime-gpu")
    if found:
        raise InputError(found[0])
    return module


def require_torch(what: str) -> None:
    """Raise one clear `InputError` when PyTorch is missing for `what`."""
    require("torch", what)
    from .versions import check

    check("build")


def lazy_exports(package: str, table: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's `__getattr__` and `__dir__` for public names imported on first use.

    `table` maps each name to the module defining it (relative to `package` where it starts
    with a dot); the name is looked up once and then kept in the package. The packages use it so
    that importing them loads no torch or onnx until a name that needs them is touched.
    """

    def __getattr__(name: str) -> Any:
        if name in table:
            value = getattr(importlib.import_module(table[name], package), name)
            setattr(sys.modules[package], name, value)  # looked up once
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(getattr(sys.modules[package], "__all__", ())) | set(table))

    return __getattr__, __dir__
