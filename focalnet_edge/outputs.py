"""The output folder: one run at a time, nothing written there until the run succeeds.

`claim(output, ...)` is how `build` and `export` write a folder:

1. **Refuse what is not ours, before any write.** `/` and the home folder are never output
   folders. A folder that is not empty and holds no focalnet-edge manifest (someone's files,
   or the current directory) is refused unless `force`; so is a folder of ours built from
   another model (its manifest's weight hashes, or its source, differ).
2. **Lock.** An advisory `fcntl.flock` on `.<name>.lock` beside the folder. A second run
   does not wait: it fails at once with one line naming the holder's pid (a build takes
   minutes, and a silent wait looks like a hang). The lock file stays (removing it would
   let two runs lock two different files); the lock dies with its process, kill -9 too.
3. **Clean up after killed runs**, under the lock: staging folders `.<name>.staging-*` beside
   the folder, `.<name>.old-*` folders (moved back when the swap was cut between its two
   renames), and `.*.partial` temp files inside it.
4. **Stage.** The run writes into `.<name>.staging-<pid>` beside the folder (the previous
   TensorRT timing cache copied in, so it is reused).
5. **Commit only on success**: the staging folder takes the folder's place by two renames
   (the folder's own files that this run does not write, e.g. a `deepstream/` folder or a
   user's notes, are hard-linked over first; the previous run's artifacts are not). On any
   error the staging folder is removed and the folder is exactly as it was. A folder that
   cannot be renamed (the current directory, a mount point) or a foreign folder written with
   `force` gets the new files one by one instead, the manifest last.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import artifacts
from .errors import ArtifactError
from .io import named_as
from .manifest import MANIFEST, is_ours, load_manifest_json

try:  # POSIX; elsewhere the folder is not locked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: files a build writes; a rebuild replaces them (never carried over from the previous build)
BUILD_FILES = frozenset(
    [artifacts.MANIFEST, artifacts.REPORT, artifacts.REFERENCES, artifacts.CALIBRATION]
    + [p.onnx for p in artifacts.PRECISIONS.values()]
    + [artifacts.external_data_name(p.onnx) for p in artifacts.PRECISIONS.values()]
    + [p.engine for p in artifacts.PRECISIONS.values() if p.engine]
)

_STAGING: set[Path] = set()  #: staging folders this process is writing now


def is_staging(path: str | os.PathLike) -> bool:
    """Whether `path` is a staging folder of a `claim` of this process (already checked and locked)."""
    return Path(path).resolve() in _STAGING


def _sibling(folder: Path, what: str) -> Path:
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
    lock_path = _sibling(path, "lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise ArtifactError(f"{path}: cannot write beside it ({e.strerror or e})") from None
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


def cleanup_leftovers(path: Path) -> None:
    """Remove what killed runs left (call with the lock held): staging folders, temp files; restore a cut swap."""
    for old in sorted(path.parent.glob(f".{path.name}.old-*")):
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:  # killed between the two renames of a commit: the previous folder comes back
            os.rename(old, path)
            log.warning("%s: restored the previous folder from an interrupted run", path)
    for staging in path.parent.glob(f".{path.name}.staging-*"):
        shutil.rmtree(staging, ignore_errors=True)
    if path.is_dir():
        remove_partials(path, nested=True)


def remove_partials(path: Path, nested: bool = False) -> None:
    """Remove the `.*.partial` temp files and work folders in `path` (and its subfolders with `nested`)."""
    for tmp in [*path.glob(".*.partial"), *(path.glob("*/.*.partial") if nested else [])]:
        with contextlib.suppress(OSError):
            if tmp.is_dir() and not tmp.is_symlink():  # an export's or the INT8 stage's work folder
                shutil.rmtree(tmp)
            else:
                tmp.unlink()


def _entries(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


def check_owner(path: Path, force: bool, weights: dict[str, str] | None = None, source: str | None = None,
                onnx_sha256: str | None = None) -> dict[str, Any] | None:
    """Refuse a folder that is not empty and not ours, or ours but of another model, unless `force`.

    The model is known by its `weights` hashes (else its `source`), or for `calibrate` by the
    sha256 of the fp32 ONNX file it adopts. Returns the folder's manifest JSON when it is ours.
    """
    names = _entries(path)
    if not names:
        return None
    manifest = load_manifest_json(path)
    if not is_ours(manifest):
        if force:
            log.warning("%s: not a focalnet-edge folder; --force: writing into it, replacing files of the same names", path)
            return None
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise ArtifactError(f"{path}: not empty and not a focalnet-edge output folder ({shown}); "
                            "choose an empty or new folder, or pass --force to write into it")
    model = manifest.get("model") if isinstance(manifest.get("model"), dict) else {}
    old_weights = model.get("weights_sha256")
    old_source = model.get("source")
    if onnx_sha256 is not None:
        entries = manifest.get("artifacts") if isinstance(manifest.get("artifacts"), dict) else {}
        entry = entries.get(artifacts.FP32_ONNX)
        same = isinstance(entry, dict) and entry.get("sha256") == onnx_sha256
        what = f"another fp32 model ({artifacts.FP32_ONNX} of {old_source!r})"
    elif weights and isinstance(old_weights, dict) and old_weights:
        same = sorted(map(str, old_weights.values())) == sorted(weights.values())
        what = f"another model ({old_source!r}, other weights)"
    else:
        same = old_source == source
        what = f"another model ({old_source!r})"
    if not same:
        if not force:
            raise ArtifactError(f"{path}: holds a build of {what}; pass --force to replace it, or choose another --output")
        log.warning("%s: holds a build of %s; --force: replacing it", path, what)
    return manifest


@contextlib.contextmanager
def claim(folder: str | os.PathLike, force: bool = False, weights: dict[str, str] | None = None,
          source: str | None = None) -> Iterator[Path]:
    """Check, lock and stage output folder `folder`; yield the staging folder to write; commit on success.

    See the module's docstring. Raises `ArtifactError` (one sentence) when the folder is refused
    or locked by another run; on any error inside the block the folder is left as it was.
    """
    with lock(folder) as path:
        cleanup_leftovers(path)
        manifest = check_owner(path, force, weights, source)
        try:
            staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.staging-{os.getpid()}-", dir=path.parent))
        except OSError as e:
            raise ArtifactError(f"{path}: cannot write beside it ({e.strerror or e})") from None
        _STAGING.add(staging.resolve())
        try:
            if path.is_dir():
                shutil.copymode(path, staging)
                if (path / artifacts.TIMING_CACHE).is_file():
                    shutil.copy2(path / artifacts.TIMING_CACHE, staging / artifacts.TIMING_CACHE)
            else:
                os.chmod(staging, 0o777 & ~_umask())
            with named_as(path, staging):  # a full disk names --output, not the staging folder
                yield staging
            commit(staging, path, ours=manifest is not None)
        finally:
            _STAGING.discard(staging.resolve())
            shutil.rmtree(staging, ignore_errors=True)


def commit(staging: Path, path: Path, ours: bool) -> None:
    """Put the staged run in the place of `path` (see the module's docstring)."""
    if not (staging / MANIFEST).is_file():
        raise ArtifactError(f"{path}: the run wrote no {MANIFEST}; nothing committed")
    inside = Path.cwd().resolve()
    holds_cwd = path == inside or path in inside.parents  # never renamed away under the shell
    if not _entries(path) and not holds_cwd:
        if path.exists():
            path.rmdir()
        os.rename(staging, path)
        return
    if ours and not holds_cwd:
        for name in _entries(path):  # the folder's own files: kept, by hard links (no copy of big files)
            if name not in BUILD_FILES and not (staging / name).exists() and not name.endswith(".partial"):
                _link_copy(path / name, staging / name)
        old = _sibling(path, f"old-{os.getpid()}")
        try:
            os.rename(path, old)
        except OSError:
            pass  # cannot rename it (a mount point, permissions): file by file below
        else:
            try:
                os.rename(staging, path)
            except OSError as e:
                os.rename(old, path)
                raise ArtifactError(f"{path}: could not be replaced ({e.strerror or e}); left as it was") from None
            shutil.rmtree(old, ignore_errors=True)
            return
    previous = load_manifest_json(path) if ours else None
    listed = set(previous.get("artifacts", {})) if isinstance(previous, dict) and isinstance(previous.get("artifacts"), dict) else set()
    written = set(_entries(staging))
    with contextlib.suppress(FileNotFoundError):
        (path / MANIFEST).unlink()  # no moment where the old manifest describes new files
    for name in written:
        if name != MANIFEST:
            dst = path / name
            if dst.is_dir() and not dst.is_symlink():
                shutil.rmtree(dst)
            os.replace(staging / name, dst)
    for name in listed & BUILD_FILES:  # the previous run's artifacts this run did not write
        if name not in written and not (path / name).is_dir():
            with contextlib.suppress(FileNotFoundError):
                (path / name).unlink()
    os.replace(staging / MANIFEST, path / MANIFEST)


def check_adoption(folder: Path, force: bool, onnx_sha256: str) -> None:
    """`calibrate` writing model.onnx (sha256 `onnx_sha256`) into `folder`: refuse to replace another
    model's files unless `force`.

    A folder of ours holding another fp32 model is refused (with `force` its manifest, which would
    lie, is removed); a folder not ours is refused only when it holds files of the names this
    tool writes (its own model.onnx, manifest.json, ...), so a foreign model's folder keeps them.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ArtifactError(f"{folder}: exists and is not a folder")
    manifest = load_manifest_json(folder) if folder.is_dir() else None
    if is_ours(manifest):
        check_owner(folder, force, onnx_sha256=onnx_sha256)
        entries = manifest.get("artifacts") if isinstance(manifest.get("artifacts"), dict) else {}
        entry = entries.get(artifacts.FP32_ONNX)
        if not (isinstance(entry, dict) and entry.get("sha256") == onnx_sha256):
            (folder / MANIFEST).unlink()  # forced over another model: the manifest no longer describes the folder
        return
    clash = sorted(n for n in BUILD_FILES if (folder / n).exists())
    if clash and not force:
        raise ArtifactError(f"{folder}: holds {', '.join(clash)} that focalnet-edge did not write; "
                            "choose another --output, or pass --force to replace them")


def _link_copy(src: Path, dst: Path) -> None:
    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_dir():
        shutil.copytree(src, dst, symlinks=True, copy_function=link)
    else:
        link(str(src), str(dst))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
