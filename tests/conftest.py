"""Test session set-up: offline, two threads; shared helpers live in helpers.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
sys.path.insert(0, str(Path(__file__).parent))  # `import helpers` from any test folder
try:  # tests/gpu runs on a device without torch (a stock JetPack)
    import torch
except ImportError:
    torch = None
else:
    torch.set_num_threads(2)

from focalnet_edge.model import FocalNetConfig


@pytest.fixture
def small_config() -> FocalNetConfig:
    from helpers import small_config_dict

    return FocalNetConfig(**small_config_dict())


@pytest.fixture(scope="session")
def demo_ckpt():
    """The bundled demo checkpoint, loaded once for every module that exports it (read, never changed)."""
    from focalnet_edge.model import load_checkpoint

    return load_checkpoint("demo")
