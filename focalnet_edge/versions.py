"""The dependency versions this installation can use, checked once at start-up.

The bounds are the ones pyproject.toml declares, read back from this distribution's metadata
(`importlib.metadata.requires`), so the declaration and the check are one fact: a package at a
version the project cannot use is one line naming the package, the version found and the
version needed, never a traceback from deep inside it. CI installs the lowest declared bounds
and the newest releases (README, "Supported versions").
"""

from __future__ import annotations

from importlib import metadata

from .errors import InputError

DISTRIBUTION = "focalnet-edge"


def declared(extra: str | None = None) -> list:
    """This distribution's requirements that apply here: the base ones, or those of `extra`.

    Empty when focalnet-edge runs from a source tree that was never installed (no metadata).
    """
    from packaging.requirements import Requirement

    try:
        lines = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return []
    out = []
    for line in lines:
        req = Requirement(line)
        if req.marker is None:
            applies = extra is None
        else:
            applies = req.marker.evaluate({"extra": extra or ""}) and (extra is None) == ("extra" not in str(req.marker))
        if applies:
            out.append(req)
    return out


def problems(extra: str | None = None) -> list[str]:
    """One sentence per installed requirement (base, or `extra`'s) at a version outside its declared bounds.

    A requirement that is not installed is left to the import that needs it (the extras'
    one-line errors say which extra brings it).
    """
    found = []
    for req in declared(extra):
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            continue
        if not req.specifier.contains(version, prereleases=True):
            found.append(f"{req.name} {version} is installed, and focalnet-edge needs {req.name}{req.specifier}"
                         f" (pip install '{req.name}{req.specifier}')")
    return found


def same_bound(extra: str, name: str, alias: str) -> list[str]:
    """The sentence of `problems` for distribution `alias` held to `extra`'s bound on `name` (onnxruntime-gpu, or
    JetPack's wheel, to the `cpu` extra's onnxruntime bound: one module, two distributions), where it is outside it."""
    bound = next((r.specifier for r in declared(extra) if r.name == name), None)
    try:
        version = metadata.version(alias)
    except metadata.PackageNotFoundError:
        return []
    if bound is None or bound.contains(version, prereleases=True):
        return []
    return [f"{alias} {version} is installed, and focalnet-edge needs {name}{bound} (pip install '{alias}{bound}')"]


def check(extra: str | None = None) -> None:
    """Raise one `InputError` naming every dependency (base, or `extra`'s) at a version the project cannot use."""
    found = problems(extra)
    if found:
        raise InputError("; ".join(found))
