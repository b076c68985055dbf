"""TensorRT engines from the precision-typed ONNX files, and `TensorRTRunner`.

Built through Polygraphy's loaders (`NetworkFromOnnxPath` -> `CreateConfig` ->
`EngineFromNetwork` -> `SaveEngine`) as *strongly typed* networks: the precision of every
tensor comes from the ONNX file (fp32 `model.onnx`, fp16 `model.fp16.onnx`, explicit Q/DQ
`model.int8.onnx`), so the same code builds on TensorRT 10.3 (JetPack 6), 10.13-10.16
(JetPack 7) and 11.x, where the FP16/INT8 builder flags and calibrators are gone.

Version differences, all handled here:
- TensorRT 11 always builds strongly typed (the network flag is accepted and ignored).
- `weakly_typed` (TensorRT 10.x only) builds the fp32 graph with the FP16 flag and the Q/DQ
  graph with the INT8 and FP16 flags; on 11.x it is an error, never a silent fp32 build
  (Polygraphy raises when a requested flag does not exist).
- `hardware_compatibility="same_compute_capability"` needs a TensorRT that has that level;
  a missing level is an error naming the version.

Nothing in this module has run in this project's CI (no TensorRT there): `tests/gpu/` runs it
wherever `import tensorrt` works. The mapping of options to the builder configuration
(`config_plan`) is plain Python and tested everywhere.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError, ConfigError, InputError
from ..contract import InputContract
from .base import Runner, _is_torch

log = logging.getLogger(__name__)

#: which ONNX artifact becomes which engine
ENGINES = {"model.onnx": "model.fp32.engine", "model.fp16.onnx": "model.fp16.engine", "model.int8.onnx": "model.int8.engine"}
HARDWARE_COMPATIBILITY = {"none": None, "ampere_plus": "AMPERE_PLUS", "same_compute_capability": "SAME_COMPUTE_CAPABILITY"}
TIMING_CACHE = "timing.cache"


@dataclass
class EngineOptions:
    """What `focalnet-edge build --backend tensorrt` may set on the builder."""

    workspace_mib: int | None = None  #: workspace memory pool limit (default: TensorRT's)
    optimization_level: int | None = None  #: builder optimization level 0-5 (TensorRT's default 3)
    timing_cache: bool = True  #: load and save `timing.cache` in the output folder
    dla_core: int | None = None  #: build for this DLA core (static shapes), falling back to the GPU
    gpu_fallback: bool = True
    version_compatible: bool = False
    hardware_compatibility: str = "none"  #: none | ampere_plus | same_compute_capability
    weakly_typed: bool = False  #: TensorRT 10.x only: precision flags instead of typed ONNX
    size_range: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None = None  #: (min, opt, max) HxW


def _version_tuple(version: str) -> tuple[int, int]:
    parts = (version.split(".") + ["0"])[:2]
    return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)


def profile_shapes(contract: InputContract, options: EngineOptions) -> tuple[list[int], list[int], list[int]]:
    """(min, opt, max) input shapes of the optimization profile."""
    lo, opt, hi = contract.batch if contract.dynamic_batch else (contract.batch[1],) * 3
    h, w = contract.height, contract.width
    if contract.dynamic_size:
        m = contract.size_multiple
        sizes = options.size_range or ((max(m, h // 2 // m * m), max(m, w // 2 // m * m)), (h, w), (2 * h, 2 * w))
        for hh, ww in sizes:
            if hh % m or ww % m:
                raise ConfigError(f"profile size {hh}x{ww} not accepted: heights and widths must be multiples of {m}")
    else:
        sizes = ((h, w),) * 3
    if options.dla_core is not None:  # DLA takes static shapes only
        lo = hi = opt
        sizes = (sizes[1],) * 3

    def shape(b: int, hw: tuple[int, int]) -> list[int]:
        return [b, 3, hw[0], hw[1]] if contract.layout == "NCHW" else [b, hw[0], hw[1], 3]

    return shape(lo, sizes[0]), shape(opt, sizes[1]), shape(hi, sizes[2])


def config_plan(contract: InputContract, options: EngineOptions, trt_version: str, precision: str, timing_cache: Path | None) -> dict[str, Any]:
    """The builder settings for one engine, as plain values (enum members by name).

    Raises `ConfigError` for combinations TensorRT would refuse or silently ignore.
    """
    major, _ = _version_tuple(trt_version)
    if options.weakly_typed and major >= 11:
        raise ConfigError(f"--weakly-typed needs TensorRT 10.x; TensorRT {trt_version} builds strongly typed networks only")
    if options.optimization_level is not None and not 0 <= options.optimization_level <= 5:
        raise ConfigError(f"builder optimization level {options.optimization_level} not accepted: expected 0 to 5")
    if options.workspace_mib is not None and options.workspace_mib < 1:
        raise ConfigError(f"workspace {options.workspace_mib} MiB not accepted: expected a positive size")
    if options.hardware_compatibility not in HARDWARE_COMPATIBILITY:
        raise ConfigError(f"hardware compatibility {options.hardware_compatibility!r} not supported; expected one of {', '.join(HARDWARE_COMPATIBILITY)}")
    if options.dla_core is not None and (options.dla_core < 0 or options.hardware_compatibility != "none" or options.version_compatible):
        raise ConfigError("--dla-core takes a core number >= 0 and no hardware- or version-compatibility flag")
    lo, opt, hi = profile_shapes(contract, options)
    plan: dict[str, Any] = {
        "strongly_typed": not options.weakly_typed,
        "profiles": [{contract.name: (lo, opt, hi)}],
        "fp16": options.weakly_typed and precision in ("fp16", "int8"),
        "int8": options.weakly_typed and precision == "int8",
        "memory_pool_limits": {"WORKSPACE": options.workspace_mib << 20} if options.workspace_mib else None,
        "builder_optimization_level": options.optimization_level,
        "version_compatible": options.version_compatible or None,
        "hardware_compatibility_level": HARDWARE_COMPATIBILITY[options.hardware_compatibility],
        "use_dla": options.dla_core is not None,
        "dla_core": options.dla_core,
        "allow_gpu_fallback": options.gpu_fallback if options.dla_core is not None else None,
        "load_timing_cache": str(timing_cache) if timing_cache is not None and timing_cache.is_file() else None,
        "profiling_verbosity": "DETAILED",
    }
    return plan


def tensorrt_available() -> bool:
    """Whether `import tensorrt` works here (no GPU check)."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def require_tensorrt():
    """The tensorrt module, or one clear `InputError` saying how to install it on each platform."""
    try:
        import tensorrt as trt
    except ImportError:
        raise InputError(
            "TensorRT is not installed: on JetPack 7 or a desktop, pip install 'focalnet-edge[gpu]' (tensorrt, "
            "cuda-python); on JetPack 6, apt install python3-libnvinfer and use a venv made with --system-site-packages"
        ) from None
    return trt


