"""The `focalnet-edge` command: argument parsing and printing only; the work is in the stages."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from . import __version__, signals, versions
from .folder.artifacts import REPORT
from .deploy import TARGETS
from .errors import ArtifactError, ConfigError, FocalNetEdgeError

log = logging.getLogger("focalnet_edge")

EPILOG_INFO = """examples:
  focalnet-edge info focalnet-edge-out/demo          # an output folder: artifacts, precisions, checks
  focalnet-edge info out/model.int8.onnx             # one artifact: its metadata
  focalnet-edge info --model demo
  focalnet-edge info --model ./focalnet-tiny            # a Hugging Face checkpoint folder
  focalnet-edge info --model focalnet_tiny_srf.pth      # an original microsoft/FocalNet file
  focalnet-edge info --model microsoft/focalnet-tiny    # a hub id (needs the network once)
"""


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="demo", metavar="SRC",
                   help="checkpoint folder, .pth/.safetensors file (transformers, timm or microsoft/FocalNet names), "
                        "hub id, or 'demo' (the bundled model, unless ./demo exists; default)")
    p.add_argument("--variant", default=None, help="official variant of an original .pth (e.g. large_fl4), when its name doesn't say")


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= `low`. argparse names the option in its one-line error
    ("argument --batch-size/--batch: 0 not accepted: expected an integer >= 1"), so every count
    option of every command says which one is wrong, in one place."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} not accepted: expected an integer >= {low}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} not accepted: expected an integer >= {low}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


COUNT, NONNEGATIVE = at_least(1), at_least(0)


def parsed_by(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from one of our parsers (`contract.parse_batch`...): its one-sentence error becomes
    argparse's, which names the option it was given to."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except FocalNetEdgeError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = parse.__name__
    return convert


def _engine_args(p: argparse.ArgumentParser) -> None:
    from .engine.config import HARDWARE_COMPATIBILITY

    g = p.add_argument_group("TensorRT engines (where TensorRT and a GPU are present)")
    g.add_argument("--workspace", type=COUNT, default=None, metavar="MiB", help="workspace memory pool limit")
    g.add_argument("--opt-level", type=int, default=None, metavar="0-5", help="builder optimization level (TensorRT's default 3)")
    g.add_argument("--no-timing-cache", dest="timing_cache", action="store_false", help="don't load or save timing.cache")
    g.add_argument("--dla-core", type=NONNEGATIVE, default=None, metavar="N", help="build for DLA core N (static shapes, GPU fallback)")
    g.add_argument("--no-gpu-fallback", dest="gpu_fallback", action="store_false", help="with --dla-core: fail instead of falling back")
    g.add_argument("--version-compatible", action="store_true", help="engines that later TensorRT versions can load (lean runtime)")
    g.add_argument("--hardware-compatibility", choices=tuple(HARDWARE_COMPATIBILITY), default="none",
                   help="engines that run on other GPUs (ampere_plus, same_compute_capability)")
    g.add_argument("--weakly-typed", action="store_true", help="TensorRT 10.x only: FP16/INT8 builder flags instead of typed ONNX")
    g.add_argument("--profile-sizes", default=None, metavar="HxW:HxW:HxW", help="min:opt:max sizes with --dynamic-size, or frame sizes with --frame-size any (default: max 2160x3840 down to 240x320, the largest whose float frames at the max batch take <= 1/16 of the GPU's memory)")


def _engine_options(args: argparse.Namespace):
    from .folder.contract import parse_image_size
    from .engine.config import EngineOptions

    sizes = None
    if args.profile_sizes:
        parts = args.profile_sizes.split(":")
        if len(parts) != 3:
            raise ConfigError(f"--profile-sizes {args.profile_sizes!r} not understood: expected MINHxW:OPTHxW:MAXHxW")
        sizes = tuple(parse_image_size(x) for x in parts)
    if args.opt_level is not None and not 0 <= args.opt_level <= 5:
        raise ConfigError(f"--opt-level {args.opt_level} not accepted: expected 0 to 5")
    return EngineOptions(
        workspace_mib=args.workspace, optimization_level=args.opt_level, timing_cache=args.timing_cache,
        dla_core=args.dla_core, gpu_fallback=args.gpu_fallback, version_compatible=args.version_compatible,
        hardware_compatibility=args.hardware_compatibility, weakly_typed=args.weakly_typed, size_range=sizes,
    )


def _artifact_info(path: Path) -> dict:
    """What a folder or an artifact holds; an artifact listed in a manifest is checked against its sha256."""
    from .folder.manifest import MANIFEST, check_artifact, read_manifest
    from .folder.onnx_io import read_metadata

    entry = None
    if path.is_file() and (path.parent / MANIFEST).is_file():
        entry = read_manifest(path.parent)["artifacts"].get(path.name)
        if entry is not None:
            check_artifact(path.parent, entry)

    if path.is_dir():
        m = read_manifest(path)
        return {
            "folder": str(path),
            "model": m["model"]["source"],
            "head": m.get("head"),
            "input": m["input"],
            "outputs": m.get("outputs"),
            "labels": len(m.get("labels", {})),
            "artifacts": {
                n: {"precision": e["precision"], "format": e["format"], "bytes": e["bytes"], "requires": e.get("requires"),
                    "verified": (e.get("verification") or {}).get("passed")}
                for n, e in m["artifacts"].items()
            },
            "versions": m.get("versions"),
            **({"stages": m["stages"]} if m.get("stages") else {}),
            **({"quantization": q} if (q := {n: quantization_facts(e["int8"]) for n, e in m["artifacts"].items() if isinstance(e.get("int8"), dict)}) else {}),
        }
    if path.suffix == ".onnx":
        from .folder.onnx_io import load_onnx

        model = load_onnx(path, external_data=False)
        facts = {"file": str(path), "nodes": len(model.graph.node), "opset": model.opset_import[0].version,
                 "inputs": [i.name for i in model.graph.input], "outputs": [o.name for o in model.graph.output]}
        facts.update(read_metadata(model))
        if entry and isinstance(entry.get("int8"), dict):
            facts["quantization"] = {path.name: quantization_facts(entry["int8"])}
        return facts
    if entry:
        return {"file": str(path), **entry}
    raise ArtifactError(f"{path}: not an output folder, an ONNX file or an artifact listed in a manifest")


def format_stages(stages: list[dict]) -> str:
    """The build's stages as one line: `export 17.3 s (peak RSS 1590 MB), ...`."""
    def one(s: dict) -> str:
        rss = s.get("peak_rss_mb")
        return f"{s['name']} {s.get('seconds', 0):.1f} s" + (f" (peak RSS {rss:.0f} MB)" if isinstance(rss, (int, float)) else "")

    total = sum(s.get("seconds", 0) for s in stages)
    return ", ".join(one(s) for s in stages) + f"; total {total:.1f} s"


