"""The `focalnet-edge` command: argument parsing and printing only; the work is in the stages.

`build_parser` walks the command registry (`registry.COMMANDS`, one module per command over the shared
argument groups of `args`); `main` runs the command and turns the project's errors, the user's disk and
signals into one line and an exit code.
"""

from __future__ import annotations

import argparse
import atexit
import errno
import functools
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import __version__, signals, versions
from ..errors import FocalNetEdgeError
from .printing import format_table

__all__ = ["build_parser", "format_table", "main", "os_error_line"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (exit code 2), like every other error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .registry import COMMANDS  # imports onnx and friends: inside main's Ctrl-C handling

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
    for command in COMMANDS:
        p = sub.add_parser(command.NAME, parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
                           help=command.HELP, epilog=command.EPILOG)
        command.add_arguments(p)
        p.set_defaults(func=command.run)
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


@functools.cache  # once per process
def _quiet_exit() -> None:
    """After the line saying a signal ended the command, nothing more is logged at the interpreter's exit: an
    interrupt that cut `import torch` short leaves torch's loggers unconfigured, and its atexit handlers (FakeTensor
    cache statistics) would log through ours after that line. atexit runs the last registered first, so this runs
    before those; in-process callers (tests, the API) keep their logging until then."""
    atexit.register(logging.disable, logging.CRITICAL)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()  # imports onnx and friends: a second or so in which Ctrl-C is already one line
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        print("focalnet-edge: interrupted (SIGINT)", file=sys.stderr)
        _quiet_exit()
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
        _quiet_exit()
        return sig.exit_code
