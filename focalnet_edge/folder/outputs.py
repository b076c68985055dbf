"""The output folder: one run at a time, nothing written there until the run succeeds.

`claim(output, ...)` is how `build` and `export` write a folder:

1. **Refuse what is not ours, before any write.** `/` and the home folder are never output
   folders. A folder that is not empty and holds no focalnet-edge manifest (someone's files,
   or the current directory) is refused unless `force`; so is a folder of ours built from
   another model (its manifest's weight hashes, or its source, differ).
2. **Lock** (`locking.lock`): a second run fails at once with one line naming the holder's
   pid; the lock dies with its process, kill -9 too.
3. **Clean up after killed runs**, under the lock (`cleanup_leftovers`): staging folders,
   `.<name>.old-*` folders (moved back when a swap was cut between its two renames), an
   in-place commit that was cut (finished: its new files were complete), `.*.partial` files.
4. **Stage on the folder's own filesystem.** The run writes into `.<name>.staging-<pid>-*`
   beside the folder; when the folder is a mount point (a container volume, a tmpfs, an SD
   card), which cannot be renamed and whose parent is another filesystem, into
   `.focalnet-edge.staging-<pid>-*` inside it. The previous TensorRT timing cache is copied in.
5. **Commit only on success.** A run whose gate or verification failed (`Staging.reject`) is
   not committed: the folder stays byte for byte, and the failed run is kept for diagnosis
   as `<name>.failed-<time>` beside it (inside a mount point: `.focalnet-edge.failed-<time>`).
   On an error or a signal the staging folder is removed and the folder is as it was.
   A successful run takes the folder's place by two renames (`_swap`, through `io.swap_folder`,
   the one folder replacement; the folder's own files
   that this run does not write, e.g. a `deepstream/` folder or a user's notes, are
   hard-linked over first; the previous run's artifacts are not). A folder that cannot be
   renamed (a mount point, the current directory) or a foreign folder written with `force`
   gets the new files by `_commit_in_place`, which a kill at any moment leaves finishable.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import signals
from . import artifacts
from ..errors import ArtifactError
from .io import folder_mode, named_as, swap_folder
from .locking import INSIDE, check_destination, is_mount_point, lock, sibling  # noqa: F401 - check_destination: pipeline imports it from here
from .manifest import MANIFEST, is_ours, load_manifest_json

log = logging.getLogger(__name__)

#: files a build writes; a rebuild replaces them (never carried over from the previous build)
BUILD_FILES = frozenset(
    [artifacts.MANIFEST, artifacts.REPORT, artifacts.REFERENCES, artifacts.CALIBRATION]
    + [p.onnx for p in artifacts.PRECISIONS.values()]
    + [artifacts.external_data_name(p.onnx) for p in artifacts.PRECISIONS.values()]
    + [p.engine for p in artifacts.PRECISIONS.values() if p.engine]
)

#: the plan of an in-place commit, inside its commit folder: the previous files it retires
PLAN = INSIDE + "plan.json"

_STAGING: set[Path] = set()  #: staging folders this process is writing now


def is_staging(path: str | os.PathLike) -> bool:
    """Whether `path` is a staging folder of a `claim` of this process (already checked and locked)."""
    return Path(path).resolve() in _STAGING


def cleanup_leftovers(path: Path) -> None:
    """Remove what killed runs left (call with the lock held): staging folders, temp files; restore a
    cut swap; finish a cut in-place commit (its new files were complete)."""
    for old in sorted(path.parent.glob(f".{path.name}.old-*")):
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:  # killed between the two renames of a commit: the previous folder comes back
            os.rename(old, path)
            log.warning("%s: restored the previous folder from an interrupted run", path)
    for staging in path.parent.glob(f".{path.name}.staging-*"):
        shutil.rmtree(staging, ignore_errors=True)
    if path.is_dir():
        for pending in sorted(path.glob(f"{INSIDE}commit-*")):
            try:
                finish_commit(pending, path)
            except OSError as e:
                raise ArtifactError(f"{path}: an interrupted run's replacement of the files could not be finished "
                                    f"({e.strerror or e}); free space or fix permissions there and run again") from None
            log.warning("%s: finished replacing the files, which an interrupted run had begun", path)
        for left in [*path.glob(f"{INSIDE}staging-*"), *path.glob(f"{INSIDE}old-*")]:
            shutil.rmtree(left, ignore_errors=True)
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
    """The names in folder `path`, without what runs keep there (`INSIDE`: staging, failed runs) and
    the empty lock files of output folders that were (or are) inside it (`.<name>.lock`)."""
    if not path.is_dir():
        return []
    return sorted(p.name for p in path.iterdir() if not p.name.startswith(INSIDE) and not _is_lock_file(p))


def _is_lock_file(p: Path) -> bool:
    return p.name.startswith(".") and p.name.endswith(".lock") and p.is_file() and p.stat().st_size == 0


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


@dataclass
class Staging:
    """The folder a claimed run writes (`path`); `reject(reason)` keeps it from being committed."""

    path: Path
    failed: str | None = None  #: why the run is not committed (a gate or a verification failed)
    kept: Path | None = None  #: where the rejected run was kept, after the claim ended

    def reject(self, reason: str) -> None:
        self.failed = reason


@contextlib.contextmanager
def claim(folder: str | os.PathLike, force: bool = False, weights: dict[str, str] | None = None,
          source: str | None = None) -> Iterator[Staging]:
    """Check, lock and stage output folder `folder`; yield the `Staging` to write; commit on success.

    See the module's docstring. Raises `ArtifactError` (one sentence) when the folder is refused
    or locked by another run; on any error inside the block, or a rejected run, the folder is
    left as it was.
    """
    with lock(folder) as path:
        cleanup_leftovers(path)
        manifest = check_owner(path, force, weights, source)
        inside = is_mount_point(path)
        try:
            staging = Path(tempfile.mkdtemp(prefix=f"{INSIDE if inside else '.' + path.name + '.'}staging-{os.getpid()}-",
                                            dir=path if inside else path.parent))
        except OSError as e:
            raise ArtifactError(f"{path}: cannot write {'in' if inside else 'beside'} it ({e.strerror or e})") from None
        stage = Staging(staging)
        _STAGING.add(staging.resolve())
        committed = False
        try:
            os.chmod(staging, folder_mode(path))
            if (path / artifacts.TIMING_CACHE).is_file():
                shutil.copy2(path / artifacts.TIMING_CACHE, staging / artifacts.TIMING_CACHE)
            with named_as(path, staging):  # a full disk names --output, not the staging folder
                yield stage
            with signals.deferred():  # the renames are not cut by a signal; it is raised after them
                if stage.failed is not None:
                    stage.kept = keep_failed(staging, path, inside)
                else:
                    commit(staging, path, ours=manifest is not None, inside=inside)
                committed = True
        except signals.Interrupted as e:
            if e.note is None:
                e.note = (f"{path} holds this run's build (the signal came while it was committed)" if committed
                          else f"{path} was left as it was and this run's staging folder removed")
            raise
        finally:
            _STAGING.discard(staging.resolve())
            shutil.rmtree(staging, ignore_errors=True)


def keep_failed(staging: Path, path: Path, inside: bool) -> Path | None:
    """Keep a rejected run for diagnosis: `<name>.failed-<time>` beside `path` (inside it when a mount point)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    where, name = (path, f"{INSIDE}failed-{stamp}") if inside else (path.parent, f"{path.name}.failed-{stamp}")
    kept = where / name
    if kept.exists():
        kept = where / f"{name}-{os.getpid()}"
    try:
        os.rename(staging, kept)
    except OSError as e:
        log.warning("%s: the failed run could not be kept (%s)", path, e.strerror or e)
        return None
    return kept