def quantization_facts(int8: dict) -> dict:
    """What the manifest's int8/fp8 entry says of a quantized graph: the gate's figures and the placement."""
    def part(key: str) -> dict:
        v = int8.get(key)
        return v if isinstance(v, dict) else {}

    def count(v) -> int | None:
        return len(v) if isinstance(v, list) else None

    gate, placement, smoothing = part("gate"), part("placement"), part("smoothing")
    return {
        "qtype": int8.get("qtype", "int8"), "form": int8.get("form"), "gate_passed": int8.get("gate_passed"),
        "sqnr_db": gate.get("sqnr_db"), "cosine": gate.get("cosine"), "top1": gate.get("top1"), "images": int8.get("holdout_images"),
        "held_out": int8.get("held_out", True),
        "int8_flop_share": placement.get("int8_flop_share"), "quantized_by_type": placement.get("quantized_by_type"),
        "qdq_pairs": placement.get("qdq_pairs"), "not_fusable": count(placement.get("unfused")),
        "float_nodes": count(placement.get("float_nodes")), "kept_float_by_gate": count(int8.get("kept_float")),
        "smoothed_layernorms": smoothing.get("layernorms", 0), "smoothing_alpha": smoothing.get("alpha"),
        "shortfall": gate.get("shortfall") or [],
        "gate_enabled": int8.get("gate_enabled", True), "kept_by_user": count(int8.get("user_float")),
        "float_blocks": {str(k): len(v) for k, v in part("float_blocks").items() if isinstance(v, list)},
        "kept_float_blocks": {str(k): len(v) for k, v in part("kept_float_blocks").items() if isinstance(v, list)},
        "top1_decided": gate.get("top1_decided"), "decided": gate.get("decided"),
    }


def format_quantization(q: dict) -> str:
    """One line per quantized graph: `model.int8.onnx: int8 (tensorrt form), gate passed: SQNR 39.9 dB, ...`.
    Figures a manifest lacks (older or edited ones) are shown as `?`."""
    def num(v, fmt: str) -> str:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return "?"
        if fmt == "d":  # a count: an edited manifest may hold 3.0, or 2.5
            return str(int(v)) if float(v).is_integer() else "?"
        return format(v, fmt)

    def one(name: str, f: dict) -> str:
        types = f.get("quantized_by_type")
        by_type = ", ".join(f"{k} {v}" for k, v in sorted(types.items())) if isinstance(types, dict) and types else "?"
        share = f.get("int8_flop_share")
        passed = {True: "passed", False: "FAILED"}.get(f.get("gate_passed"), "?") if f.get("gate_enabled", True) else "off (--no-gate)"
        line = (f"{name}: {f.get('qtype') or '?'} ({f.get('form') or '?'} form), gate {passed}: SQNR {num(f.get('sqnr_db'), '.1f')} dB, "
                f"cosine {num(f.get('cosine'), '.5f')}" + (f", top-1 {num(f.get('top1'), '.2f')}" if f.get("top1") is not None else "")
                + f" on {num(f.get('images'), 'd')} " + ("held-back images; " if f.get("held_out", True) is not False
                                                           else "calibration images (none held back); ")
                + f"{num(100 * share if isinstance(share, (int, float)) else None, '.1f')}% of GEMM/Conv FLOPs quantized ({by_type}; "
                f"{num(f.get('float_nodes'), 'd')} in float, {num(f.get('kept_float_by_gate'), 'd')} of them by the gate); "
                f"{num(f.get('qdq_pairs'), 'd')} activation Q/DQ pairs, {num(f.get('not_fusable'), 'd')} not fusable by TensorRT; "
                f"{num(f.get('smoothed_layernorms'), 'd')} LayerNorms smoothed")
        if f.get("smoothed_layernorms"):
            line += f" (alpha {num(f.get('smoothing_alpha'), 'g')})"
        if f.get("kept_by_user"):
            line += f"; {num(f.get('kept_by_user'), 'd')} kept in float by --keep-float"
        for key, what in (("kept_float_blocks", "returned to float by the gate in"), ("float_blocks", "float nodes by block")):
            blocks = f.get(key)
            if isinstance(blocks, dict) and blocks:
                line += f"; {what}: " + ", ".join(f"{b} ({n})" for b, n in blocks.items())
        short = f.get("shortfall")
        return line + (f"; short of the target: {'; '.join(map(str, short))}" if isinstance(short, list) and short else "")

    return "\n".join(one(n, f) for n, f in q.items()) if q else "none"


def _print_facts(facts: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(facts, indent=2, default=str))
        return
    width = max(map(len, facts))
    for k, v in facts.items():
        print(f"{k:<{width}}  " + str(v).replace("\n", "\n" + " " * (width + 2)))


def cmd_info(args: argparse.Namespace) -> int:

    if args.path:
        path = Path(args.path)
        if not path.exists():
            raise ArtifactError(f"{path}: no such output folder or artifact")
        facts = _artifact_info(path)
        if not args.json:
            if "stages" in facts:
                facts["stages"] = format_stages(facts["stages"])
            if "quantization" in facts:
                facts["quantization"] = format_quantization(facts["quantization"])
            if isinstance(facts.get("labels"), dict) and len(facts["labels"]) > 5:  # 1000 ImageNet names are no summary
                names = sorted(facts["labels"].items(), key=lambda kv: (not kv[0].isdigit(), int(kv[0]) if kv[0].isdigit() else 0, kv[0]))
                facts["labels"] = f"{len(names)} ({', '.join(f'{k}: {v}' for k, v in names[:3])}, ...)"
        _print_facts(facts, args.json)
        return 0
    from .extras import require_torch

    require_torch("info --model")
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
        "input": f"float32 (batch, {cfg.num_channels}, {pre.height}, {pre.width}); any height and width (padded); "
                 f"multiples of {cfg.total_stride} for a --dynamic-size graph",
        "preprocessing": pre.to_dict(),
    }
    _print_facts(facts, args.json)
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
  focalnet-edge predict out/ clip.mp4 --every 5 --batch 8       # decoding on its own thread; timing on stderr
  focalnet-edge predict out/ rtsp://camera.local/stream --limit 100
  focalnet-edge predict out/ --source 0 --limit 50                # the first camera