def gpu_info() -> dict[str, str]:
    """Name and compute capability of CUDA device 0 (torch, else cuda-python)."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return {"gpu": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}"}
    except ImportError:
        pass
    try:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart
        err, props = cudart.cudaGetDeviceProperties(0)
        name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        return {"gpu": name.rstrip("\x00"), "compute_capability": f"{props.major}.{props.minor}"}
    except Exception:
        return {"gpu": "unknown", "compute_capability": "unknown"}


def _create_config(plan: dict[str, Any], trt):
    """Polygraphy's CreateConfig for `plan` (enum names turned into TensorRT's members)."""
    from polygraphy.backend.trt import CreateConfig, PostprocessConfig, Profile

    profiles = []
    for spec in plan["profiles"]:
        profile = Profile()
        for name, (lo, opt, hi) in spec.items():
            profile.add(name, min=lo, opt=opt, max=hi)
        profiles.append(profile)
    kwargs: dict[str, Any] = {"profiles": profiles, "fp16": plan["fp16"], "int8": plan["int8"]}
    if plan["memory_pool_limits"]:
        kwargs["memory_pool_limits"] = {getattr(trt.MemoryPoolType, k): v for k, v in plan["memory_pool_limits"].items()}
    if plan["builder_optimization_level"] is not None:
        kwargs["builder_optimization_level"] = plan["builder_optimization_level"]
    if plan["version_compatible"]:
        kwargs["version_compatible"] = True
    if plan["hardware_compatibility_level"]:
        level = getattr(trt.HardwareCompatibilityLevel, plan["hardware_compatibility_level"], None)
        if level is None:
            raise ConfigError(f"TensorRT {trt.__version__} has no hardware compatibility level {plan['hardware_compatibility_level']}")
        kwargs["hardware_compatibility_level"] = level
    if plan["use_dla"]:
        kwargs["use_dla"] = True
        kwargs["allow_gpu_fallback"] = plan["allow_gpu_fallback"]
    if plan["load_timing_cache"]:
        kwargs["load_timing_cache"] = plan["load_timing_cache"]
    kwargs["profiling_verbosity"] = getattr(trt.ProfilingVerbosity, plan["profiling_verbosity"])
    config = CreateConfig(**kwargs)
    if plan["use_dla"] and plan["dla_core"]:  # Polygraphy always picks DLA core 0
        core = plan["dla_core"]

        def set_core(builder, network, cfg):
            cfg.DLA_core = core
            return cfg

        config = PostprocessConfig(config, set_core)
    return config


def build_engine(onnx_path: Path, engine_path: Path, contract: InputContract, precision: str, options: EngineOptions,
                 timing_cache: Path | None = None) -> dict[str, Any]:
    """Build one raw plan file (no header) from `onnx_path`, atomically; return its manifest facts."""
    trt = require_tensorrt()
    from polygraphy.backend.trt import EngineFromNetwork, NetworkFromOnnxPath, SaveEngine

    from ..io import atomic_path

    plan = config_plan(contract, options, trt.__version__, precision, timing_cache)
    network = NetworkFromOnnxPath(str(onnx_path), strongly_typed=plan["strongly_typed"])
    config = _create_config(plan, trt)
    # the timing cache is written beside its final path and renamed only after a good build
    tmp_cache = timing_cache.with_name(timing_cache.name + ".partial") if timing_cache is not None else None
    try:
        with atomic_path(engine_path) as tmp_engine:
            build = EngineFromNetwork(network, config, save_timing_cache=str(tmp_cache) if tmp_cache else None)
            engine = SaveEngine(build, str(tmp_engine))()
        if tmp_cache is not None and tmp_cache.is_file():
            os.replace(tmp_cache, timing_cache)
    finally:
        if tmp_cache is not None:
            tmp_cache.unlink(missing_ok=True)
    facts = {
        "tensorrt": trt.__version__,
        **gpu_info(),
        "strongly_typed": plan["strongly_typed"],
        "profile": {contract.name: [list(s) for s in plan["profiles"][0][contract.name]]},
        "version_compatible": bool(plan["version_compatible"]),
        "hardware_compatibility": options.hardware_compatibility,
        "dla_core": options.dla_core,
    }
    facts["layers"] = _layer_placement(engine, trt)
    return facts


def _layer_placement(engine, trt) -> dict[str, Any]:
    """Layer count per type as TensorRT's engine inspector reports it (DLA subgraphs included)."""
    try:
        info = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
        layers = info.get("Layers", [])
        kinds: dict[str, int] = {}
        for layer in layers:
            kind = layer.get("LayerType", "unknown") if isinstance(layer, dict) else "unknown"
            kinds[kind] = kinds.get(kind, 0) + 1
        return {"count": len(layers), "by_type": kinds}
    except Exception as e:  # inspector details vary by version; the engine itself is fine
        return {"unavailable": str(e)[:200]}


