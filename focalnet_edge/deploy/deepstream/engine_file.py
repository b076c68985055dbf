"""Which engine nvinfer loads (`model-engine-file`): the folder's engine built from the ONNX nvinfer is given,
where nvinfer can load it as it is and it fits the configs, else the name nvinfer saves its own under."""

from __future__ import annotations

from pathlib import Path

from ...folder.artifacts import trust
from ...folder.manifest import Artifact, Manifest, check_artifact
from ...runtime.choose import best


def _nvinfer_engine(source: Artifact):
    """Why nvinfer cannot load this entry as the engine of `source`, or None.

    DLA engines need nvinfer's enable-dla/use-dla-core and version-compatible (lean) plans need
    host code allowed at deserialisation, which nvinfer does not set; both are left out.
    """
    def runs(artifact: Artifact) -> str | None:
        facts = artifact.engine or {}
        if not artifact.path.endswith(".engine") or artifact.built_from != source.path:
            return f"not an engine built from {source.path}"
        if facts.get("dla_core") is not None or facts.get("version_compatible"):
            return "a DLA or version-compatible plan, which nvinfer does not load as is"
        return None
    return runs


def _engine_entry(manifest: Manifest, source: Artifact, batches: tuple[int, int], warnings: list[str]) -> Artifact | None:
    """The folder's engine built from `source` that nvinfer can load as is (the table's rank), or None.

    An engine that failed its verification, or whose profile does not take the configs' batch sizes, is passed
    over with a warning (nvinfer then builds its own from onnx-file)."""
    runs = _nvinfer_engine(source)
    pool = []
    for a in manifest.artifacts.values():
        if runs(a) is not None:
            continue
        top = _max_batch(a)
        if trust(a) == 2:
            warnings.append(f"{a.path} failed its verification: nvinfer builds its own engine from {source.path}")
        elif top is not None and max(batches) > top:
            warnings.append(f"{a.path} takes batches up to {top}, the configs' batch-size is {max(batches)}: "
                            f"nvinfer builds its own engine from {source.path}")
        else:
            pool.append(a)
    return best(pool, gpu=True) if pool else None


def _max_batch(engine: Artifact) -> int | None:
    """The largest batch of an engine's optimization profile (None: not recorded)."""
    profile = (engine.engine or {}).get("profile")
    shapes = next(iter(profile.values()), None) if isinstance(profile, dict) else None
    try:
        return int(shapes[2][0])  # type: ignore[index]
    except (TypeError, ValueError, IndexError):
        return None


def engine_file(folder: Path, manifest: Manifest, onnx: Artifact | None, onnx_name: str, precision: str,
                batches: tuple[int, int], gpu_id: int, warnings: list[str]) -> tuple[str, str]:
    """model-engine-file and its comment: the folder's engine built from `onnx` where nvinfer can load it, else the
    name nvinfer saves the engine it builds from onnx-file under (<onnx-file>_b<batch>_gpu<id>_<precision>.engine,
    next to the ONNX; `{batch}` is filled in per config)."""
    engine = _engine_entry(manifest, onnx, batches, warnings) if onnx is not None else None
    if onnx is not None and engine is not None:
        check_artifact(folder, engine)
        verified = {0: "verified against the folder's references", 1: "never verified: run focalnet-edge verify",
                    2: "it FAILED verification"}[trust(engine)]
        return f"../{engine.path}", (
            f"the engine focalnet-edge built from {onnx.path} ({verified}; sha256 checked); where this DeepStream's "
            "TensorRT or GPU differ, nvinfer fails to load it and builds its own from onnx-file")
    return f"{onnx_name}_b{{batch}}_gpu{gpu_id}_{precision}.engine", (
        "not built yet: on its first run nvinfer builds the engine from onnx-file and saves it under this name, "
        "then loads it on later runs")