"""


def _export_args(p: argparse.ArgumentParser) -> None:
    from .folder.contract import COLOR_ORDERS, HEADS, parse_batch, parse_image_size
    from .model.preprocessing import RESIZE_MODES
    from .export.simplify import SIMPLIFIERS

    g = p.add_argument_group("export")
    g.add_argument("--image-size", type=parsed_by(parse_image_size), default=None, metavar="H[xW]", help="input size (default: the checkpoint's)")
    g.add_argument("--batch", type=parsed_by(parse_batch), default="1:1:32", metavar="MIN:OPT:MAX", help="batch range (default 1:1:32); N means 1:N:N")
    g.add_argument("--static-batch", dest="dynamic_batch", action="store_false", help="fixed batch OPT (default: a dynamic batch axis)")
    g.add_argument("--dynamic-size", action="store_true", help="dynamic height and width (multiples of the model's stride)")
    g.add_argument("--opset", type=int, default=None, help="ONNX opset, >= 17 (default 17; 18 with --frame-size any)")
    g.add_argument("--head", choices=HEADS, default="logits", help="graph outputs (default logits)")
    g.add_argument("--out-features", default=None, help="stages for --head features, e.g. stage1,stage2,stage3")
    g.add_argument("--fuse-preprocess", action="store_true", help="take raw uint8 frames and normalise in the graph")
    g.add_argument("--frames-dtype", choices=("uint8", "float32"), default="uint8",
                   help="frame type with --fuse-preprocess: uint8 (default), or float32 0..255 (DeepStream's nvinfer)")
    g.add_argument("--layout", choices=("NHWC", "NCHW"), default=None, help="frame layout with --fuse-preprocess (default NHWC)")
    g.add_argument("--color-order", choices=COLOR_ORDERS, default="RGB",
                   help="frame colour order with --fuse-preprocess; 4-channel orders (NVMM surfaces, appsink) drop the 4th")
    g.add_argument("--resize-mode", choices=RESIZE_MODES, default="crop",
                   help="how frames become the input size: crop (the checkpoint's resize + centre crop, default), "
                        "stretch (nvinfer's default), letterbox (nvinfer's maintain-aspect-ratio + symmetric-padding)")
    g.add_argument("--frame-size", choices=("input", "any"), default="input",
                   help="with --fuse-preprocess: 'any' takes frames of any size and resizes them in the graph (opset >= 18)")
    g.add_argument("--simplifier", choices=SIMPLIFIERS, default="onnxslim", help="graph simplifier (default onnxslim)")


def _export_options(args: argparse.Namespace):
    from .pipeline import ExportOptions

    return ExportOptions(
        head=args.head,
        image_size=args.image_size,
        batch=args.batch,
        dynamic_batch=args.dynamic_batch,
        dynamic_size=args.dynamic_size,
        opset=args.opset,
        fuse_preprocess=args.fuse_preprocess,
        frames_dtype=args.frames_dtype,
        layout=args.layout,
        color_order=args.color_order,
        resize_mode=args.resize_mode,
        frame_size=args.frame_size,
        simplifier=args.simplifier,
        out_features=[s.strip() for s in args.out_features.split(",")] if args.out_features else None,
    )


def cmd_export(args: argparse.Namespace) -> int:
    from .model import load_checkpoint
    from .pipeline import default_output_dir, export_stage

    options = _export_options(args)
    ckpt = load_checkpoint(args.model, variant=args.variant)
    out = Path(args.output) if args.output else default_output_dir(args.model)
    result, _ = export_stage(ckpt, out, options, force=args.force, release_checkpoint=True)
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


def _references(args: argparse.Namespace, folder: Path, manifest: dict):
    """The reference outputs `verify` compares with: live PyTorch, or the folder's stored ones.

    --reference auto (default) takes PyTorch with the manifest's checkpoint where both are here,
    else the stored references; `stored` and `torch` force one; anything else is a checkpoint.
    """
    from .pipeline import live_references
    from .verify.references import load_references

    choice = args.reference or "auto"
    if choice == "auto":
        from .extras import torch_available

        source = manifest["model"]["source"]
        local = source == "demo" or Path(source).exists()
        choice = "torch" if local and torch_available() else "stored"
        if choice == "stored":
            log.info("verify: no PyTorch or no checkpoint here, so against the stored reference outputs")
    if choice == "stored":
        if args.images:
            raise ConfigError("--images needs the PyTorch reference: stored references cover the images they were made from")
        refs = load_references(folder, manifest)
        return refs.head(args.limit) if args.limit else refs
    labels = {int(k): v for k, v in manifest.get("labels", {}).items()}
    from .demo import uses_bundled_demo
    from .verify.compare import verification_images

    images, _, note = verification_images(args.images, labels, args.labels, uses_bundled_demo(manifest["model"]["source"]),
                                          limit=args.limit)
    if note:
        log.info(note)
    return live_references(folder, images, None if choice == "torch" else choice, progress=not args.quiet)


def cmd_verify(args: argparse.Namespace) -> int:
    from .folder.manifest import read_manifest
    from .pipeline import verify_stage

    path = Path(args.path)
    if not path.exists():
        raise ArtifactError(f"{path}: no such artifact or output folder")
    folder, names = (path, None) if path.is_dir() else (path.parent, [path.name])
    if args.artifact:
        names = [args.artifact]
    from .folder.outputs import lock
    from .pipeline import save_report

    refs = _references(args, folder, read_manifest(folder))
    result = verify_stage(folder, refs, names, progress=not args.quiet, record=False)  # reads only: the build's figures stay
    _print_reports(result.reports, args.json)
    if not args.json:
        print(f"\nreference: {refs.source}, {len(refs)} images")
    report = folder / REPORT
    if not os.access(folder, os.W_OK):  # a deployed image, a read-only mount: verified all the same
        print(f"{report} not written: {folder} is read-only", file=sys.stderr)
    else:
        try:
            with lock(folder, special=False):  # not into a folder a build is replacing now
                save_report(folder, result.reports)
        except ArtifactError as e:
            print(f"{report} not written: {e}", file=sys.stderr)
    return 0 if result.passed else 1


def _expand_images(items: list[str]) -> list[Path]:
    from .errors import InputError
    from .inputs.images import IMAGE_SUFFIXES
    from .folder.io import not_a_file

    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES))
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(not_a_file(p, "image file or folder"))
    if not out:
        raise InputError(f"no images in {', '.join(items)}")
    return out


def _predict_skipping(runner, paths: list[Path], named: set[Path], top_k: int) -> list[tuple[Path, list]]:
    """Top-k per image; an unreadable image found in a folder is skipped with its reason, one named is an error."""
    from .errors import InputError

    try:
        return list(zip(paths, runner.predict(paths, top_k=top_k)))
    except InputError:
        done = []
        for path in paths:
            try:
                done.append((path, runner.predict([path], top_k=top_k)[0]))
            except InputError as e:
                if path in named:
                    raise
                log.warning("skipped %s", e)
        return done


def cmd_predict(args: argparse.Namespace) -> int:
    from .errors import InputError
    from .runtime import load
    from .inputs.stream import StreamStats, predict_stream
    from .inputs.video import is_stream_source

    streams = [p for p in args.images if is_stream_source(p)] + list(args.source or [])
    if not args.images and not streams:
        raise InputError("nothing to classify: give image files or folders, videos, stream URLs or --source CAMERA_INDEX")

    def emit(name: str, top: list) -> None:
        if args.jsonl:
            print(json.dumps({"image": name, "top": top}))
        else:
            print(f"{name}: " + ", ".join(f"{t['label']} {t['score']:.3f}" for t in top))

    with load(args.path, artifact=args.artifact) as runner:
        images = [p for p in args.images if p not in streams]
        paths = _expand_images(images) if images else []
        named = {Path(p) for p in args.images}
        step = args.batch_size or 16
        classified = 0
        for start in range(0, len(paths), step):
            chunk = paths[start : start + step]
            for path, top in _predict_skipping(runner, chunk, named, args.top_k):
                emit(str(path), top)
                classified += 1
        if paths and not classified:  # every image was skipped: nothing was classified
            raise InputError(f"{', '.join(images)}: no readable image among its {len(paths)} files (each skipped, with its reason, above)")
        for source in streams:
            stats = StreamStats()
            for i, top in predict_stream(runner, source, args.top_k, args.every, args.batch_size, args.resize,
                                         args.limit, stats):
                emit(f"{source}#{i}", top)
            if not args.quiet:
                print(stats.summary(), file=sys.stderr)
    return 0


EPILOG_BUILD = """examples:
  focalnet-edge build --precision fp16                       # the bundled demo model, offline
  focalnet-edge build --model ./focalnet-tiny --precision int8 --calib-data calib/ --images val/
  focalnet-edge build --model ./focalnet-tiny --precision best --calib-data clip.mp4 --fuse-preprocess --color-order BGR