def build_engines(output_dir: Path, manifest: dict[str, Any], options: EngineOptions | None) -> list[str]:
    """Engines for the fp32/fp16/int8 ONNX artifacts of `manifest`; returns notes for the user."""
    from ..manifest import add_artifact, write_manifest
    from .trt_check import check_onnx

    options = options or EngineOptions()
    contract = InputContract.from_dict(manifest["input"])
    cache = Path(output_dir) / TIMING_CACHE if options.timing_cache else None
    notes = []
    for onnx_name, engine_name in ENGINES.items():
        entry = manifest["artifacts"].get(onnx_name)
        if entry is None:
            continue
        errors = [f for f in check_onnx(Path(output_dir) / onnx_name) if f.severity == "error"]
        if errors:
            raise ArtifactError(f"{onnx_name}: TensorRT's parser would refuse it: {errors[0]} ({len(errors)} problems; run focalnet-edge check)")
        facts = build_engine(Path(output_dir) / onnx_name, Path(output_dir) / engine_name, contract, entry["precision"], options, cache)
        add_artifact(manifest, Path(output_dir) / engine_name, entry["precision"], "tensorrt-plan",
                     requires={k: facts[k] for k in ("tensorrt", "gpu", "compute_capability", "version_compatible", "hardware_compatibility")},
                     engine=facts, built_from=onnx_name)
        notes.append(f"built {engine_name} with TensorRT {facts['tensorrt']} on {facts['gpu']} (sm {facts['compute_capability']})")
    write_manifest(Path(output_dir), manifest)
    return notes


