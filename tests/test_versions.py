"""Dependency versions: the start-up check reads pyproject's bounds, and a wrong version is one line.

The reference for the bounds is pyproject.toml itself (read with tomllib, independently of the
installed metadata the check reads). The wrong version is made the way pip would see one: a
distribution's metadata folder earlier on the path, in a real subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from focalnet_edge import versions

ROOT = Path(__file__).resolve().parents[1]

tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")


def _pyproject_requirements(extra: str | None) -> set[str]:
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    return {f"{Requirement(line).name.lower()}{Requirement(line).specifier}" for line in lines
            if Requirement(line).marker is None or Requirement(line).marker.evaluate({"extra": extra or ""})}


@pytest.mark.parametrize("extra", [None, "build", "cpu"])
def test_the_checked_bounds_are_pyprojects(extra):
    checked = {f"{r.name.lower()}{r.specifier}" for r in versions.declared(extra)}
    assert checked == _pyproject_requirements(extra)
    assert versions.problems(extra) == []  # this environment was installed from them


def _fake_distribution(folder: Path, name: str, version: str) -> None:
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_a_too_old_dependency_is_one_line_naming_found_and_needed(tmp_path):
    _fake_distribution(tmp_path / "site", "onnx", "1.14.1")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), str(ROOT)]))
    r = subprocess.run([sys.executable, "-m", "focalnet_edge.cli", "info", str(tmp_path)], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    needed = next(req for req in _pyproject_requirements(None) if req.startswith("onnx>"))
    assert "onnx 1.14.1 is installed" in lines[0] and needed in lines[0], lines[0]


def test_a_too_old_torch_is_named_when_building(tmp_path):
    _fake_distribution(tmp_path / "site", "torch", "2.0.1")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), str(ROOT)]))
    r = subprocess.run([sys.executable, "-m", "focalnet_edge.cli", "build", "--output", str(tmp_path / "out")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2, r.stderr
    needed = next(req for req in _pyproject_requirements("build") if req.startswith("torch"))
    assert "torch 2.0.1 is installed" in r.stderr and needed in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("distribution,named", [("onnxruntime", "onnxruntime"), ("onnxruntime_gpu", "onnxruntime-gpu")])
def test_a_too_old_onnxruntime_is_named_when_an_onnx_file_runs(tmp_path, distribution, named):
    """ONNX Runtime is the `cpu` extra (or `gpu`, or JetPack's wheel), one module from either distribution: its bound is
    checked where it is first needed, onnxruntime-gpu held to the `cpu` extra's onnxruntime bound."""
    _fake_distribution(tmp_path / "site", distribution, "1.16.3")
    (tmp_path / "model.onnx").write_bytes(b"")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), str(ROOT)]))
    r = subprocess.run([sys.executable, "-m", "focalnet_edge.cli", "predict", str(tmp_path / "model.onnx"), "x.png"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2, r.stderr
    needed = next(req for req in _pyproject_requirements("cpu") if req.startswith("onnxruntime"))
    (line,) = r.stderr.strip().splitlines()
    assert f"{named} 1.16.3 is installed, and focalnet-edge needs {needed}" in line, line
