"""One run at a time in an output folder: its advisory lock, and where the lock and a run's work go.

An advisory `fcntl.flock` on `.<name>.lock` beside the folder (inside a mount point,
`.focalnet-edge.lock`: a volume's parent may be read-only). A second run does not wait: it
fails at once with one line naming the holder's pid (a build takes minutes, and a silent wait
looks like a hang). The lock file stays (removing it would let two runs lock two different
files); the lock dies with its process, kill -9 too. `outputs.claim` takes it for a build;
`verify` and `deploy` take it to write a report beside a folder no build is replacing.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

from ..errors import ArtifactError

try:  # POSIX; elsewhere the folder is not locked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: the prefix of what a run keeps inside a folder that is a mount point (staging, commit, failed runs)
INSIDE = ".focalnet-edge."


def sibling(folder: Path, what: str) -> Path:
    return folder.parent / f".{folder.name}.{what}"


def check_destination(folder: str | os.PathLike, special: bool = True) -> Path:
    """The absolute path of an output folder; `ArtifactError` for a file, and (`special`) for `/` or the home folder."""
    path = Path(folder).expanduser().resolve()
    if special and (path == Path(path.anchor) or path == Path.home().resolve()):
        raise ArtifactError(f"--output {folder}: refusing to write into {path}; name a folder of its own, e.g. {path / 'focalnet-edge-out'}")
    if path.exists() and not path.is_dir():
        raise ArtifactError(f"--output {folder}: exists and is not a folder")
    return path


@contextlib.contextmanager
def lock(folder: str | os.PathLike, special: bool = True) -> Iterator[Path]:
    """Hold the advisory lock of output folder `folder` (`ArtifactError` naming the holder if taken).

    `special`: refuse `/` and the home folder (off for a folder the user did not name as --output).
    """
    path = check_destination(folder, special)
    inside = is_mount_point(path)  # a volume's parent may be read-only (a container's root): its lock is inside it
    lock_path = path / f"{INSIDE}lock" if inside else sibling(path, "lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise ArtifactError(f"{path}: cannot write {'in' if inside else 'beside'} it ({e.strerror or e})") from None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                raise ArtifactError(
                    f"{path}: another focalnet-edge run (pid {holder}) is writing this folder; "
                    "wait for it to finish, or choose another --output"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the flock


def is_mount_point(path: Path) -> bool:
    """Whether `path` is a mount point: another filesystem than its parent, or a bind mount
    (same filesystem, which `os.path.ismount` misses; read from /proc/self/mountinfo on Linux)."""
    if not path.is_dir():
        return False
    if os.path.ismount(path):
        return True
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            points = {line.split()[4] for line in f if len(line.split()) > 4}
    except OSError:
        return False
    unescape = lambda s: re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)  # noqa: E731 - \040 for a space
    return str(path) in {unescape(p) for p in points}
