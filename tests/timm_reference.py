"""timm's own FocalNet as the reference for timm checkpoints, run in a separate process.

    python tests/timm_reference.py OUT_DIR

For each of timm's twelve registered FocalNet variants (`focalnet_tiny_srf` ...
`focalnet_huge_fl4`) this takes the variant's own keyword arguments from timm's registered
function (every switch: post-norm, layer scale, overlapping stem, focal levels and windows,
post-norm in the modulation), shrinks only `embed_dim` and `depths` so it runs in a second,
gives every parameter random values and writes, under OUT_DIR/<variant>/: the state dict as
``model.pth`` (``torch.save``) and ``model.safetensors``, the input ``x.pt`` and timm's output
``y.pt``. One variant is also saved as timm saves for the Hub (`save_for_hf`: config.json with
``architecture``/``pretrained_cfg`` and ``model.safetensors``) under OUT_DIR/hub_folder.

timm imports torchvision, whose PyPI wheels do not load against every torch build (the CPU
torch 2.13.0 here fails with ``operator torchvision::nms does not exist``). Where torchvision
does not import, timm is imported with a stand-in for it: FocalNet's code path (timm.layers,
timm.models) never calls torchvision, only timm's data transforms and datasets name it. Run
in its own process so the stand-in never meets transformers, which probes for torchvision.
Exit code 3: timm is not installed here.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import json
import sys
import types
from pathlib import Path

VARIANTS = [
    "focalnet_tiny_srf", "focalnet_small_srf", "focalnet_base_srf", "focalnet_tiny_lrf", "focalnet_small_lrf",
    "focalnet_base_lrf", "focalnet_large_fl3", "focalnet_large_fl4", "focalnet_xlarge_fl3", "focalnet_xlarge_fl4",
    "focalnet_huge_fl3", "focalnet_huge_fl4",
]
NO_HEAD = "focalnet_huge_fl4"  # timm's pretrained huge_fl4 has num_classes=0: pooled features out
HUB_FOLDER_VARIANT = "focalnet_large_fl4"


class _Anything(type):
    """A class whose every attribute is another such class (torchvision names timm never calls here)."""

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything(name, (), {})


def _stand_in_attribute(name: str):
    if name.startswith("__"):  # no __file__ etc.: inspect and importlib treat the module as built-in
        raise AttributeError(name)
    return _Anything(name, (), {})


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__getattr__ = _stand_in_attribute  # type: ignore[method-assign]
        module.__version__ = "0.0.0+stand-in"
        return module

    def exec_module(self, module):
        pass


def import_timm():
    """timm, with torchvision stood in for where it does not load; None if timm is not installed."""
    if importlib.util.find_spec("timm") is None:
        return None
    try:
        import timm
    except (ImportError, RuntimeError, OSError):
        for name in [m for m in sys.modules if m.split(".")[0] in ("timm", "torchvision")]:
            del sys.modules[name]
        sys.meta_path.insert(0, _StandInFinder())
        import timm
    return timm


def main(out: Path) -> int:
    timm = import_timm()
    if timm is None:
        return 3
    import torch
    from safetensors.torch import save_file
    from timm.models import focalnet as tf

    torch.manual_seed(0)
    registered = tf._create_focalnet
    tf._create_focalnet = lambda variant, pretrained=False, **kwargs: kwargs  # read each variant's own kwargs
    try:
        kwargs_of = {name: getattr(tf, name)() for name in VARIANTS}
    finally:
        tf._create_focalnet = registered
    info = {"timm": timm.__version__, "torchvision": sys.modules.get("torchvision").__version__
            if "torchvision" in sys.modules else None, "variants": {}}
    for name in VARIANTS:
        kwargs = {**kwargs_of[name], "embed_dim": 8, "depths": [1, 1, 2, 1], "drop_path_rate": 0.0}
        model = tf.FocalNet(num_classes=0 if name == NO_HEAD else 7, **kwargs)
        g = torch.Generator().manual_seed(len(name))
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
        model.eval()
        x = torch.randn(2, 3, 64, 64, generator=g)
        with torch.no_grad():
            y = model(x)
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        state = model.state_dict()
        torch.save(state, folder / "model.pth")
        save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
        torch.save(x, folder / "x.pt")
        torch.save(y, folder / "y.pt")
        info["variants"][name] = {k: v for k, v in kwargs_of[name].items() if isinstance(v, (int, float, bool, list))}
        if name == HUB_FOLDER_VARIANT:
            from timm.models._hub import save_for_hf

            model.pretrained_cfg = {**tf.default_cfgs[name].default.to_dict(), "architecture": name}
            save_for_hf(model, str(out / "hub_folder"), safe_serialization=True)
            torch.save(x, out / "hub_folder" / "x.pt")
            torch.save(y, out / "hub_folder" / "y.pt")
    (out / "info.json").write_text(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
