"""Two runs on one output folder: the second fails at once (exit 2, one line naming the holder's
pid) and the folder is always one consistent build; a killed run leaves the previous folder as it
was, and the next run cleans up after it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from focalnet_edge.cli import main
from focalnet_edge.folder.manifest import check_artifact, read_manifest
from focalnet_edge.folder.outputs import claim, lock

ROOT = Path(__file__).resolve().parents[1]


def cli(*argv) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "focalnet_edge.cli", "-q", *map(str, argv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


WARM = ("import sys\n"
        "from focalnet_edge.cli import main\n"
        "import focalnet_edge.export, focalnet_edge.pipeline, focalnet_edge.verify.compare  # the slow imports, before the start\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
        "sys.exit(main(sys.argv[1:]))\n")


def warm_cli(*argv) -> subprocess.Popen:
    """A run with its imports done, that starts when told (`go`): it reaches the folder within a second."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-c", WARM, "-q", *map(str, argv)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert p.stdout.readline().strip() == "ready", p.communicate()
    return p


def go(p: subprocess.Popen) -> None:
    p.stdin.write("go\n")
    p.stdin.flush()


def finish(p: subprocess.Popen) -> tuple[int, str]:
    _, err = p.communicate(timeout=300)
    return p.returncode, err


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def consistent(folder: Path) -> dict:
    m = read_manifest(folder).to_json()
    assert m["artifacts"]
    for entry in m["artifacts"].values():
        check_artifact(folder, entry)  # every listed artifact matches its hash
    assert not list(folder.rglob("*.partial"))
    return m


def wait_for_lock(folder: Path, p: subprocess.Popen, timeout: float = 120) -> None:
    """Until `p` holds the folder's lock (its pid in the lock file, its staging folder made)."""
    lock_file = folder.parent / f".{folder.name}.lock"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise AssertionError(f"the first run ended early: {p.communicate()}")
        held = lock_file.is_file() and lock_file.read_text().strip() == str(p.pid)
        if held and list(folder.parent.glob(f".{folder.name}.staging-{p.pid}-*")):
            return
        time.sleep(0.05)
    raise AssertionError("the first run never took the lock")


@pytest.fixture(scope="module")
def few_images(tmp_path_factory) -> Path:
    """Two demo images per class: a quick verification, so a build is mostly export and lock."""
    src = ROOT / "focalnet_edge" / "data" / "demo" / "images"
    dst = tmp_path_factory.mktemp("images")
    for cls in sorted(src.iterdir()):
        (dst / cls.name).mkdir()
        for f in sorted(cls.iterdir())[:2]:
            shutil.copy(f, dst / cls.name / f.name)
    return dst


@pytest.mark.parametrize("round", [1, 2, 3])
def test_two_builds_on_one_folder(tmp_path, few_images, round):
    """A second build while the first holds the folder exits 2 at once, naming the first's pid.

    The first is paused (SIGSTOP) while it holds the lock, so the second surely meets it, however
    slow this machine is; it then finishes, and the folder is its consistent build.
    """
    out = tmp_path / "out"
    command = ["build", "--precision", "fp32", "--images", few_images, "--output", out]
    first = cli(*command)
    wait_for_lock(out, first)
    first.send_signal(signal.SIGSTOP)
    try:
        code2, err2 = finish(cli(*command))
    finally:
        first.send_signal(signal.SIGCONT)
    code1, err1 = finish(first)
    assert code1 == 0, err1
    assert code2 == 2, err2
    lines = [line for line in err2.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err2, err2
    assert f"pid {first.pid}" in lines[0] and str(out) in lines[0]
    consistent(out)


def test_simultaneous_builds(tmp_path, few_images):
    """Two builds started together (imports done): whichever takes the lock first builds; the other
    exits 2 (or, had it come after the first finished, builds again): never a mix of the two."""
    out = tmp_path / "out"
    runs = [warm_cli("build", "--precision", "fp32", "--images", few_images, "--output", out) for _ in range(2)]
    for p in runs:
        go(p)
    results = [finish(p) for p in runs]
    codes = sorted(c for c, _ in results)
    assert codes in ([0, 2], [0, 0]), results
    for code, err in results:
        if code == 2:
            assert len(err.strip().splitlines()) == 1 and "is writing this folder" in err
    consistent(out)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exported") / "out"
    assert main(["-q", "export", "--output", str(out)]) == 0
    return out


def test_lock_held_in_process_names_the_pid(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with lock(out):
        code = main(["-q", "export", "--output", str(out), "--force"])
    err = capsys.readouterr().err
    assert code == 2 and f"(pid {os.getpid()})" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_killed_run_leaves_the_folder_and_the_next_run_cleans_up(exported, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(exported, out)
    before = snapshot(out)
    first = warm_cli("export", "--output", out)
    go(first)
    wait_for_lock(out, first)
    time.sleep(0.2)  # into the export
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert snapshot(out) == before  # nothing of the killed run in the folder
    assert list(tmp_path.glob(".out.staging-*"))  # its staging folder is left beside it...
    weights = json.loads((out / "manifest.json").read_text())["model"]["weights_sha256"]
    with pytest.raises(RuntimeError), claim(out, weights=weights):
        raise RuntimeError("a run that fails")
    assert not list(tmp_path.glob(".out.staging-*"))  # ...until the next run cleans it
    assert snapshot(out) == before
    consistent(out)


def test_interrupted_swap_is_restored(exported, tmp_path):
    """Killed between the two renames of a commit: the next run puts the previous folder back."""
    out = tmp_path / "out"
    shutil.copytree(exported, out)
    before = snapshot(out)
    weights = json.loads((out / "manifest.json").read_text())["model"]["weights_sha256"]
    os.rename(out, tmp_path / ".out.old-12345")
    with pytest.raises(RuntimeError), claim(out, weights=weights):
        raise RuntimeError("a run that fails")
    assert snapshot(out) == before
    consistent(out)


@pytest.mark.parametrize("sig,repeat", [(signal.SIGTERM, 1), (signal.SIGINT, 1), (signal.SIGHUP, 1), (signal.SIGINT, 4), (signal.SIGTERM, 3)])
def test_signal_during_a_build_cleans_up_and_says_so(exported, tmp_path, few_images, sig, repeat):
    """SIGTERM (a container stopping, a job killed) ends a build as Ctrl-C does: its staging folder
    removed, the folder as it was, one line saying so, exit 128 + the signal's number; the same
    signal repeated during the cleanup and the exit (torch's atexit) stays quiet."""
    out = tmp_path / "out"
    shutil.copytree(exported, out)
    before = snapshot(out)
    p = warm_cli("build", "--precision", "fp32", "--images", few_images, "--output", out)
    go(p)
    wait_for_lock(out, p)
    time.sleep(0.3)  # into the export
    for _ in range(repeat):
        p.send_signal(sig)
        time.sleep(0.02)
    code, err = finish(p)
    assert code == 128 + sig, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err and "Exception ignored" not in err, err
    assert lines[0].startswith(f"focalnet-edge build: interrupted ({sig.name}); {out} was left as it was"), lines[0]
    assert snapshot(out) == before
    assert not list(tmp_path.glob(".out.staging-*")) and not list(tmp_path.glob("out.failed-*"))
