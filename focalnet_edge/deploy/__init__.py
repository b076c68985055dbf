"""Deploy an output folder into DeepStream and Triton: the deploy targets as one table.

Every target has one shape: a module with `deploy(folder, options) -> result`, an options
dataclass (its fields are the CLI flags' destinations) and `summary(result, options) -> str`, the
line the CLI prints. `deploy --to` takes its choices from `TARGETS`; a new target is one row.
The modules are imported on first use, so the CLI's parser costs no import of theirs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class Target:
    """One row: where a target's deploy function, options class and summary live."""

    module: str  #: the module, relative to this package
    options_class: str  #: the name of its options dataclass

    def _module(self) -> ModuleType:
        return importlib.import_module(self.module, __name__)

    @property
    def deploy(self) -> Callable[..., Any]:
        """`deploy(folder, options) -> result`."""
        return self._module().deploy

    @property
    def options(self) -> type:
        """The options dataclass."""
        return getattr(self._module(), self.options_class)

    @property
    def summary(self) -> Callable[[Any, Any], str]:
        """`summary(result, options) -> str`: the line the CLI prints."""
        return self._module().summary


#: `deploy --to` NAME -> its target (the order is the CLI's)
TARGETS: dict[str, Target] = {
    "triton": Target(".triton", "TritonOptions"),
    "deepstream": Target(".deepstream", "DeepStreamOptions"),
}
