"""The engine stage: TensorRT plans from the precision-typed ONNX files of an output folder.

A stage like export and calibration: files in (`model.onnx`, `model.fp16.onnx`,
`model.int8.onnx`), files out (`model.<precision>.engine`, `timing.cache`), and the facts the
manifest records about them returned to the caller; the stage never writes `manifest.json`
itself (the pipeline, or the `engine`/`adopt` commands below, do). Running plans is
`runtime/tensorrt.py`'s job; this module only builds, through Polygraphy's loaders:

    NetworkFromOnnxPath -> CreateConfig (+ PostprocessConfig) -> EngineBytesFromNetwork -> bytes

Networks are *strongly typed*: the precision of every tensor comes from the ONNX file, so the
same code builds on TensorRT 10.3 (JetPack 6), 10.13-10.16 (JetPack 7) and 11.x, where the
FP16/INT8 builder flags and calibrators are gone. Version differences, all handled here:

- TensorRT 11 always builds strongly typed; `weakly_typed` (FP16/INT8 builder flags instead of
  typed ONNX) is TensorRT 10.x only and an error on 11.
- DLA: TensorRT 10.0-10.7 build for DLA (Orin, JetPack 6); 10.8 to 11.3 have none; 11.4.1 has it
  again on Orin with JetPack 7.2.2+ (Thor has no DLA at all). DLA builds are strongly typed, so the
  PREFER_PRECISION_CONSTRAINTS flag Polygraphy sets for DLA on 10.x is cleared again. DLA runs FP16 and INT8 only, never an fp32 engine, and takes
  static shapes. The builder's `num_DLA_cores` is checked before building.
- `hardware_compatibility="same_compute_capability"` needs a TensorRT that has that level;
  a missing level is an error naming the version.

The plan is written from the serialized network (`EngineBytesFromNetwork`), never deserialized
and serialized again; it is deserialized once afterwards, only to read the engine inspector
(which layers ran where). The timing cache is read and written through file objects, so
Polygraphy leaves no `.lock` files in the output folder, and it is keyed by TensorRT version
and GPU: a copied folder never feeds a cache made elsewhere into a build.

Nothing here has run with real TensorRT in this project's CI (no TensorRT there): the builder
configuration is tested with Polygraphy's real `CreateConfig` over a `tensorrt` namespace
generated from the TensorRT 10.13 type stubs, the module is type checked against those stubs,
and `tests/gpu/` builds real engines wherever `import tensorrt` works.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .artifacts import ENGINE_SOURCES, FP8_MIN_COMPUTE_CAPABILITY, MANIFEST, PRECISIONS, TENSORRT_PLAN, TIMING_CACHE
from .contract import InputContract
from .errors import ArtifactError, ConfigError, InputError

if TYPE_CHECKING:  # type-checked against the TensorRT stubs (tests/test_typecheck.py)
    import tensorrt as trt

log = logging.getLogger(__name__)

#: --hardware-compatibility choices -> TensorRT's HardwareCompatibilityLevel member names
HARDWARE_COMPATIBILITY = {"none": None, "ampere_plus": "AMPERE_PLUS", "same_compute_capability": "SAME_COMPUTE_CAPABILITY"}


@dataclass
class EngineOptions:
    """What `focalnet-edge build --backend tensorrt` and `focalnet-edge engine` may set on the builder."""

    workspace_mib: int | None = None  #: workspace memory pool limit (default: TensorRT's)
    optimization_level: int | None = None  #: builder optimization level 0-5 (TensorRT's default 3)
    timing_cache: bool = True  #: load and save `timing.cache` in the output folder
    dla_core: int | None = None  #: build for this DLA core (static shapes, fp16/int8 only)
    gpu_fallback: bool = True  #: with dla_core: layers DLA cannot run fall back to the GPU
    version_compatible: bool = False
    hardware_compatibility: str = "none"  #: none | ampere_plus | same_compute_capability
    weakly_typed: bool = False  #: TensorRT 10.x only: precision flags instead of typed ONNX
    size_range: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None = None  #: (min, opt, max) HxW
    inspect: bool = True  #: record the engine inspector's layer summary in the facts


def version_tuple(version: str) -> tuple[int, int]:
    """'10.13.0.35' -> (10, 13)."""
    parts = (str(version).split(".") + ["0"])[:2]
    return int("".join(c for c in parts[0] if c.isdigit()) or 0), int("".join(c for c in parts[1] if c.isdigit()) or 0)


def dla_supported(trt_version: str) -> bool:
    """Whether this TensorRT release builds for DLA at all (10.0-10.7, and 11.4 on; the builder's
    `num_DLA_cores` then says whether this device has DLA)."""
    v = version_tuple(trt_version)
    return v < (10, 8) or v >= (11, 4)


#: Python API names TensorRT 11 removed (NVIDIA's "Removed Python APIs and Replacements", 11.x
#: migration guide, the entries read for this project). None may be used outside a branch on the
#: TensorRT version; tests/test_typecheck.py checks this module and runtime/tensorrt.py.
TENSORRT_11_REMOVED = frozenset({
    "BuilderFlag.FP16", "BuilderFlag.INT8", "BuilderFlag.FP8", "BuilderFlag.BF16", "BuilderFlag.INT4", "BuilderFlag.FP4",
    "BuilderFlag.OBEY_PRECISION_CONSTRAINTS", "BuilderFlag.PREFER_PRECISION_CONSTRAINTS", "BuilderFlag.DIRECT_IO",
    "IBuilderConfig.int8_calibrator", "IBuilderConfig.set_calibration_profile", "IBuilderConfig.get_calibration_profile",
    "IBuilderConfig.set_quantization_flag", "IBuilderConfig.get_quantization_flag", "IBuilderConfig.quantization_flags",
    "IBuilderConfig.clear_quantization_flag", "IBuilderConfig.algorithm_selector",
    "ICudaEngine.device_memory_size", "Builder.platform_has_fast_fp16", "Builder.platform_has_fast_int8",
    "ILayer.precision", "ILayer.precision_is_set", "ILayer.reset_precision", "ILayer.set_output_type",
    "ILayer.get_output_type", "ILayer.output_type_is_set", "ILayer.reset_output_type",
    "IAlgorithm", "IAlgorithmContext", "IAlgorithmIOInfo", "IAlgorithmSelector", "IAlgorithmVariant",
    "IInt8Calibrator", "IInt8EntropyCalibrator", "IInt8EntropyCalibrator2", "IInt8LegacyCalibrator", "IInt8MinMaxCalibrator",
})


# -- configuration -----------------------------------------------------------------------------------
def validate(options: EngineOptions, trt_version: str, precision: str) -> None:
    """Raise `ConfigError` for option combinations TensorRT would refuse or silently ignore."""
    major, _ = version_tuple(trt_version)
    if options.weakly_typed and major >= 11:
        raise ConfigError(f"--weakly-typed needs TensorRT 10.x; TensorRT {trt_version} builds strongly typed networks only")
    if options.optimization_level is not None and not 0 <= options.optimization_level <= 5:
        raise ConfigError(f"builder optimization level {options.optimization_level} not accepted: expected 0 to 5")
    if options.workspace_mib is not None and options.workspace_mib < 1:
        raise ConfigError(f"workspace {options.workspace_mib} MiB not accepted: expected a positive size")
    if options.hardware_compatibility not in HARDWARE_COMPATIBILITY:
        raise ConfigError(f"hardware compatibility {options.hardware_compatibility!r} not supported; expected one of {', '.join(HARDWARE_COMPATIBILITY)}")
    if options.dla_core is not None:
        if options.dla_core < 0 or options.hardware_compatibility != "none" or options.version_compatible:
            raise ConfigError("--dla-core takes a core number >= 0 and no hardware- or version-compatibility flag")
        if precision not in ("fp16", "int8"):
            raise ConfigError(f"--dla-core: DLA runs fp16 and int8 only, not the {precision} engine; build it with --precision fp16 or int8")
        if not dla_supported(trt_version):
            raise ConfigError(f"--dla-core: TensorRT {trt_version} has no DLA support (10.0-10.7 and 11.4+ build for DLA; Thor has no DLA)")


#: default frame sizes (min, opt, max) of the profile of a --frame-size any graph where the GPU's memory is
#: not known: up to 1080p, tuned for 1080p (`frame_size_range` picks the max from the memory)
FRAME_SIZE_RANGE = ((16, 16), (1080, 1920), (1080, 1920))
#: the largest frame sizes a default profile may take, largest first
FRAME_SIZE_MAXES = ((2160, 3840), (1080, 1920), (720, 1280), (480, 640), (240, 320))
#: share of the GPU's memory one float copy of the largest batch of frames may take (the graph casts the
#: frames to float before resizing them, and TensorRT keeps several tensors of that size alive)
FRAME_MEMORY_SHARE = 1 / 16


def frame_size_range(contract: InputContract, memory_mib: int | None) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """The default (min, opt, max) frame sizes of a --frame-size any profile on a GPU with `memory_mib`.

    The max is the largest of `FRAME_SIZE_MAXES` whose float frames at the profile's max batch
    (batch x H x W x channels x 4 bytes) fit in `FRAME_MEMORY_SHARE` of the memory: 1080p at batch
    32 on a 32 GB Orin AGX, 720p on an 8 GB Orin Nano. Without the memory: `FRAME_SIZE_RANGE`.
    """
    if not memory_mib:
        return FRAME_SIZE_RANGE
    batch = contract.batch[2] if contract.dynamic_batch else contract.batch[1]
    budget = memory_mib * (1 << 20) * FRAME_MEMORY_SHARE
    hi = next((hw for hw in FRAME_SIZE_MAXES if batch * hw[0] * hw[1] * contract.channels * 4 <= budget), FRAME_SIZE_MAXES[-1])
    lo, opt, _ = FRAME_SIZE_RANGE
    return lo, (min(opt[0], hi[0]), min(opt[1], hi[1])), hi


#: what TensorRT's builder logs when the GPU's memory runs out (IBuilder errors, TensorRT 10.x)
OUT_OF_MEMORY = ("out of memory", "outofmemory", "could not be allocated", "cudaerrormemoryallocation", "insufficient memory")
#: precisions whose verification thresholds allow TF32 in their float32 layers (10-bit mantissas, as
#: fp16's own); the fp32 engine's (max abs 1e-4 against PyTorch) do not, so it keeps TF32 off
TF32_PRECISIONS = frozenset({"fp16", "int8", "fp8"})


def profile_shapes(contract: InputContract, options: EngineOptions) -> tuple[list[int], list[int], list[int]]:
    """(min, opt, max) input shapes of the optimization profile, in the contract's layout."""
    lo, opt, hi = contract.batch if contract.dynamic_batch else (contract.batch[1],) * 3
    h, w = contract.height, contract.width
    if contract.frame_size == "any":  # frames of any size, resized in the graph: the frame sizes to tune for
        sizes = options.size_range or FRAME_SIZE_RANGE
        if not (sizes[0][0] <= sizes[1][0] <= sizes[2][0] and sizes[0][1] <= sizes[1][1] <= sizes[2][1]):
            raise ConfigError(f"profile sizes {sizes} not accepted: expected min <= opt <= max")
    elif contract.dynamic_size:
        m = contract.size_multiple
        sizes = options.size_range or ((max(m, h // 2 // m * m), max(m, w // 2 // m * m)), (h, w), (2 * h, 2 * w))
        for hh, ww in sizes:
            if hh % m or ww % m:
                raise ConfigError(f"profile size {hh}x{ww} not accepted: heights and widths must be multiples of {m}")
        if not (sizes[0][0] <= sizes[1][0] <= sizes[2][0] and sizes[0][1] <= sizes[1][1] <= sizes[2][1]):
            raise ConfigError(f"profile sizes {sizes} not accepted: expected min <= opt <= max")
    else:
        sizes = ((h, w),) * 3
    if options.dla_core is not None:  # DLA takes static shapes only
        lo = hi = opt
        sizes = (sizes[1],) * 3
    shapes = [contract.shape(b, hw[0], hw[1]) for b, hw in zip((lo, opt, hi), sizes)]
    return tuple([int(d) for d in s] for s in shapes)  # type: ignore[return-value]


def create_config(contract: InputContract, options: EngineOptions, precision: str,
                  timing_cache: Any = None, placement: dict[str, Any] | None = None) -> Any:
    """Polygraphy's builder configuration for one engine: `CreateConfig` kwargs built directly.

    Args:
        timing_cache: a readable binary file object holding a timing cache to start from, or None
            (a file object, not a path: Polygraphy locks paths with a `.lock` file beside them).
        placement: where the DLA check writes which layers DLA can run (filled while building).

    Returns a callable `(builder, network) -> IBuilderConfig` (Polygraphy's `CreateConfig`,
    wrapped in a `PostprocessConfig` that checks the DLA cores and picks the core).
    """
    import tensorrt as trt
    from polygraphy.backend.trt import CreateConfig, PostprocessConfig, Profile

    validate(options, trt.__version__, precision)
    lo, opt, hi = profile_shapes(contract, options)
    kwargs: dict[str, Any] = {"profiles": [Profile().add(contract.name, min=lo, opt=opt, max=hi)],
                              "profiling_verbosity": trt.ProfilingVerbosity.DETAILED}
    if options.weakly_typed:  # TensorRT 10.x: the precision comes from flags, not the graph
        kwargs["fp16"] = precision in ("fp16", "int8")
        kwargs["int8"] = precision == "int8"
    if options.workspace_mib:
        kwargs["memory_pool_limits"] = {trt.MemoryPoolType.WORKSPACE: options.workspace_mib << 20}
    if options.optimization_level is not None:
        kwargs["builder_optimization_level"] = options.optimization_level
    if options.version_compatible:
        kwargs["version_compatible"] = True
    level_name = HARDWARE_COMPATIBILITY[options.hardware_compatibility]
    if level_name:
        level = getattr(trt.HardwareCompatibilityLevel, level_name, None)
        if level is None:
            raise ConfigError(f"TensorRT {trt.__version__} has no hardware compatibility level {level_name}")
        kwargs["hardware_compatibility_level"] = level
    if options.dla_core is not None:
        kwargs["use_dla"] = True
        kwargs["allow_gpu_fallback"] = options.gpu_fallback
    elif precision in TF32_PRECISIONS:  # Polygraphy clears TF32 unless told (trtexec keeps it)
        kwargs["tf32"] = True
    if timing_cache is not None:
        kwargs["load_timing_cache"] = timing_cache
    config = CreateConfig(**kwargs)
    if options.dla_core is None:
        return config
    core = options.dla_core

    def on_dla(builder: trt.Builder, network: trt.INetworkDefinition, cfg: trt.IBuilderConfig) -> None:
        cores = builder.num_DLA_cores
        if core >= cores:
            raise ConfigError(f"--dla-core {core}: this device has {cores} DLA core{'s' if cores != 1 else ''}")
        cfg.DLA_core = core  # Polygraphy always picks core 0
        if version_tuple(trt.__version__) < (11, 0) and not options.weakly_typed:
            # Polygraphy sets it for DLA on 10.x; a strongly typed network takes no precision constraints
            cfg.clear_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        kinds: dict[str, list[int]] = {}
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            counts = kinds.setdefault(layer.type.name, [0, 0])
            counts[0 if cfg.can_run_on_DLA(layer) else 1] += 1
        if placement is not None:
            placement["dla_core"] = core
            placement["layers_dla_capable"] = {k: v[0] for k, v in sorted(kinds.items()) if v[0]}
            placement["layers_gpu_only"] = {k: v[1] for k, v in sorted(kinds.items()) if v[1]}

    return PostprocessConfig(config, on_dla)


# -- building ------------------------------------------------------------------------------------------
def unavailable_reason() -> str | None:
    """Why engines cannot be built here (no TensorRT, no CUDA GPU), or None."""
    from .runtime.tensorrt import gpu_info, tensorrt_available

    if not tensorrt_available():
        return "TensorRT is not installed"
    if gpu_info()["gpu"] == "unknown":
        return "TensorRT is installed but no CUDA GPU was found"
    return None


#: what a timing cache is keyed by besides the TensorRT version: the GPU's name alone is "Orin" on
#: the AGX, NX and Nano alike, so its SM count and memory go in too (what CUDA reports of the device)
TIMING_CACHE_GPU_KEYS = ("gpu", "compute_capability", "sm_count", "memory_mib", "platform")


def timing_cache_key(trt_version: str, gpu: dict[str, Any]) -> dict[str, Any]:
    """What a timing cache was made with; it is reused only where all of it matches."""
    return {"path": TIMING_CACHE, "tensorrt": trt_version, **{k: gpu.get(k) for k in TIMING_CACHE_GPU_KEYS}}


def _write_bytes(path: Path, data: bytes | memoryview) -> None:
    from .io import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(memoryview(data))  # a plan (IHostMemory) is written without a copy


def build_engine(onnx_path: Path, engine_path: Path, contract: InputContract, precision: str, options: EngineOptions,
                 timing_cache: Path | None = None, reuse_cache: bool = True) -> dict[str, Any]:
    """Build one raw plan file (no header) from `onnx_path`, atomically; return its facts.

    `timing_cache`: where the cache lives; it is read only when `reuse_cache` (the caller
    checked its key) and rewritten, atomically, after a good build.
    """
    from polygraphy.backend.trt import EngineBytesFromNetwork, NetworkFromOnnxPath

    from .runtime.tensorrt import gpu_info, machine, require_tensorrt

    require_tensorrt()
    import tensorrt as trt

    placement: dict[str, Any] = {}
    network = NetworkFromOnnxPath(str(onnx_path), strongly_typed=not options.weakly_typed)
    with contextlib.ExitStack() as files:
        new_cache = files.enter_context(tempfile.TemporaryFile("w+b"))  # Polygraphy saves into it without a lock file
        old = files.enter_context(open(timing_cache, "rb")) if timing_cache is not None and reuse_cache and timing_cache.is_file() else None
        config = create_config(contract, options, precision, old, placement)
        with _builder_errors() as errors:
            try:
                plan = EngineBytesFromNetwork(network, config, save_timing_cache=new_cache if timing_cache is not None else None)()
            except Exception as e:
                if any(word in m.lower() for m in (*errors, str(e)) for word in OUT_OF_MEMORY):
                    raise ArtifactError(out_of_memory_message(onnx_path, contract, options)) from None
                raise
        _write_bytes(engine_path, plan)
        new_cache.seek(0)
        cache_bytes = new_cache.read()
        if timing_cache is not None and cache_bytes:
            _write_bytes(timing_cache, cache_bytes)
    if options.inspect:
        try:
            layers = inspect_plan(plan, options.dla_core, options.version_compatible)
        except ArtifactError as e:
            engine_path.unlink(missing_ok=True)  # a plan that does not load here is not left behind
            raise ArtifactError(f"{engine_path}: {e}") from None
    lo, opt, hi = profile_shapes(contract, options)
    facts: dict[str, Any] = {
        "tensorrt": trt.__version__,
        **gpu_info(),
        "platform": machine(),
        "strongly_typed": not options.weakly_typed,
        "profile": {contract.name: [lo, opt, hi]},
        "version_compatible": options.version_compatible,
        "hardware_compatibility": options.hardware_compatibility,
        "dla_core": options.dla_core,
        "tf32": options.dla_core is None and precision in TF32_PRECISIONS,
    }
    if placement:
        facts["dla"] = placement
    if options.inspect:
        facts["layers"] = layers
    return facts


@contextlib.contextmanager
def _builder_errors():
    """The error messages TensorRT's builder logs meanwhile (through Polygraphy's logger), as a list."""
    from polygraphy.logger import G_LOGGER

    seen: list[str] = []
    original = G_LOGGER.error

    def error(message: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(str(message() if callable(message) else message))
        return original(message, *args, **kwargs)

    G_LOGGER.error = error  # an instance attribute over the method, for the duration of one build
    try:
        yield seen
    finally:
        vars(G_LOGGER).pop("error", None)


def out_of_memory_message(onnx_path: Path, contract: InputContract, options: EngineOptions) -> str:
    """One line for a build that ran out of GPU memory: the profile's max and what to change."""
    _, _, hi = profile_shapes(contract, options)
    fix = "export with a smaller --batch MAX"
    if contract.frame_size == "any" or contract.dynamic_size:
        fix = "pass a smaller max to --profile-sizes (e.g. 16x16:720x1280:720x1280), or " + fix
    return (f"{onnx_path.name}: TensorRT ran out of GPU memory building the engine for inputs up to {'x'.join(map(str, hi))}; "
            f"{fix} (--workspace limits only the builder's scratch memory)")


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


def source_contract(onnx_path: Path) -> InputContract:
    """The input contract of the ONNX file an engine is built from, with its real input dtype.

    An fp16 file exported with float16 inputs (`--fp16-io`) takes float16 although the
    manifest's (fp32) contract says float32: the engine keeps its source's contract.
    """
    import onnx

    from .onnx_io import load_onnx, read_contract

    model = load_onnx(onnx_path, external_data=False)
    contract, _ = read_contract(model, onnx_path)
    inp = next(i for i in model.graph.input if i.name == contract.name)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type).name
    if dtype != contract.dtype:
        contract = InputContract.from_dict({**json.loads(contract.to_json()), "dtype": dtype})
    return contract


@dataclass
class EngineBuild:
    """What the engine stage made: one facts dict per engine, the timing cache's key, notes."""

    engines: list[dict[str, Any]] = field(default_factory=list)
    timing_cache: dict[str, str] | None = None
    notes: list[str] = field(default_factory=list)


def _cc_tuple(value: Any) -> tuple[int, int]:
    """'8.7' -> (8, 7); anything unreadable -> (0, 0)."""
    try:
        major, minor = str(value).split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return (0, 0)


def build_engines(output_dir: Path, manifest: dict[str, Any], options: EngineOptions | None = None,
                  on_error: Callable[[str, Exception], None] | None = None) -> EngineBuild:
    """Engines for the TensorRT-bound ONNX artifacts listed in `manifest` (read, not written).

    Each source must carry the `tensorrt_check` the pipeline recorded (the support check runs
    once, there); a source whose check found errors is refused. `on_error(name, exception)`,
    when given, receives a failed build and the others go on (`--backend auto`); without it the
    first failure raises. Returns facts for `record()`.
    """
    from .runtime.tensorrt import gpu_info, machine, require_tensorrt

    require_tensorrt()
    import tensorrt as trt

    options = options or EngineOptions()
    output_dir = Path(output_dir)
    gpu = {**gpu_info(), "platform": machine()}
    if options.hardware_compatibility != "none" and gpu.get("integrated"):
        raise ConfigError(f"--hardware-compatibility {options.hardware_compatibility}: TensorRT does not support hardware compatibility "
                          f"on JetPack ({gpu['gpu']} is a Jetson's integrated GPU); build without it")
    here = timing_cache_key(trt.__version__, gpu)
    cache = output_dir / TIMING_CACHE if options.timing_cache else None
    result = EngineBuild(timing_cache=here if cache is not None else None)
    reuse = True
    if cache is not None and cache.is_file() and manifest.get("timing_cache") != here:
        old = manifest.get("timing_cache") or {}
        reuse = False
        differ = ", ".join(f"{k} {old.get(k, '?')} there, {here[k]} here" for k in here if k != "path" and old.get(k) != here[k])
        result.notes.append(f"{TIMING_CACHE}: made on another machine ({differ}), not reused; it is replaced")
    for onnx_name, engine_name in ENGINE_SOURCES.items():
        entry = manifest["artifacts"].get(onnx_name)
        if entry is None:
            continue
        check = entry.get("tensorrt_check")
        if check is None:
            raise ArtifactError(f"{onnx_name}: no TensorRT support check recorded in {MANIFEST}; run it first (focalnet-edge check)")
        if check.get("errors"):
            first = (check.get("first") or ["see focalnet-edge check"])[0]
            raise ArtifactError(f"{onnx_name}: TensorRT's parser would refuse it: {first} ({check['errors']} problems; run focalnet-edge check)")
        precision = entry["precision"]
        if options.dla_core is not None and precision not in ("fp16", "int8"):
            result.notes.append(f"{engine_name}: not built for DLA (DLA runs fp16 and int8 only)")
            continue
        if precision == "fp8" and _cc_tuple(here.get("compute_capability")) < FP8_MIN_COMPUTE_CAPABILITY:
            need = ".".join(map(str, FP8_MIN_COMPUTE_CAPABILITY))
            result.notes.append(f"{engine_name}: not built: fp8 needs compute capability >= {need} (Ada, Hopper, Blackwell, Thor); "
                                f"this GPU ({here.get('gpu')}) is {here.get('compute_capability')}: use model.int8.onnx or model.fp16.onnx")
            continue
        try:
            contract = source_contract(output_dir / onnx_name)
            opts = options
            if contract.frame_size == "any" and options.size_range is None:
                sizes = frame_size_range(contract, gpu.get("memory_mib"))
                opts = dataclasses.replace(options, size_range=sizes)
                result.notes.append(f"{engine_name}: frames up to {'x'.join(map(str, sizes[2]))} "
                                    f"(for {gpu.get('memory_mib') or 'an unknown amount of'} MiB of GPU memory; --profile-sizes changes it)")
            facts = build_engine(output_dir / onnx_name, output_dir / engine_name, contract, precision, opts, cache, reuse)
        except (ConfigError, InputError):
            raise
        except Exception as e:
            if on_error is None:
                raise
            on_error(engine_name, e)
            continue
        reuse = True  # the cache now holds this machine's timings
        result.engines.append({"path": engine_name, "precision": precision, "built_from": onnx_name,
                               "input": json.loads(contract.to_json()), "engine": facts})
        result.notes.append(f"built {engine_name} with TensorRT {facts['tensorrt']} on {facts['gpu']} (sm {facts['compute_capability']})")
    if cache is not None and not cache.is_file():
        result.timing_cache = None
    return result


def requires_of(facts: dict[str, Any]) -> dict[str, Any]:
    """What running an engine needs, from its build facts (the manifest's `requires`)."""
    keys = ("tensorrt", "platform", "gpu", "compute_capability", "version_compatible", "hardware_compatibility", "dla_core")
    return {k: facts.get(k) for k in keys}


def record(manifest: dict[str, Any], output_dir: Path, built: EngineBuild) -> None:
    """Add the engines of `built` to `manifest` (in memory; the caller writes it)."""
    from .manifest import add_artifact

    for e in built.engines:
        add_artifact(manifest, Path(output_dir) / e["path"], e["precision"], TENSORRT_PLAN,
                     requires=requires_of(e["engine"]), engine=e["engine"], built_from=e["built_from"], input=e["input"],
                     **({"adopted_from": e["adopted_from"]} if "adopted_from" in e else {}))
    if built.timing_cache is not None:
        manifest["timing_cache"] = built.timing_cache


# -- adopting a plan built elsewhere (trtexec, DeepStream's nvinfer) ------------------------------------------
def adopt_plan(output_dir: Path, plan: Path, source: str, manifest: dict[str, Any], version_compatible: bool = False) -> EngineBuild:
    """Take a plan built by trtexec or nvinfer from `source` (an ONNX file of `output_dir`).

    The plan is deserialized here with this machine's TensorRT (so a plan that does not load
    is refused now, not at inference), its optimization profile and input are read from the
    engine itself, and it is copied to the engine name of its source's precision. TensorRT
    version and GPU are this machine's: a plain plan only loads on the TensorRT that built it.
    Returns facts for `record()`; verify it afterwards against the stored references.
    """
    from .deploy.triton import graph_io
    from .runtime.tensorrt import engine_io, gpu_info, machine, require_tensorrt

    require_tensorrt()
    import tensorrt as trt

    output_dir, plan = Path(output_dir), Path(plan)
    source = Path(source).name
    entry = manifest["artifacts"].get(source)
    if entry is None or source not in ENGINE_SOURCES:
        choices = ", ".join(n for n in ENGINE_SOURCES if n in manifest["artifacts"]) or "none listed"
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
    name = ENGINE_SOURCES[source]
    target = output_dir / name
    if plan.resolve() != target.resolve():
        from .io import atomic_path

        with atomic_path(target) as tmp:
            shutil.copyfile(plan, tmp)
    facts = {"tensorrt": trt.__version__, **gpu_info(), "platform": machine(), "strongly_typed": None, "profile": {contract.name: io["profile"][contract.name]},
             "version_compatible": version_compatible, "hardware_compatibility": "none", "dla_core": None,
             "layers": summarize_layers(_inspect(engine))}
    return EngineBuild(engines=[{"path": name, "precision": entry["precision"], "built_from": source, "input": json.loads(contract.to_json()),
                                 "engine": facts, "adopted_from": str(plan)}],
                       notes=[f"adopted {plan} as {name} (from {source}, TensorRT {facts['tensorrt']} on {facts['gpu']}); verify it next"])


def io_mismatch(io: dict[str, Any], inputs: list[Any], outputs: list[Any], source: str) -> str | None:
    """How a plan's I/O (`runtime.tensorrt.engine_io`) differs from its source graph's (`graph_io`), or None.

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


# -- the CLI's `engine` command (wired by cli.py) --------------------------------------------------------------
def engine_command(output_dir: str | os.PathLike, options: EngineOptions | None = None, adopt: str | None = None,
                   source: str | None = None) -> EngineBuild:
    """`focalnet-edge engine OUT [--adopt PLAN --from model.fp16.onnx [--version-compatible]] [builder flags]`.

    Builds the engines of a copied output folder on this machine (no torch needed), or adopts a
    plan built by trtexec/nvinfer, and adds them to `OUT/manifest.json`. Returns what was made:
    `.notes` to print, `.engines[i]["path"]` the new engine names, which the CLI verifies next
    against the stored references (as `focalnet-edge verify OUT --artifact NAME` would).
    """
    from .manifest import read_manifest, write_manifest
    from .runtime.trt_check import record_checks

    folder = Path(output_dir)
    manifest = read_manifest(folder)
    if adopt is not None:
        if not source:
            raise InputError("--adopt needs --from: the ONNX file the plan was built from (e.g. model.fp16.onnx)")
        built = adopt_plan(folder, Path(adopt), source, manifest, version_compatible=bool(options and options.version_compatible))
    else:
        reason = unavailable_reason()
        if reason is not None:
            from .runtime.tensorrt import require_tensorrt

            require_tensorrt()  # the install message where TensorRT is missing
            raise InputError(f"engines cannot be built here: {reason}")
        notes = record_checks(folder, manifest)
        built = build_engines(folder, manifest, options)
        built.notes[:0] = notes
    record(manifest, folder, built)
    write_manifest(folder, manifest)
    return built


def precision_of_engine(name: str) -> str | None:
    """'model.fp16.engine' -> 'fp16' (from the artifacts table)."""
    return next((p.name for p in PRECISIONS.values() if p.engine == name), None)
