"""Graph simplification: onnxslim (default, pure Python), onnxsim where installed, or none."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover - `--help` reads SIMPLIFIERS without importing onnx
    import onnx

log = logging.getLogger(__name__)
SIMPLIFIERS = ("onnxslim", "onnxsim", "none")


def simplify(model: onnx.ModelProto | str, simplifier: str = "onnxslim") -> onnx.ModelProto:
    """Constant-fold and clean `model` (a ModelProto, or an ONNX file's path) with the named simplifier.

    Given a path (the export's way), shapes are inferred on the graph alone (`graph_with_shapes`)
    and onnxslim's own inference is off: measured on focalnet-tiny, 890 MB peak from a
    ModelProto (its shape inference copies the weights twice) against 475 MB this way, with
    the same 510 nodes and identical outputs. Large tensors of the result may refer to external
    data in the file's folder (always with `none`), so write it with
    `onnx_io.save_onnx(..., base_dir=<that folder>)` while the folder exists.
    """
    if simplifier not in SIMPLIFIERS:
        raise ConfigError(f"simplifier {simplifier!r} not supported; expected one of {', '.join(SIMPLIFIERS)}")
    if simplifier == "onnxsim":
        try:
            import onnxsim
        except ImportError:
            raise ConfigError(
                "--simplifier onnxsim needs onnxsim: pip install 'focalnet-edge[onnxsim]' "
                "(or use the default, onnxslim)"
            ) from None
        from ..folder.onnx_io import load_onnx

        simplified, ok = onnxsim.simplify(load_onnx(model) if isinstance(model, str) else model)
        if not ok:
            raise ConfigError("onnxsim could not validate the simplified graph; use --simplifier onnxslim")
        return simplified
    if not isinstance(model, str):
        if simplifier == "none":
            return model
        import onnxslim

        return onnxslim.slim(model)
    graph = graph_with_shapes(model)
    if simplifier == "none":
        return graph
    import onnx
    import onnxslim

    # onnxslim gets the weights in memory: given external tensors, some of its passes rebuild a
    # tensor without its location and then fail to read it (onnxslim 0.1.98). It loads them
    # itself, from a file, so that it holds the only reference to the model it starts from and
    # frees it after its first pass: 336 MB less at the peak of focalnet-base's export.
    shaped = Path(model).with_name("shaped.onnx")
    onnx.save_model(graph, str(shaped))  # the graph alone: its tensors refer to the data file beside it
    del graph
    with _collected_between_passes():
        return onnxslim.slim(str(shaped), no_shape_infer=True)


@contextlib.contextmanager
def _collected_between_passes() -> Iterator[None]:
    """Let go of each onnxslim pass's graph before the next pass, and of the last one after.

    onnxslim's fusion matchers are module-level objects that keep the nodes of their last match,
    and through them that pass's whole graph and the model it came from; each pass also leaves
    the graph it compared against in reference cycles. Measured in the export of focalnet-base,
    three copies of the weights were alive in the second pass, and one stayed after `slim`
    returned. So the matchers' nodes are dropped and garbage is collected before each pass
    (`onnxslim.core.optimize`, which `slim` imports when called) and after the last.
    """
    import onnxslim.core as core

    optimize = getattr(core, "optimize", None)
    if optimize is None:  # another onnxslim layout (0.1.30 has no core.optimize): collected after the last pass only
        try:
            yield
        finally:
            _forget_matches()
        return

    def collected(*args, **kwargs):
        _forget_matches()
        return optimize(*args, **kwargs)

    core.optimize = collected
    try:
        yield
    finally:
        core.optimize = optimize
        _forget_matches()


def _forget_matches() -> None:
    """Drop what onnxslim's fusion matchers hold from their last match (the attributes named after their pattern's nodes), then collect garbage."""
    try:
        from onnxslim.core.pattern.registry import DEFAULT_FUSION_PATTERNS
    except ImportError:  # another onnxslim layout: only the collection
        DEFAULT_FUSION_PATTERNS = {}
    for entry in DEFAULT_FUSION_PATTERNS.values():
        for matcher in entry if isinstance(entry, list) else [entry]:
            for name in getattr(matcher, "pattern_dict", {}):
                if name in vars(matcher):
                    setattr(matcher, name, None)  # set again by its next match
    gc.collect()


def graph_with_shapes(path: str) -> onnx.ModelProto:
    """The graph of the ONNX file `path` with the shapes of its tensors (value_info), its weights left on disk.

    A single-file graph has its weights moved out (not copied) to `weights.onnx.data` in the
    same folder, so shape inference (which serializes the model it is given) handles the graph
    alone; large tensors of the result refer to external data in `path`'s folder.
    """
    import onnx

    from ..folder.onnx_io import has_external_data, load_onnx, save_onnx

    folder = Path(path).parent
    model = load_onnx(path, external_data=False)
    if not has_external_data(model):
        save_onnx(model, folder / "weights.onnx", external=True)  # `model` now refers to weights.onnx.data
    return onnx.shape_inference.infer_shapes(model)
