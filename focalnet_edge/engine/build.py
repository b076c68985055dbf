"""Building TensorRT plans from the precision-typed ONNX files of an output folder.

A stage like export and calibration: files in (`model.onnx`, `model.fp16.onnx`,
`model.int8.onnx`), files out (`model.<precision>.engine`, `timing.cache`), and the facts the
manifest records about them returned to the caller; the stage never writes `manifest.json`
itself (the pipeline, or the `engine` command, do). Running plans is `runtime/tensorrt.py`'s job;
this module only builds, through Polygraphy's loaders:

    NetworkFromOnnxPath -> CreateConfig (+ PostprocessConfig) -> EngineBytesFromNetwork -> bytes

The plan is written from the serialized network (`EngineBytesFromNetwork`), never deserialized
and serialized again; it is deserialized once afterwards, only to read the engine inspector
(which layers ran where). The timing cache is read and written through file objects, so
Polygraphy leaves no `.lock` files in the output folder, and it is keyed by TensorRT version
and GPU (`cache.py`): a copied folder never feeds a cache made elsewhere into a build.

Nothing here has run with real TensorRT in this project's CI (no TensorRT there): it is type
checked against the TensorRT 10.13 stubs, and `tests/gpu/` builds real engines wherever
`import tensorrt` works.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..folder.artifacts import DLA_PRECISIONS, MANIFEST, TENSORRT_PLAN, TIMING_CACHE, engine_sources
from ..folder.artifacts import precision as precision_row
from ..folder.contract import InputContract
from ..errors import ArtifactError, ConfigError, InputError
from ..folder.io import atomic_path
from ..folder.manifest import add_artifact
from ..folder.onnx_io import load_onnx, read_contract
from . import gpu
from .cache import reuse_note, timing_cache_key
from .config import TF32_PRECISIONS, EngineOptions, create_config, frame_size_range, profile_shapes
from .plans import inspect_plan, requires_of

#: what TensorRT's builder logs when the GPU's memory runs out (IBuilder errors, TensorRT 10.x)
OUT_OF_MEMORY = ("out of memory", "outofmemory", "could not be allocated", "cudaerrormemoryallocation", "insufficient memory")

def unavailable_reason() -> str | None:
    """Why engines cannot be built here (no TensorRT, no CUDA GPU), or None."""
    if not gpu.tensorrt_available():
        return "TensorRT is not installed"
    if gpu.gpu_info()["gpu"] == "unknown":
        return "TensorRT is installed but no CUDA GPU was found"
    return None


def _write_bytes(path: Path, data: bytes | memoryview) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(memoryview(data))  # a plan (IHostMemory) is written without a copy


def build_engine(onnx_path: Path, engine_path: Path, contract: InputContract, precision: str, options: EngineOptions,
                 timing_cache: Path | None = None, reuse_cache: bool = True) -> dict[str, Any]:
    """Build one raw plan file (no header) from `onnx_path`, atomically; return its facts.

    `timing_cache`: where the cache lives; it is read only when `reuse_cache` (the caller
    checked its key) and rewritten, atomically, after a good build.
    """
    from polygraphy.backend.trt import EngineBytesFromNetwork, NetworkFromOnnxPath

    trt = gpu.require_tensorrt()

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
        **gpu.gpu_info(),
        "platform": gpu.machine(),
        "strongly_typed": not options.weakly_typed,
        "profile": {contract.name: [lo, opt, hi]},
        "streams": options.streams,  # identical profiles: contexts the runner may use at once
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


def source_contract(onnx_path: Path) -> InputContract:
    """The input contract of the ONNX file an engine is built from, with its real input dtype.

    An fp16 file exported with float16 inputs (`--fp16-io`) takes float16 although the
    manifest's (fp32) contract says float32: the engine keeps its source's contract.
    """
    import onnx

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
    graphs: list[str] = field(default_factory=list)  #: ONNX files written for the engines (a DeepStream graph): verify them too


def build_engines(output_dir: Path, manifest: dict[str, Any], options: EngineOptions | None = None,  # noqa: C901 - per source: recorded check, DLA and FP8 skips, frame profile, build or on_error; each branch is a note the user reads
                  on_error: Callable[[str, Exception], None] | None = None) -> EngineBuild:
    """Engines for the TensorRT-bound ONNX artifacts listed in `manifest` (read, not written).

    Each source must carry the `tensorrt_check` the pipeline recorded (the support check runs
    once, there); a source whose check found errors is refused. `on_error(name, exception)`,
    when given, receives a failed build and the others go on (`--backend auto`); without it the
    first failure raises. Returns facts for `record()`.
    """
    trt = gpu.require_tensorrt()
    options = options or EngineOptions()
    output_dir = Path(output_dir)
    device = {**gpu.gpu_info(), "platform": gpu.machine()}
    if options.hardware_compatibility != "none" and device.get("integrated"):
        raise ConfigError(f"--hardware-compatibility {options.hardware_compatibility}: TensorRT does not support hardware compatibility "
                          f"on JetPack ({device['gpu']} is a Jetson's integrated GPU); build without it")
    here = timing_cache_key(trt.__version__, device)
    cache = output_dir / TIMING_CACHE if options.timing_cache else None
    result = EngineBuild(timing_cache=here if cache is not None else None)
    reuse = True
    note = reuse_note(manifest.get("timing_cache"), here) if cache is not None and cache.is_file() else None
    if note is not None:
        reuse = False
        result.notes.append(note)
    for onnx_name, engine_name in engine_sources(manifest["artifacts"]).items():
        entry = manifest["artifacts"][onnx_name]
        check = entry.get("tensorrt_check")
        if check is None:
            raise ArtifactError(f"{onnx_name}: no TensorRT support check recorded in {MANIFEST}; run it first (focalnet-edge check)")
        if check.get("errors"):
            first = (check.get("first") or ["see focalnet-edge check"])[0]
            raise ArtifactError(f"{onnx_name}: TensorRT's parser would refuse it: {first} ({check['errors']} problems; run focalnet-edge check)")
        precision = entry["precision"]
        row = precision_row(precision)
        if "deepstream" in entry and (options.deepstream == "none" or options.dla_core is not None or options.version_compatible):
            result.notes.append(f"{engine_name}: not built with --deepstream none, --dla-core or --version-compatible "
                                "(nvinfer loads neither DLA nor version-compatible plans as they are)")
            continue
        if options.dla_core is not None and not row.dla:
            result.notes.append(f"{engine_name}: not built for DLA (DLA runs {' and '.join(DLA_PRECISIONS)} only)")
            continue
        minimum = row.min_compute_capability
        if minimum and (gpu.compute_capability(here.get("compute_capability")) or (0, 0)) < minimum:
            need = ".".join(map(str, minimum))
            result.notes.append(f"{engine_name}: not built: {precision} needs compute capability >= {need} (Ada, Hopper, Blackwell, Thor); "
                                f"this GPU ({here.get('gpu')}) is {here.get('compute_capability')}: use model.int8.onnx or model.fp16.onnx")
            continue
        try:
            contract = source_contract(output_dir / onnx_name)
            opts = options
            if contract.frame_size == "any" and options.size_range is None:
                sizes = frame_size_range(contract, device.get("memory_mib"))
                opts = dataclasses.replace(options, size_range=sizes)
                result.notes.append(f"{engine_name}: frames up to {'x'.join(map(str, sizes[2]))} "
                                    f"(for {device.get('memory_mib') or 'an unknown amount of'} MiB of GPU memory; --profile-sizes changes it)")
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
                               "input": json.loads(contract.to_json()), "engine": facts, **inherited_facts(entry)})
        result.notes.append(f"built {engine_name} with TensorRT {facts['tensorrt']} on {facts['gpu']} (sm {facts['compute_capability']})")
    if cache is not None and not cache.is_file():
        result.timing_cache = None
    return result


#: the facts an engine's entry takes over from its source ONNX's entry (a DeepStream graph's: its head and outputs)
INHERITED = ("deepstream",)


def inherited_facts(source_entry: dict[str, Any]) -> dict[str, Any]:
    return {k: source_entry[k] for k in INHERITED if k in source_entry}


def record(manifest: dict[str, Any], output_dir: Path, built: EngineBuild) -> None:
    """Add the engines of `built` to `manifest` (in memory; the caller writes it)."""
    for e in built.engines:
        add_artifact(manifest, Path(output_dir) / e["path"], e["precision"], TENSORRT_PLAN,
                     requires=requires_of(e["engine"]), engine=e["engine"], built_from=e["built_from"], input=e["input"],
                     **{k: e[k] for k in ("adopted_from", *INHERITED) if k in e})
    if built.timing_cache is not None:
        manifest["timing_cache"] = built.timing_cache