"""

EPILOG_DIAGNOSE = """examples:
  focalnet-edge diagnose out/                              # model.int8.onnx, on the build's verification images
  focalnet-edge diagnose out/ --artifact fp16 --images val/ --json
"""


def cmd_diagnose(args: argparse.Namespace) -> int:
    from .verify.diagnose import diagnose, format_diagnosis
    from .extras import require_torch

    require_torch("diagnose (the PyTorch fp32 reference)")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit {args.limit} not accepted: expected a positive number of images")
    if args.images is not None and not Path(args.images).is_dir():
        raise ConfigError(f"--images {args.images}: no such image folder")
    if not Path(args.folder).is_dir():
        raise ArtifactError(f"{args.folder}: no such output folder")
    d = diagnose(args.folder, args.artifact, args.images, args.reference, limit=args.limit, progress=not args.quiet)
    print(json.dumps(d.to_dict(), indent=2) if args.json else format_diagnosis(d))
    return 0


EPILOG_CALIBRATE = """examples:
  focalnet-edge calibrate out/model.onnx --precision int8 --calib-data calib/
  focalnet-edge calibrate other_exporter.onnx --precision fp16 --output out16/
  focalnet-edge calibrate out/model.onnx --precision int8 --calib-data calib/ --calib-cache out/calibration.json
