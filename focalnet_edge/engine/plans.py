"""What a TensorRT plan is and needs: the facts a build records (`requires`), whether a plan can
run on this machine, its I/O read from the engine itself, and the engine inspector's layer summary.

Which plans run where (TensorRT's engine compatibility rules, checked here before TensorRT is
asked, so the answer is one clear sentence instead of a deserialization failure):
- no plan runs on another platform (x86_64 vs aarch64), whatever its compatibility flags;
- a plain plan runs only on the TensorRT version that built it, and only on a GPU of the same
  compute capability;
- a version-compatible plan (`--version-compatible`) runs on the same or a later TensorRT,
  and needs `IRuntime.engine_host_code_allowed` (set by whoever deserializes it);
- `hardware_compatibility="ampere_plus"` runs on any GPU of compute capability >= 8.0;
  `"same_compute_capability"` on any GPU of the very same compute capability; neither on JetPack
  (TensorRT does not support hardware compatibility on Jetson's integrated GPUs);
- a DLA plan runs only where that DLA core exists (`IRuntime.num_DLA_cores`), and is deserialized
  with the runtime's `DLA_core` set to it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ArtifactError
from . import gpu

if TYPE_CHECKING:  # type-checked against the TensorRT stubs (tests/test_typecheck.py)
    import tensorrt as trt

log = logging.getLogger(__name__)

#: TensorRT DataType member names -> numpy / torch dtype names
DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "UINT8": "uint8",
          "INT32": "int32", "INT64": "int64", "BOOL": "bool"}


def requires_of(facts: dict[str, Any]) -> dict[str, Any]:
    """What running an engine needs, from its build facts (the manifest's `requires`)."""
    keys = ("tensorrt", "platform", "gpu", "compute_capability", "version_compatible", "hardware_compatibility", "dla_core")
    return {k: facts.get(k) for k in keys}


def incompatibility(requires: dict[str, Any], here: dict[str, Any]) -> str | None:  # noqa: C901 - TensorRT's plan compatibility rules in their documented order; the first that fails is the one sentence
    """Why a plan built with `requires` cannot run `here`, or None.

    `here`: {tensorrt, gpu, compute_capability, platform, integrated, dla_cores} of this machine
    (`here_facts`); a key missing from `requires` (a manifest written before it was recorded) is
    not checked.
    """
    built = requires.get("tensorrt")
    if here.get("gpu") in (None, "unknown"):
        return "no CUDA GPU found here"
    platform = requires.get("platform")
    if platform and here.get("platform") and platform != here["platform"]:
        return (f"built on {platform}, this machine is {here['platform']}: TensorRT plans are not portable across platforms "
                "(not even --version-compatible or --hardware-compatibility ones); rebuild it here (focalnet-edge engine OUT)")
    if requires.get("version_compatible"):
        if built and gpu.version_tuple(here["tensorrt"]) < gpu.version_tuple(built):
            return (f"built with TensorRT {built}, this machine has the older TensorRT {here['tensorrt']}; "
                    "version-compatible engines run only on the same or a later TensorRT")
    elif built and built != here["tensorrt"]:
        return (f"built with TensorRT {built}, this machine has TensorRT {here['tensorrt']}; rebuild the engine here "
                "(focalnet-edge engine OUT) or build it --version-compatible")
    hw = requires.get("hardware_compatibility") or "none"
    if hw != "none" and here.get("integrated"):
        return (f"built with --hardware-compatibility {hw}, which TensorRT does not support on JetPack (Jetson's integrated GPU); "
                "rebuild it here without --hardware-compatibility")
    cc_built, cc_here = gpu.compute_capability(requires.get("compute_capability")), gpu.compute_capability(here.get("compute_capability"))
    if hw == "ampere_plus":
        if cc_here is None or cc_here < (8, 0):
            return f"built for Ampere or later (compute capability >= 8.0), this machine has {here['gpu']} ({here.get('compute_capability')})"
    elif cc_built is not None and cc_here != cc_built:
        fix = "rebuild it here" + (", or build with --hardware-compatibility ampere_plus" if hw == "none" else "")
        return (f"built for {requires.get('gpu')} (compute capability {requires['compute_capability']}), this machine "
                f"has {here['gpu']} ({here.get('compute_capability')}); {fix}")
    core = requires.get("dla_core")
    if core is not None and int(core) >= int(here.get("dla_cores") or 0):
        cores = int(here.get("dla_cores") or 0)
        return (f"built for DLA core {core}, this device has {cores or 'no'} DLA core{'s' if cores != 1 else ''}; "
                "rebuild it here without --dla-core" + (f" or with --dla-core {cores - 1}" if cores else ""))
    return None


def here_facts(requires: dict[str, Any] | None = None) -> dict[str, Any]:
    """What `incompatibility` compares a plan's `requires` with, for this machine (TensorRT imported).

    The DLA core count is asked of TensorRT (`IRuntime.num_DLA_cores`) only for a DLA plan.
    """
    import tensorrt as trt

    here: dict[str, Any] = {"tensorrt": trt.__version__, **gpu.gpu_info(), "platform": gpu.machine()}
    if requires and requires.get("dla_core") is not None:
        try:
            here["dla_cores"] = int(trt.Runtime(trt.Logger(trt.Logger.WARNING)).num_DLA_cores)
        except Exception:  # no runtime here: no DLA to speak of
            here["dla_cores"] = 0
    return here


def check_engine_compatibility(requires: dict[str, Any], path: Path) -> dict[str, Any]:
    """Refuse, before TensorRT does, a plan built for another platform, TensorRT version, GPU or DLA
    core; return this machine's facts (`here_facts`)."""
    gpu.require_tensorrt()
    here = here_facts(requires)
    reason = incompatibility(requires, here)
    if reason:
        raise ArtifactError(f"{path}: {reason}")
    return here


def engine_runnable_here(entry: dict[str, Any]) -> str | None:
    """Why the manifest entry of a plan cannot run on this machine (for `load` to skip it with a note), or None."""
    if not gpu.tensorrt_available():
        return "TensorRT is not installed"
    requires = entry.get("requires") or {}
    return incompatibility(requires, here_facts(requires))


def dims(d: trt.Dims) -> list[int]:
    """A TensorRT `Dims` as a list (the stubs declare `__len__`/`__getitem__`, not `__iter__`)."""
    return [int(d[i]) for i in range(len(d))]


def engine_io(engine: trt.ICudaEngine) -> dict[str, Any]:
    """Inputs' profile-0 shapes (min, opt, max), every I/O tensor's dtype and shape (-1: dynamic), read from the engine itself."""
    import tensorrt as trt

    profile: dict[str, list[list[int]]] = {}
    dtypes: dict[str, str] = {}
    shapes: dict[str, list[int]] = {}
    outputs: list[str] = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        dtypes[name] = DTYPES.get(engine.get_tensor_dtype(name).name, "unknown")
        shapes[name] = dims(engine.get_tensor_shape(name))  # -1 where the profile decides
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            profile[name] = [dims(s) for s in engine.get_tensor_profile_shape(name, 0)]
        else:
            outputs.append(name)
    return {"profile": profile, "dtypes": dtypes, "shapes": shapes, "outputs": outputs}


def inspect_plan(plan: bytes | memoryview, dla_core: int | None = None, version_compatible: bool = False) -> dict[str, Any]:
    """Layer count per type, and per device where DLA is used, from TensorRT's engine inspector.

    A version-compatible plan carries its lean runtime and needs `engine_host_code_allowed` to
    load. A plan that does not load here raises `ArtifactError` (one line); an inspector that
    gives no readable JSON is recorded as "unavailable" with the reason.
    """
    import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    if dla_core is not None:
        runtime.DLA_core = dla_core
    if version_compatible:
        runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise ArtifactError(f"TensorRT {trt.__version__} cannot load the plan it just built")
    try:
        info = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
    except Exception as e:  # inspector details vary by version; the plan itself loads
        log.warning("engine inspector: %s", e)
        return {"unavailable": str(e)[:200]}
    return summarize_layers(info)


def summarize_layers(info: dict[str, Any]) -> dict[str, Any]:
    """The inspector's JSON -> {"count", "by_type", "on_dla", "on_gpu"}.

    A layer counts as on DLA where its type, name or tactic names DLA (DLA subgraphs appear as
    one foreign-node layer each); a reading of the inspector's text, not an API of TensorRT's,
    so the build also records `dla.layers_dla_capable` from `IBuilderConfig.can_run_on_DLA`.
    """
    layers = [layer for layer in info.get("Layers", []) if isinstance(layer, dict)]
    kinds: dict[str, int] = {}
    dla = 0
    for layer in layers:
        kind = str(layer.get("LayerType", "unknown"))
        kinds[kind] = kinds.get(kind, 0) + 1
        dla += any("dla" in str(layer.get(k, "")).lower() for k in ("LayerType", "Name", "TacticName"))
    return {"count": len(layers), "by_type": kinds, "on_dla": dla, "on_gpu": len(layers) - dla}


def io_mismatch(io: dict[str, Any], inputs: list[Any], outputs: list[Any], source: str) -> str | None:
    """How a plan's I/O (`engine_io`) differs from its source graph's (`graph_io`), or None.

    Names, dtypes and ranks must match; a dimension must match where both give a number (-1, or
    a named ONNX dimension, is dynamic). A plan nvinfer built from `model.fp16.deepstream.onnx`
    outputs `probs`, not `model.fp16.onnx`'s `logits`: refused here, not at the first inference.
    """
    for kind, graph, names in (("input", inputs, list(io["profile"])), ("output", outputs, list(io["outputs"]))):
        wanted = [t.name for t in graph]
        if sorted(wanted) != sorted(names):
            return f"its {kind}s are {', '.join(names) or 'none'}, {source}'s are {', '.join(wanted) or 'none'}"
        for t in graph:
            if io["dtypes"][t.name] != t.dtype:
                return f"{kind} {t.name!r} is {io['dtypes'][t.name]}, {source}'s is {t.dtype}"
            shape = io["shapes"][t.name]
            if len(shape) != len(t.shape) or any(a > 0 and b > 0 and a != b for a, b in zip(shape, t.shape)):
                return f"{kind} {t.name!r} has shape {shape}, {source}'s {t.shape}"
    return None


def _inspect(engine: trt.ICudaEngine) -> dict[str, Any]:
    import tensorrt as trt

    try:
        return json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
    except Exception:
        return {}
