"""List the import cycles among focalnet_edge's modules, function-level imports included.

    python scripts/import_cycles.py [PACKAGE_DIR]      # exit 1 when there is a cycle

Every `import` and `from ... import` of the package's own modules is read with `ast`, wherever
it stands (module level, inside a function, under `try`), except under `if TYPE_CHECKING:`,
which never runs. `from .pkg import name` counts as an import of `pkg.name` where that is a
module, else of `pkg` (its `__init__`). The implicit import of a parent package's `__init__`
is not counted: it is Python's doing, not a dependency the code chose.

Printed: each strongly connected component of more than one module (a knot of modules that
reach each other), then one shortest cycle through every import edge inside a knot, then the
counts. `tests/test_layout.py` runs it over the package.
"""

from __future__ import annotations

import ast
import sys
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "focalnet_edge"


def modules(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under `package_dir` (a package is its `__init__`)."""
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's own modules that module `name` (at `path`) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top = next(iter(known)).split(".")[0]
    out: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
            continue
        if node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if not target.startswith(top):
            continue
        for alias in node.names:
            sub = f"{target}.{alias.name}"
            out.add(sub if sub in known else target)
    out.discard(name)
    return {m for m in out if m in known}


def graph(package_dir: Path = ROOT) -> dict[str, set[str]]:
    known = modules(package_dir)
    return {name: imports_of(name, path, known) for name, path in known.items()}


def _reach(g: dict[str, set[str]], start: str) -> set[str]:
    """Every module `start` imports, directly or not."""
    seen, todo = set(), [start]
    while todo:
        for w in g[todo.pop()] - seen:
            seen.add(w)
            todo.append(w)
    return seen


def knots(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (modules that reach each other), each sorted."""
    reach = {v: _reach(g, v) for v in g}
    out = {tuple(sorted({v} | {w for w in reach[v] if v in reach[w]})) for v in g}
    return sorted(list(k) for k in out if len(k) > 1)


def _path(g: dict[str, set[str]], start: str, goal: str, within: set[str]) -> list[str]:
    """A shortest import path start -> ... -> goal inside `within` (breadth first)."""
    prev = {start: start}
    todo = deque([start])
    while todo:
        v = todo.popleft()
        if v == goal:
            break
        for w in sorted(g[v] & within):
            if w not in prev:
                prev[w] = v
                todo.append(w)
    path = [goal]
    while path[-1] != start:
        path.append(prev[path[-1]])
    return path[::-1]


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle through each import edge inside a knot, deduplicated (rotated to start at its least module)."""
    seen: set[tuple[str, ...]] = set()
    out = []
    for knot in knots(g):
        members = set(knot)
        for v in knot:
            for w in sorted(g[v] & members):
                cycle = [v, *_path(g, w, v, members)[:-1]]
                k = cycle.index(min(cycle))
                key = tuple(cycle[k:] + cycle[:k])
                if key not in seen:
                    seen.add(key)
                    out.append(list(key))
    return sorted(out, key=lambda c: (len(c), c))


def main(argv: list[str]) -> int:
    g = graph(Path(argv[0]) if argv else ROOT)
    ks, cs = knots(g), cycles(g)
    for k in ks:
        print(f"knot of {len(k)}: {', '.join(k)}")
    for c in cs:
        print("cycle: " + " -> ".join([*c, c[0]]))
    print(f"{len(g)} modules, {sum(map(len, g.values()))} import edges, {len(ks)} knots, {len(cs)} cycles")
    return 1 if cs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
