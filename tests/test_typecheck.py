"""The TensorRT code type-checked against TensorRT's own API, and kept clear of what TensorRT 11 removed.

TensorRT cannot run here, so mypy reads the `focalnet_edge/engine/` package and `runtime/tensorrt.py`
against the TensorRT 10.13 type stubs (tests/data/tensorrt-stubs-10.13, see its SOURCE): a
TensorRT name or argument that does not exist fails this test. A deliberately broken copy
proves the check can fail.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from trt_fake import STUBS, all_names

from focalnet_edge.engine.config import TENSORRT_11_REMOVED

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "focalnet_edge" / "runtime" / "tensorrt.py"
CONTEXTS = ROOT / "focalnet_edge" / "runtime" / "trt_contexts.py"
MODULES = [*sorted((ROOT / "focalnet_edge" / "engine").glob("*.py")), RUNNER, CONTEXTS]
CONFIG = """
[mypy]
python_version = 3.10
ignore_missing_imports = True
follow_imports = silent
[mypy-tensorrt.*]
ignore_errors = True
[mypy-tensorrt_bindings.*]
ignore_errors = True
[mypy-torch.*]
follow_imports = skip
[mypy-onnx.*]
follow_imports = skip
[mypy-onnxruntime.*]
follow_imports = skip
"""

needs_mypy = pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed (pip install 'focalnet-edge[test]')")


def _mypy(tmp_path: Path, files: list[Path]) -> subprocess.CompletedProcess:
    config = tmp_path / "mypy.ini"
    config.write_text(CONFIG)
    env = {"MYPYPATH": str(STUBS), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(config), "--cache-dir", str(ROOT / ".mypy_cache"),
                           "--no-error-summary", *map(str, files)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


@needs_mypy
def test_the_tensorrt_modules_type_check_against_the_tensorrt_stubs(tmp_path):
    result = _mypy(tmp_path, MODULES)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_mypy
def test_a_wrong_tensorrt_name_fails_the_type_check(tmp_path):
    source = RUNNER.read_text()
    assert "self._runtime.engine_host_code_allowed = True" in source
    broken = tmp_path / "focalnet_edge" / "runtime"
    broken.mkdir(parents=True)
    (broken.parent / "__init__.py").write_text("")
    (broken / "__init__.py").write_text("")
    for name in ("base.py",):
        (broken / name).write_text((RUNNER.parent / name).read_text())
    (broken / "tensorrt.py").write_text(source.replace("engine_host_code_allowed = True", "engine_host_code_allow = True")
                                        .replace("ctx.execute_async_v3(stream.cuda_stream)", "ctx.execute_async_v3(stream.cuda_stream, 0)"))
    result = _mypy(tmp_path, [broken / "tensorrt.py"])
    assert '"Runtime" has no attribute "engine_host_code_allow"' in result.stdout, result.stdout
    assert '"execute_async_v3" of "IExecutionContext"' in result.stdout, result.stdout


def test_the_tensorrt_11_list_names_real_tensorrt_10_api():
    assert TENSORRT_11_REMOVED <= all_names()  # every entry is a 10.13 name, so the list has no typos


def _version_branch(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Inside `if <a test on the TensorRT version or the 10.x-only weakly typed mode>:` (or the list itself)."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and any(w in ast.unparse(node.test) for w in ("version", "major", "weakly_typed")):
            return True
        if isinstance(node, ast.AnnAssign) and ast.unparse(node.target) == "TENSORRT_11_REMOVED":
            return True
        if isinstance(node, ast.Assign) and any(ast.unparse(t) == "TENSORRT_11_REMOVED" for t in node.targets):
            return True
    return False


#: member names too common to find by name alone (ILayer.precision vs our own `.precision`): matched only as `<...>.ILayer.precision`
GENERIC = {"precision"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_nothing_tensorrt_11_removed_is_used_outside_a_version_branch(path):
    """Attributes (`trt.BuilderFlag.FP16`, `config.int8_calibrator`) and getattr names of the removed API."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    used = []
    for entry in TENSORRT_11_REMOVED:
        owner, _, member = entry.rpartition(".")
        for n in ast.walk(tree):
            if isinstance(n, ast.Attribute) and n.attr == (member or owner):
                if member in GENERIC and not ast.unparse(n.value).endswith(owner):
                    continue
                if not _version_branch(n, parents):
                    used.append((n.lineno, entry))
            elif (isinstance(n, ast.Call) and ast.unparse(n.func) == "getattr" and len(n.args) > 1
                  and isinstance(n.args[1], ast.Constant) and n.args[1].value == member and not _version_branch(n, parents)):
                used.append((n.lineno, entry))
    assert used == []


def test_the_version_branch_check_finds_a_removed_name():
    tree = "def f(trt, config):\n    config.set_flag(trt.BuilderFlag.FP16)\n    if version >= (11, 0):\n        pass\n"
    parsed = ast.parse(tree)
    parents = {child: node for node in ast.walk(parsed) for child in ast.iter_child_nodes(node)}
    hits = [n for n in ast.walk(parsed) if isinstance(n, ast.Attribute) and n.attr == "FP16"]
    assert hits and not _version_branch(hits[0], parents)
    guarded = ast.parse("if major < 11:\n    config.set_flag(trt.BuilderFlag.FP16)\n")
    parents = {child: node for node in ast.walk(guarded) for child in ast.iter_child_nodes(node)}
    assert _version_branch(next(n for n in ast.walk(guarded) if isinstance(n, ast.Attribute) and n.attr == "FP16"), parents)