def commit(staging: Path, path: Path, ours: bool, inside: bool = False) -> None:
    """Put the staged run in the place of `path` (see the module's docstring)."""
    if not (staging / MANIFEST).is_file():
        raise ArtifactError(f"{path}: the run wrote no {MANIFEST}; nothing committed")
    here = Path.cwd().resolve()
    holds_cwd = path == here or path in here.parents  # never renamed away under the shell
    if not inside and not holds_cwd and (not _entries(path) or ours) and _swap(staging, path):
        return
    previous = _entries(path)
    retire = [n for n in previous if n in BUILD_FILES and not (staging / n).exists()] if ours else []
    _commit_in_place(staging, path, retire)


def _swap(staging: Path, path: Path) -> bool:
    """Replace `path` by `staging` with two renames; False when `path` cannot be renamed (then nothing changed)."""
    if not _entries(path):
        try:
            if path.exists():
                path.rmdir()
            os.rename(staging, path)
            return True
        except OSError:
            return False
    for name in _entries(path):  # the folder's own files: kept, by hard links (no copy of big files)
        if name not in BUILD_FILES and not (staging / name).exists() and not name.endswith(".partial"):
            _link_copy(path / name, staging / name)
    try:
        swap_folder(staging, path)
    except OSError:
        return False  # cannot rename it (permissions): in place instead
    return True


