"""Atomic file and folder writing, and hashing: no half-written artifact is ever left at its final path.

Files: `atomic_path` (a temporary file beside the final one, renamed onto it). Folders:
`replacing_folder` (a temporary folder beside the final one, which takes its place by
`swap_folder`'s renames), with `folder_mode` the one rule for the folder's permissions. The deploy
targets write their folders through it, and `outputs.claim` commits a build through `swap_folder`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ArtifactError, FocalNetEdgeError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds.

    The temporary file lives in the same folder, so the final rename is atomic. On any error
    (or KeyboardInterrupt) the temporary file is removed and `path` is left as it was.
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    except OSError as e:
        raise ArtifactError(f"{final.parent}: cannot write there ({e.strerror or e})") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~umask())  # mkstemp makes 0600; artifacts get the usual mode
        os.replace(tmp_path, final)
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        raise ArtifactError(f"{final}: could not be written ({e.strerror or e})") from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def temporary_path(beside: str | os.PathLike, what: str = "tmp") -> Iterator[Path]:
    """Yield a temporary file path next to `beside` (`.<name>.<what>.*.partial`), always removed afterwards.

    For work files that must sit in an artifact's folder (a graph referring to its external
    data by a relative name); a killed run's leftover is cleaned up like any `.partial` file.
    """
    final = Path(beside)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.{what}.", suffix=".partial", dir=final.parent)
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


def umask() -> int:
    """The process's umask (read by setting and restoring it: the only way POSIX gives)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def folder_mode(final: str | os.PathLike) -> int:
    """The permissions of a folder written at `final`: those of the folder it replaces, else mkdir's (0o777 less the umask)."""
    try:
        return stat.S_IMODE(os.stat(final).st_mode)
    except OSError:
        return 0o777 & ~umask()


def swap_folder(new: str | os.PathLike, final: str | os.PathLike) -> None:
    """Put folder `new` in the place of `final` by renames on one filesystem.

    An existing `final` is renamed to `.<name>.old-<pid>` beside it first and removed after (a
    run killed between the two renames leaves it there, for `outputs.cleanup_leftovers` to move
    back). Raises `OSError` when `final` cannot be moved aside (nothing changed), `ArtifactError`
    when `new` cannot take its place (`final` is put back).
    """
    new, final = Path(new), Path(final)
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    if final.exists():
        os.rename(final, old)
    try:
        os.rename(new, final)
    except OSError as e:
        if old.exists():
            os.rename(old, final)
        raise ArtifactError(f"{final}: could not be replaced ({e.strerror or e}); left as it was") from None
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def replacing_folder(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `final` to fill; when the block succeeds it takes `final`'s place.

    The folder is `.<name>.*.partial` (removed by the next build's clean-up if a kill leaves it),
    gets `folder_mode(final)` and replaces `final` by `swap_folder`. On any error (or
    KeyboardInterrupt) it is removed and `final` is left as it was; an `OSError` becomes one
    `ArtifactError` naming `final`.
    """
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    except OSError as e:
        raise ArtifactError(f"{final.parent}: cannot write in it ({e.strerror or e})") from None
    try:
        yield tmp
        os.chmod(tmp, folder_mode(final))
        swap_folder(tmp, final)
    except OSError as e:
        raise ArtifactError(f"{final}: could not be written ({e.strerror or e})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def finite(value: Any) -> Any:
    """`value` with every non-finite float (inf, -inf, NaN, numpy's too) replaced by None (JSON null)."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, float) or type(value).__module__ == "numpy" and hasattr(value, "dtype") and value.dtype.kind == "f":
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def dumps_json(value: Any, **kwargs: Any) -> str:
    """Strict JSON text of `value`: non-finite numbers become null, never `NaN`/`Infinity` (not JSON)."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)


def atomic_write_json(path: str | os.PathLike, value: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, dumps_json(value, indent=indent) + "\n")


#: what a path that is not a regular file is, in words (`special_file`)
_SPECIAL_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                  (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def special_file(path: str | os.PathLike) -> str | None:
    """What `path` is when it exists but is not a regular file ("a FIFO (named pipe)", "a folder"...), else None."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _SPECIAL_KINDS if test(mode)), "not a regular file")


def not_a_file(path: str | os.PathLike, what: str) -> str:
    """The sentence for a `what` (e.g. "image file") at `path` that cannot be read as one: missing, or what it is instead.

    One wording everywhere a path names a file to read: a FIFO is never "no such file", and is
    never opened (reading it would block until something writes to it).
    """
    kind = special_file(path)
    if kind is None:
        return f"{path}: no such {what}"
    return f"{path}: is {kind}, not a regular file; expected {'an' if what[0] in 'aeiou' else 'a'} {what}"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


#: OSError numbers that mean "the destination cannot take the data" rather than a bad input
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def _renamed(message: str, work: str, final: str) -> str:
    """`message` with the paths under `work` put under `final`; a hidden work file there (`.x.partial/...`),
    which will never exist under `final`, is named as `final` itself."""
    def one(m: re.Match) -> str:
        rest = (m.group(1) or "").lstrip("/")
        return final if not rest or rest.startswith(".") else f"{final}/{rest}"

    return re.sub(re.escape(work) + r"(/[^\s:]*)?", one, message)


@contextlib.contextmanager
def named_as(final: str | os.PathLike, work: str | os.PathLike) -> Iterator[None]:
    """Errors of the block that writes `final` through the work folder `work` name `final`, never `work`.

    The user named `final` (--output); `work` (a staging folder) is ours and gone by the time
    they read the message. A FocalNetEdgeError keeps its type and sentence with the path
    replaced; an OSError of a full or read-only disk (`WRITE_ERRNOS`), from any library that
    wrote into `work`, becomes one `ArtifactError` naming `final`.
    """
    final, work = str(final), str(work)
    try:
        yield
    except FocalNetEdgeError as e:
        if work not in str(e):
            raise
        raise type(e)(_renamed(str(e), work, final)) from None
    except OSError as e:
        if e.errno not in WRITE_ERRNOS:
            raise
        raise ArtifactError(f"{final}: could not be written ({e.strerror or e})") from None
