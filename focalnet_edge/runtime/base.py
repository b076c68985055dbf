"""The `Runner` protocol shared by every backend (ONNX Runtime, TensorRT, the PyTorch reference).

A runner knows its input contract (`InputContract`), so it checks every input before anything
runs, splits batches larger than the artifact's maximum, and turns images into exactly the
tensors the artifact expects (`prepare`), through the same preprocessing as the reference.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..contract import InputContract
from ..model.preprocessing import ImageLike


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

    # -- the protocol --------------------------------------------------------------------------
    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec(self.contract.name, self.contract.dtype, tuple(self.contract.shape()))]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec(n, "float32", ("batch", "...")) for n in self.output_names]

    def run(self, batch) -> dict[str, Any]:
        """Every output by name. Checks `batch` first; splits it when over the maximum batch."""
        as_torch = _is_torch(batch)
        device = batch.device if as_torch else None
        array = batch.detach().cpu().numpy() if as_torch else batch
        if not isinstance(array, np.ndarray):
            raise InputError(f"input must be a numpy array or torch tensor, got {type(batch).__name__}")
        self.contract.check_shape(array.shape, str(array.dtype))
        outputs = self._run_chunks(np.ascontiguousarray(array))
        if as_torch:
            import torch

            return {k: torch.from_numpy(v).to(device) for k, v in outputs.items()}
        return outputs

    def __call__(self, batch):
        """The output for a one-output head (e.g. logits), else a dict of outputs by name."""
        out = self.run(batch)
        return out[self.output_names[0]] if len(out) == 1 else out

    @abc.abstractmethod
    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...

    def close(self) -> None:  # noqa: B027 - optional
        """Release the session or engine."""

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
        return self.contract.prepare(images)

    def predict(self, images: list[ImageLike] | ImageLike, top_k: int = 5) -> list[list[dict[str, Any]]]:
        """Top-k labels per image: [[{"index", "label", "score"}, ...], ...]."""
        if self.head not in ("logits", "probs"):
            raise InputError(f"predict needs a classification artifact (logits or probs head), this one has {self.head!r}")
        out = self(self.prepare(images))
        out = out.float().cpu().numpy() if _is_torch(out) else np.asarray(out, np.float32)
        probs = out if self.head == "probs" else softmax(out)
        k = max(1, min(top_k, probs.shape[-1]))
        results = []
        for row in probs:
            top = np.argsort(-row, kind="stable")[:k]
            results.append([{"index": int(i), "label": self.labels.get(int(i), str(i)), "score": float(row[i])} for i in top])
        return results