"""


def _precision_args(p: argparse.ArgumentParser) -> None:
    from .folder.artifacts import INT8_MIN_AGREEMENT
    from .calibration import METHODS
    from .calibration.smoothing import ALPHA as SMOOTH_ALPHA

    g = p.add_argument_group("precision and calibration")
    g.add_argument("--calib-data", default=None, metavar="SRC", help="image folder, video file or .npz (the demo brings its own)")
    g.add_argument("--calib-size", type=COUNT, default=256, metavar="N", help="calibration images to sample (default 256)")
    g.add_argument("--calib-seed", type=int, default=0, help="seed of the sample (default 0)")
    g.add_argument("--calib-method", choices=METHODS, default="max", help="INT8 range method (default max)")
    g.add_argument("--calib-percentile", type=float, default=99.99, help="percentile for --calib-method percentile")
    g.add_argument("--calib-cache", default=None, metavar="JSON", help="reuse (or write) calibration ranges")
    g.add_argument("--min-agreement", type=float, default=INT8_MIN_AGREEMENT,
                   help=f"INT8 gate: top-1 agreement on held-back images (default {INT8_MIN_AGREEMENT})")
    g.add_argument("--max-fallback", type=NONNEGATIVE, default=8, help="INT8 gate: GEMM/Conv nodes it may return to float (default 8)")
    g.add_argument("--no-gate", dest="gate", action="store_false",
                   help="INT8/FP8: write the quantized graphs as quantized, no accuracy gate and no fallback (figures still reported)")
    g.add_argument("--keep-float", action="append", default=[], metavar="PATTERN",
                   help="keep these nodes in float (INT8/FP8) or fp32 (FP16): a node name, a module path such as "
                        "encoder.stages.2.layers.1.mlp.fc2 (and everything below it), or a pattern with *; repeatable")
    g.add_argument("--fp16-io", dest="keep_io_types", action="store_false",
                   help="FP16 graph with fp16 inputs/outputs (default: fp32 inputs/outputs)")
    g.add_argument("--no-cpu-int8", dest="cpu_int8", action="store_false", help="skip the ONNX Runtime CPU form of INT8")
    g.add_argument("--int8-smoothing", type=float, default=SMOOTH_ALPHA, metavar="ALPHA",
                   help=f"INT8/FP8: move LayerNorm outputs' outlier channels into the next GEMM's weights (SmoothQuant's alpha, "
                        f"default {SMOOTH_ALPHA}; 0: off)")
    g.add_argument("--int8-float", choices=("fp16", "fp32"), default="fp16",
                   help="type of the layers left in float in model.int8.onnx (default fp16: what TensorRT runs fast)")
    p.set_defaults(precision_defaults={dest: p.get_default(dest) for dest in QUANTIZATION_OPTIONS})


#: options only the quantization stage reads (dest -> flag): refused, not ignored, where nothing is quantized
QUANTIZATION_OPTIONS = {"calib_method": "--calib-method", "calib_percentile": "--calib-percentile", "calib_cache": "--calib-cache",
                        "min_agreement": "--min-agreement", "max_fallback": "--max-fallback", "gate": "--no-gate",
                        "cpu_int8": "--no-cpu-int8", "int8_smoothing": "--int8-smoothing", "int8_float": "--int8-float"}


def _precision_options(args: argparse.Namespace):
    from .folder.artifacts import quantizes
    from .pipeline import PrecisionOptions

    if not 0 < args.min_agreement <= 1:
        raise ConfigError(f"--min-agreement {args.min_agreement} not accepted: expected a value in (0, 1]")
    if not 0 <= args.int8_smoothing <= 1:
        raise ConfigError(f"--int8-smoothing {args.int8_smoothing} not accepted: expected a value in [0, 1] (0: off)")
    if not quantizes(args.precision):
        for dest, flag in QUANTIZATION_OPTIONS.items():
            if getattr(args, dest) != args.precision_defaults[dest]:
                raise ConfigError(f"{flag} has no effect with --precision {args.precision}: it sets the INT8/FP8 quantization")
        if args.keep_float and args.precision == "fp32":
            raise ConfigError("--keep-float has no effect with --precision fp32: nothing is converted to keep in float")
    return PrecisionOptions(
        calib_data=args.calib_data, calib_size=args.calib_size, seed=args.calib_seed, method=args.calib_method,
        percentile=args.calib_percentile, calib_cache=args.calib_cache, min_agreement=args.min_agreement,
        max_fallback=args.max_fallback, keep_io_types=args.keep_io_types, cpu_int8=args.cpu_int8, int8_float=args.int8_float,
        smooth_alpha=args.int8_smoothing, gate=args.gate, keep_float=list(args.keep_float),
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
    result = build(options, progress=not args.quiet, force=args.force)
    print(_summary(result))
    written = result.kept if result.failed else result.output_dir
    print(f"\nverified on {result.images_used}; manifest: {written / 'manifest.json' if written else 'not kept'}")
    for note in result.notes:
        print(note)
    if result.failed:  # the last line: where the failed build is, and that the folder did not change
        print(f"not committed ({result.failed}): {result.output_dir} was left as it was; "
              + (f"the failed build is in {result.kept}" if result.kept else "the failed build could not be kept"))
    return 0 if result.passed else 1


EPILOG_ENGINE = """examples:
  focalnet-edge engine out/                                   # build the engines of a copied folder here (no torch)
  focalnet-edge engine out/ --adopt model.fp16.engine --from model.fp16.onnx   # register a trtexec/nvinfer plan
"""


def cmd_engine(args: argparse.Namespace) -> int:
    from .engine.command import engine_command
    from .folder.manifest import read_manifest
    from .pipeline import verify_stage
    from .verify.references import load_references

    folder = Path(args.folder)
    built = engine_command(folder, _engine_options(args), adopt=args.adopt, source=args.source)
    for note in built.notes:
        print(note)
    names = [e["path"] for e in built.engines]
    if not names:
        return 0
    refs = load_references(folder, read_manifest(folder))  # verified on this device, without PyTorch
    result = verify_stage(folder, refs, names, progress=not args.quiet)
    _print_reports(result.reports, False)
    print(f"\nreference: {refs.source}, {len(refs)} images")
    return 0 if result.passed else 1


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .folder.manifest import read_manifest
    from .folder.outputs import lock, remove_partials
    from .pipeline import adopt_onnx, precision_stage

    from .calibration.gate import blocks_of

    src = Path(args.onnx)
    out = Path(args.output) if args.output else src.parent
    options = _precision_options(args)
    with lock(out, special=args.output is not None):  # one run at a time per folder; --output / or ~ refused
        fp32 = adopt_onnx(src, out, args.image_size, force=args.force)
        remove_partials(out)  # what a killed calibrate left here: its work folder and files (not inside other runs' folders)
        try:
            manifest = read_manifest(out)
        except FocalNetEdgeError:
            manifest = None
        result = precision_stage(out, fp32, args.precision, options, manifest, progress=not args.quiet)
    for r in result.int8:
        judged = "held-back images" if r.held_out else "calibration images (none held back: pass at least 2 to --calib-data)"
        print(f"wrote {r.path} ({r.form} form): top-1 agreement {r.agreement:.4f} with fp32 on {r.holdout_images} {judged}"
              + (f"; returned to float: {', '.join(f'{b} ({len(n)})' for b, n in blocks_of(r.kept_float).items())}" if r.kept_float else "")
              + {True: "", False: " (gate FAILED)", None: " (no gate)"}[r.gate_passed])
    if result.fp16 is not None:
        kept = result.fp16.kept_fp32
        print(f"wrote {result.fp16.path}" + (f"; kept in fp32: {len(kept)} nodes" if kept else ""))
    return 0 if all(r.gate_passed is not False for r in result.int8) else 1


EPILOG_CHECK = """examples:
  focalnet-edge check out/model.int8.onnx
  focalnet-edge check other_exporter.onnx --json
"""

EPILOG_BENCH = """examples:
  focalnet-edge bench out/                         # every artifact this machine runs, batch 1 and 8
  focalnet-edge bench out/ --artifact model.int8.cpu.onnx --batch 1,4,16 --iterations 100 --json bench.json
