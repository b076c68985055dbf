"""`TorchRunner`: the PyTorch fp32 reference behind the same `Runner` protocol."""

from __future__ import annotations

import numpy as np
import torch

from ..folder.contract import InputContract
from ..export.heads import build_head
from ..model.weights import Checkpoint, load_checkpoint
from .base import Runner


class TorchRunner(Runner):
    """Runs the checkpoint's head in PyTorch on float pixel values (B, 3, H, W).

    Args:
        source: a `Checkpoint`, or anything `load_checkpoint` takes.
        head: logits, probs, features or reconstruction.
        device: "cpu" (default) or a CUDA device.
        out_features: stages for the features head (default: the config's).
    """

    def __init__(self, source, head: str = "logits", device: str = "cpu", out_features: list[str] | None = None) -> None:
        ckpt = source if isinstance(source, Checkpoint) else load_checkpoint(source)
        self.head = head
        self.module = build_head(ckpt, head, out_features).to(device).eval()
        self.device = torch.device(device)
        self.output_names = self.module.output_names
        self.labels = dict(ckpt.config.id2label) if head in ("logits", "probs") else {}
        pre = ckpt.preprocessing
        self.contract = self._contract(pre.height, pre.width, ckpt.config.total_stride, pre.to_dict())
        self.name = f"torch:{ckpt.source}"

    @staticmethod
    def _contract(height: int, width: int, multiple: int, preprocessing: dict) -> InputContract:
        """Float pixel values, any batch, any accepted size (chunks of 64 keep memory bounded)."""
        return InputContract(height=height, width=width, size_multiple=multiple, dynamic_size=True,
                             batch=(1, 1, 64), preprocessing=preprocessing)

    @torch.inference_mode()
    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outs = self.module(torch.from_numpy(batch).to(self.device))
        return {n: np.ascontiguousarray(o.float().cpu().numpy()) for n, o in zip(self.output_names, outs)}

    def for_contract(self, contract: InputContract) -> TorchRunner:
        """This reference with the height and width of an artifact's contract (for `prepare`)."""
        self.contract = self._contract(contract.height, contract.width, self.contract.size_multiple, contract.preprocessing)
        return self
