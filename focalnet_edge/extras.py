"""Which optional parts are installed, and the one-line error naming the extra that brings them.

The runtime (predict, bench, info, check, verify against stored references, engines) needs
no PyTorch; building from a checkpoint does (the `build` extra).
"""

from __future__ import annotations

from .errors import InputError

BUILD_EXTRA = "pip install 'focalnet-edge[build]' (PyTorch, onnxslim, safetensors, huggingface_hub)"


def torch_available() -> bool:
    """Whether `import torch` works here (imports it: call only where torch is wanted anyway)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def require_torch(what: str) -> None:
    """Raise one clear `InputError` when PyTorch is missing for `what`."""
    if not torch_available():
        raise InputError(f"{what} needs PyTorch, which is not installed here: {BUILD_EXTRA}")
    from .versions import check

    check("build")
