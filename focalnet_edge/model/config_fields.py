"""The fields of `FocalNetConfig` as one table, with their defaults and the checks of their values.

`FIELDS` are FocalNet's own (transformers' `FocalNetConfig`), `COMMON_FIELDS` those of every
transformers config (`PretrainedConfig`); `config.py` builds, reads and writes the config from
them. The checks run when a config is built (one `ConfigError` naming the value).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from .config import FocalNetConfig

ACTIVATIONS = ("gelu", "relu", "silu", "swish", "gelu_new", "gelu_python", "quick_gelu", "tanh", "sigmoid")

#: FocalNet's own fields and their defaults, in transformers' order (lists are copied per config)
FIELDS: dict[str, Any] = {
    "image_size": 224,
    "patch_size": 4,
    "num_channels": 3,
    "embed_dim": 96,
    "use_conv_embed": False,
    "hidden_sizes": [192, 384, 768, 768],
    "depths": [2, 2, 6, 2],
    "focal_levels": [2, 2, 2, 2],
    "focal_windows": [3, 3, 3, 3],
    "hidden_act": "gelu",
    "mlp_ratio": 4.0,
    "hidden_dropout_prob": 0.0,
    "drop_path_rate": 0.1,
    "use_layerscale": False,
    "layerscale_value": 1e-4,
    "use_post_layernorm": False,
    "use_post_layernorm_in_modulation": False,
    "normalize_modulator": False,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-5,
    "encoder_stride": 32,
}

#: the fields every transformers config has (`PretrainedConfig`), with their defaults
COMMON_FIELDS: dict[str, Any] = {
    "transformers_version": None,
    "architectures": None,
    "output_hidden_states": False,
    "return_dict": True,
    "dtype": None,
    "chunk_size_feed_forward": 0,
    "is_encoder_decoder": False,
    "problem_type": None,
    "output_attentions": False,
}

LIST_FIELDS = ("hidden_sizes", "depths", "focal_levels", "focal_windows")
PROBLEM_TYPES = (None, "regression", "single_label_classification", "multi_label_classification")
CONFIG_NAME = "config.json"


def pair(value: int | list[int] | tuple[int, ...], name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    values = tuple(value)
    if len(values) != 2 or not all(isinstance(v, int) for v in values):
        raise ConfigError(f"{name} must be an int or a pair of ints, got {value!r}")
    return values  # type: ignore[return-value]


def as_dtype(value: Any) -> Any:
    """A dtype name as torch's dtype when torch is already loaded (transformers' rule), else as given.

    The config never imports torch itself: reading a config.json must not need it.
    """
    torch = sys.modules.get("torch")
    if isinstance(value, str) and torch is not None and isinstance(getattr(torch, value, None), torch.dtype):
        return getattr(torch, value)
    return value


def dtype_name(value: Any) -> Any:
    return str(value).removeprefix("torch.") if value is not None and not isinstance(value, str) else value


def check_lengths(self: FocalNetConfig) -> None:
    """One value per stage in `focal_levels` and `focal_windows` (more are allowed: the first ones are used)."""
    n = len(self.depths)
    if n == 0:
        raise ConfigError("depths must name at least one stage, got []")
    for name in ("focal_levels", "focal_windows"):
        if len(getattr(self, name)) < n:
            raise ConfigError(
                f"{name} has {len(getattr(self, name))} entries but depths has {n}: "
                f"give one value per stage ({name}={getattr(self, name)}, depths={self.depths})"
            )

def check_values(self: FocalNetConfig) -> None:  # noqa: C901 - one check per config field, as transformers' FocalNetConfig takes them
    pair(self.image_size, "image_size")
    pair(self.patch_size, "patch_size")
    for name in ("num_channels", "embed_dim", "encoder_stride"):
        if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
            raise ConfigError(f"{name} must be a positive int, got {getattr(self, name)!r}")
    if any(not isinstance(d, int) or d < 1 for d in self.depths):
        raise ConfigError(f"depths must be positive ints, got {self.depths}")
    used = slice(0, len(self.depths))
    if any(not isinstance(v, int) or v < 0 for v in self.focal_levels[used]):
        raise ConfigError(f"focal_levels must be ints >= 0, got {self.focal_levels}")
    if any(not isinstance(v, int) or v < 1 or v % 2 == 0 for v in self.focal_windows[used]):
        raise ConfigError(f"focal_windows must be odd ints >= 1, got {self.focal_windows}")
    if self.hidden_act not in ACTIVATIONS:
        raise ConfigError(f"hidden_act {self.hidden_act!r} is not supported; expected one of {ACTIVATIONS}")
    if not self.mlp_ratio > 0:
        raise ConfigError(f"mlp_ratio must be > 0, got {self.mlp_ratio}")
    for name in ("hidden_dropout_prob", "drop_path_rate"):
        if not 0.0 <= float(getattr(self, name)) < 1.0:
            raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
    if not self.layer_norm_eps > 0:
        raise ConfigError(f"layer_norm_eps must be > 0, got {self.layer_norm_eps}")
    if self.problem_type not in PROBLEM_TYPES:
        raise ConfigError(f"problem_type {self.problem_type!r} is not supported; expected one of {PROBLEM_TYPES[1:]}")
    check_size(self)

def check_size(self: FocalNetConfig) -> None:
    """Refuse a config whose weights alone would not fit in memory (e.g. embed_dim 1000000), before allocating."""
    from ..limits import require_memory

    # per block: the MLP (2 * mlp_ratio * C^2) and the modulation's projections (about 4 * C^2)
    params = sum(d * (2 * self.mlp_ratio + 4) * (self.embed_dim * 2**i) ** 2 for i, d in enumerate(self.depths))
    require_memory(4 * params, f"config embed_dim={self.embed_dim}, depths={self.depths} (about {params:.2g} parameters)",
                   "check config.json", share=0.5)
