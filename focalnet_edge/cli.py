"""The `focalnet-edge` command: argument parsing and printing only; the work is in the stages."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from . import __version__
from .errors import FocalNetEdgeError

log = logging.getLogger("focalnet_edge")

EPILOG_INFO = """examples:
  focalnet-edge info --model demo
  focalnet-edge info --model ./focalnet-tiny            # a Hugging Face checkpoint folder
  focalnet-edge info --model focalnet_tiny_srf.pth      # an original microsoft/FocalNet file
  focalnet-edge info --model microsoft/focalnet-tiny    # a hub id (needs the network once)
"""


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="demo", metavar="SRC",
                   help="checkpoint folder, original .pth, hub id, or 'demo' (the bundled model; default)")
    p.add_argument("--variant", default=None, help="official variant of an original .pth (e.g. large_fl4), when its name doesn't say")


def cmd_info(args: argparse.Namespace) -> int:
    from .model import load_checkpoint, load_model

    ckpt = load_checkpoint(args.model, variant=args.variant)
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
        "input": f"float32 (batch, {cfg.num_channels}, {pre.height}, {pre.width}); height and width multiples of {cfg.total_stride}",
        "preprocessing": pre.to_dict(),
    }
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        width = max(map(len, facts))
        for k, v in facts.items():
            print(f"{k:<{width}}  {v}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="focalnet-edge",
        description="FocalNet from PyTorch to verified ONNX Runtime and TensorRT inference.",
    )
    parser.add_argument("--version", action="version", version=f"focalnet-edge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs, and tracebacks on errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only, no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="what a model holds", epilog=EPILOG_INFO,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _model_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
        format="%(message)s",
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except FocalNetEdgeError as e:
        if args.verbose:
            raise
        print(f"focalnet-edge {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"focalnet-edge {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
