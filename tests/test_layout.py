"""The package's layout bounds: import cycles (scripts/import_cycles.py), function-level imports included."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("import_cycles", ROOT / "scripts" / "import_cycles.py")
import_cycles = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(import_cycles)


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    pkg = tmp_path / "pkg"
    for name, text in files.items():
        path = pkg / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


def test_cycles_through_function_level_imports_are_found_and_type_checking_ones_are_not(tmp_path):
    pkg = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "from .sub import b\n",
        "sub/__init__.py": "",
        "sub/b.py": "def f():\n    from ..c import g\n",
        "c.py": "import pkg.a\n",
        "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n",
        "e.py": "from . import d\n",
    })
    g = import_cycles.graph(pkg)
    assert g["pkg.a"] == {"pkg.sub.b"} and g["pkg.sub.b"] == {"pkg.c"} and g["pkg.c"] == {"pkg.a"}
    assert g["pkg.d"] == set() and g["pkg.e"] == {"pkg.d"}
    assert import_cycles.knots(g) == [["pkg.a", "pkg.c", "pkg.sub.b"]]
    assert import_cycles.cycles(g) == [["pkg.a", "pkg.sub.b", "pkg.c"]]
    assert import_cycles.main([str(pkg)]) == 1



def test_the_package_has_no_import_cycle():
    """Issue 28's bound: no two of the package's modules import each other, function-level imports included."""
    assert import_cycles.knots(import_cycles.graph()) == []


def test_no_module_is_over_400_lines():
    """Issue 28's bound: one job a module; the largest is named where it grows past it."""
    package = Path(__file__).resolve().parents[1] / "focalnet_edge"
    sizes = {str(p.relative_to(package)): len(p.read_text().splitlines()) for p in package.rglob("*.py")}
    assert len(sizes) > 100
    assert {name: n for name, n in sizes.items() if n > 400} == {}
