"""`focalnet-edge predict`: top-k labels for images, videos, streams and cameras."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .args import COUNT

NAME = "predict"
HELP = "top-k labels for images, videos, streams and cameras"
EPILOG = """examples:
  focalnet-edge predict out/ cat.jpg dog.png
  focalnet-edge predict out/model.onnx photos/ --top-k 3 --jsonl
  focalnet-edge predict out/ clip.mp4 --every 5 --batch 8       # decoding on its own thread; timing on stderr
  focalnet-edge predict out/ rtsp://camera.local/stream --limit 100
  focalnet-edge predict out/ --source 0 --limit 50                # the first camera
"""


TOP_K = 5  #: `--top-k`'s default


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="an output folder or an artifact")
    p.add_argument("images", nargs="*", help="image files or folders, video files, stream URLs (rtsp://, http(s)://) "
                        "or camera indices (0, 1, ...)")
    p.add_argument("--source", action="append", metavar="SRC", help="a video file, stream URL or camera index (repeatable)")
    p.add_argument("--top-k", type=COUNT, default=None, metavar="K", help=f"the K best classes per image (default {TOP_K})")
    p.add_argument("--batch-size", "--batch", type=COUNT, default=None,
                   help="images or frames per inference (default: 16 images; for a video file the faster of 8 and the artifact's "
                        "optimal batch, for streams and cameras the optimal batch: 1 unless exported with --batch MIN:OPT:MAX)")
    p.add_argument("--artifact", default=None, help="artifact of the folder to use (default: the best this machine runs)")
    p.add_argument("--jsonl", action="store_true", help="one JSON line per image")
    p.add_argument("--every", type=COUNT, default=1, metavar="N", help="for videos and streams: every Nth frame (default 1)")
    p.add_argument("--limit", type=COUNT, default=None, metavar="N", help="for videos and streams: stop after N frames (cameras never end)")
    p.add_argument("--resize", choices=("opencv", "pil"), default="opencv",
                   help="for videos and streams: resize frames with OpenCV (default, fast) or Pillow (the reference's exact pixels)")


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..inputs.stream import StreamStats, predict_stream
    from ..inputs.video import is_stream_source
    from ..runtime import load
    from ..runtime.predict import predict_images

    streams = [p for p in args.images if is_stream_source(p)] + list(args.source or [])
    if not args.images and not streams:
        raise InputError("nothing to classify: give image files or folders, videos, stream URLs or --source CAMERA_INDEX")

    noted = args.top_k is None  # the default asks for nothing: a model with fewer classes is no surprise
    top_k = TOP_K if args.top_k is None else args.top_k

    def emit(name: str, top: list) -> None:
        nonlocal noted
        # more than the model's classes: all of them, ranked (a display option, like `head -n`), said once
        if len(top) < top_k and not noted:
            noted = True
            logging.getLogger(__name__).warning("--top-k %d: the model has %d classes; showing all %d",
                                                top_k, len(top), len(top))
        if args.jsonl:
            print(json.dumps({"image": name, "top": top}))
        else:
            print(f"{name}: " + ", ".join(f"{t['label']} {t['score']:.3f}" for t in top))

    with load(args.path, artifact=args.artifact) as runner:
        images = [p for p in args.images if p not in streams]
        if images:
            for path, top in predict_images(runner, images, top_k, args.batch_size or 16):
                emit(str(path), top)
        for source in streams:
            stats = StreamStats()
            for i, top in predict_stream(runner, source, top_k, args.every, args.batch_size, args.resize,
                                         args.limit, stats):
                emit(f"{source}#{i}", top)
            if not args.quiet:
                print(stats.summary(), file=sys.stderr)
    return 0
