"""The layers of the trace-friendly FocalNet (Yang et al., 2022), with transformers' module names.

Feature maps travel channels-last (B, H, W, C) between modules, so every LayerNorm and Linear
works on the last axis (one ONNX node each) and spatial sizes are carried by the tensors
themselves: no Python tuples of sizes are passed around, no `view` needs them, and the traced
graph has no shape arithmetic. Only the depth-wise context convolutions run channels-first
(see `FocalNetModulation` for why the layout changes only around them).

The public models built from these layers are in `modeling.py`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import _is_tracing
from .config import FocalNetConfig

class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


#: config.hidden_act -> module, the activations of transformers' ACT2FN that FocalNet configs use
_ACT = {
    "gelu": nn.GELU,
    "gelu_python": nn.GELU,
    "gelu_new": lambda: nn.GELU(approximate="tanh"),
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "quick_gelu": QuickGELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


class DropPath(nn.Module):
    """Stochastic depth per sample; the identity in eval mode."""

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)
        return x.div(keep) * torch.floor(mask + keep)


class FocalNetPatchEmbeddings(nn.Module):
    """Patchify with a strided convolution: (B, C, H, W) -> (B, H/s, W/s, D), optional LayerNorm.

    An input whose height or width is not a multiple of the patch size is first padded with
    zeros on the bottom and right, as transformers' `maybe_pad` does (the stem pads to the
    config's patch size, each downsampling to 2). The pad amounts are Python ints read off the
    input, constants in a traced graph (see `_pad_amounts`).
    """

    def __init__(self, config: FocalNetConfig, in_dim: int, out_dim: int, is_stem: bool, add_norm: bool) -> None:
        super().__init__()
        self.patch_size = config.patch_hw if is_stem else (2, 2)
        if config.use_conv_embed:
            kernel, stride, padding = ((7, 7), 4, 2) if is_stem else ((3, 3), 2, 1)
        else:
            kernel = stride = self.patch_size
            padding = 0
        self.projection = nn.Conv2d(in_dim, out_dim, kernel_size=kernel, stride=stride, padding=padding)
        self.norm = nn.LayerNorm(out_dim, eps=config.layer_norm_eps) if add_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad_h, pad_w = _pad_amounts(x, self.patch_size)
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        x = self.projection(x).permute(0, 2, 3, 1)
        if self.norm is not None:
            x = self.norm(x)
        return x


def _pad_amounts(x: torch.Tensor, multiple: tuple[int, int]) -> tuple[int, int]:
    """Rows and columns that bring x's (B, C, H, W) height and width up to multiples of `multiple`.

    While torch.jit.trace records, sizes read from a tensor are graph values; here they are read
    with the tracer paused, so they are Python ints and the pad (if any) is a constant of the
    traced size: no Shape/Gather nodes. Under torch.export the sizes are ints (or symbols).
    """
    state = torch._C._get_tracing_state()
    if state is not None:
        torch._C._set_tracing_state(None)
    try:
        height, width = int(x.shape[-2]), int(x.shape[-1])
    finally:
        if state is not None:
            torch._C._set_tracing_state(state)
    return -height % multiple[0], -width % multiple[1]


class FocalNetEmbeddings(nn.Module):
    """Stem: patch embedding, LayerNorm and (for masked image modeling) the mask token."""

    def __init__(self, config: FocalNetConfig, use_mask_token: bool = False) -> None:
        super().__init__()
        self.patch_embeddings = FocalNetPatchEmbeddings(
            config, config.num_channels, config.embed_dim, is_stem=True, add_norm=False
        )
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim)) if use_mask_token else None
        self.norm = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, pixel_values: torch.Tensor, bool_masked_pos: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm(self.patch_embeddings(pixel_values))
        if bool_masked_pos is not None:
            # replace the masked patches by the mask token; the mask comes as (B, H*W)
            mask = bool_masked_pos.reshape(x.shape[:3]).unsqueeze(-1).type_as(x)
            x = x * (1.0 - mask) + self.mask_token * mask
        return self.dropout(x)


class PointwiseConv(nn.Conv2d):
    """A 1x1 convolution (transformers' Conv2d parameters) applied channels-last, as a Linear.

    (B, H, W, C) -> (B, H, W, C'): one MatMul (and bias Add) in the graph, like the block's other
    projections, where a Conv would need the map channels-first around it.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the weight's two unit dimensions squeezed (no view/reshape: the graph holds no shape arithmetic);
        # export/trace.py folds the Squeeze as it writes the weight, so the MatMul reads a constant even
        # unsimplified (`--simplifier none`), as quantizers expect
        return F.linear(x, self.weight.squeeze(3).squeeze(2), self.bias)


class FocalNetModulation(nn.Module):
    """Focal modulation: gated hierarchical context, then a modulator that multiplies the query.

    Only the depth-wise convolutions run channels-first: the context goes channels-first once,
    and each level's output comes back channels-last to be gated there, so the query, the gates,
    their products and the 1x1 `projection_context` never change layout. For ONNX Runtime's CPU
    graph that is one layout change into the convolutions and one out of each level (each fused
    into a reorder of its blocked NCHWc format), instead of seven per block when the gating ran
    channels-first (the query, the modulator and the 1x1 convolution's input and output).
    """

    def __init__(self, config: FocalNetConfig, index: int, dim: int, focal_factor: int = 2) -> None:
        super().__init__()
        self.focal_level = config.focal_levels[index]
        window = config.focal_windows[index]
        self.normalize_modulator = config.normalize_modulator
        self.split_sizes = [dim, dim] + [1] * (self.focal_level + 1)

        self.projection_in = nn.Linear(dim, 2 * dim + self.focal_level + 1)
        self.projection_context = PointwiseConv(dim, dim, kernel_size=1)
        self.activation = nn.GELU()
        self.projection_out = nn.Linear(dim, dim)
        self.projection_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.kernel_sizes = [focal_factor * k + window for k in range(self.focal_level)]
        self.focal_layers = nn.ModuleList(
            nn.Sequential(nn.Conv2d(dim, dim, k, groups=dim, padding=k // 2, bias=False), nn.GELU())
            for k in self.kernel_sizes
        )
        self.layernorm = (
            nn.LayerNorm(dim, eps=config.layer_norm_eps) if config.use_post_layernorm_in_modulation else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # query, context and one gate per level (+1 global), all channels-last (B, H, W, .)
        q, level, *gates = torch.split(self.projection_in(x), self.split_sizes, dim=-1)

        # hierarchical contextualisation: each level sees a larger window, gated per position;
        # the convolutions go on channels-first, each level is gated channels-last
        ctx, ctx_all = level.permute(0, 3, 1, 2), None
        for focal_layer, gate in zip(self.focal_layers, gates):
            ctx = focal_layer(ctx)
            level = ctx.permute(0, 2, 3, 1)
            ctx_all = level * gate if ctx_all is None else ctx_all + level * gate
        # global context: the average of the last level, taken channels-first (a GlobalAveragePool,
        # which ONNX Runtime runs on its blocked NCHWc map, so that map needs no other reorder)
        ctx_global = self.activation(F.adaptive_avg_pool2d(ctx, 1).permute(0, 2, 3, 1)) * gates[-1]
        ctx_all = ctx_global if ctx_all is None else ctx_all + ctx_global
        if self.normalize_modulator:
            ctx_all = ctx_all / (self.focal_level + 1)

        # focal modulation: the query times the modulator
        x = q * self.projection_context(ctx_all)
        if self.layernorm is not None:
            x = self.layernorm(x)
        return self.projection_dropout(self.projection_out(x))


class FocalNetMlp(nn.Module):
    def __init__(self, config: FocalNetConfig, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.activation = _ACT[config.hidden_act]()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.activation(self.fc1(x)))))


class FocalNetLayer(nn.Module):
    """One block: x + modulation(norm(x)), then x + mlp(norm(x)) (or post-norm, with layer scale)."""

    def __init__(self, config: FocalNetConfig, index: int, dim: int, drop_path: float) -> None:
        super().__init__()
        self.use_post_layernorm = config.use_post_layernorm
        self.norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.modulation = FocalNetModulation(config, index, dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = FocalNetMlp(config, dim, int(dim * config.mlp_ratio))
        # layer scale is a parameter only when used: a unit multiplier never becomes a graph node
        if config.use_layerscale:
            self.gamma_1 = nn.Parameter(config.layerscale_value * torch.ones(dim))
            self.gamma_2 = nn.Parameter(config.layerscale_value * torch.ones(dim))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_post_layernorm:
            y = self.norm1(self.modulation(x))
        else:
            y = self.modulation(self.norm1(x))
        if self.gamma_1 is not None:
            y = self.gamma_1 * y
        x = x + self.drop_path(y)

        y = self.norm2(self.mlp(x)) if self.use_post_layernorm else self.mlp(self.norm2(x))
        if self.gamma_2 is not None:
            y = self.gamma_2 * y
        return x + self.drop_path(y)


class FocalNetStage(nn.Module):
    """A stage's blocks, then its downsampling; recomputed in the backward pass when checkpointed.

    `gradient_checkpointing` and `_gradient_checkpointing_func` are set by the model's
    `gradient_checkpointing_enable()` (transformers' names); they act only in training mode.
    """

    gradient_checkpointing = False

    def __init__(self, config: FocalNetConfig, index: int, drop_paths: list[float]) -> None:
        super().__init__()
        dim = config.stage_dims[index]
        self.layers = nn.ModuleList(FocalNetLayer(config, index, dim, p) for p in drop_paths)
        last = index == config.num_stages - 1
        self.downsample = (
            None
            if last
            else FocalNetPatchEmbeddings(config, dim, config.stage_dims[index + 1], is_stem=False, add_norm=True)
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.gradient_checkpointing and self.training:
            return self._gradient_checkpointing_func(super().__call__, x)
        return super().__call__(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        if self.downsample is not None:
            x = self.downsample(x.permute(0, 3, 1, 2))
        return x


class FocalNetEncoder(nn.Module):
    def __init__(self, config: FocalNetConfig) -> None:
        super().__init__()
        # on the CPU even while the model is built on the meta device (see base.load_model)
        rates = torch.linspace(0, config.drop_path_rate, sum(config.depths), device="cpu").tolist()
        starts = [sum(config.depths[:i]) for i in range(config.num_stages)]
        self.stages = nn.ModuleList(
            FocalNetStage(config, i, rates[s : s + d]) for i, (s, d) in enumerate(zip(starts, config.depths))
        )

    def forward(self, x: torch.Tensor, output_hidden_states: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Return the last feature map and, if asked, the stem's and each stage's (all B, H, W, C)."""
        hidden = _Hidden()
        # With autograd on (training, attribution), the model goes on from the token view it
        # returns as hidden_states, so gradients reach them as in transformers. Not while tracing
        # or without grad (exports): the view's sizes would be shape arithmetic in the graph.
        through_tokens = output_hidden_states and torch.is_grad_enabled() and not _is_tracing()
        for stage in (None, *self.stages):
            x = x if stage is None else stage(x)
            if through_tokens:
                tokens = _tokens(x)
                x = tokens.view(x.shape)
                hidden.tokens.append(tokens)
            if output_hidden_states:
                hidden.append(x)
        return x, hidden


class _Hidden(list):
    """The per-stage maps (B, H, W, C); `tokens`: their (B, H*W, C) views, when the model went on from them."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: list[torch.Tensor] = []


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) -> (B, H*W, C), the token layout of transformers' outputs."""
    return x.flatten(1, 2)
