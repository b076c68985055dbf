"""Graph simplification: onnxslim (default, pure Python), onnxsim where installed, or none."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover - `--help` reads SIMPLIFIERS without importing onnx
    import onnx

log = logging.getLogger(__name__)
SIMPLIFIERS = ("onnxslim", "onnxsim", "none")


def simplify(model: onnx.ModelProto | str, simplifier: str = "onnxslim") -> onnx.ModelProto:
    """Constant-fold and clean `model` (a ModelProto, or an ONNX file's path) with the named simplifier.

    Returns a new ModelProto with its weights in memory. A path is read here (with its external
    data, from its folder), so the caller holds no copy of the unsimplified graph meanwhile.
    """
    if simplifier not in SIMPLIFIERS:
        raise ConfigError(f"simplifier {simplifier!r} not supported; expected one of {', '.join(SIMPLIFIERS)}")
    if simplifier == "none":
        return onnx_load(model) if isinstance(model, str) else model
    if simplifier == "onnxslim":
        import onnxslim

        if isinstance(model, str):  # shapes inferred on the graph alone: onnxslim's own inference copied the weights twice
            return onnxslim.slim(with_inferred_shapes(model), no_shape_infer=True)
        return onnxslim.slim(model)
    if simplifier == "onnxsim":
        try:
            import onnxsim
        except ImportError:
            raise ConfigError(
                "--simplifier onnxsim needs onnxsim: pip install 'focalnet-edge[onnxsim]' "
                "(or use the default, onnxslim)"
            ) from None
        simplified, ok = onnxsim.simplify(onnx_load(model) if isinstance(model, str) else model)
        if not ok:
            raise ConfigError("onnxsim could not validate the simplified graph; use --simplifier onnxslim")
        return simplified
    raise AssertionError(simplifier)  # pragma: no cover - checked above


def with_inferred_shapes(path: str) -> onnx.ModelProto:
    """The ONNX file `path` with its weights and the shapes of every tensor (value_info).

    Shape inference runs on the graph alone (the weights wait in a work file beside `path`,
    moved there, not copied): `onnx.shape_inference` on a whole model serializes and parses it
    (two transient copies of the weights; measured 530 MB of onnxslim's 890 MB peak on
    focalnet-tiny), and refuses models over 2 GB.
    """
    import tempfile
    from pathlib import Path

    import onnx
    from onnx.external_data_helper import load_external_data_for_model

    from ..onnx_io import load_onnx, save_onnx

    model = load_onnx(path)
    with tempfile.TemporaryDirectory(prefix=f".{Path(path).name}.", suffix=".partial", dir=Path(path).parent) as work:
        save_onnx(model, Path(work) / "weights.onnx", external=True)  # `model` is now the graph alone
        model = onnx.shape_inference.infer_shapes(model)
        load_external_data_for_model(model, work)
    return model


def onnx_load(path: str) -> onnx.ModelProto:
    """The ONNX file `path` with its external data (from its folder)."""
    from ..onnx_io import load_onnx

    return load_onnx(path)
