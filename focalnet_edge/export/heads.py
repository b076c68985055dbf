"""What an exported graph computes: a model head, optionally behind fused preprocessing.

Each wrapper returns plain tensors (a tuple with one entry per named output), so
`torch.onnx.export` and `torch.jit.trace` see no output objects.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..model import (
    FocalNetBackbone,
    FocalNetForImageClassification,
    FocalNetForMaskedImageModeling,
    load_model,
)
from ..model.weights import Checkpoint
from ..folder.contract import HEADS


class ClassifierHead(nn.Module):
    def __init__(self, model: FocalNetForImageClassification, probs: bool = False) -> None:
        super().__init__()
        self.model, self.probs = model, probs

    @property
    def output_names(self) -> list[str]:
        return ["probs" if self.probs else "logits"]

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor]:
        logits = self.model(pixel_values, return_dict=False)[0]
        return (logits.softmax(-1),) if self.probs else (logits,)


class FeaturesHead(nn.Module):
    """One output per stage named in `out_features` ("stem", "stage1", ...), (B, C, H, W)."""

    def __init__(self, model: FocalNetBackbone) -> None:
        super().__init__()
        self.model = model

    @property
    def output_names(self) -> list[str]:
        return list(self.model.out_features)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model(pixel_values, return_dict=False)[0])


class ReconstructionHead(nn.Module):
    def __init__(self, model: FocalNetForMaskedImageModeling) -> None:
        super().__init__()
        self.model = model

    @property
    def output_names(self) -> list[str]:
        return ["reconstruction"]

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.model(pixel_values, return_dict=False)[0],)


class FusedPreprocess(nn.Module):
    """Raw uint8 frames in (NHWC or NCHW, RGB or BGR, or 4-channel RGBA/BGRx...), the head's outputs out.

    The graph casts, rescales and normalises with one Mul and one Add per element; BGR input is
    handled by permuting the stem convolution's input channels (exact, and no extra node); a
    4th channel is sliced off.
    """

    def __init__(self, head: nn.Module, mean, std, rescale: float, layout: str, color_order: str) -> None:
        super().__init__()
        std_t = torch.tensor(std, dtype=torch.float32)
        mean_t = torch.tensor(mean, dtype=torch.float32)
        scale, shift = rescale / std_t, -mean_t / std_t
        if color_order.startswith("BGR"):
            head = copy.deepcopy(head)
            stem = _stem_conv(head)
            with torch.no_grad():
                stem.weight.copy_(stem.weight.flip(1))
            scale, shift = scale.flip(0), shift.flip(0)
        self.head, self.layout, self.four = head, layout, len(color_order) == 4
        self.register_buffer("scale", scale.view(1, 3, 1, 1))
        self.register_buffer("shift", shift.view(1, 3, 1, 1))

    @property
    def output_names(self) -> list[str]:
        return self.head.output_names

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # Cast first: TensorRT takes uint8 only as a network input feeding a Cast
        x = frames.float()
        x = x.permute(0, 3, 1, 2) if self.layout == "NHWC" else x
        x = x[:, :3] if self.four else x
        return self.head(x * self.scale + self.shift)


def _stem_conv(head: nn.Module) -> nn.Conv2d:
    return head.model.focalnet.embeddings.patch_embeddings.projection


def build_head(ckpt: Checkpoint, head: str, out_features: list[str] | None = None) -> nn.Module:
    """The model of `ckpt` wrapped for export with the named head."""
    if head not in HEADS:
        raise ConfigError(f"head {head!r} not supported; expected one of {', '.join(HEADS)}")
    if out_features and head != "features":  # refused, never ignored
        raise ConfigError(f"--out-features {','.join(out_features)}: applies to --head features (here --head {head})")
    if head in ("logits", "probs"):
        if not any(k.startswith("classifier.") for k in ckpt.state_dict):
            raise CheckpointError(f"{ckpt.source}: has no classifier weights, so no {head} head; try --head features")
        return ClassifierHead(load_model(ckpt, FocalNetForImageClassification), probs=head == "probs")
    if head == "reconstruction":
        if not any(k.startswith("decoder.") for k in ckpt.state_dict):
            raise CheckpointError(f"{ckpt.source}: has no masked-image-modeling decoder, so no reconstruction head")
        return ReconstructionHead(load_model(ckpt, FocalNetForMaskedImageModeling))
    config = ckpt.config
    if out_features:
        config = copy.deepcopy(config)
        config.out_features = list(out_features)
    state = {k: v for k, v in ckpt.state_dict.items() if not k.startswith(("classifier.", "decoder."))}
    if not any(k.removeprefix("focalnet.").startswith("layernorm.") for k in state):  # a head's checkpoint or a bare FocalNetModel's
        raise CheckpointError(f"{ckpt.source}: not a FocalNet checkpoint with a final layernorm")
    backbone_ckpt = Checkpoint(config, state, ckpt.preprocessing, ckpt.source, ckpt.files)
    return FeaturesHead(load_model(backbone_ckpt, FocalNetBackbone))
