"""Error types of focalnet-edge.

Every error a user can cause is one of these, carrying one clear sentence that names the file
or value at fault and what was expected. The CLI turns them into one line and exit code 2.
"""

from __future__ import annotations


class FocalNetEdgeError(Exception):
    """Base class: a problem with the user's input, not a bug in focalnet-edge."""


class ConfigError(FocalNetEdgeError, ValueError):
    """A configuration value that is missing, inconsistent or out of range."""


class MissingConfigError(ConfigError, FileNotFoundError):
    """A config file or folder that does not exist (an OSError too, as transformers raises there)."""


class CheckpointError(FocalNetEdgeError):
    """A checkpoint that cannot be read, or whose tensors do not fit the model."""


class MissingCheckpointError(CheckpointError, FileNotFoundError):
    """No checkpoint at the path given: a `FileNotFoundError` too, as transformers' `from_pretrained` raises an `OSError`."""


class LoadError(CheckpointError, RuntimeError):
    """A checkpoint that cannot be loaded as asked (mismatched shapes...; transformers raises RuntimeError there)."""


class InputError(FocalNetEdgeError, ValueError):
    """An input (image, tensor, option) that does not match what was expected."""


class ArtifactError(FocalNetEdgeError):
    """An artifact (ONNX file, engine, manifest) that is missing, changed or incompatible."""
