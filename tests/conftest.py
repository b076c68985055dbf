"""Test session set-up: offline, two threads; shared helpers live in helpers.py."""

from __future__ import annotations

import os
import signal
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


@pytest.fixture(autouse=True)
def _signal_handlers():
    """Each test leaves the process's SIGINT/SIGTERM/SIGHUP handlers as it found them: an in-process
    `main()` that was interrupted keeps ignoring them (its process is exiting), which would leave the
    test run deaf to a TERM from its runner."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture
def small_config() -> FocalNetConfig:
    from helpers import small_config_dict

    return FocalNetConfig(**small_config_dict())


@pytest.fixture(scope="session")
def demo_ckpt():
    """The bundled demo checkpoint, loaded once for every module that exports it (read, never changed)."""
    from focalnet_edge.model import load_checkpoint

    return load_checkpoint("demo")
