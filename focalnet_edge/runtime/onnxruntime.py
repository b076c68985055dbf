"""`OnnxRuntimeRunner`: any focalnet-edge ONNX file through ONNX Runtime."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError, InputError
from ..folder.onnx_io import contract_from_metadata, decode_metadata, ort_session
from ..folder.labels import REBUILD_FIX, decode_labels
from .base import Runner, TensorSpec
from .interop import DeviceBuffer, stream_handle, synchronize

log = logging.getLogger(__name__)

#: preferred order; only those the installed onnxruntime offers are used. ONNX Runtime's TensorRT
#: execution provider is left out unless asked for by name: it builds a TensorRT engine inside every
#: new session (minutes on a Jetson), where `focalnet-edge engine` builds one verified plan once
PROVIDER_ORDER = ("CUDAExecutionProvider", "CPUExecutionProvider")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
#: where the TensorRT execution provider, when asked for, keeps its engines and timing cache: a folder
#: beside the ONNX file, so the second session loads what the first one built
ORT_TRT_CACHE = "ort-trt-cache"


#: the distributions that install the one `onnxruntime` module: with two of them installed, the last
#: one written wins, and a CPU build over onnxruntime-gpu takes the CUDA provider away
ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu")


def default_providers() -> list[str]:
    from ..extras import require_onnxruntime

    ort = require_onnxruntime("running an ONNX file")

    available = ort.get_available_providers()
    return [p for p in PROVIDER_ORDER if p in available] or ["CPUExecutionProvider"]


def missing_gpu_provider(requested: list[Any], available: list[str]) -> str | None:
    """Why a GPU provider asked for is not available, where the install says why (two onnxruntime
    distributions over one module), or None."""
    from importlib import metadata

    wanted = [p if isinstance(p, str) else p[0] for p in requested]
    missing = [p for p in wanted if p in GPU_PROVIDERS and p not in available]
    if not missing:
        return None
    installed = []
    for name in ORT_DISTRIBUTIONS:
        try:
            installed.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    if len(installed) < 2:
        return None
    return (f"{missing[0]} is not available: {' and '.join(installed)} are both installed and share the onnxruntime module; "
            "pip uninstall -y onnxruntime onnxruntime-gpu, then install only onnxruntime-gpu (on Jetson: NVIDIA's Jetson build)")


def with_options(providers: list[Any], path: Path) -> list[Any]:
    """`providers` with the TensorRT execution provider, where named without options, given its caches:
    engine cache and timing cache (`trt_engine_cache_*`, `trt_timing_cache_*`, ONNX Runtime's
    TensorRT EP options) in `ORT_TRT_CACHE` beside `path`. A provider given as (name, options) is kept."""
    cache = path.parent / ORT_TRT_CACHE
    out: list[Any] = []
    for p in providers:
        if p == "TensorrtExecutionProvider":
            try:
                cache.mkdir(exist_ok=True)
            except OSError as e:  # a read-only folder: the provider builds at every session, as ONNX Runtime's default
                log.warning("%s: no TensorRT EP cache (%s)", cache, e.strerror or e)
                out.append(p)
                continue
            p = (p, {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
                     "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache)})
        out.append(p)
    return out


class OnnxRuntimeRunner(Runner):
    """Runs `path` with ONNX Runtime.

    Args:
        path: a focalnet-edge ONNX file (its metadata says how to feed it).
        providers: execution providers in order of preference; default: CUDA, then CPU, whichever
            the installed onnxruntime offers. "TensorrtExecutionProvider" only when named here; it
            then caches its engines and timings in `ort-trt-cache/` beside the file.
        threads: intra-op threads (default: ONNX Runtime's, one per physical core).
        spinning: let idle threads spin. Off by default: several sessions in one process
            otherwise steal each other's cores.
    """

    def __init__(self, path: str | os.PathLike, providers: list[str] | None = None, threads: int | None = None, spinning: bool = False) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ArtifactError(f"{self.path}: no such ONNX file")
        # the metadata through ONNX Runtime's own reading of the file: not parsed a second time by onnx
        try:
            self.session = ort_session(self.path, with_options(providers or default_providers(), self.path), threads, spinning)
        except ArtifactError as e:
            if "INVALID_PROTOBUF" in str(e):
                raise ArtifactError(f"{self.path}: not a readable ONNX file (protobuf parsing failed)") from None
            raise
        if providers:
            import onnxruntime as ort

            problem = missing_gpu_provider(providers, ort.get_available_providers())
            if problem:
                log.warning("%s", problem)
        meta = decode_metadata(self.session.get_modelmeta().custom_metadata_map)
        self.contract, meta = contract_from_metadata(meta, self.path)
        self.head = meta.get("head", "logits")
        self.labels = decode_labels(meta.get("labels", {}), f"{self.path} (focalnet_edge.labels)", REBUILD_FIX)
        self.precision = meta.get("precision", "fp32")
        self.providers = self.session.get_providers()  #: the providers in use, the first one first
        self.device = f"ONNX Runtime {self.providers[0]}"
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.name = f"onnxruntime:{self.path.name}"
        log.debug("%s on %s", self.path, self.session.get_providers())

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec(o.name, _np_type(o.type), tuple(o.shape)) for o in self.session.get_outputs()]

    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        values = self.session.run(None, {self.contract.name: batch})
        return dict(zip(self.output_names, values))

    # -- CUDA memory: I/O binding ----------------------------------------------------------------
    def _run_device(self, buffer: DeviceBuffer, stream: Any) -> dict[str, np.ndarray]:
        """CUDA memory bound as the input through I/O binding (no copy); outputs come back to the host.

        Needs the CUDA (or TensorRT) provider. ONNX Runtime runs on a stream of its own, so the
        producer's stream (CUDA array interface v3) and the caller's `stream` (which a DLPack
        producer was told to order its work before) are synchronised first. The input must be one
        contiguous block: ONNX Runtime takes a pointer and a shape, no strides.
        """
        if self.providers[0] not in GPU_PROVIDERS:
            super()._run_device(buffer, stream)
        if not buffer.contiguous:
            raise InputError(f"a strided CUDA input (shape {buffer.shape}, strides {buffer.strides} bytes) cannot be bound to "
                             "ONNX Runtime, which takes no strides: make it contiguous on the device first "
                             "(cupy.ascontiguousarray(x), x.contiguous()), or run a TensorRT engine, which copies pitched frames itself")
        caller = stream_handle(stream) if stream is not None else None
        for handle in dict.fromkeys(h for h in (buffer.stream, caller) if h):  # each once, the producer's first
            synchronize(handle)
        options = self.session.get_provider_options().get(self.providers[0], {})
        device_id = int(options.get("device_id", 0))  # the CUDA array interface names no device: the session's
        return self._run_bound(dataclasses.replace(buffer, device_id=device_id), "cuda")

    def _run_bound(self, buffer: DeviceBuffer, device_type: str) -> dict[str, np.ndarray]:
        """Run on memory given by pointer (`device_type` "cuda", or "cpu" for host memory), batch split as usual."""
        parts = []
        for chunk in self._device_chunks(buffer):
            binding = self.session.io_binding()
            binding.bind_input(name=self.contract.name, device_type=device_type, device_id=chunk.device_id,
                               element_type=chunk.dtype.type, shape=chunk.shape, buffer_ptr=chunk.ptr)
            for name in self.output_names:
                binding.bind_output(name, "cpu")
            self.session.run_with_iobinding(binding)
            parts.append(dict(zip(self.output_names, binding.copy_outputs_to_cpu())))
        return parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]


def _np_type(ort_type: str) -> str:
    return {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8"}.get(ort_type, ort_type)
