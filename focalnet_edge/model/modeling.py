"""A trace-friendly FocalNet (Yang et al., 2022) with the module names of transformers' FocalNet.

Feature maps travel channels-last (B, H, W, C) between modules, so every LayerNorm and Linear
works on the last axis (one ONNX node each) and spatial sizes are carried by the tensors
themselves: no Python tuples of sizes are passed around, no `view` needs them, and the traced
graph has no shape arithmetic. Only the depth-wise context convolutions run channels-first.

The module and parameter names are those of `transformers.models.focalnet`, so its state dicts
load unchanged (see `base.load_model`), and the numbers are the same. The base class, weight
initialisation and `from_pretrained`/`save_pretrained` are in `base.py`.
"""

from __future__ import annotations

import enum

import torch
import torch.nn.functional as F
from torch import nn

from .base import _REGISTRY, FocalNetPreTrainedModel, _is_tracing, no_init_weights
from .config import FocalNetConfig
from .outputs import (
    BackboneOutput,
    FocalNetImageClassifierOutput,
    FocalNetMaskedImageModelingOutput,
    FocalNetModelOutput,
)

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


class FocalNetModulation(nn.Module):
    """Focal modulation: gated hierarchical context, then a modulator that multiplies the query."""

    def __init__(self, config: FocalNetConfig, index: int, dim: int, focal_factor: int = 2) -> None:
        super().__init__()
        self.focal_level = config.focal_levels[index]
        window = config.focal_windows[index]
        self.normalize_modulator = config.normalize_modulator
        self.split_sizes = [dim, dim] + [1] * (self.focal_level + 1)

        self.projection_in = nn.Linear(dim, 2 * dim + self.focal_level + 1)
        self.projection_context = nn.Conv2d(dim, dim, kernel_size=1)
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
        # query, context and one gate per level (+1 global), channels-first for the convolutions
        x = self.projection_in(x).permute(0, 3, 1, 2)
        q, ctx, *gates = torch.split(x, self.split_sizes, dim=1)

        # hierarchical contextualisation: each level sees a larger window, gated per position
        ctx_all = None
        for focal_layer, gate in zip(self.focal_layers, gates):
            ctx = focal_layer(ctx)
            ctx_all = ctx * gate if ctx_all is None else ctx_all + ctx * gate
        # global context: the average of the last level
        ctx_global = self.activation(ctx.mean((2, 3), keepdim=True)) * gates[-1]
        ctx_all = ctx_global if ctx_all is None else ctx_all + ctx_global
        if self.normalize_modulator:
            ctx_all = ctx_all / (self.focal_level + 1)

        # focal modulation: the query times the modulator, back to channels-last
        x = (q * self.projection_context(ctx_all)).permute(0, 2, 3, 1)
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


def _channels_first(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


def _hidden_outputs(hidden: list[torch.Tensor], wanted: bool | None) -> tuple:
    """(hidden_states as tokens, reshaped_hidden_states as B, C, H, W), or (None, None)."""
    if not wanted:
        return None, None
    tokens = getattr(hidden, "tokens", None) or [_tokens(h) for h in hidden]
    return tuple(tokens), tuple(_channels_first(h) for h in hidden)


def _as_tuple(loss, main: torch.Tensor, hidden: list[torch.Tensor], wanted: bool | None) -> tuple:
    """transformers' return_dict=False layout: (loss?, main, hidden_states?)."""
    out = (main,) + ((_hidden_outputs(hidden, wanted)[0],) if wanted else ())
    return ((loss,) + out) if loss is not None else out


class FocalNetModel(FocalNetPreTrainedModel):
    def __init__(self, config: FocalNetConfig, add_pooling_layer: bool = True, use_mask_token: bool = False) -> None:
        super().__init__(config)
        self.embeddings = FocalNetEmbeddings(config, use_mask_token=use_mask_token)
        self.encoder = FocalNetEncoder(config)
        self.layernorm = nn.LayerNorm(config.num_features, eps=config.layer_norm_eps)
        self.add_pooling_layer = add_pooling_layer
        self.num_stages = config.num_stages
        self.post_init()

    @property
    def num_features(self) -> int:
        return self.config.num_features

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    def forward_features(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The normalised last feature map (B, H, W, C) and, if asked, the per-stage maps."""
        self._check_pixel_values(pixel_values)
        x = self.embeddings(pixel_values, bool_masked_pos)
        x, hidden = self.encoder(x, output_hidden_states)
        return self.layernorm(x), hidden

    @staticmethod
    def pool(features: torch.Tensor) -> torch.Tensor:
        """Global average over the spatial positions: (B, H, W, C) -> (B, C)."""
        return features.mean((1, 2))

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        bool_masked_pos: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ):
        output_hidden_states, return_dict = self._output_switches(output_hidden_states, return_dict)
        features, hidden = self.forward_features(pixel_values, bool_masked_pos, output_hidden_states)
        pooled = self.pool(features) if self.add_pooling_layer else None
        out = FocalNetModelOutput(_tokens(features), pooled, *_hidden_outputs(hidden, output_hidden_states))
        if not return_dict:
            extra = (out.hidden_states,) if output_hidden_states else ()
            return (out.last_hidden_state, pooled) + extra
        return out


class FocalNetForImageClassification(FocalNetPreTrainedModel):
    def __init__(self, config: FocalNetConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        with no_init_weights():
            self.focalnet = FocalNetModel(config)
        self.classifier = nn.Linear(config.num_features, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ):
        output_hidden_states, return_dict = self._output_switches(output_hidden_states, return_dict)
        features, hidden = self.focalnet.forward_features(pixel_values, output_hidden_states=output_hidden_states)
        logits = self.classifier(FocalNetModel.pool(features))
        loss = self._loss(logits, labels) if labels is not None else None
        if not return_dict:
            return _as_tuple(loss, logits, hidden, output_hidden_states)
        return FocalNetImageClassifierOutput(loss, logits, *_hidden_outputs(hidden, output_hidden_states))

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """transformers' rule: regression for one label, else single- or multi-label by dtype."""
        problem = self.config.problem_type
        if problem is None:
            if self.num_labels == 1:
                problem = "regression"
            elif labels.dtype in (torch.long, torch.int):
                problem = "single_label_classification"
            else:
                problem = "multi_label_classification"
        if problem == "regression":
            return F.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype))
        if problem == "single_label_classification":
            return F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


