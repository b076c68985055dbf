"""The engine stage: TensorRT's parser check of the ONNX files, and their engines where TensorRT runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ArtifactError, InputError
from ..folder.manifest import write_manifest
from .options import BuildOptions


def tensorrt_check_stage(output_dir: Path, manifest: dict[str, Any]) -> list[str]:
    """Check the TensorRT-bound ONNX files against onnx-tensorrt's support matrix (no TensorRT needed), once.

    The result goes into each file's manifest entry (`tensorrt_check`), which the engine stage reads.
    """
    from ..engine.check import record_checks

    notes = record_checks(Path(output_dir), manifest)
    write_manifest(Path(output_dir), manifest)
    return notes


def engine_stage(output_dir: Path, manifest: dict[str, Any], options: BuildOptions) -> list[str]:
    """TensorRT engines of the ONNX artifacts, where TensorRT and a GPU are present (see focalnet_edge/engine/build.py).

    `--backend tensorrt`: a missing TensorRT or a failed build is an error. `--backend auto`:
    either becomes a note, since the ONNX files are complete and verified without engines.
    """
    from ..errors import ConfigError
    from ..engine.build import build_engines, record, unavailable_reason
    from ..engine.config import EngineOptions

    engine_options = options.engine or EngineOptions()
    reason = unavailable_reason() if options.backend != "onnxruntime" else "not asked for"
    notes: list[str] = []
    if reason is None:  # its engine is built with the others; the verify stage verifies both (engine/command.py)
        from ..engine.command import deepstream_graph

        notes += deepstream_graph(Path(output_dir), manifest, engine_options)[0]
    notes += tensorrt_check_stage(output_dir, manifest)
    if options.backend == "onnxruntime":
        return notes
    if reason is not None:
        if options.backend == "tensorrt":
            from ..engine.gpu import require_tensorrt

            require_tensorrt()
            raise InputError(f"--backend tensorrt: {reason}")
        return notes + [f"engines: {reason} here, so the ONNX artifacts were written and verified; "
                        "build the engines on the target with `focalnet-edge engine OUT`"]
    failures: list[str] = []

    def failed(name: str, error: Exception) -> None:
        failures.append(f"engines: {name} was not built ({str(error).splitlines()[0][:200] if str(error) else type(error).__name__}); "
                        "the ONNX artifacts are complete and verified")

    try:
        built = build_engines(output_dir, manifest, engine_options,
                              on_error=failed if options.backend == "auto" else None)
    except (ArtifactError, ConfigError, InputError):
        raise
    except Exception as e:  # TensorRT's or Polygraphy's own failure, with --backend tensorrt
        raise ArtifactError(f"--backend tensorrt: building the engines failed ({str(e).splitlines()[0][:200] if str(e) else type(e).__name__})") from None
    record(manifest, output_dir, built)
    write_manifest(Path(output_dir), manifest)
    return notes + built.notes + failures