"""


def cmd_check(args: argparse.Namespace) -> int:
    from .engine.check import check_onnx

    findings = check_onnx(args.onnx)
    if args.json:
        print(json.dumps([f.__dict__ for f in findings], indent=2))
    else:
        for f in findings:
            print(f)
        errors = sum(f.severity == "error" for f in findings)
        print(f"{args.onnx}: " + ("TensorRT's ONNX parser should take it" if not errors else f"{errors} errors")
              + (f", {len(findings) - errors} warnings" if len(findings) - errors else ""))
    return 1 if any(f.severity == "error" for f in findings) else 0


def _parse_int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise ConfigError(f"{what} {text!r} not understood: expected positive numbers separated by commas, e.g. 1,8")
    return values


def cmd_bench(args: argparse.Namespace) -> int:
    from .runtime.bench import bench_folder

    batches = _parse_int_list(args.batch, "--batch")
    results = bench_folder(Path(args.path), args.artifact, batches, args.warmup, args.iterations, progress=not args.quiet)
    rows = [("artifact", "precision", "batch", "p50 ms", "p90 ms", "p99 ms", "images/s")]
    for r in results:
        rows.append((r["artifact"], r["precision"], str(r["batch"]), f"{r['p50_ms']:.2f}", f"{r['p90_ms']:.2f}",
                     f"{r['p99_ms']:.2f}", f"{r['throughput']:.1f}"))
    print(format_table(rows))
    if args.json:
        from .folder.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
    return 0


EPILOG_DEPLOY = """examples:
  focalnet-edge deploy out/ --to triton --repo models/                 # the best artifact for a GPU server
  focalnet-edge deploy out/ --to triton --repo models/ --artifact model.int8.cpu.onnx --kind cpu --instances 2
  focalnet-edge deploy out/ --to deepstream
"""

EPILOG_GST = """examples:
  export GST_PLUGIN_PATH=$(focalnet-edge gst --plugin-path)
  PATH=/usr/bin:/bin gst-launch-1.0 filesrc location=clip.mp4 ! decodebin ! videoconvert ! focalnetclassify model=out/ ! fakesink
"""

EPILOG_SERVE = """examples:
  focalnet-edge serve out/                                   # HTTP on 8000, gRPC on 8001
  focalnet-edge serve out/ --port 9000 --grpc-port 9001 --max-batch 16 --instances 2