class FocalNetForMaskedImageModeling(FocalNetPreTrainedModel):
    """SimMIM: a 1x1 convolution and a pixel shuffle reconstruct the image from the last map."""

    def __init__(self, config: FocalNetConfig) -> None:
        super().__init__(config)
        with no_init_weights():
            self.focalnet = FocalNetModel(config, add_pooling_layer=False, use_mask_token=True)
        stride = config.encoder_stride
        self.num_stages = config.num_stages
        self.decoder = nn.Sequential(
            nn.Conv2d(config.num_features, stride**2 * config.num_channels, kernel_size=1),
            nn.PixelShuffle(stride),
        )
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        bool_masked_pos: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ):
        output_hidden_states, return_dict = self._output_switches(output_hidden_states, return_dict)
        features, hidden = self.focalnet.forward_features(pixel_values, bool_masked_pos, output_hidden_states)
        reconstruction = self.decoder(_channels_first(features))

        loss = None
        if bool_masked_pos is not None:
            p = self.config.patch_hw[0]
            b, _, h, w = pixel_values.shape
            grid = bool_masked_pos.reshape(b, h // p, w // p)
            mask = grid.repeat_interleave(p, 1).repeat_interleave(p, 2).unsqueeze(1).contiguous()
            l1 = F.l1_loss(pixel_values, reconstruction, reduction="none")
            loss = (l1 * mask).sum() / (mask.sum() + 1e-5) / self.config.num_channels

        if not return_dict:
            return _as_tuple(loss, reconstruction, hidden, output_hidden_states)
        return FocalNetMaskedImageModelingOutput(loss, reconstruction, *_hidden_outputs(hidden, output_hidden_states))


class BackboneType(enum.Enum):
    """transformers' `BackboneType`: where a backbone's stages come from (ours: always transformers')."""

    TIMM = "timm"
    TRANSFORMERS = "transformers"


class FocalNetBackbone(FocalNetPreTrainedModel):
    """Feature maps (B, C, H, W) of the stages named by `config.out_features`.

    Stage semantics are transformers': "stem" is the embedding output, "stageN" the output of
    stage N *after* its downsampling (so it has the width and stride of stage N+1), and the last
    stage's map is taken before the final LayerNorm. `out_features`/`out_indices` are the
    config's, read at each call, so setting them on the config (or here) after creation counts.
    `num_features` and `channels` report `[embed_dim] + hidden_sizes`, as transformers does.
    """

    backbone_type = BackboneType.TRANSFORMERS
    has_attentions = False

    def __init__(self, config: FocalNetConfig) -> None:
        super().__init__(config)
        with no_init_weights():
            self.focalnet = FocalNetModel(config)
        self.stage_names = config.stage_names
        self.num_features = [config.embed_dim] + list(config.hidden_sizes)
        self.post_init()

    @property
    def out_features(self) -> list[str]:
        return self.config.out_features

    @out_features.setter
    def out_features(self, value: list[str] | None) -> None:
        self.config.out_features = value

    @property
    def out_indices(self) -> list[int]:
        return self.config.out_indices

    @out_indices.setter
    def out_indices(self, value) -> None:
        self.config.out_indices = value

    @property
    def out_feature_channels(self) -> dict[str, int]:
        """Channels of every stage's map, by stage name (also of stages not in out_features)."""
        return {stage: self.num_features[i] for i, stage in enumerate(self.stage_names)}

    @property
    def channels(self) -> list[int]:
        return [self.out_feature_channels[name] for name in self.out_features]

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ):
        output_hidden_states, return_dict = self._output_switches(output_hidden_states, return_dict)
        _, hidden = self.focalnet.forward_features(pixel_values, output_hidden_states=True)
        wanted = set(self.out_features)
        feature_maps = tuple(_channels_first(h) for name, h in zip(self.stage_names, hidden) if name in wanted)
        hs = _hidden_outputs(hidden, output_hidden_states)[0]
        if not return_dict:
            return (feature_maps,) + ((hs,) if output_hidden_states else ())
        return BackboneOutput(feature_maps=feature_maps, hidden_states=hs, attentions=None)


#: the public models by name (the registry of `base`, filled as the classes above were defined)
MODEL_CLASSES = _REGISTRY
