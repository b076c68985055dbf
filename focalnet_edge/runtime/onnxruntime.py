"""`OnnxRuntimeRunner`: any focalnet-edge ONNX file through ONNX Runtime."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..errors import ArtifactError
from ..onnx_io import contract_from_metadata, decode_metadata, ort_session
from .base import Runner, TensorSpec

log = logging.getLogger(__name__)

#: preferred order; only those the installed onnxruntime offers are used
PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


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

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]


def _np_type(ort_type: str) -> str:
    return {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8"}.get(ort_type, ort_type)
