"""The `focalnet-edge` command: argument parsing and printing only; the work is in the stages."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__
from .errors import ArtifactError, ConfigError, FocalNetEdgeError

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


def _engine_args(p: argparse.ArgumentParser) -> None:
    """TensorRT options (issue 5 fills these in)."""


def _engine_options(args: argparse.Namespace):
    return None


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


EPILOG_BUILD = """examples:
  focalnet-edge build --precision fp16                       # the bundled demo model, offline
  focalnet-edge build --model ./focalnet-tiny --precision int8 --calib-data calib/ --images val/
  focalnet-edge build --model ./focalnet-tiny --precision best --calib-data clip.mp4 --fuse-preprocess --color-order BGR
"""

EPILOG_CALIBRATE = """examples:
  focalnet-edge calibrate out/model.onnx --precision int8 --calib-data calib/
  focalnet-edge calibrate other_exporter.onnx --precision fp16 --output out16/
  focalnet-edge calibrate out/model.onnx --precision int8 --calib-data calib/ --calib-cache out/calibration.json
"""


def _precision_args(p: argparse.ArgumentParser) -> None:
    from .calibration import METHODS

    g = p.add_argument_group("precision and calibration")
    g.add_argument("--calib-data", default=None, metavar="SRC", help="image folder, video file or .npz (the demo brings its own)")
    g.add_argument("--calib-size", type=int, default=256, metavar="N", help="calibration images to sample (default 256)")
    g.add_argument("--calib-seed", type=int, default=0, help="seed of the sample (default 0)")
    g.add_argument("--calib-method", choices=METHODS, default="max", help="INT8 range method (default max)")
    g.add_argument("--calib-percentile", type=float, default=99.99, help="percentile for --calib-method percentile")
    g.add_argument("--calib-cache", default=None, metavar="JSON", help="reuse (or write) calibration ranges")
    g.add_argument("--min-agreement", type=float, default=0.99, help="INT8 gate: top-1 agreement on held-back images (default 0.99)")
    g.add_argument("--max-fallback", type=int, default=8, help="INT8 gate: blocks it may move back to float (default 8)")
    g.add_argument("--keep-io-types", dest="keep_io_types", action="store_true", default=True, help="FP16 graph with fp32 inputs/outputs (default)")
    g.add_argument("--fp16-io", dest="keep_io_types", action="store_false", help="FP16 graph with fp16 inputs/outputs")
    g.add_argument("--no-cpu-int8", dest="cpu_int8", action="store_false", help="skip the ONNX Runtime CPU form of INT8")


def _precision_options(args: argparse.Namespace):
    from .pipeline import PrecisionOptions

    if args.calib_size < 1:
        raise ConfigError(f"--calib-size {args.calib_size} not accepted: expected a positive number")
    if not 0 < args.min_agreement <= 1:
        raise ConfigError(f"--min-agreement {args.min_agreement} not accepted: expected a value in (0, 1]")
    return PrecisionOptions(
        calib_data=args.calib_data, calib_size=args.calib_size, seed=args.calib_seed, method=args.calib_method,
        percentile=args.calib_percentile, calib_cache=args.calib_cache, min_agreement=args.min_agreement,
        max_fallback=args.max_fallback, keep_io_types=args.keep_io_types, cpu_int8=args.cpu_int8,
    )


def _summary(result) -> str:
    rows = [("artifact", "size", "precision", "latency here", "top-1 agreement", "accuracy", "verified")]
    reports = {r.artifact: r for r in result.reports}
    for name, entry in result.manifest["artifacts"].items():
        r = reports.get(name)
        lat = result.latency_ms.get(name)
        rows.append((
            name,
            f"{entry['bytes'] / 1e6:.2f} MB",
            entry["precision"],
            f"{lat:.1f} ms" if lat is not None else "-",
            f"{r.top1_agreement:.4f}" if r and r.top1_agreement is not None else (f"cos {r.mean_cosine:.5f}" if r else "-"),
            f"{r.accuracy:.4f}" if r and r.accuracy is not None else "-",
            ("pass" if r.passed else "FAIL: " + "; ".join(r.failures)) if r else "not run here",
        ))
    return format_table(rows)


def cmd_build(args: argparse.Namespace) -> int:
    from .pipeline import BuildOptions, build

    options = BuildOptions(
        model=args.model, output=Path(args.output) if args.output else None, variant=args.variant,
        precision=args.precision, export=_export_options(args), calibration=_precision_options(args),
        images=args.images, labels=args.labels, backend=args.backend, engine=_engine_options(args),
    )
    result = build(options, progress=not args.quiet)
    print(_summary(result))
    print(f"\nverified on {result.images_used}; manifest: {result.output_dir / 'manifest.json'}")
    for note in result.notes:
        print(note)
    return 0 if result.passed else 1


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .export import parse_image_size
    from .manifest import read_manifest
    from .pipeline import adopt_onnx, precision_stage

    src = Path(args.onnx)
    if args.precision not in ("fp16", "int8"):
        raise ConfigError(f"--precision {args.precision} not accepted: calibrate makes fp16 or int8")
    out = Path(args.output) if args.output else src.parent
    fp32 = adopt_onnx(src, out, parse_image_size(args.image_size))
    try:
        manifest = read_manifest(out)
    except FocalNetEdgeError:
        manifest = None
    result = precision_stage(out, fp32, args.precision, _precision_options(args), manifest, progress=not args.quiet)
    for r in result.int8:
        print(f"wrote {r.path} ({r.form} form): top-1 agreement {r.agreement:.4f} with fp32 on {r.holdout_images} held-back images"
              + (f"; kept in float: {', '.join(r.kept_float)}" if r.kept_float else "") + ("" if r.gate_passed else " (gate FAILED)"))
    if result.fp16 is not None:
        kept = result.fp16.kept_fp32
        print(f"wrote {result.fp16.path}" + (f"; kept in fp32: {len(kept)} nodes" if kept else ""))
    return 0 if all(r.gate_passed for r in result.int8) else 1


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

    p = sub.add_parser("build", help="export, precision, engines, verification: the whole pipeline",
                       epilog=EPILOG_BUILD, formatter_class=argparse.RawDescriptionHelpFormatter)
    _model_args(p)
    p.add_argument("--precision", choices=("fp32", "fp16", "int8", "best"), default="fp16", help="default fp16; best: fp16 and int8")
    p.add_argument("--output", "-o", default=None, metavar="DIR", help="output folder (default ./focalnet-edge-out/<model>)")
    p.add_argument("--images", default=None, help="verification images (folder per class gives accuracy)")
    p.add_argument("--labels", default=None, help="CSV of relative/path,label rows for --images")
    p.add_argument("--backend", choices=("auto", "tensorrt", "onnxruntime"), default="auto",
                   help="auto: engines where TensorRT and a GPU are present (default)")
    _export_args(p)
    _precision_args(p)
    _engine_args(p)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("calibrate", help="fp16 or int8 graph of an existing ONNX file",
                       epilog=EPILOG_CALIBRATE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("onnx", help="an fp32 ONNX file (from focalnet-edge export or another exporter)")
    p.add_argument("--precision", default="int8", help="int8 (default) or fp16")
    p.add_argument("--output", "-o", default=None, metavar="DIR", help="output folder (default: the file's folder)")
    p.add_argument("--image-size", default=None, metavar="H[xW]", help="input size of a foreign file with dynamic height/width")
    _precision_args(p)
    p.set_defaults(func=cmd_calibrate)

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
