"""Helpers shared by the tests: small FocalNet configurations, transformers twins with the same weights,
and running a script where `import torch` fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from focalnet_edge.model import FocalNetConfig

#: every switch of the config that changes the forward pass
SWITCHES = {
    "default": {},
    "conv_embed": {"use_conv_embed": True},
    "layerscale": {"use_layerscale": True, "layerscale_value": 0.5},
    "post_layernorm": {"use_post_layernorm": True},
    "post_layernorm_in_modulation": {"use_post_layernorm_in_modulation": True},
    "normalize_modulator": {"normalize_modulator": True},
    "mixed_levels": {"focal_levels": [1, 3, 2, 0], "focal_windows": [3, 5, 1, 3], "hidden_act": "relu"},
}


def small_config_dict(**overrides) -> dict:
    """A 4-stage FocalNet small enough for fast tests (total stride 32, like the real ones)."""
    base = dict(
        embed_dim=8,
        depths=[1, 1, 2, 1],
        focal_levels=[2, 2, 2, 2],
        focal_windows=[3, 3, 3, 3],
        hidden_sizes=[16, 32, 64, 64],
        num_labels=7,
        image_size=64,
        encoder_stride=32,
        drop_path_rate=0.1,
    )
    base.update(overrides)
    return base


def perturb_(model: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> torch.nn.Module:
    """Give every parameter random non-trivial values (zeros and ones hide bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model.eval()


def hf_twin(hf_cls, **overrides):
    """A transformers FocalNet with random weights and our model of the same class, same weights."""
    transformers = pytest.importorskip("transformers")
    from focalnet_edge.model import modeling
    from focalnet_edge.model.base import load_state_dict_strict

    cfg = small_config_dict(**overrides)
    hf = perturb_(getattr(transformers, hf_cls)(transformers.FocalNetConfig(**cfg)))
    ours = getattr(modeling, hf_cls)(FocalNetConfig(**cfg))
    load_state_dict_strict(ours, hf.state_dict(), "hf")
    return hf, ours.eval()


ROOT = Path(__file__).resolve().parents[1]


def without_torch(script: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run `script` in a Python where `import torch` fails, as on a device without PyTorch."""
    blocker = (
        "import sys, importlib.abc\n"
        "class _NoTorch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n"
        "sys.meta_path.insert(0, _NoTorch())\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", blocker + script], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def with_hostile_mlp(model, block: str = "encoder/stages.3/layers.0", channels: int = 3, value: float = 300.0, seed: int = 0):
    """A copy of ONNX graph `model` with one block hostile to int8: `channels` hidden channels of its
    MLP sit near `value` (fc1's bias), their fc2 rows scaled by 1/`value` so the fp32 outputs keep
    their scale, and fc2's per-tensor input scale (`value`/127) leaves the other channels a level or two."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {i.name: i for i in out.graph.initializer}
    nodes = {n.name: n for n in out.graph.node}
    add, fc2 = nodes[f"/model/{block}/mlp/fc1/Add"], nodes[f"/model/{block}/mlp/fc2/MatMul"]
    bias, weight = next(i for i in add.input if i in inits), fc2.input[1]
    b, w = numpy_helper.to_array(inits[bias]).copy(), numpy_helper.to_array(inits[weight]).copy()
    picked = np.random.default_rng(seed).choice(len(b), channels, replace=False)
    b[picked] = value
    w[picked] /= value
    inits[bias].CopyFrom(numpy_helper.from_array(b, bias))
    inits[weight].CopyFrom(numpy_helper.from_array(w, weight))
    return out


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """`focalnet-edge ARGV` in this process: exit code (argparse's usage errors too), stdout, stderr."""
    from focalnet_edge.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    """The one line of `err`, asserting that there is exactly one and no traceback."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]
