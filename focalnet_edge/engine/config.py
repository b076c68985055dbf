"""The builder's configuration: the options the CLI may set, their checks, the optimization
profile, and Polygraphy's `CreateConfig` for one engine.

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

The configuration is tested with Polygraphy's real `CreateConfig` over a `tensorrt` namespace
generated from the TensorRT 10.13 type stubs (tests/test_engine.py), and the module is type
checked against those stubs (tests/test_typecheck.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..folder.artifacts import DEEPSTREAM_CHOICES, DLA_PRECISIONS, PRECISIONS, WEAK_FLAGS
from ..folder.artifacts import precision as precision_row
from ..folder.contract import InputContract
from ..errors import ConfigError
from .gpu import version_tuple

if TYPE_CHECKING:  # type-checked against the TensorRT stubs (tests/test_typecheck.py)
    import tensorrt as trt

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
    #: identical optimization profiles, one per CUDA stream the runner may use at once (NvInferRuntime.h: contexts in
    #: concurrent use need distinct profiles); 1 builds one profile and the runner serialises calls on it
    streams: int = 1
    #: the DeepStream graph written and built too (`folder.artifacts.DEEPSTREAM_CHOICES`; see deploy/deepstream/folder_graph.py)
    deepstream: str = "auto"


def dla_supported(trt_version: str) -> bool:
    """Whether this TensorRT release builds for DLA at all (10.0-10.7, and 11.4 on; the builder's
    `num_DLA_cores` then says whether this device has DLA)."""
    v = version_tuple(trt_version)
    return v < (10, 8) or v >= (11, 4)


#: Python API names TensorRT 11 removed (NVIDIA's "Removed Python APIs and Replacements", 11.x
#: migration guide, the entries read for this project). None may be used outside a branch on the
#: TensorRT version; tests/test_typecheck.py checks the engine package and runtime/tensorrt.py.
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
def check_options(options: EngineOptions) -> None:
    """Raise `ConfigError` for a value outside the range TensorRT takes, whatever its version (the CLI checks before any work)."""
    if options.optimization_level is not None and not 0 <= options.optimization_level <= 5:
        level = options.optimization_level
        raise ConfigError(f"--opt-level {level} not accepted: TensorRT has no builder optimization level {level} (expected 0 to 5)")
    if options.workspace_mib is not None and options.workspace_mib < 1:
        raise ConfigError(f"workspace {options.workspace_mib} MiB not accepted: expected a positive size")
    if options.streams < 1:
        raise ConfigError(f"--streams {options.streams} not accepted: expected 1 or more (one optimization profile per concurrent CUDA stream)")
    if options.hardware_compatibility not in HARDWARE_COMPATIBILITY:
        raise ConfigError(f"hardware compatibility {options.hardware_compatibility!r} not supported; expected one of {', '.join(HARDWARE_COMPATIBILITY)}")
    if options.deepstream not in DEEPSTREAM_CHOICES:
        raise ConfigError(f"--deepstream {options.deepstream!r} not supported; expected one of {', '.join(DEEPSTREAM_CHOICES)}")


def validate(options: EngineOptions, trt_version: str, precision: str) -> None:
    """Raise `ConfigError` for option combinations TensorRT would refuse or silently ignore."""
    major = version_tuple(trt_version)[0]
    if options.weakly_typed and major >= 11:
        raise ConfigError(f"--weakly-typed needs TensorRT 10.x; TensorRT {trt_version} builds strongly typed networks only")
    check_options(options)
    if options.dla_core is not None:
        if options.dla_core < 0 or options.hardware_compatibility != "none" or options.version_compatible:
            raise ConfigError("--dla-core takes a core number >= 0 and no hardware- or version-compatibility flag")
        if not precision_row(precision).dla:
            raise ConfigError(f"--dla-core: DLA runs {' and '.join(DLA_PRECISIONS)} only, not the {precision} engine; "
                              f"build it with --precision {' or '.join(DLA_PRECISIONS)}")
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


#: precisions whose verification thresholds allow TF32 in their float32 layers (10-bit mantissas, as
#: fp16's own): the table's `tf32` column; the fp32 engine's (max abs 1e-4 against PyTorch) do not, so it keeps TF32 off
TF32_PRECISIONS = frozenset(p.name for p in PRECISIONS.values() if p.tf32)


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


def create_config(contract: InputContract, options: EngineOptions, precision: str,  # noqa: C901 - one CreateConfig keyword per builder option, each set only when the option is
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
    # one identical profile per stream (`options.streams`): the runner gives each its own execution context
    kwargs: dict[str, Any] = {"profiles": [Profile().add(contract.name, min=lo, opt=opt, max=hi) for _ in range(options.streams)],
                              "profiling_verbosity": trt.ProfilingVerbosity.DETAILED}
    if options.weakly_typed:  # TensorRT 10.x: the precision comes from flags, not the graph
        kwargs.update({flag: flag in precision_row(precision).weak_flags for flag in WEAK_FLAGS})
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
