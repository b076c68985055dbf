"""`FocalNetConfig`: every field of the transformers FocalNet configuration.

Reads and writes `config.json` in the Hugging Face layout, so a folder written by
`transformers` loads here and a folder written here loads in `transformers`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

_ACTIVATIONS = ("gelu", "relu", "silu", "swish", "gelu_new", "gelu_python", "quick_gelu", "tanh", "sigmoid")


def _pair(value: int | list[int] | tuple[int, ...], name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    values = tuple(value)
    if len(values) != 2 or not all(isinstance(v, int) for v in values):
        raise ConfigError(f"{name} must be an int or a pair of ints, got {value!r}")
    return values  # type: ignore[return-value]


@dataclass
class FocalNetConfig:
    """Configuration of a FocalNet, field for field the one of `transformers.FocalNetConfig`.

    `hidden_sizes` is kept for compatibility: the stages ignore it (their widths are
    `embed_dim * 2**i`); only `FocalNetBackbone.channels` reports it, as transformers does.
    """

    image_size: int | list[int] = 224
    patch_size: int | list[int] = 4
    num_channels: int = 3
    embed_dim: int = 96
    use_conv_embed: bool = False
    hidden_sizes: list[int] = field(default_factory=lambda: [192, 384, 768, 768])
    depths: list[int] = field(default_factory=lambda: [2, 2, 6, 2])
    focal_levels: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    focal_windows: list[int] = field(default_factory=lambda: [3, 3, 3, 3])
    hidden_act: str = "gelu"
    mlp_ratio: float = 4.0
    hidden_dropout_prob: float = 0.0
    drop_path_rate: float = 0.1
    use_layerscale: bool = False
    layerscale_value: float = 1e-4
    use_post_layernorm: bool = False
    use_post_layernorm_in_modulation: bool = False
    normalize_modulator: bool = False
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-5
    encoder_stride: int = 32
    out_features: list[str] | None = None
    out_indices: list[int] | None = None
    id2label: dict[int, str] | None = None
    label2id: dict[str, int] | None = None
    num_labels: int | None = None
    problem_type: str | None = None
    #: keys of config.json that this class does not interpret, kept for the round trip
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.depths = list(self.depths)
        self.focal_levels = list(self.focal_levels)
        self.focal_windows = list(self.focal_windows)
        self.hidden_sizes = list(self.hidden_sizes)
        self._check_lengths()
        self._check_values()
        self._set_labels()
        self._set_out_features()

    # -- validation ---------------------------------------------------------------------------
    def _check_lengths(self) -> None:
        n = len(self.depths)
        if n == 0:
            raise ConfigError("depths must name at least one stage, got []")
        for name in ("focal_levels", "focal_windows"):
            if len(getattr(self, name)) != n:
                raise ConfigError(
                    f"{name} has {len(getattr(self, name))} entries but depths has {n}: "
                    f"give one value per stage ({name}={getattr(self, name)}, depths={self.depths})"
                )

    def _check_values(self) -> None:  # noqa: C901 - one check per config field, as transformers' FocalNetConfig takes them
        _pair(self.image_size, "image_size")
        _pair(self.patch_size, "patch_size")
        for name in ("num_channels", "embed_dim", "encoder_stride"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        if any(not isinstance(d, int) or d < 1 for d in self.depths):
            raise ConfigError(f"depths must be positive ints, got {self.depths}")
        if any(not isinstance(v, int) or v < 0 for v in self.focal_levels):
            raise ConfigError(f"focal_levels must be ints >= 0, got {self.focal_levels}")
        if any(not isinstance(v, int) or v < 1 or v % 2 == 0 for v in self.focal_windows):
            raise ConfigError(f"focal_windows must be odd ints >= 1, got {self.focal_windows}")
        if self.hidden_act not in _ACTIVATIONS:
            raise ConfigError(f"hidden_act {self.hidden_act!r} is not supported; expected one of {_ACTIVATIONS}")
        if not self.mlp_ratio > 0:
            raise ConfigError(f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        for name in ("hidden_dropout_prob", "drop_path_rate"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not self.layer_norm_eps > 0:
            raise ConfigError(f"layer_norm_eps must be > 0, got {self.layer_norm_eps}")
        self._check_size()

    def _check_size(self) -> None:
        """Refuse a config whose weights alone would not fit in memory (e.g. embed_dim 1000000), before allocating."""
        from ..limits import require_memory

        # per block: the MLP (2 * mlp_ratio * C^2) and the modulation's projections (about 4 * C^2)
        params = sum(d * (2 * self.mlp_ratio + 4) * (self.embed_dim * 2**i) ** 2 for i, d in enumerate(self.depths))
        require_memory(4 * params, f"config embed_dim={self.embed_dim}, depths={self.depths} (about {params:.2g} parameters)",
                       "check config.json", share=0.5)

    def _set_labels(self) -> None:
        if self.id2label is not None:
            self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
        if self.num_labels is None:
            self.num_labels = len(self.id2label) if self.id2label else 2
        if self.id2label is None:
            self.id2label = {i: f"LABEL_{i}" for i in range(self.num_labels)}
        elif len(self.id2label) != self.num_labels:
            raise ConfigError(
                f"num_labels is {self.num_labels} but id2label has {len(self.id2label)} entries"
            )
        if self.label2id is None:
            self.label2id = {v: k for k, v in self.id2label.items()}
        else:
            self.label2id = {str(k): int(v) for k, v in self.label2id.items()}

    def _set_out_features(self) -> None:
        names = self.stage_names
        feats, idx = self.out_features, self.out_indices
        if feats is None and idx is None:
            feats, idx = [names[-1]], [len(names) - 1]
        elif feats is None:
            idx = [i if i >= 0 else len(names) + i for i in idx]
            if any(not 0 <= i < len(names) for i in idx):
                raise ConfigError(f"out_indices {self.out_indices} out of range for stages {names}")
            feats = [names[i] for i in idx]
        elif idx is None:
            unknown = [f for f in feats if f not in names]
            if unknown:
                raise ConfigError(f"out_features {unknown} are not stages; expected names among {names}")
            idx = [names.index(f) for f in feats]
        else:
            if [names[i] for i in idx] != list(feats):
                raise ConfigError(f"out_features {feats} and out_indices {idx} name different stages of {names}")
        self.out_features, self.out_indices = list(feats), list(idx)

    # -- derived values -----------------------------------------------------------------------
    @property
    def stage_names(self) -> list[str]:
        return ["stem"] + [f"stage{i}" for i in range(1, len(self.depths) + 1)]

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    @property
    def stage_dims(self) -> list[int]:
        """Channel width of each stage's blocks."""
        return [self.embed_dim * 2**i for i in range(self.num_stages)]

    @property
    def num_features(self) -> int:
        return self.stage_dims[-1]

    @property
    def stem_stride(self) -> int:
        return 4 if self.use_conv_embed else _pair(self.patch_size, "patch_size")[0]

    @property
    def total_stride(self) -> int:
        """Height and width of an input must be multiples of this."""
        return self.stem_stride * 2 ** (self.num_stages - 1)

    @property
    def image_hw(self) -> tuple[int, int]:
        return _pair(self.image_size, "image_size")

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name in ("extra", "num_labels"):
                continue
            out[f.name] = getattr(self, f.name)
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        out["model_type"] = "focalnet"
        out["stage_names"] = self.stage_names
        if self.problem_type is None:
            out.pop("problem_type")
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FocalNetConfig:
        data = dict(data)
        model_type = data.get("model_type", "focalnet")
        if model_type != "focalnet":
            raise ConfigError(f"config model_type is {model_type!r}, expected 'focalnet'")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        # transformers >= 5 may write the private names of the backbone fields
        for private in ("_out_features", "_out_indices"):
            if private in data and private[1:] not in data:
                data[private[1:]] = data.pop(private)
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names and k != "stage_names"}
        return cls(**known, extra=extra)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> FocalNetConfig:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not a JSON config file ({e})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
        try:
            return cls.from_dict(data)
        except TypeError as e:
            raise ConfigError(f"{path}: {e}") from None
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save(self, path: str | os.PathLike) -> None:
        from ..io import atomic_write_text

        atomic_write_text(path, self.to_json_string())
