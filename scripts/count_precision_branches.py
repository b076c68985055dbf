"""Count the places code branches on a precision (or quantization-form) name outside the precision table.

A "branch" is, in the package's Python files other than `folder/artifacts.py`:

- a comparison (`==`, `!=`, `in`, `not in`) with a string constant that is a precision name, or with
  a tuple/list/set literal holding one (`if name == "fp8"`, `w in ("int8", "int8-cpu")`);
- a dict literal most of whose keys are precision names (a table that selects behaviour by name;
  a dtype table such as {"float32": ..., "int8": ...} is not one);
- a tuple/list/set literal of two or more precision names (a second list of names outside the table);
- a `match` case on such a constant.

Names: fp32, fp16, int8, int8-cpu, fp8; and the quantization form names tensorrt/cpu, counted only
where compared with something named `form` (`"tensorrt"` is also the backend's and the module's name).
A comparison with a NumPy dtype name (`arr.dtype.name in ("int8", ...)`) is about a dtype, not skipped
by the script: it prints every place, so the reader can set those apart.

    python scripts/count_precision_branches.py [PACKAGE_DIR]     # one line per place, then the totals

Run from the repository root after a merge to see what came back.
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path

PRECISION_NAMES = ("fp32", "fp16", "int8", "int8-cpu", "fp8")
FORM_NAMES = ("tensorrt", "cpu")
NAMES = PRECISION_NAMES + FORM_NAMES
TABLE = Path("folder") / "artifacts.py"


def _names_in(node: ast.AST, names: tuple[str, ...] = PRECISION_NAMES) -> list[str]:
    """The names a constant or a tuple/list/set literal of constants holds."""
    if isinstance(node, ast.Constant) and node.value in names:
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in names]
    return []


def _is_form(node: ast.AST) -> bool:
    """Whether `node` is a name or attribute called like a quantization form (`form`, `row.form`, `int8_form`)."""
    text = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return "form" in text.lower()


def _compare(node: ast.Compare) -> list[tuple[int, str, str]]:
    if not any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops):
        return []
    sides = [node.left, *node.comparators]
    found = [(node.lineno, n, "compare") for side in sides for n in _names_in(side)]
    if any(_is_form(side) for side in sides):
        found += [(node.lineno, n, "compare (form)") for side in sides for n in _names_in(side, FORM_NAMES)]
    return found


def branches(path: Path) -> list[tuple[int, str, str]]:
    """(line, name, kind) of every branch on a precision name in the Python file `path`."""
    found: list[tuple[int, str, str]] = []
    compared: set[int] = set()  # literals already counted as a comparison's side
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Compare):
            found += _compare(node)
            compared.update(id(s) for s in node.comparators)
        elif isinstance(node, ast.Dict):
            keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
            named = [k for k in keys if k in PRECISION_NAMES]
            if named and 2 * len(named) >= len(keys):
                found += [(node.lineno, k, "dict key") for k in named]
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)) and id(node) not in compared:
            named = _names_in(node)
            if len(named) >= 2:
                found += [(node.lineno, n, "list of names") for n in named]
        elif isinstance(node, ast.match_case) and isinstance(node.pattern, ast.MatchValue):
            found += [(node.pattern.lineno, n, "match") for n in _names_in(node.pattern.value)]
    return sorted(set(found))


def main(argv: list[str]) -> int:
    package = Path(argv[1] if len(argv) > 1 else "focalnet_edge")
    totals: Counter[str] = Counter()
    files: Counter[str] = Counter()
    lines: set[tuple[str, int]] = set()
    for path in sorted(package.rglob("*.py")):
        if path.relative_to(package) == TABLE:
            continue
        for line, name, kind in branches(path):
            print(f"{path}:{line}: {name!r} ({kind})")
            totals[name] += 1
            files[str(path)] += 1
            lines.add((str(path), line))
    print("\nper name: " + ", ".join(f"{n} {totals[n]}" for n in NAMES))
    print(f"in all: {sum(totals.values())} names on {len(lines)} lines in {len(files)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