"""


def cmd_deploy(args: argparse.Namespace) -> int:
    target = TARGETS[args.to]
    own = {f.name for f in fields(target.options)}
    for name, other in TARGETS.items():  # another target's option would have no effect here: refused, not ignored
        for f in fields(other.options):
            given = getattr(args, f.name, None)
            if f.name not in own and given is not None and given != f.default:
                flag = args.deploy_flags.get(f.name, f.name)
                raise ConfigError(f"{flag} {given} is an option of --to {name}, not of --to {args.to}")
    options = target.options(**{f.name: getattr(args, f.name) for f in fields(target.options) if hasattr(args, f.name)})
    print(target.summary(target.deploy(Path(args.folder), options), options))
    return 0


def cmd_gst(args: argparse.Namespace) -> int:
    from .deploy.gstreamer import ELEMENT, plugin_path

    folder = plugin_path(args.dir)
    if args.plugin_path:
        print(folder)
    else:
        print(f"export GST_PLUGIN_PATH={folder}  # then: gst-inspect-1.0 {ELEMENT} (with this venv's bin off PATH)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .deploy.serve import ServeOptions, serve

    options = ServeOptions(http_port=args.port, grpc_port=args.grpc_port, metrics_port=args.metrics_port, host=args.host,
                           max_batch=args.max_batch, instances=args.instances, artifact=args.artifact,
                           max_queue_delay_us=args.max_queue_delay_us, name=args.name)
    serve(Path(args.folder), options, ready=lambda url: print(f"serving {url}", flush=True))
    return 0


def _deploy_parsers(command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command("deploy", help="write a Triton model repository or DeepStream nvinfer files from an output folder",
                epilog=EPILOG_DEPLOY)
    p.add_argument("folder", help="an output folder (with manifest.json)")
    p.add_argument("--to", choices=tuple(TARGETS), required=True)
    p.add_argument("--force", action="store_true", help="replace an existing model folder")
    flags: dict[str, str] = {}  #: dest -> flag, for the refusal of another target's option

    def add(group, *names, **kwargs) -> None:
        flags[group.add_argument(*names, **kwargs).dest] = names[0]

    g = p.add_argument_group("--to triton")
    add(g, "--repo", default=None, metavar="DIR", help="the model repository to write <model>/ into")
    add(g, "--name", default=None, help="model name (default: from the model source)")
    add(g, "--artifact", default=None, help="file name or precision (default: the one `load` prefers on a --kind machine, engines first on a GPU)")
    add(g, "--instances", type=COUNT, default=1, metavar="N", help="instance_group count (default 1)")
    add(g, "--kind", choices=("gpu", "cpu"), default=None, help="instance kind (default gpu; engines need gpu)")
    add(g, "--max-queue-delay-us", type=NONNEGATIVE, default=100, metavar="N", help="dynamic batcher queue delay (default 100)")
    add(g, "--version", type=COUNT, default=1, metavar="N", help="model version folder (default 1)")
    g = p.add_argument_group("--to deepstream")
    add(g, "--precision", choices=("fp32", "fp16", "int8"), default=None, help="nvinfer network-mode (default fp16 if built, else fp32)")
    add(g, "--batch-size", type=COUNT, default=None, metavar="N", help="primary batch-size (default: the folder's opt batch)")
    add(g, "--secondary-batch-size", type=COUNT, default=None, metavar="N", help="secondary batch-size (default min(16, max batch))")
    add(g, "--classifier-threshold", type=float, default=None, metavar="P", help="classifier-threshold (default 0.0)")
    add(g, "--gie-id", dest="gie_unique_id", type=COUNT, default=None, metavar="N", help="gie-unique-id of the primary classifier (default 1)")
    add(g, "--secondary-gie-id", dest="secondary_gie_unique_id", type=COUNT, default=None, metavar="N", help="gie-unique-id of the secondary classifier (default 2)")
    add(g, "--operate-on-gie-id", type=COUNT, default=None, metavar="N", help="the detector's gie-unique-id (default 1)")
    add(g, "--operate-on-class-ids", default=None, metavar="0,2", help="the detector's classes to classify (default all)")
    add(g, "--normalize", choices=("auto", "graph", "nvinfer"), default=None,
                   help="per-channel std: in the DeepStream ONNX (graph, auto) or one approximate nvinfer scale")
    add(g, "--gpu-id", type=NONNEGATIVE, default=None, metavar="N", help="gpu-id (default 0)")
    add(g, "--object-min-width", type=int, default=None, metavar="PX", help="secondary: smallest object width classified (default 32)")
    add(g, "--object-min-height", type=int, default=None, metavar="PX", help="secondary: smallest object height classified (default 32)")
    add(g, "--classifier-async-mode", action="store_true", default=None,
                   help="secondary classifier: attach results asynchronously (tracked objects only; needs a tracker)")
    add(g, "--secondary-reinfer-interval", type=int, default=None, metavar="N",
                   help="secondary: frames between two inferences on one tracked object (default 0)")
    p.set_defaults(func=cmd_deploy, deploy_flags=flags)

    p = command("gst", help="the GStreamer element focalnetclassify: write and print its plugin folder (GST_PLUGIN_PATH)",
                epilog=EPILOG_GST)
    p.add_argument("--plugin-path", action="store_true", help="print only the folder, for GST_PLUGIN_PATH=$(focalnet-edge gst --plugin-path)")
    p.add_argument("--dir", default=None, metavar="DIR", help="write the plugin folder here (default: a folder per installation in ~/.cache)")
    p.set_defaults(func=cmd_gst)

    p = command("serve", help="serve an output folder over Triton's HTTP/gRPC protocol (PyTriton)", epilog=EPILOG_SERVE)
    p.add_argument("folder", help="an output folder or an artifact")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0, as tritonserver)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001)")
    p.add_argument("--metrics-port", type=int, default=8002, help="metrics port (default 8002)")
    p.add_argument("--max-batch", type=COUNT, default=None, metavar="N", help="largest server-side batch (default: the artifact's)")
    p.add_argument("--instances", type=COUNT, default=1, metavar="N", help="model instances (default 1)")
    p.add_argument("--artifact", default=None, help="artifact of the folder to serve (default: the best this machine runs)")
    p.add_argument("--max-queue-delay-us", type=NONNEGATIVE, default=1000, metavar="N", help="dynamic batcher queue delay (default 1000)")
    p.add_argument("--name", default=None, help="model name (default: from the model source)")
    p.set_defaults(func=cmd_serve)


def build_parser() -> argparse.ArgumentParser:
    from .folder.artifacts import BUILD_PRECISIONS
    from .folder.contract import parse_image_size

    # -v/-q are accepted before and after the command; SUPPRESS keeps the command's parser from
    # resetting what was given before it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logs, and tracebacks on errors")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="warnings and errors only, no progress bars")
    parser = _Parser(
        prog="focalnet-edge",
        description="FocalNet from PyTorch to verified ONNX Runtime and TensorRT inference.",
    )
    parser.add_argument("--version", action="version", version=f"focalnet-edge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs, and tracebacks on errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only, no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def command(name: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)


    p = command("info", help="what a model, an output folder or an artifact holds", epilog=EPILOG_INFO)
    p.add_argument("path", nargs="?", default=None, help="an output folder or artifact (else --model is described)")
    _model_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)

    p = command("export", help="export a checkpoint to ONNX (model.onnx + manifest.json)",
                       epilog=EPILOG_EXPORT)
    _model_args(p)
    p.add_argument("--output", "-o", default=None, metavar="DIR", help="output folder (default ./focalnet-edge-out/<model>)")
    p.add_argument("--force", action="store_true",
                   help="write into a folder that is not empty and not ours, or holds a build of another model")
    _export_args(p)
    p.set_defaults(func=cmd_export)

    p = command("build", help="export, precision, engines, verification: the whole pipeline",
                       epilog=EPILOG_BUILD)
    _model_args(p)
    p.add_argument("--precision", choices=tuple(BUILD_PRECISIONS), default="fp16", help="default fp16; best: fp16 and int8")
    p.add_argument("--output", "-o", default=None, metavar="DIR", help="output folder (default ./focalnet-edge-out/<model>)")
    p.add_argument("--force", action="store_true",
                   help="write into a folder that is not empty and not ours, or holds a build of another model")
    p.add_argument("--images", default=None, help="verification images (folder per class gives accuracy)")
    p.add_argument("--labels", default=None, help="CSV of relative/path,label rows for --images")
    p.add_argument("--backend", choices=("auto", "tensorrt", "onnxruntime"), default="auto",
                   help="auto: engines where TensorRT and a GPU are present (default)")
    _export_args(p)
    _precision_args(p)
    _engine_args(p)
    p.set_defaults(func=cmd_build)

    p = command("calibrate", help="fp16 or int8 graph of an existing ONNX file",
                       epilog=EPILOG_CALIBRATE)
    p.add_argument("onnx", help="an fp32 ONNX file (from focalnet-edge export or another exporter)")
    p.add_argument("--precision", choices=("int8", "fp16", "fp8"), default="int8", help="int8 (default), fp16 or fp8 (sm >= 8.9, Thor)")
    p.add_argument("--output", "-o", default=None, metavar="DIR", help="output folder (default: the file's folder)")
    p.add_argument("--force", action="store_true",
                   help="write into a folder that is not empty and not ours, or holds a build of another model")
    p.add_argument("--image-size", type=parsed_by(parse_image_size), default=None, metavar="H[xW]", help="input size of a foreign file with dynamic height/width")
    _precision_args(p)
    p.set_defaults(func=cmd_calibrate)

    p = command("diagnose", help="per FocalNet block: the error an artifact adds against PyTorch fp32, worst first",
                epilog=EPILOG_DIAGNOSE)
    p.add_argument("folder", help="an output folder")
    p.add_argument("--artifact", default=None, metavar="NAME",
                   help="file name or precision (default: int8, else fp8, int8-cpu, fp16); engines: diagnose their ONNX source")
    p.add_argument("--images", default=None, metavar="DIR", help="images (default: the build's stored verification images)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="at most N images")
    p.add_argument("--reference", default=None, metavar="SRC", help="the PyTorch checkpoint (default: the manifest's source)")
    p.add_argument("--json", action="store_true", help='print {"blocks": [{"block": ..., "sqnr_db": ...}, ...]}, worst first')
    p.set_defaults(func=cmd_diagnose)

    p = command("verify", help="compare artifacts with the PyTorch reference on images",
                       epilog=EPILOG_VERIFY)
    p.add_argument("path", help="an output folder, or one artifact in it")
    p.add_argument("--images", default=None, help="image folder (folder per class gives accuracy); default: the demo model's test images; "
                        "other models: 64 images, no accuracy; or the stored ones")
    p.add_argument("--labels", default=None, help="CSV of relative/path,label rows")
    p.add_argument("--limit", type=COUNT, default=None, help="use the first N images")
    p.add_argument("--artifact", default=None, help="only this artifact (file name or precision)")
    p.add_argument("--reference", default=None, metavar="SRC",
                   help="auto (default): PyTorch with the manifest's checkpoint where both are here, else the stored "
                        "reference outputs; stored; torch; or a checkpoint")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_verify)

    p = command("predict", help="top-k labels for images, videos, streams and cameras",
                       epilog=EPILOG_PREDICT)
    p.add_argument("path", help="an output folder or an artifact")
    p.add_argument("images", nargs="*", help="image files or folders, video files, stream URLs (rtsp://, http(s)://) "
                        "or camera indices (0, 1, ...)")
    p.add_argument("--source", action="append", metavar="SRC", help="a video file, stream URL or camera index (repeatable)")
    p.add_argument("--top-k", type=COUNT, default=5)
    p.add_argument("--batch-size", "--batch", type=COUNT, default=None,
                   help="images or frames per inference (default: 16 images; for a video file the faster of 8 and the artifact's "
                        "optimal batch, for streams and cameras the optimal batch: 1 unless exported with --batch MIN:OPT:MAX)")
    p.add_argument("--artifact", default=None, help="artifact of the folder to use (default: the best this machine runs)")
    p.add_argument("--jsonl", action="store_true", help="one JSON line per image")
    p.add_argument("--every", type=COUNT, default=1, metavar="N", help="for videos and streams: every Nth frame (default 1)")
    p.add_argument("--limit", type=COUNT, default=None, metavar="N", help="for videos and streams: stop after N frames (cameras never end)")
    p.add_argument("--resize", choices=("opencv", "pil"), default="opencv",
                   help="for videos and streams: resize frames with OpenCV (default, fast) or Pillow (the reference's exact pixels)")
    p.set_defaults(func=cmd_predict)

    p = command("check", help="will TensorRT's ONNX parser take this file? (runs without TensorRT)",
                       epilog=EPILOG_CHECK)
    p.add_argument("onnx", help="an ONNX file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)

    p = command("bench", help="latency p50/p90/p99 and throughput per artifact and batch size",
                       epilog=EPILOG_BENCH)
    p.add_argument("path", help="an output folder or an artifact")
    p.add_argument("--artifact", default=None, help="only this artifact (default: all this machine runs)")
    p.add_argument("--batch", default="1,8", help="batch sizes, e.g. 1,8 (default)")
    p.add_argument("--warmup", type=NONNEGATIVE, default=3)
    p.add_argument("--iterations", type=COUNT, default=20)
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")
    p.set_defaults(func=cmd_bench)

    p = command("engine", help="build TensorRT engines in an output folder on this device, or adopt a trtexec plan; then verify",
                epilog=EPILOG_ENGINE)
    p.add_argument("folder", help="an output folder (built elsewhere and copied here)")
    p.add_argument("--adopt", default=None, metavar="PLAN", help="register this plan (trtexec, nvinfer) instead of building")
    p.add_argument("--from", dest="source", default=None, metavar="ONNX", help="with --adopt: the ONNX file it was built from")
    _engine_args(p)
    p.set_defaults(func=cmd_engine)

    _deploy_parsers(command)
    return parser


#: exit status when the reader of our output went away (`predict ... | head -1`): what a shell reports for a
#: tool that SIGPIPE ended (128 + 13), as `yes | head -1` gives for yes; quiet, like such tools
EXIT_PIPE_CLOSED = 141


#: errno values that are the user's situation (a read-only or full volume, a folder not theirs), not a bug
USER_OS_ERRORS = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT}


def os_error_line(e: OSError) -> str:
    """One line for an `OSError` of the user's disk: the folder a hidden work file was to go in, or the file."""
    where = Path(e.filename) if e.filename else None
    if where is not None and where.name.startswith(".") and where.name.endswith(".partial"):
        return f"{where.parent}: cannot write in it ({e.strerror})"
    return f"{where}: {e.strerror}" if where is not None else str(e.strerror or e)


