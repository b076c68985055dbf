"""`focalnet-edge gst`: the GStreamer element's plugin folder (GST_PLUGIN_PATH)."""

from __future__ import annotations

import argparse

NAME = "gst"
HELP = "the GStreamer element focalnetclassify: write and print its plugin folder (GST_PLUGIN_PATH)"
EPILOG = """examples:
  export GST_PLUGIN_PATH=$(focalnet-edge gst --plugin-path)
  PATH=/usr/bin:/bin gst-launch-1.0 filesrc location=clip.mp4 ! decodebin ! videoconvert ! focalnetclassify model=out/ ! fakesink
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugin-path", action="store_true", help="print only the folder, for GST_PLUGIN_PATH=$(focalnet-edge gst --plugin-path)")
    p.add_argument("--dir", default=None, metavar="DIR", help="write the plugin folder here (default: a folder per installation in ~/.cache)")


def run(args: argparse.Namespace) -> int:
    from ..deploy.gstreamer import ELEMENT, plugin_path

    folder = plugin_path(args.dir)
    if args.plugin_path:
        print(folder)
    else:
        print(f"export GST_PLUGIN_PATH={folder}  # then: gst-inspect-1.0 {ELEMENT} (with this venv's bin off PATH)")
    return 0
