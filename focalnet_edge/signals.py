"""SIGINT, SIGTERM and SIGHUP end a command the same way: cleaned up, one line, exit 128 + the signal's number.

`handled()` (around a CLI command) turns the first of these signals into `Interrupted`, a
`KeyboardInterrupt`, so every `finally` and `except BaseException` that cleans up (staging
folders, `.partial` files) runs, as it does for Ctrl-C. Later signals are ignored: the cleanup
and the interpreter's exit (torch's atexit handlers among them) finish quietly instead of
printing a second traceback. `deferred()` holds a signal back during a step that must not be
cut (the renames of a commit) and raises it right after.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

#: the signals that end a command; SIGHUP only where the platform has it
SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class Interrupted(KeyboardInterrupt):
    """A command stopped by a signal; `exit_code` is 128 + its number (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.note: str | None = None  #: what was cleaned up, set by the code that did it

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_pending: list[int] = []  #: signals received inside `deferred()`, raised at its end
_deferring = 0


def _on_signal(signum: int, frame) -> None:
    global _deferring
    for sig in SIGNALS:  # one signal ends the command; the next ones must not cut the cleanup
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(sig) is _on_signal:
                signal.signal(sig, signal.SIG_IGN)
    if _deferring:
        _pending.append(signum)
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Install the handler for SIGNALS (main thread only; a signal ignored by the parent, as under
    `nohup`, stays ignored). After a signal the handlers stay ignoring: the process is exiting."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig in SIGNALS:
        current = signal.getsignal(sig)
        if current is signal.SIG_IGN:
            continue
        previous[sig] = current
        signal.signal(sig, _on_signal)
    interrupted = False
    try:
        yield
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        if not interrupted:  # in-process use (tests, the API): the caller's handlers come back
            for sig, handler in previous.items():
                if signal.getsignal(sig) is _on_signal:
                    signal.signal(sig, handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A signal arriving inside the block is raised (as `Interrupted`) only when the block ends."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    if not _deferring and _pending:
        signum = _pending.pop(0)
        _pending.clear()
        raise Interrupted(signum)
