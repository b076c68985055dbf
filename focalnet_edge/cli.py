"""The `focalnet-edge` command: argument parsing and printing only; the work is in the stages."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__
from .errors import ArtifactError, FocalNetEdgeError

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


EPILOG_EXPORT = """examples:
  focalnet-edge export --model demo --output out/
  focalnet-edge export --model ./focalnet-tiny --output out/ --batch 1:8:32 --fuse-preprocess --color-order BGR
  focalnet-edge export --model ./focalnet-tiny --output out/ --head features --dynamic-size
"""

EPILOG_VERIFY = """examples:
  focalnet-edge verify out/                       # every artifact, on the demo's images
  focalnet-edge verify out/ --images val/         # a folder per class gives accuracy too
  focalnet-edge verify out/model.onnx --images frames/ --labels labels.csv --json
"""

EPILOG_PREDICT = """examples:
  focalnet-edge predict out/ cat.jpg dog.png
  focalnet-edge predict out/model.onnx photos/ --top-k 3 --jsonl
"""


def _export_args(p: argparse.ArgumentParser) -> None:
    from .export import HEADS, SIMPLIFIERS

    g = p.add_argument_group("export")
    g.add_argument("--image-size", default=None, metavar="H[xW]", help="input size (default: the checkpoint's)")
    g.add_argument("--batch", default="1:1:32", metavar="MIN:OPT:MAX", help="batch range (default 1:1:32); N means 1:N:N")
    g.add_argument("--dynamic-batch", dest="dynamic_batch", action="store_true", default=True, help="dynamic batch axis (default)")
    g.add_argument("--static-batch", dest="dynamic_batch", action="store_false", help="fixed batch OPT")
    g.add_argument("--dynamic-size", action="store_true", help="dynamic height and width (multiples of the model's stride)")
    g.add_argument("--opset", type=int, default=17, help="ONNX opset, >= 17 (default 17)")
    g.add_argument("--head", choices=HEADS, default="logits", help="graph outputs (default logits)")
    g.add_argument("--out-features", default=None, help="stages for --head features, e.g. stage1,stage2,stage3")
    g.add_argument("--fuse-preprocess", action="store_true", help="take raw uint8 frames and normalise in the graph")
    g.add_argument("--layout", choices=("NHWC", "NCHW"), default=None, help="frame layout with --fuse-preprocess (default NHWC)")
    g.add_argument("--color-order", choices=("RGB", "BGR"), default="RGB", help="frame colour order with --fuse-preprocess")
    g.add_argument("--simplifier", choices=SIMPLIFIERS, default="onnxslim", help="graph simplifier (default onnxslim)")


def _export_options(args: argparse.Namespace):
    from .export import parse_batch, parse_image_size
    from .pipeline import ExportOptions

    return ExportOptions(
        head=args.head,
        image_size=parse_image_size(args.image_size),
        batch=parse_batch(args.batch),
        dynamic_batch=args.dynamic_batch,
        dynamic_size=args.dynamic_size,
        opset=args.opset,
        fuse_preprocess=args.fuse_preprocess,
        layout=args.layout,
        color_order=args.color_order,
        simplifier=args.simplifier,
        out_features=[s.strip() for s in args.out_features.split(",")] if args.out_features else None,
    )


def cmd_export(args: argparse.Namespace) -> int:
    from .model import load_checkpoint
    from .pipeline import default_output_dir, export_stage

    options = _export_options(args)
    ckpt = load_checkpoint(args.model, variant=args.variant)
    out = Path(args.output) if args.output else default_output_dir(args.model)
    result, _ = export_stage(ckpt, out, options)
    print(f"wrote {result.path} ({result.nodes} nodes, opset {result.opset}, input {result.contract.name} "
          f"{result.contract.dtype} {result.contract.shape()}, outputs {', '.join(result.outputs)}; "
          f"max abs vs PyTorch {result.checks['torch_vs_onnx']:.1e})")
    return 0


def _print_reports(reports, as_json: bool) -> None:
    if as_json:
        print(json.dumps([r.to_dict() for r in reports], indent=2))
        return
    rows = [("artifact", "precision", "images", "max abs", "cosine", "top-1 agr", "top-5 agr", "accuracy", "ref acc", "result")]
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    for r in reports:
        rows.append((r.artifact, r.precision, str(r.images), fmt(r.max_abs_error, ".2e"), fmt(r.mean_cosine, ".6f"),
                     fmt(r.top1_agreement, ".4f"), fmt(r.top5_agreement, ".4f"), fmt(r.accuracy, ".4f"),
                     fmt(r.reference_accuracy, ".4f"), "pass" if r.passed else "FAIL: " + "; ".join(r.failures)))
    print(format_table(rows))


def format_table(rows) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _image_set(args: argparse.Namespace, labels: dict[int, str]):
    from .verify import load_image_set

    return load_image_set(args.images, labels, args.labels, args.limit)


def cmd_verify(args: argparse.Namespace) -> int:
    from .manifest import read_manifest
    from .pipeline import reference_for, verify_stage

    path = Path(args.path)
    if not path.exists():
        raise ArtifactError(f"{path}: no such artifact or output folder")
    folder, names = (path, None) if path.is_dir() else (path.parent, [path.name])
    if args.artifact:
        names = [args.artifact]
    manifest = read_manifest(folder)
    reference = reference_for(manifest, args.reference)
    images = _image_set(args, reference.labels)
    result = verify_stage(folder, images, names, reference, progress=not args.quiet)
    _print_reports(result.reports, args.json)
    return 0 if result.passed else 1


def _expand_images(items: list[str]) -> list[Path]:
    from .errors import InputError
    from .model.preprocessing import IMAGE_SUFFIXES

    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES))
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"{p}: no such image file or folder")
    if not out:
        raise InputError(f"no images in {', '.join(items)}")
    return out


def cmd_predict(args: argparse.Namespace) -> int:
    from .runtime import load

    with load(args.path, artifact=args.artifact) as runner:
        paths = _expand_images(args.images)
        for start in range(0, len(paths), args.batch_size):
            chunk = paths[start : start + args.batch_size]
            for path, top in zip(chunk, runner.predict(chunk, top_k=args.top_k)):
                if args.jsonl:
                    print(json.dumps({"image": str(path), "top": top}))
                else:
                    print(f"{path}: " + ", ".join(f"{t['label']} {t['score']:.3f}" for t in top))
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

    p = sub.add_parser("export", help="export a checkpoint to ONNX (model.onnx + manifest.json)",
                       epilog=EPILOG_EXPORT, formatter_class=argparse.RawDescriptionHelpFormatter)
    _model_args(p)
    p.add_argument("--output", "-o", default=None, metavar="DIR", help="output folder (default ./focalnet-edge-out/<model>)")
    _export_args(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("verify", help="compare artifacts with the PyTorch reference on images",
                       epilog=EPILOG_VERIFY, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", help="an output folder, or one artifact in it")
    p.add_argument("--images", default="demo", help="image folder (folder per class gives accuracy); default: the demo's")
    p.add_argument("--labels", default=None, help="CSV of relative/path,label rows")
    p.add_argument("--limit", type=int, default=None, help="use the first N images")
    p.add_argument("--artifact", default=None, help="only this artifact (file name or precision)")
    p.add_argument("--reference", default=None, metavar="SRC", help="reference checkpoint (default: the manifest's source)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("predict", help="top-k labels for images",
                       epilog=EPILOG_PREDICT, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", help="an output folder or an artifact")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--artifact", default=None, help="artifact of the folder to use (default: the best this machine runs)")
    p.add_argument("--jsonl", action="store_true", help="one JSON line per image")
    p.set_defaults(func=cmd_predict)
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
