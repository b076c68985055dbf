"""gst-python's entry point for `focalnetclassify`, copied by `focalnet-edge gst --plugin-path`.

GStreamer's Python loader (libgstpython) runs the system Python and imports every
`<dir>/python/*.py` of GST_PLUGIN_PATH. This file is copied to `<dir>/python/focalnetclassify.py`
with `<dir>/installation.json` beside its folder, which names the focalnet-edge installation
that printed `<dir>`: its Python version and the folders to put first on `sys.path`. It imports
nothing from focalnet-edge until those folders are in place, and when the installation cannot
be used it writes one line on stderr saying what to do and registers nothing.
"""

from __future__ import annotations

import json
import site
import sys
from pathlib import Path

INSTALLATION = Path(__file__).resolve().parents[1] / "installation.json"
_FIX = "run `focalnet-edge gst --plugin-path` again with the Python that has focalnet-edge and set GST_PLUGIN_PATH to the folder it prints"


def _use_installation() -> str | None:
    """Put the installation's folders first on sys.path; None, or why it cannot be used."""
    try:
        facts = json.loads(INSTALLATION.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"{INSTALLATION} is missing or unreadable ({e.__class__.__name__})"
    here = "%d.%d" % sys.version_info[:2]
    if facts.get("python") != here:
        return (f"focalnet-edge at {facts.get('package_root')} is installed for Python {facts.get('python')}, "
                f"GStreamer's Python is {here} ({sys.executable}); install focalnet-edge for that Python "
                f"(e.g. {sys.executable} -m venv --system-site-packages VENV && VENV/bin/pip install 'focalnet-edge[cpu]')")
    missing = [p for p in [facts.get("package_root"), *facts.get("site_packages", [])] if not p or not Path(p).is_dir()]
    if missing:
        return f"focalnet-edge's folders {', '.join(map(str, missing))} are gone"
    before = list(sys.path)
    for folder in facts["site_packages"]:
        site.addsitedir(folder)  # runs the .pth files too (editable installs)
    added = [p for p in sys.path if p not in before]
    sys.path[:] = [facts["package_root"], *added, *[p for p in before if p != facts["package_root"]]]
    return None


_reason = _use_installation()
if _reason is None:
    try:
        from focalnet_edge.deploy.gstreamer.element import FocalNetClassify, register
    except Exception as e:  # one line, never a traceback in the user's pipeline
        _reason = f"importing focalnet-edge failed ({e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''})"
if _reason is None:
    __gstelementfactory__ = register(FocalNetClassify)
else:
    print(f"focalnetclassify: not loaded: {_reason}; {_FIX}", file=sys.stderr)
