"""`focalnetclassify`, a GStreamer element (gst-python) that classifies frames or regions in place.

How it reaches this installation. GStreamer's Python loader (`gstreamer1.0-python3-plugin-loader`)
embeds the *system* Python (Debian's /usr/bin/python3, which has `gi`) and imports
`<dir>/python/*.py` for each `<dir>` of GST_PLUGIN_PATH; focalnet-edge usually lives in a venv of
another interpreter. `plugin_path()` (`focalnet-edge gst --plugin-path`) writes a folder holding
`python/focalnetclassify.py` (a copy of `loader.py`) and `installation.json`: the Python version
and the folders of the installation that printed it (the folder holding the `focalnet_edge`
package and that Python's site-packages). The loader puts those folders first on `sys.path`
and imports the element from there, so the element runs the printing installation's numpy,
onnxruntime and Pillow inside GStreamer's process.

Why in the process and not in a worker of the venv's Python. Compiled modules (numpy,
onnxruntime) are built for one Python minor version (`cpython-311` in their file names), not
one interpreter: Debian 12's Python 3.11.2 imports a pyenv 3.11.7 venv's numpy 2.4 and
onnxruntime 1.32 (checked on this project's CI image; the system Python has no numpy of its own
to clash with, and where Debian's python3-numpy is installed the installation's folders come
first on sys.path, so its numpy is the one imported). A worker process would add a copy of every frame across a pipe plus a context
switch per batch, for nothing when the versions match. When they do not match (the
installation's Python is 3.12, GStreamer's 3.11), the loader registers nothing and says in one
line to install focalnet-edge for GStreamer's Python (a venv made with --system-site-packages,
so it sees `gi`) and print the folder from there.

Run `gst-inspect-1.0` and C programs with the venv's `bin` *off* PATH: the Python embedded by
libgstpython takes its home (sys.prefix, pyvenv.cfg) from the first `python3` on PATH, a venv
without `gi` makes the loader fail ("pygobject initialization failed"), and GStreamer then
blacklists libgstpython.so until its registry file is deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import site
import sys
import tempfile
from pathlib import Path

from ...errors import ConfigError

ELEMENT = "focalnetclassify"
_PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # the folder holding focalnet_edge/


def installation() -> dict:
    """The facts `loader.py` needs: this Python's version and the folders to put on sys.path."""
    folders = [*site.getsitepackages(), *([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])]
    return {
        "python": "%d.%d" % sys.version_info[:2],
        "executable": sys.executable,
        "package_root": str(_PACKAGE_ROOT),
        "site_packages": [f for f in dict.fromkeys(folders) if Path(f).is_dir()],
    }


def default_folder() -> Path:
    """Where `plugin_path` writes by default: a per-installation folder in the user's cache."""
    facts = installation()
    key = hashlib.sha256(f"{facts['executable']}\0{facts['package_root']}".encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "focalnet-edge" / "gstreamer" / key


def plugin_path(folder: str | os.PathLike | None = None) -> Path:
    """Write the plugin folder for this installation (default `default_folder()`) and return it.

    The folder is complete or absent: files are written to a temporary folder beside it and
    renamed into place, so a pipeline that scans it meanwhile never sees half of it.
    """
    target = Path(folder) if folder is not None else default_folder()
    try:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target, prefix=".staging-") as tmp:
            staged = Path(tmp)
            (staged / "python").mkdir()
            shutil.copyfile(Path(__file__).with_name("loader.py"), staged / "python" / f"{ELEMENT}.py")
            (staged / "installation.json").write_text(json.dumps(installation(), indent=2) + "\n", encoding="utf-8")
            (target / "python").mkdir(exist_ok=True)
            os.replace(staged / "installation.json", target / "installation.json")
            os.replace(staged / "python" / f"{ELEMENT}.py", target / "python" / f"{ELEMENT}.py")
    except OSError as e:
        raise ConfigError(f"{target}: cannot write the GStreamer plugin folder ({e.strerror or e}); pass a writable --dir") from None
    return target.resolve()