def _reader_gone() -> int:
    """Stop quietly: point stdout at /dev/null so the buffered rest is not written (nor a second error raised) at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout without a file descriptor (captured): nothing is flushed to a pipe at exit
        pass
    return EXIT_PIPE_CLOSED


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (exit code 2), like every other error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()  # imports onnx and friends: a second or so in which Ctrl-C is already one line
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        print("focalnet-edge: interrupted (SIGINT)", file=sys.stderr)
        return 128 + signal.SIGINT
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
        format="%(message)s",
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        versions.check()
        with signals.handled():  # SIGINT, SIGTERM, SIGHUP: cleaned up like Ctrl-C, later ones ignored
            code = func(args)
            sys.stdout.flush()  # here, so a reader that went away is caught below, not at interpreter exit
            return code
    except BrokenPipeError:
        return _reader_gone()
    except FocalNetEdgeError as e:
        if args.verbose:
            raise
        print(f"focalnet-edge {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the user's disk or permissions (read-only, full, not allowed): one line, naming where
        if args.verbose or e.errno not in USER_OS_ERRORS:
            raise
        print(f"focalnet-edge {args.command}: error: {os_error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # one line; exit 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM)
        sig = e if isinstance(e, signals.Interrupted) else signals.Interrupted(signal.SIGINT)
        note = f"; {sig.note}" if sig.note else ""
        print(f"focalnet-edge {args.command}: interrupted ({sig.name}){note}", file=sys.stderr)
        return sig.exit_code


if __name__ == "__main__":
    sys.exit(main())
