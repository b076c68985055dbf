"""`focalnet-edge info`: what a model, an output folder or an artifact holds."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ArtifactError
from .args import ModelArgs
from .printing import format_artifacts, format_fact, format_mapping, format_quantization, format_stages, print_facts

NAME = "info"
HELP = "what a model, an output folder or an artifact holds"
EPILOG = """examples:
  focalnet-edge info focalnet-edge-out/demo          # an output folder: artifacts, precisions, checks
  focalnet-edge info out/model.int8.onnx             # one artifact: its metadata
  focalnet-edge info --model demo
  focalnet-edge info --model ./focalnet-tiny            # a Hugging Face checkpoint folder
  focalnet-edge info --model focalnet_tiny_srf.pth      # an original microsoft/FocalNet file
  focalnet-edge info --model microsoft/focalnet-tiny    # a hub id (needs the network once)
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", nargs="?", default=None, help="an output folder or artifact (else --model is described)")
    ModelArgs.add(p)
    p.add_argument("--json", action="store_true", help="print JSON")


def _labels(labels: dict) -> str:
    """`10 (0: cat, 1: dog, 2: bird, ...)`: the count and the first names (1000 ImageNet names are no summary)."""
    names = sorted(labels.items(), key=lambda kv: (not kv[0].isdigit(), int(kv[0]) if kv[0].isdigit() else 0, kv[0]))
    return f"{len(names)} ({', '.join(f'{k}: {v}' for k, v in names[:3])}{', ...' if len(names) > 3 else ''})"


#: facts `info` writes in their own words without --json; any other is `format_fact`'s text (a mapping: `format_mapping`'s lines)
READABLE = {"stages": format_stages, "quantization": format_quantization, "artifacts": format_artifacts, "labels": _labels}


def _readable(facts: dict) -> dict:
    """The facts as `info` prints them without --json: every value as text (lines for stages, artifacts, quantization)."""
    for k, v in facts.items():
        if k in READABLE and isinstance(v, dict if k != "stages" else list):
            facts[k] = READABLE[k](v)
        else:
            facts[k] = format_mapping(v) if isinstance(v, dict) else format_fact(v)
    return facts


def run(args: argparse.Namespace) -> int:
    if args.path:
        from ..folder.facts import artifact_info

        path = Path(args.path)
        if not path.exists():
            raise ArtifactError(f"{path}: no such output folder or artifact")
        facts = artifact_info(path)
        print_facts(facts if args.json else _readable(facts), args.json)
        return 0
    from ..extras import require_torch

    require_torch("info --model")
    from ..model import load_model

    ckpt = ModelArgs.checkpoint(args)
    model = load_model(ckpt)
    cfg, pre = ckpt.config, ckpt.preprocessing
    facts = {
        "source": ckpt.source,
        "architecture": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "embed_dim": cfg.embed_dim,
        "depths": cfg.depths,
        "focal_levels": cfg.focal_levels,
        "focal_windows": cfg.focal_windows,
        "switches": [k for k in ("use_conv_embed", "use_layerscale", "use_post_layernorm",
                                 "use_post_layernorm_in_modulation", "normalize_modulator") if getattr(cfg, k)],
        "labels": cfg.num_labels,
        "input": f"float32 (batch, {cfg.num_channels}, {pre.height}, {pre.width}); any height and width (padded); "
                 f"multiples of {cfg.total_stride} for a --dynamic-size graph",
        "preprocessing": pre.to_dict(),
    }
    print_facts(facts if args.json else _readable(facts), args.json)
    return 0