def check_engine_compatibility(requires: dict[str, Any], path: Path) -> None:
    """Refuse, before TensorRT does, an engine built for another TensorRT version or GPU."""
    trt = require_tensorrt()
    here = {"tensorrt": trt.__version__, **gpu_info()}
    built = requires.get("tensorrt")
    # a version-compatible plan runs on the same or a later TensorRT (TensorRT's engine compatibility
    # guide), a plain one only on the very version that built it
    if requires.get("version_compatible"):
        if built and _version_tuple(here["tensorrt"]) < _version_tuple(built):
            raise ArtifactError(
                f"{path}: built with TensorRT {built}, this machine has the older TensorRT {here['tensorrt']}; "
                "version-compatible engines run only on the same or a later TensorRT"
            )
    elif built and built != here["tensorrt"]:
        raise ArtifactError(
            f"{path}: built with TensorRT {requires['tensorrt']}, this machine has TensorRT {here['tensorrt']}; "
            "rebuild the engine here (focalnet-edge build --backend tensorrt) or build it --version-compatible"
        )
    hw = requires.get("hardware_compatibility", "none")
    if hw == "none" and requires.get("compute_capability") not in (None, "unknown", here["compute_capability"]):
        raise ArtifactError(
            f"{path}: built for {requires.get('gpu')} (compute capability {requires['compute_capability']}), this machine "
            f"has {here['gpu']} ({here['compute_capability']}); rebuild it here, or build with --hardware-compatibility"
        )


class TensorRTRunner(Runner):
    """Runs a plan file with Polygraphy's TrtRunner on its own CUDA stream.

    numpy in -> numpy out; torch CUDA tensors in -> torch CUDA tensors out, with no host copy.
    Output buffers are sized per call from the input shape.
    """

    def __init__(self, path: str | os.PathLike, requires: dict[str, Any] | None = None, contract: dict[str, Any] | None = None,
                 labels: dict[str, str] | None = None, head: str = "logits", outputs: list[str] | None = None, precision: str = "fp32") -> None:
        self.path = Path(path)
        require_tensorrt()  # a clear error where TensorRT is missing, before anything else
        if requires is None or contract is None:
            requires, contract, labels, head, outputs, precision = _facts_from_manifest(self.path)
        check_engine_compatibility(requires, self.path)
        from polygraphy.backend.common import BytesFromPath
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner

        self.contract = InputContract.from_dict(contract)
        self.labels = {int(k): v for k, v in (labels or {}).items()}
        self.head, self.precision = head, precision
        self.output_names = list(outputs or [])
        self._runner = TrtRunner(EngineFromBytes(BytesFromPath(str(self.path))))
        self._runner.activate()
        self.name = f"tensorrt:{self.path.name}"

    def run(self, batch) -> dict[str, Any]:
        if _is_torch(batch) and batch.is_cuda:  # stays on the device
            self.contract.check_shape(tuple(batch.shape), str(batch.dtype).replace("torch.", ""))
            outs = self._runner.infer({self.contract.name: batch.contiguous()}, copy_outputs_to_host=False)
            return {k: v.clone() for k, v in outs.items()}  # the runner reuses its buffers
        return super().run(batch)

    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outs = self._runner.infer({self.contract.name: batch})
        return {k: np.array(v) for k, v in outs.items()}

    def close(self) -> None:
        if getattr(self, "_runner", None) is not None and self._runner.is_active:
            self._runner.deactivate()


def _facts_from_manifest(path: Path):
    from ..manifest import MANIFEST, read_manifest

    if not (path.parent / MANIFEST).is_file():
        raise ArtifactError(f"{path}: an engine needs the manifest.json it was built with, next to it")
    manifest = read_manifest(path.parent)
    entry = manifest["artifacts"].get(path.name)
    if entry is None:
        raise ArtifactError(f"{path}: not listed in {path.parent / MANIFEST}")
    return entry["requires"], manifest["input"], manifest.get("labels"), manifest.get("head", "logits"), manifest.get("outputs"), entry["precision"]
