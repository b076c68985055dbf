"""Graph simplification: onnxslim (default, pure Python), onnxsim where installed, or none."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover - `--help` reads SIMPLIFIERS without importing onnx
    import onnx

log = logging.getLogger(__name__)
SIMPLIFIERS = ("onnxslim", "onnxsim", "none")


def simplify(model: onnx.ModelProto, simplifier: str = "onnxslim") -> onnx.ModelProto:
    """Constant-fold and clean `model` with the named simplifier; returns a new ModelProto."""
    if simplifier == "none":
        return model
    if simplifier == "onnxslim":
        import onnxslim

        return onnxslim.slim(model)
    if simplifier == "onnxsim":
        try:
            import onnxsim
        except ImportError:
            raise ConfigError(
                "--simplifier onnxsim needs onnxsim: pip install 'focalnet-edge[onnxsim]' "
                "(or use the default, onnxslim)"
            ) from None
        simplified, ok = onnxsim.simplify(model)
        if not ok:
            raise ConfigError("onnxsim could not validate the simplified graph; use --simplifier onnxslim")
        return simplified
    raise ConfigError(f"simplifier {simplifier!r} not supported; expected one of {', '.join(SIMPLIFIERS)}")
