"""`OnnxRuntimeRunner`: any focalnet-edge ONNX file through ONNX Runtime."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError, InputError
from ..onnx_io import contract_from_metadata, decode_metadata, ort_session
from .base import Runner, TensorSpec
from .interop import DeviceBuffer, synchronize

log = logging.getLogger(__name__)

#: preferred order; only those the installed onnxruntime offers are used
PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def default_providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in PROVIDER_ORDER if p in available] or ["CPUExecutionProvider"]


class OnnxRuntimeRunner(Runner):
    """Runs `path` with ONNX Runtime.

    Args:
        path: a focalnet-edge ONNX file (its metadata says how to feed it).
        providers: execution providers in order of preference; default: TensorRT, CUDA, CPU,
            whichever the installed onnxruntime offers.
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
            self.session = ort_session(self.path, providers or default_providers(), threads, spinning)
        except ArtifactError as e:
            if "INVALID_PROTOBUF" in str(e):
                raise ArtifactError(f"{self.path}: not a readable ONNX file (protobuf parsing failed)") from None
            raise
        meta = decode_metadata(self.session.get_modelmeta().custom_metadata_map)
        self.contract, meta = contract_from_metadata(meta, self.path)
        self.head = meta.get("head", "logits")
        self.labels = {int(k): v for k, v in meta.get("labels", {}).items()}
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
        producer's stream (CUDA array interface v3) is synchronised first. The input must be one
        contiguous block: ONNX Runtime takes a pointer and a shape, no strides.
        """
        if self.providers[0] not in GPU_PROVIDERS:
            super()._run_device(buffer, stream)
        if not buffer.contiguous:
            raise InputError(f"a strided CUDA input (shape {buffer.shape}, strides {buffer.strides} bytes) cannot be bound to "
                             "ONNX Runtime, which takes no strides: make it contiguous on the device first "
                             "(cupy.ascontiguousarray(x), x.contiguous()), or run a TensorRT engine, which copies pitched frames itself")
        synchronize(buffer.stream)
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
