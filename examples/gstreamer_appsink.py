"""Classify the frames of a GStreamer pipeline with focalnet-edge, through an appsink.

    videotestsrc num-buffers=N ! videoconvert ! videoscale ! video/x-raw,format=RGB,width=W,height=H ! appsink

Each RGB frame is copied out of its GstBuffer into a numpy (H, W, 3) uint8 array and passed to
`focalnet_edge.runtime.load(OUT).predict`, which resizes, crops and normalises it as the model
was verified. Replace `videotestsrc ...` with any source, e.g. `filesrc location=clip.mp4 !
decodebin` or `rtspsrc location=rtsp://... ! decodebin` (--source).

It needs one Python with both GStreamer's bindings and focalnet-edge. On Debian/Ubuntu/JetPack:

    sudo apt-get install python3-gi python3-gst-1.0 gir1.2-gst-plugins-base-1.0 gstreamer1.0-plugins-base
    python3 -m venv --system-site-packages venv && venv/bin/pip install 'focalnet-edge[cpu]'

Run:

    python examples/gstreamer_appsink.py OUT --num-buffers 30 --width 320 --height 240

One JSON line per frame: {"frame": i, "pts_ns": ..., "top": [{"index", "label", "score"}, ...]}.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator

import gi
import numpy as np

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import Gst, GstApp, GstVideo  # noqa: E402, F401  (GstApp: loads appsink's pull methods)


def frames(source: str, width: int, height: int, timeout_s: float = 10.0) -> Iterator[tuple[int, np.ndarray]]:
    """(pts in ns, uint8 (height, width, 3) RGB frame) for each buffer the pipeline produces."""
    Gst.init(None)
    pipeline = Gst.parse_launch(
        f"{source} ! videoconvert ! videoscale ! video/x-raw,format=RGB,width={width},height={height} "
        "! appsink name=sink sync=false max-buffers=8"
    )
    sink = pipeline.get_by_name("sink")
    bus = pipeline.get_bus()
    pipeline.set_state(Gst.State.PLAYING)
    try:
        while True:
            sample = sink.try_pull_sample(int(timeout_s * Gst.SECOND))
            if sample is None:  # end of stream, an error, or nothing for timeout_s
                break
            yield sample.get_buffer().pts, to_array(sample)
        error = bus.pop_filtered(Gst.MessageType.ERROR)
        if error is not None:
            err, debug = error.parse_error()
            raise RuntimeError(f"GStreamer: {err.message} ({debug})")
        if not sink.is_eos():
            raise RuntimeError(f"GStreamer: no frame for {timeout_s} s and no end of stream")
    finally:
        pipeline.set_state(Gst.State.NULL)


def to_array(sample: Gst.Sample) -> np.ndarray:
    """The RGB frame of a sample as an owned (height, width, 3) uint8 array.

    GStreamer pads each RGB row to a multiple of 4 bytes, so rows are read with the stride
    from the caps, not as width * 3.
    """
    info = GstVideo.VideoInfo.new_from_caps(sample.get_caps())
    h, w, stride = info.height, info.width, info.stride[0]
    buf = sample.get_buffer()
    ok, mapped = buf.map(Gst.MapFlags.READ)
    if not ok:
        raise RuntimeError("GStreamer: could not map the buffer for reading")
    try:
        rows = np.frombuffer(mapped.data, np.uint8, count=h * stride).reshape(h, stride)
        return rows[:, : w * 3].reshape(h, w, 3).copy()
    finally:
        buf.unmap(mapped)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", help="a focalnet-edge output folder (or one artifact)")
    p.add_argument("--num-buffers", type=int, default=30)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--pattern", default="smpte", help="videotestsrc pattern (smpte, ball, solid-color, ...)")
    p.add_argument("--source", help="a GStreamer source description instead of videotestsrc")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--save-frames", metavar="NPY", help="also save the frames as one (N, H, W, 3) uint8 .npy")
    args = p.parse_args(argv)

    from focalnet_edge.runtime import load

    source = args.source or f"videotestsrc num-buffers={args.num_buffers} pattern={args.pattern}"
    kept = []
    with load(args.folder) as runner:
        for i, (pts, frame) in enumerate(frames(source, args.width, args.height)):
            (top,) = runner.predict(frame, top_k=args.top_k)
            print(json.dumps({"frame": i, "pts_ns": pts, "top": top}), flush=True)
            if args.save_frames:
                kept.append(frame)
    if args.save_frames:
        np.save(args.save_frames, np.stack(kept) if kept else np.zeros((0, args.height, args.width, 3), np.uint8))
    return 0


if __name__ == "__main__":
    sys.exit(main())
