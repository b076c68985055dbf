"""A trace-friendly FocalNet (Yang et al., 2022) with the module names of transformers' FocalNet: the public models.

The module and parameter names are those of `transformers.models.focalnet`, so its state dicts
load unchanged (see `base.load_model`), and the numbers are the same. The layers they are built
from (channels-last feature maps) are in `layers.py`; the base class, weight initialisation and
`from_pretrained`/`save_pretrained` in `base.py`.
"""

from __future__ import annotations

import enum

import torch
import torch.nn.functional as F
from torch import nn

from .base import _REGISTRY, FocalNetPreTrainedModel, no_init_weights
from .config import FocalNetConfig
from .layers import FocalNetEmbeddings, FocalNetEncoder, _tokens
from .outputs import (
    BackboneOutput,
    FocalNetImageClassifierOutput,
    FocalNetMaskedImageModelingOutput,
    FocalNetModelOutput,
)

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
