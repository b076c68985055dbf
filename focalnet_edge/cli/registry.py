"""The commands, in the order `focalnet-edge --help` lists them (Polygraphy's tool registry): each is a module
with NAME, HELP, EPILOG, `add_arguments(parser)` and `run(args) -> exit code`. A new command is one module and one row."""

from __future__ import annotations

from . import bench, build, calibrate, check, deploy, diagnose, engine, export, gst, info, predict, selftest, serve, verify

COMMANDS = (info, export, build, calibrate, diagnose, verify, predict, check, bench, engine, selftest, deploy, gst, serve)
