"""The type tests of a manifest's JSON fields: each field the tool reads is checked on the way in, so a malformed
manifest is one `ArtifactError` naming the field (`bad`), never a `KeyError` or `TypeError` later."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ArtifactError

_SHA256 = re.compile(r"[0-9a-f]{64}")
_REQUIRED = object()  #: a field without a default


def bad(path: Path, field: str, value: Any, expected: str) -> ArtifactError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return ArtifactError(f"{path}: {field} is {shown}, expected {expected}; the manifest is damaged, rebuild the folder")


def is_int(v: Any, lo: int = 1) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


def is_number(v: Any, positive: bool = False) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > 0 or not positive)


def is_str(v: Any) -> bool:
    return isinstance(v, str)


def is_sha256(v: Any) -> bool:
    return isinstance(v, str) and _SHA256.fullmatch(v) is not None


def is_object(v: Any) -> bool:
    return isinstance(v, dict)


def is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(o, str) for o in v)


#: the type test of each field of an input contract and of its preprocessing (what `InputContract`
#: and `ImageSpec` take without checking types themselves)
_CONTRACT_FIELDS = {
    "name": lambda v: isinstance(v, str) and v != "", "dtype": is_str, "layout": is_str, "color_order": is_str,
    "height": is_int, "width": is_int, "size_multiple": is_int,
    "dynamic_batch": lambda v: isinstance(v, bool), "dynamic_size": lambda v: isinstance(v, bool),
    "fused_preprocess": lambda v: isinstance(v, bool),
    "batch": lambda v: isinstance(v, list) and len(v) == 3 and all(is_int(b) for b in v),
    "preprocessing": is_object, "frame_size": is_str,
}
_SPEC_FIELDS = {
    "height": is_int, "width": is_int, "resize_shortest_edge": lambda v: v is None or is_int(v),
    "center_crop": lambda v: isinstance(v, bool), "rescale_factor": lambda v: is_number(v, positive=True),
    "resample": lambda v: is_int(v, 0) and v <= 5, "extra": is_object, "mode": is_str,
    "mean": lambda v: isinstance(v, list) and len(v) in (1, 3) and all(is_number(x) for x in v),
    "std": lambda v: isinstance(v, list) and len(v) in (1, 3) and all(is_number(x, positive=True) for x in v),
}


def contract_problem(data: Any) -> str | None:
    """What is wrong with the types of an input contract's JSON (None: nothing), before building it."""
    if not isinstance(data, dict):
        return f"{type(data).__name__}, not an object"
    for key, value in data.items():
        test = _CONTRACT_FIELDS.get(key)  # unknown fields: the constructor refuses them
        if test is not None and not test(value):
            return f"{key} is {value!r:.40}"
    for key, value in data.get("preprocessing", {}).items():
        test = _SPEC_FIELDS.get(key)
        if test is not None and not test(value):
            return f"preprocessing {key} is {value!r:.40}"
    return None


class Fields:
    """Reads the fields of one JSON object of a manifest, each checked by its test (`ArtifactError` naming it otherwise)."""

    def __init__(self, data: dict[str, Any], path: Path, where: str = ""):
        self.data, self.path, self.where = data, path, where

    def get(self, key: str, test: Callable[[Any], bool], expected: str, default: Any = _REQUIRED) -> Any:
        value = self.data.get(key, default)
        if value is _REQUIRED or not test(value):
            raise bad(self.path, f"{self.where}{key}", self.data.get(key), expected)
        return value

    def optional(self, key: str, test: Callable[[Any], bool], expected: str) -> Any:
        """The value, or None where the field is absent."""
        return self.get(key, test, expected) if key in self.data else None