def _commit_in_place(staging: Path, path: Path, retire: list[str]) -> None:
    """Move the staged files into `path` one by one, the manifest last; `retire`: previous files to remove.

    The staging folder first becomes `path/.focalnet-edge.commit-*` (one rename on the folder's
    filesystem) holding a plan (the files to retire); from then on the commit only goes forward:
    the previous manifest is set aside first (no manifest ever describes files it did not list),
    each replaced file is moved aside into `.focalnet-edge.old-*` (nothing deleted before the
    new files are in), the new manifest comes last, the set-aside files are removed. A run
    killed between these steps leaves the commit folder, which the next run finishes
    (`cleanup_leftovers`): the new files in it were complete.
    """
    path.mkdir(parents=True, exist_ok=True)
    token = staging.name.rsplit("-", 1)[-1]
    pending = path / f"{INSIDE}commit-{os.getpid()}-{token}"
    try:
        (staging / PLAN).write_text(json.dumps({"retire": retire}), encoding="utf-8")
        os.rename(staging, pending)
    except OSError as e:
        raise ArtifactError(f"{path}: could not be replaced ({e.strerror or e}); left as it was") from None
    try:
        finish_commit(pending, path)
    except OSError as e:
        raise ArtifactError(f"{path}: the new files could not all be moved in ({e.strerror or e}); "
                            "the next run in this folder finishes the replacement") from None


def finish_commit(pending: Path, path: Path) -> None:
    """Carry out (or finish, after a kill) the in-place commit staged in `pending` (see `_commit_in_place`)."""
    try:
        retire = json.loads((pending / PLAN).read_text(encoding="utf-8")).get("retire", [])
    except (OSError, ValueError, AttributeError):
        retire = []
    old = path / pending.name.replace(f"{INSIDE}commit-", f"{INSIDE}old-", 1)
    old.mkdir(exist_ok=True)

    def aside(name: str) -> None:
        if (path / name).exists() or (path / name).is_symlink():
            os.rename(path / name, old / name)

    if (pending / MANIFEST).exists():
        aside(MANIFEST)
    for name in retire:
        if isinstance(name, str) and "/" not in name and name not in (MANIFEST, PLAN) and not (pending / name).exists():
            aside(name)
    for name in _entries(pending):
        if name not in (MANIFEST, PLAN):
            aside(name)
            os.rename(pending / name, path / name)
    if (pending / MANIFEST).exists():
        os.rename(pending / MANIFEST, path / MANIFEST)
    shutil.rmtree(pending, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)


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
