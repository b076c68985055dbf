"""Adopting a plan built elsewhere (trtexec, DeepStream's nvinfer) into an output folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ..folder.artifacts import engine_sources
from ..errors import ArtifactError, InputError
from ..folder.io import atomic_path
from . import gpu
from .build import EngineBuild, inherited_facts, source_contract
from .plans import _inspect, engine_io, io_mismatch, summarize_layers


def adopt_plan(output_dir: Path, plan: Path, source: str, manifest: dict[str, Any], version_compatible: bool = False) -> EngineBuild:
    """Take a plan built by trtexec or nvinfer from `source` (an ONNX file of `output_dir`).

    The plan is deserialized here with this machine's TensorRT (so a plan that does not load
    is refused now, not at inference), its optimization profile and input are read from the
    engine itself, and it is copied to the engine name of its source's precision. TensorRT
    version and GPU are this machine's: a plain plan only loads on the TensorRT that built it.
    Returns facts for `record()`; verify it afterwards against the stored references.
    """
    from ..deploy.triton import graph_io  # deploy imports the runtime layer: read at call time, no import cycle

    trt = gpu.require_tensorrt()

    output_dir, plan = Path(output_dir), Path(plan)
    source = Path(source).name
    sources = engine_sources(manifest["artifacts"])
    entry = manifest["artifacts"].get(source)
    if entry is None or source not in sources:
        choices = ", ".join(sources) or "none listed"
        raise InputError(f"--from {source}: expected the ONNX file the plan was built from, one of {choices}")
    if not plan.is_file():
        raise InputError(f"{plan}: no such plan file")
    data = plan.read_bytes()
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    if version_compatible:
        runtime.engine_host_code_allowed = True  # a version-compatible plan carries its lean runtime
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        raise ArtifactError(f"{plan}: TensorRT {trt.__version__} cannot load this plan (built by another TensorRT version, for another GPU, "
                            f"{'or ' if version_compatible else 'version-compatible (pass --version-compatible), or '}not a plan)")
    contract = source_contract(output_dir / source)
    io = engine_io(engine)
    mismatch = io_mismatch(io, *graph_io(output_dir / source), source)
    if mismatch:
        raise ArtifactError(f"{plan}: {mismatch}: not built from {source}")
    name = sources[source]
    target = output_dir / name
    if plan.resolve() != target.resolve():
        with atomic_path(target) as tmp:
            shutil.copyfile(plan, tmp)
    facts = {"tensorrt": trt.__version__, **gpu.gpu_info(), "platform": gpu.machine(), "strongly_typed": None, "profile": {contract.name: io["profile"][contract.name]},
             "version_compatible": version_compatible, "hardware_compatibility": "none", "dla_core": None,
             "layers": summarize_layers(_inspect(engine))}
    return EngineBuild(engines=[{"path": name, "precision": entry["precision"], "built_from": source, "input": json.loads(contract.to_json()),
                                 "engine": facts, "adopted_from": str(plan), **inherited_facts(entry)}],
                       notes=[f"adopted {plan} as {name} (from {source}, TensorRT {facts['tensorrt']} on {facts['gpu']}); verify it next"])
