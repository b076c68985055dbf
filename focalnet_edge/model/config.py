"""`FocalNetConfig`: the transformers FocalNet configuration, its fields and its `PretrainedConfig` API.

Reads and writes `config.json` in the Hugging Face layout, so a folder written by
`transformers` loads here and a folder written here loads in `transformers`. Like
transformers' configs it takes keyword arguments it does not use and keeps them (they go back
into `config.json`), has the common fields every transformers config has (`output_hidden_states`,
`return_dict`, `dtype`/`torch_dtype`, `id2label`/`label2id`/`num_labels`, ...), and the backbone
fields `out_features`/`out_indices` with transformers' alignment rules.

Values are checked when the config is built (one `ConfigError` naming the value; the fields,
their defaults and their checks are the table in `config_fields.py`); attributes set afterwards
are taken as they are, as in transformers.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MissingConfigError
from .config_fields import COMMON_FIELDS, CONFIG_NAME, FIELDS, LIST_FIELDS, as_dtype, check_lengths, check_values, dtype_name, pair

log = logging.getLogger(__name__)


class FocalNetConfig:
    """Configuration of a FocalNet: `transformers.FocalNetConfig`'s fields and API, no transformers import.

    `hidden_sizes` is kept for compatibility: the stages ignore it (their widths are
    `embed_dim * 2**i`); only the backbone's `num_features`/`channels` report it, as in transformers.
    `focal_levels`/`focal_windows` may have more entries than `depths` (the first ones are used,
    as in transformers, so `depths=[1, 2, 1]` takes the 4-entry defaults); fewer is an error.
    """

    model_type = "focalnet"
    sub_configs: dict[str, type] = {}  # FocalNet has no nested configs

    def __init__(self, **kwargs: Any) -> None:
        kwargs = dict(kwargs)
        torch_dtype = kwargs.pop("torch_dtype", None)
        num_labels = kwargs.pop("num_labels", None)
        out_features = kwargs.pop("out_features", kwargs.pop("_out_features", None))
        out_indices = kwargs.pop("out_indices", kwargs.pop("_out_indices", None))
        id2label = kwargs.pop("id2label", None)
        label2id = kwargs.pop("label2id", None)
        kwargs.pop("model_type", None)
        kwargs.pop("stage_names", None)  # derived from depths
        self._name_or_path = str(kwargs.pop("name_or_path", kwargs.pop("_name_or_path", "")))

        for name, default in {**COMMON_FIELDS, **FIELDS}.items():
            value = kwargs.pop(name, copy.copy(default))
            setattr(self, name, list(value) if name in LIST_FIELDS else value)
        if self.dtype is None and torch_dtype is not None:
            self.dtype = torch_dtype
        self.dtype = as_dtype(self.dtype)
        for name, value in kwargs.items():  # not FocalNet's: kept, and written back to config.json
            if not isinstance(getattr(type(self), name, None), property):  # derived values are not read back
                setattr(self, name, value)

        check_lengths(self)
        check_values(self)
        self._set_labels(id2label, label2id, num_labels)
        self.stage_names = ["stem"] + [f"stage{i}" for i in range(1, len(self.depths) + 1)]
        self.set_output_features_output_indices(out_features, out_indices)

    def _set_labels(self, id2label, label2id, num_labels) -> None:
        """transformers' rules: id2label wins; a `num_labels` that disagrees is logged, then applied."""
        self.id2label = None if id2label is None else {int(k): str(v) for k, v in id2label.items()}
        self.label2id = None if label2id is None else dict(label2id)  # kept as given, as transformers does
        if self.id2label is None:
            self.num_labels = 2 if num_labels is None else num_labels
        elif num_labels is not None and num_labels != len(self.id2label):
            log.warning("You passed `num_labels=%s` which is incompatible to the `id2label` map of length `%s`.",
                        num_labels, len(self.id2label))
            self.num_labels = num_labels
        if self.label2id is None:
            self.label2id = {v: k for k, v in self.id2label.items()}
        if self.problem_type == "single_label_classification" and self.num_labels == 1:
            raise ConfigError('`problem_type="single_label_classification"` requires `num_labels > 1`. For binary '
                              'classification use `num_labels=2`, or use `problem_type="regression"` for a '
                              "single-output regression head.")

    # -- transformers' common properties --------------------------------------------------------
    @property
    def num_labels(self) -> int:
        """The number of labels: the length of `id2label` (setting it renames the labels LABEL_i)."""
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, value: int) -> None:
        if getattr(self, "id2label", None) is None or len(self.id2label) != value:
            self.id2label = {i: f"LABEL_{i}" for i in range(value)}
            self.label2id = {v: k for k, v in self.id2label.items()}

    @property
    def torch_dtype(self):
        """transformers' older name of `dtype`."""
        return self.dtype

    @torch_dtype.setter
    def torch_dtype(self, value) -> None:
        self.dtype = as_dtype(value)

    def get_text_config(self, decoder=None, encoder=None) -> FocalNetConfig:
        """transformers' accessor for composite configs: a FocalNet config is its own."""
        return self

    @property
    def use_return_dict(self) -> bool:
        return self.return_dict

    @property
    def name_or_path(self) -> str:
        return self._name_or_path

    @name_or_path.setter
    def name_or_path(self, value) -> None:
        self._name_or_path = str(value)

    # -- backbone fields: transformers' BackboneConfigMixin rules and messages ------------------
    @property
    def out_features(self) -> list[str]:
        return self._out_features

    @out_features.setter
    def out_features(self, value: list[str] | None) -> None:
        self.set_output_features_output_indices(out_features=value, out_indices=None)

    @property
    def out_indices(self) -> list[int]:
        return self._out_indices

    @out_indices.setter
    def out_indices(self, value) -> None:
        self.set_output_features_output_indices(out_features=None, out_indices=None if value is None else list(value))

    def set_output_features_output_indices(self, out_features: list | None, out_indices: list | None) -> None:
        """Set both, the missing one from the other (both None: the last stage), and check them."""
        feats = list(out_features) if isinstance(out_features, tuple) else out_features
        idx = list(out_indices) if isinstance(out_indices, tuple) else out_indices
        self._verify_out(feats, idx)
        names = self.stage_names
        if feats is None and idx is None:
            feats, idx = [names[-1]], [len(names) - 1]
        elif idx is None:
            idx = [names.index(f) for f in feats]
        elif feats is None:
            feats = [names[i] for i in idx]
        self._verify_out(feats, idx)
        self._out_features, self._out_indices = feats, idx

    def _verify_out(self, feats: list | None, idx: list | None) -> None:  # noqa: C901 - transformers' alignment rules, one message each
        names = self.stage_names
        if feats is not None:
            if not isinstance(feats, list):
                raise ConfigError(f"out_features must be a list got {type(feats)}")
            if any(f not in names for f in feats):
                raise ConfigError(f"out_features must be a subset of stage_names: {names} got {feats}")
            if len(feats) != len(set(feats)):
                raise ConfigError(f"out_features must not contain any duplicates, got {feats}")
            if feats != (ordered := [f for f in names if f in feats]):
                raise ConfigError(f"out_features must be in the same order as stage_names, expected {ordered} got {feats}")
        if idx is not None:
            if not isinstance(idx, list):
                raise ConfigError(f"out_indices must be a list, got {type(idx)}")
            positive = tuple(i % len(names) if i < 0 else i for i in idx)
            if any(i not in range(len(names)) for i in positive):
                raise ConfigError(f"out_indices must be valid indices for stage_names {names}, got {idx}")
            if len(positive) != len(set(positive)):
                raise ConfigError(f"out_indices must not contain any duplicates, got {idx}")
            if positive != tuple(sorted(positive)):
                raise ConfigError(f"out_indices must be in the same order as stage_names, got {idx}")
        if feats is not None and idx is not None:
            if len(feats) != len(idx):
                raise ConfigError("out_features and out_indices should have the same length if both are set")
            if feats != [names[i] for i in idx]:
                raise ConfigError("out_features and out_indices should correspond to the same stages if both are set")

    # -- derived values -----------------------------------------------------------------------
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
    def patch_hw(self) -> tuple[int, int]:
        """The stem's patch size (height, width): inputs are padded to multiples of it, as transformers does."""
        return pair(self.patch_size, "patch_size")

    @property
    def stem_stride(self) -> int:
        return 4 if self.use_conv_embed else self.patch_hw[0]

    @property
    def total_stride(self) -> int:
        """Heights and widths that are multiples of this need no padding anywhere in the model."""
        return self.stem_stride * 2 ** (self.num_stages - 1)

    def forward_bytes(self, height: int, width: int, batch: int = 1) -> int:
        """Memory a forward pass over a (batch, 3, height, width) input takes, roughly: the input and the
        first stage's live activations (the MLP's mlp_ratio * C channels and the block's others at
        stride `stem_stride`), which dominate; later stages are 4x smaller each. Measured: the demo
        (C=16) at 2048x2048, batch 2, peaks at 400 MB over its weights in PyTorch; this gives 450 MB.
        """
        pixels = batch * height * width
        return int(4 * pixels * (3 + self.embed_dim * 2 * (self.mlp_ratio + 2) / self.stem_stride**2))

    def check_input_memory(self, height: int, width: int, batch: int, what: str, fix: str) -> None:
        """`ConfigError` when a forward pass at this size would not fit in the memory available (`forward_bytes`)."""
        from ..limits import require_memory

        require_memory(self.forward_bytes(height, width, batch), what, fix, share=0.5)

    @property
    def image_hw(self) -> tuple[int, int]:
        return pair(self.image_size, "image_size")

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every field, with transformers' keys (dtype as its name; JSON makes id2label's keys strings)."""
        out: dict[str, Any] = {}
        for name in COMMON_FIELDS:
            out[name] = getattr(self, name)
        out["id2label"] = dict(self.id2label)
        out["label2id"] = dict(self.label2id)
        for name in FIELDS:
            out[name] = copy.deepcopy(getattr(self, name))
        out["stage_names"] = list(self.stage_names)
        out["_name_or_path"] = self._name_or_path
        for name, value in vars(self).items():
            if not name.startswith("_") and name not in out and name not in ("id2label", "label2id"):
                out[name] = copy.deepcopy(value)
        out["dtype"] = dtype_name(self.dtype)
        out["model_type"] = self.model_type
        out["out_features"], out["out_indices"] = list(self.out_features), list(self.out_indices)
        return out

    def to_diff_dict(self) -> dict[str, Any]:
        """What transformers writes by default: FocalNet's fields, and the common ones that are not at their defaults."""
        two = {i: f"LABEL_{i}" for i in range(2)}
        defaults = {**COMMON_FIELDS, "id2label": two, "label2id": {v: k for k, v in two.items()}, "_name_or_path": ""}
        return {k: v for k, v in self.to_dict().items() if k not in defaults or defaults[k] != v}

    @classmethod
    def from_dict(cls, data: dict[str, Any], **kwargs: Any) -> FocalNetConfig:
        """A config from a config.json's dict; `kwargs` are then set as attributes (transformers' rule)."""
        data = dict(data)
        return_unused = kwargs.pop("return_unused_kwargs", False)
        model_type = data.get("model_type", "focalnet")
        if model_type != "focalnet":
            raise ConfigError(f"config model_type is {model_type!r}, expected 'focalnet'")
        config = cls(**data)
        unused = {}
        for key, value in kwargs.items():
            if hasattr(config, key):
                setattr(config, key, value)
            elif key in ("out_features", "out_indices", "num_labels", "torch_dtype"):
                setattr(config, key, value)
            else:
                unused[key] = value
        return (config, unused) if return_unused else config

    @classmethod
    def from_json_file(cls, path: str | os.PathLike, **kwargs: Any) -> FocalNetConfig:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (FileNotFoundError, NotADirectoryError):
            raise MissingConfigError(f"{path}: no such config file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not a JSON config file ({e})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
        try:
            return cls.from_dict(data, **kwargs)
        except TypeError as e:
            raise ConfigError(f"{path}: {e}") from None
        except ConfigError as e:
            raise type(e)(f"{path}: {e}") from None

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, **kwargs: Any) -> FocalNetConfig:
        """From a folder holding config.json, a JSON file, or a hub id; `kwargs` override fields.

        `subfolder`, `revision`, `cache_dir`, `local_files_only` and `return_unused_kwargs` are
        taken as transformers takes them.
        """
        hub = {k: kwargs.pop(k, None) for k in ("revision", "cache_dir", "local_files_only", "token")}
        subfolder = kwargs.pop("subfolder", "") or ""
        path = Path(source) / subfolder if subfolder else Path(source)
        if path.is_dir():
            path = path / CONFIG_NAME
        elif not path.is_file() and "/" in str(source) and not str(source).startswith((".", "/", "~")):
            path = _hub_config(str(source), subfolder, hub)
        return cls.from_json_file(path, **kwargs)

    def to_json_string(self, use_diff: bool = False) -> str:
        data = self.to_diff_dict() if use_diff else self.to_dict()
        data.pop("_name_or_path", None)  # where it was read from is not part of the file, as in transformers
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file_path: str | os.PathLike, use_diff: bool = True) -> None:
        """Write the config as JSON (atomically), by default only the values that differ from the defaults."""
        from ..folder.io import atomic_write_text

        atomic_write_text(json_file_path, self.to_json_string(use_diff=use_diff))

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs: Any) -> None:
        """Write `config.json` into `save_directory` (created if needed); pushing to the Hub is left out."""
        if push_to_hub:
            raise ConfigError("push_to_hub is not supported by focalnet-edge; upload the folder with huggingface_hub")
        if os.path.isfile(save_directory):
            raise ConfigError(f"Provided path ({save_directory}) should be a directory, not a file")
        os.makedirs(save_directory, exist_ok=True)
        self.save(Path(save_directory) / CONFIG_NAME)

    def save(self, path: str | os.PathLike) -> None:
        """Write every field to the JSON file `path` (atomically)."""
        self.to_json_file(path, use_diff=False)

    def update(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            setattr(self, key, value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FocalNetConfig) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"

    def __iter__(self):
        return iter(self.to_dict())


def _hub_config(repo_id: str, subfolder: str, hub: dict[str, Any]) -> Path:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover - a dependency
        raise ConfigError("huggingface_hub is needed to load hub ids: pip install huggingface_hub") from None
    try:
        return Path(hf_hub_download(repo_id, CONFIG_NAME, subfolder=subfolder or None, **{k: v for k, v in hub.items() if v is not None}))
    except Exception as e:  # huggingface_hub raises many types: offline, 404, gated, ...
        raise ConfigError(f"could not get {repo_id!r}'s {CONFIG_NAME} from the Hugging Face Hub ({e.__class__.__name__})") from None
