"""What `focalnetclassify` offers, without GStreamer: its properties (name -> GObject spec less the
flags: type, nick, blurb, [min, max,] default) and modes. `element.py` registers these."""

from __future__ import annotations

MODES = ("primary", "secondary")
PRIMARY_ROI_TYPE = "frame"  #: the region type of the whole-frame meta of primary mode

PROPERTIES: dict[str, tuple] = {
    "model": (str, "model", "focalnet-edge output folder or artifact (as runtime.load takes)", None),
    "artifact": (str, "artifact", "artifact of the folder: file name or precision (default: the best this machine runs)", None),
    "mode": (str, "mode", "primary: classify whole frames; secondary: the regions of interest upstream attached", "primary"),
    "batch-size": (int, "batch size", "frames (primary) or regions (secondary) per inference", 1, 1024, 1),
    "interval": (int, "interval", "classify every Nth frame (1: every frame)", 1, 2**31 - 1, 1),
    "top-k": (int, "top k", "labels kept per result", 1, 1000, 5),
    "threshold": (float, "threshold", "attach a result only when its top-1 confidence is at least this", 0.0, 1.0, 0.0),
    "roi-type": (str, "roi type", "secondary: classify only regions of this type (empty: every region)", ""),
}
