"""`choose_artifact`: the one rule for which artifact of an output folder runs, for every consumer.

The artifact is chosen from three facts, never from file names:
- the precision table's rank (`artifacts.rank`): verified before never verified before failed;
  engines first where a GPU is there, then ONNX files, each in the table's order;
- what the consumer can run: a function `runs(artifact)` giving why not, or None (this machine:
  `why_not_runnable`; a Triton CPU instance: no engines; nvinfer: its ONNX precisions);
- the artifact's own requirements (`requires`: TensorRT version, GPU, DLA core...), which
  `runs` reads.

`runtime.load`, `deploy --to triton` and `deploy --to deepstream` all choose through it, over the
typed `Manifest` (`folder.manifest.read_manifest`); it returns the chosen `Artifact`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, overload

from ..folder.artifacts import MANIFEST, for_nvinfer, is_engine, rank, select, trust
from ..folder.manifest import Artifact, Manifest
from ..engine.plans import engine_runnable_here
from ..errors import ArtifactError
from ..extras import optional

log = logging.getLogger(__name__)

#: why a consumer cannot run an artifact of a manifest, or None when it can
Runs = Callable[[Artifact], "str | None"]

HERE = "this machine (engines need TensorRT and their GPU)"


def has_gpu_provider() -> bool:
    """Whether ONNX Runtime here has the CUDA provider (ONNX files then rank as on a GPU)."""
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - a dependency
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


#: why an ONNX file does not run here, where no distribution installed ONNX Runtime (a Jetson with TensorRT alone)
NO_ONNX_RUNTIME = "no ONNX Runtime here (pip install 'focalnet-edge[cpu]', or NVIDIA's onnxruntime-gpu wheel on a Jetson)"


def why_not_runnable(artifact: Artifact) -> str | None:
    """Why this machine cannot run the artifact (engines: no TensorRT, other version or GPU; ONNX files: no ONNX
    Runtime), or None."""
    if not is_engine(artifact):
        return None if optional("onnxruntime") is not None else NO_ONNX_RUNTIME
    return engine_runnable_here(artifact.entry)


def runnable_here(artifact: Artifact) -> bool:
    return why_not_runnable(artifact) is None


def all_runnable_here(entries: dict[str, Artifact], what: str, nvinfer: bool = True) -> list[Artifact]:
    """Every artifact this machine runs (nvinfer's graphs too, where `nvinfer`), for `what` (e.g. "to verify"); none is
    one `ArtifactError` saying why each does not run here."""
    chosen = [a for a in entries.values() if runnable_here(a) and (nvinfer or not for_nvinfer(a))]
    if not chosen:
        why: dict[str, list[str]] = {}
        for a in entries.values():
            why.setdefault(why_not_runnable(a) or "not chosen by default", []).append(a.path)
        listed = "; ".join(f"{', '.join(names)}: {reason}" for reason, names in why.items())
        raise ArtifactError(f"no artifact {what} on this machine ({listed or 'none listed'})")
    return chosen


def best(pool: Iterable[Artifact], gpu: bool) -> Artifact:
    """The first of `pool` by the table's rank; a pool holding an engine is ranked as on a GPU."""
    pool = list(pool)
    return min(pool, key=lambda e: rank(e, gpu or any(is_engine(x) for x in pool)))


@overload  # the JSON of a manifest still being written (tests build them in memory) is taken too
def choose_artifact(manifest: Manifest, name: str | None = ..., notes: list[str] | None = ..., *, runs: Runs = ...,  # type: ignore[overload-overlap]
                    gpu: bool | None = ..., where: str = ..., quiet: bool = ...) -> Artifact: ...
@overload
def choose_artifact(manifest: dict[str, Any], name: str | None = ..., notes: list[str] | None = ..., *, runs: Runs = ...,
                    gpu: bool | None = ..., where: str = ..., quiet: bool = ...) -> dict[str, Any]: ...
def choose_artifact(
    manifest: Manifest | dict[str, Any],
    name: str | None = None,
    notes: list[str] | None = None,
    *,
    runs: Runs = why_not_runnable,
    gpu: bool | None = None,
    where: str = HERE,
    quiet: bool = False,
) -> Artifact | dict[str, Any]:
    """The artifact to run: `name` (a file name, a precision, or "engine"), else the best.

    `runs` says what the consumer can run (default: this machine), `gpu` whether it ranks as a GPU
    consumer (default: ONNX Runtime here has CUDA). A name keeps its entries the consumer can run,
    or all of them when none runs (the caller then says why). Without a name: the best entry the
    consumer can run; the others are skipped with a note (appended to `notes`, and logged unless
    `quiet`), and an entry that is not verified is named in a note too.
    A `Manifest` gives its `Artifact`; the JSON of a manifest still being written (no file to check
    yet) gives its entry.
    """
    if not isinstance(manifest, Manifest):
        entries = {n: Artifact.unchecked(n, e) for n, e in manifest["artifacts"].items()}
        return choose(entries, name, notes, runs=runs, gpu=gpu, where=where, quiet=quiet).entry
    return choose(manifest.artifacts, name, notes, runs=runs, gpu=gpu, where=where, quiet=quiet)


def choose(
    entries: dict[str, Artifact],
    name: str | None = None,
    notes: list[str] | None = None,
    *,
    runs: Runs = why_not_runnable,
    gpu: bool | None = None,
    where: str = HERE,
    quiet: bool = False,
) -> Artifact:
    """`choose_artifact` over the artifacts of a manifest."""
    if not entries:
        raise ArtifactError(f"the {MANIFEST} lists no artifacts")
    gpu = has_gpu_provider() if gpu is None else gpu
    if name:
        found = [e for e in entries.values() if is_engine(e) and not for_nvinfer(e)] if name == "engine" else select(entries, name)
        if not found:
            raise ArtifactError(f"no engine here; the folder has {', '.join(sorted(entries))}")
        return best([e for e in found if runs(e) is None] or found, gpu)  # a precision: its engine where it runs, else its ONNX file
    say = _notes(notes, quiet)
    runnable = []
    skipped: dict[str, list[str]] = {}  # reason -> the artifacts it skipped
    for entry in entries.values():
        if for_nvinfer(entry):
            continue  # nvinfer's graph (0..255 pixels in, probabilities out): chosen only by its file name
        reason = runs(entry)
        if reason is None:
            runnable.append(entry)
        else:
            say(logging.INFO, f"skipped {entry.path}: {reason}")
            skipped.setdefault(reason, []).append(entry.path)
    if not runnable:
        why = "; ".join(f"{', '.join(sorted(names))}: {reason}" for reason, names in skipped.items())
        raise ArtifactError(f"no artifact here runs on {where}: {why or ', '.join(sorted(entries))}")
    chosen = best(runnable, gpu)  # verified first, then unverified, then failed
    if trust(chosen):
        say(logging.WARNING, f"using {chosen.path}: {'never verified' if trust(chosen) == 1 else 'it FAILED verification'}; "
                             "run `focalnet-edge verify` on the folder")
    return chosen


def _notes(notes: list[str] | None, quiet: bool) -> Callable[[int, str], None]:
    """A note taker: appends to `notes` (when given) and logs at the level (unless `quiet`)."""
    def say(level: int, note: str) -> None:
        if not quiet:
            log.log(level, note)
        if notes is not None:
            notes.append(note)
    return say
