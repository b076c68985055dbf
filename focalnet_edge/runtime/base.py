"""The `Runner` protocol shared by every backend (ONNX Runtime, TensorRT, the PyTorch reference).

A runner knows its input contract (`InputContract`), so it checks every input before anything
runs, splits batches larger than the artifact's maximum, and turns images into exactly the
tensors the artifact expects (`prepare`), through the same preprocessing as the reference.
"""

from __future__ import annotations

import abc
import functools
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ArtifactError, InputError
from ..folder.contract import InputContract
from ..model.preprocessing import ImageLike
from .interop import DeviceBuffer, device_buffer, host_array, stream_handle


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int | str, ...]


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    e = np.exp(x - x.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


class Runner(abc.ABC):
    """Inputs as numpy arrays (or torch tensors) in, outputs as the same kind out.

    Subclasses set `contract`, `output_names`, `labels` and `head`, and implement `_infer`
    (one batch no larger than `contract.max_batch`, numpy in and out) and `close`.
    """

    contract: InputContract
    output_names: list[str]
    labels: dict[int, str]
    head: str = "logits"
    name: str = "runner"
    device: str | None = None  #: what runs it, in words (e.g. "ONNX Runtime CPUExecutionProvider")
    stream: Any = None  #: the CUDA stream CUDA input runs on when `run` is given none (handle, torch or CuPy stream)
    _closed: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every backend's `close` marks the runner closed, so a later call is one clear error."""
        super().__init_subclass__(**kwargs)
        inner = cls.__dict__.get("close")
        if inner is not None and not getattr(inner, "_marks_closed", False):
            @functools.wraps(inner)
            def close(self) -> None:
                try:
                    inner(self)
                finally:
                    self._closed = True

            close._marks_closed = True  # type: ignore[attr-defined]
            cls.close = close  # type: ignore[method-assign]

    def _check_open(self) -> None:
        if self._closed:
            raise ArtifactError(f"{self.name}: used after close(); load the artifact again (focalnet_edge.runtime.load)")

    # -- the protocol --------------------------------------------------------------------------
    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec(self.contract.name, self.contract.dtype, tuple(self.contract.shape()))]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec(n, "float32", ("batch", "...")) for n in self.output_names]

    def run(self, batch, stream: Any = None) -> dict[str, Any]:
        """Every output by name. Checks `batch` first; splits it when over the maximum batch.

        `batch`: a numpy array, a torch tensor, or any object with `__dlpack__`,
        `__cuda_array_interface__` or `__array_interface__` (`runtime.interop`): host memory is
        viewed without a copy, CUDA memory is bound directly by the GPU backends (`_run_device`).
        `stream`: the CUDA stream to run on, for CUDA input (an int handle, a torch or CuPy stream).
        """
        self._check_open()
        as_torch = _is_torch(batch)
        device = batch.device if as_torch else None
        if as_torch:  # its dtype first: before a copy, and numpy has no type for some (bfloat16: a bare TypeError)
            self.contract.check_shape(tuple(batch.shape), str(batch.dtype).removeprefix("torch."))
        array = batch.detach().cpu().numpy() if as_torch else host_array(batch)
        if array is None:
            buffer = device_buffer(batch, stream_handle(stream if stream is not None else self.stream) or None)
            if buffer is None:
                raise InputError(f"input must be a numpy array or torch tensor, or an object with __dlpack__, "
                                 f"__cuda_array_interface__ or __array_interface__, got {type(batch).__name__}")
            self.contract.check_shape(buffer.shape, str(buffer.dtype))
            return self._run_device(buffer, stream if stream is not None else self.stream)
        self.contract.check_shape(array.shape, str(array.dtype))
        outputs = self._run_chunks(np.ascontiguousarray(array))
        if as_torch:
            import torch

            return {k: torch.from_numpy(v).to(device) for k, v in outputs.items()}
        return outputs

    def _run_device(self, buffer: DeviceBuffer, stream: Any) -> dict[str, Any]:
        """CUDA memory in: backends that run on a GPU bind it; this one cannot read it."""
        raise InputError(f"{self.name} runs on {self.device or 'the CPU'} and cannot read CUDA memory: copy the frames to the "
                         "host first (e.g. cupy.asnumpy), or run on ONNX Runtime's CUDA provider or a TensorRT engine")

    def _device_chunks(self, buffer: DeviceBuffer) -> list[DeviceBuffer]:
        """`buffer` split along the batch as `_run_chunks` splits arrays (views; a static batch must be whole)."""
        c = self.contract
        n = buffer.shape[0]
        if n == 0:
            raise InputError(f"input {c.name!r} has batch 0: nothing to run")
        step = (c.max_batch or n) if c.dynamic_batch else c.batch[1]
        if not c.dynamic_batch and n % step:
            raise InputError(f"input {c.name!r} has batch {n}: this artifact takes batches of exactly {step}, and CUDA "
                             f"memory is not padded here (that would be a copy); pass a multiple of {step}")
        return [buffer.rows(i, min(i + step, n)) for i in range(0, n, step)]

    def __call__(self, batch, stream: Any = None):
        """The output for a one-output head (e.g. logits), else a dict of outputs by name."""
        out = self.run(batch, stream)
        return out[self.output_names[0]] if len(out) == 1 else out

    @abc.abstractmethod
    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...

    def close(self) -> None:
        """Release the session or engine."""
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- batching ------------------------------------------------------------------------------
    def _run_chunks(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        c = self.contract
        n = batch.shape[0]
        if n == 0:
            raise InputError(f"input {c.name!r} has batch 0: nothing to run")
        if c.dynamic_batch:
            step = c.max_batch or n
            if n <= step:
                return self._infer(batch)
            parts = [self._infer(batch[i : i + step]) for i in range(0, n, step)]
        else:  # a static batch: pad the last chunk, then drop the padding
            step = c.batch[1]
            parts = []
            for i in range(0, n, step):
                chunk = batch[i : i + step]
                pad = step - len(chunk)
                if pad:
                    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
                out = self._infer(chunk)
                parts.append({k: v[: step - pad] for k, v in out.items()})
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    # -- images ----------------------------------------------------------------------------------
    def prepare(self, images: list[ImageLike] | ImageLike) -> np.ndarray:
        """Images (paths, PIL images, uint8 HxWx3 RGB frames) -> the artifact's input batch."""
        return self.contract.prepare(check_images(images))

    def predict(self, images: list[ImageLike] | ImageLike, top_k: int = 5) -> list[list[dict[str, Any]]]:
        """Top-k labels per image: [[{"index", "label", "score"}, ...], ...]."""
        self._check_open()
        self._check_top_k(top_k)
        return self.top_k(self.prepare(images), top_k)

    def top_k(self, batch, k: int = 5) -> list[list[dict[str, Any]]]:
        """Top-k labels per row of an input batch already prepared (`prepare`, `stream.frame_transform`)."""
        self._check_top_k(k)
        out = self(batch)
        out = out.float().cpu().numpy() if _is_torch(out) else np.asarray(out, np.float32)
        probs = out if self.head == "probs" else softmax(out)
        k = max(1, min(k, probs.shape[-1]))
        results = []
        for row in probs:
            top = np.argsort(-row, kind="stable")[:k]
            results.append([{"index": int(i), "label": self.labels.get(int(i), str(i)), "score": float(row[i])} for i in top])
        return results

    def _check_top_k(self, top_k: Any) -> None:
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
            raise InputError(f"top_k {top_k!r} not accepted: expected a whole number >= 1")
        if self.head not in ("logits", "probs"):
            raise InputError(f"predict needs a classification artifact (logits or probs head), this one has {self.head!r}")


def check_images(images: Any) -> list:
    """`images` as a non-empty list of paths, encoded image bytes, PIL images or uint8 frames, or one clear `InputError`.

    Encoded bytes (a JPEG or PNG file's contents, e.g. from a server request) go to the one image
    loader, which decodes them or says in one line that they are not an image.
    """
    from PIL import Image

    items = list(images) if isinstance(images, (list, tuple)) else [images]
    if not items:
        raise InputError("no images given: pass paths, PIL images or uint8 (height, width, 3) frames")
    for i, im in enumerate(items):
        where = f"image {i}" if isinstance(images, (list, tuple)) else "image"
        if isinstance(im, (bytes, bytearray, memoryview)):
            continue
        if isinstance(im, Image.Image):
            size = im.size
        elif isinstance(im, np.ndarray):
            size = im.shape[:2] if im.ndim == 3 else (1, 1)  # other ranks: to_pil names the expected shape
        elif isinstance(im, (str, os.PathLike)):
            continue
        else:
            raise InputError(f"{where} is {type(im).__name__} {str(im)[:40]!r}: expected a path, encoded bytes, a PIL image or a uint8 (height, width, 3) frame")
        if min(size) < 1:
            raise InputError(f"{where} is {size[0]}x{size[1]}: an empty image has nothing to classify")
    return items
