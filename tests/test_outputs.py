"""The output folder's promises where users' folders live (issue 27): a failed build never replaces
the previous folder and is kept where the user is told; a folder that is a real mount point (a
tmpfs, as a container volume) is built into and rebuilt, and a commit cut at any step leaves the
previous build or, once the next run has finished it, the new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from focalnet_edge.folder import outputs
from focalnet_edge.cli import main
from focalnet_edge.folder.manifest import check_artifact, read_manifest

ROOT = Path(__file__).resolve().parents[1]
DEMO_IMAGES = ROOT / "focalnet_edge" / "data" / "demo" / "images"
SWITCHES = Path(__file__).parent / "data" / "switches"
#: an INT8 build whose ranges clip almost everything: its gate and verification fail (cosine ~0.6)
FAILING_INT8 = ["--precision", "int8", "--calib-data", "demo", "--calib-size", "24", "--calib-method", "percentile",
                "--calib-percentile", "1", "--max-fallback", "0", "--int8-smoothing", "0"]


def snapshot(folder: Path, skip: str | None = None) -> dict[str, str]:
    """sha256 of every file under `folder` by relative path (folders as 'dir'); names starting with `skip` left out."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if skip and rel.startswith(skip):
            continue
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def consistent(folder: Path) -> dict:
    m = read_manifest(folder).to_json()
    assert m["artifacts"]
    for entry in m["artifacts"].values():
        check_artifact(folder, entry)
    assert not list(folder.rglob("*.partial"))
    return m


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def few_images(tmp_path_factory) -> Path:
    """Two demo images per class: a quick verification with accuracy."""
    dst = tmp_path_factory.mktemp("images")
    for cls in sorted(DEMO_IMAGES.iterdir()):
        (dst / cls.name).mkdir()
        for f in sorted(cls.iterdir())[:2]:
            shutil.copy(f, dst / cls.name / f.name)
    return dst


@pytest.fixture(scope="module")
def builds(tmp_path_factory, few_images) -> dict[str, Path]:
    """Two good builds of the demo: fp32 and fp16 (built once, copied by the tests)."""
    root = tmp_path_factory.mktemp("builds")
    made = {}
    for precision in ("fp32", "fp16"):
        made[precision] = root / precision
        assert main(["-q", "build", "--precision", precision, "--images", str(few_images), "--output", str(made[precision])]) == 0
    return made


@pytest.fixture
def tmpfs(tmp_path) -> Path:
    """An empty folder that is a real tmpfs mount point (unmounted afterwards); skipped where mount is not permitted."""
    point = tmp_path / "volume"
    point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(point)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}); needs root")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=True)


def last_line(out: str) -> str:
    return [line for line in out.splitlines() if line.strip()][-1]


def kept_path(line: str) -> Path:
    return Path(line.rsplit("the failed build is in ", 1)[1])


# -- a failed build never replaces the folder --------------------------------------------------------
def test_failed_int8_build_leaves_the_previous_folder_and_keeps_the_failed_one(capsys, builds, few_images, tmp_path):
    """The issue's case: a verified fp16 folder, then an INT8 build whose gate and verification fail."""
    out = tmp_path / "out"
    shutil.copytree(builds["fp16"], out)
    before = snapshot(out)
    code, stdout, _ = run(capsys, "-q", "build", "--output", out, "--images", few_images, *FAILING_INT8)
    assert code == 1
    assert snapshot(out) == before  # byte for byte, model.fp16.onnx still there
    line = last_line(stdout)
    assert "not committed" in line and f"{out} was left as it was" in line and "accuracy gate not met" in line
    kept = kept_path(line)
    assert kept.parent == tmp_path and kept.name.startswith("out.failed-")
    m = consistent(kept)  # the failed build, whole, for diagnosis
    assert m["artifacts"]["model.int8.onnx"]["verification"]["passed"] is False
    assert not list(tmp_path.glob(".out.staging-*"))


def test_force_onto_another_model_that_fails_leaves_the_folder(capsys, builds, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(builds["fp32"], out)
    before = snapshot(out)
    code, stdout, _ = run(capsys, "-q", "build", "--model", SWITCHES, "--force", "--output", out, *FAILING_INT8)
    assert code == 1
    assert snapshot(out) == before
    kept = kept_path(last_line(stdout))
    assert read_manifest(kept).to_json()["model"]["source"] == str(SWITCHES)


# -- a folder that is a mount point ------------------------------------------------------------------
def test_build_into_an_empty_mount_point_then_rebuild(capsys, tmpfs, few_images):
    assert outputs.is_mount_point(tmpfs)
    code, _, err = run(capsys, "-q", "build", "--precision", "fp32", "--images", few_images, "--output", tmpfs)
    assert code == 0, err  # was EBUSY: an empty mount point cannot be removed to rename the staging folder onto it
    assert list(consistent(tmpfs)["artifacts"]) == ["model.onnx"]
    (tmpfs / "notes.txt").write_text("mine")
    code, _, err = run(capsys, "-q", "build", "--precision", "fp16", "--images", few_images, "--output", tmpfs)
    assert code == 0, err  # was EXDEV after the manifest had been unlinked
    assert sorted(consistent(tmpfs)["artifacts"]) == ["model.fp16.onnx", "model.onnx"]
    code, _, err = run(capsys, "-q", "export", "--output", tmpfs)
    assert code == 0, err
    assert list(consistent(tmpfs)["artifacts"]) == ["model.onnx"]
    assert not (tmpfs / "model.fp16.onnx").exists()  # the previous build's artifacts go; the user's files stay
    assert (tmpfs / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmpfs.iterdir()) == [outputs.INSIDE + "lock", "manifest.json", "model.onnx", "notes.txt"]
    assert not list(tmpfs.parent.glob(".volume.*staging*"))
    code, stdout, err = run(capsys, "-q", "predict", tmpfs, next((DEMO_IMAGES / "3").iterdir()))
    assert code == 0 and stdout.split(": ")[1].startswith("3 "), (stdout, err)


def test_volume_under_a_read_only_root(capsys, tmp_path, few_images):
    """A container's view: the root (the volume's parent) read-only, the volume a writable mount."""
    root = tmp_path / "root"
    volume = root / "data"
    volume.mkdir(parents=True)
    mounted = []
    try:
        for argv in (["mount", "--bind", root, root], ["mount", "-o", "remount,bind,ro", root],
                     ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", volume]):
            done = subprocess.run([str(a) for a in argv], capture_output=True, text=True)
            if done.returncode != 0:
                pytest.skip(f"cannot mount here ({done.stderr.strip() or done.returncode}); needs root")
            if argv[1] != "-o":
                mounted.append(argv[-1])
        with pytest.raises(OSError):
            (root / "probe").write_text("x")
        for precision in ("fp32", "fp16"):
            code, _, err = run(capsys, "-q", "build", "--precision", precision, "--images", few_images, "--output", volume)
            assert code == 0, err
        assert sorted(consistent(volume)["artifacts"]) == ["model.fp16.onnx", "model.onnx"]
    finally:
        for point in reversed(mounted):
            subprocess.run(["umount", str(point)], check=True)


def test_failed_build_on_a_mount_point(capsys, tmpfs, builds, few_images):
    for f in builds["fp16"].iterdir():
        shutil.copy2(f, tmpfs / f.name)
    before = snapshot(tmpfs)
    code, stdout, _ = run(capsys, "-q", "build", "--output", tmpfs, "--images", few_images, *FAILING_INT8)
    assert code == 1
    assert snapshot(tmpfs, skip=outputs.INSIDE) == before
    kept = kept_path(last_line(stdout))
    assert kept.parent == tmpfs and kept.name.startswith(outputs.INSIDE + "failed-")  # on the volume: no copy across devices
    consistent(kept)
    code, _, err = run(capsys, "-q", "export", "--output", tmpfs)  # still ours: no --force needed
    assert code == 0, err
    consistent(tmpfs)
    assert kept.is_dir()  # kept until the user removes it


@pytest.mark.parametrize("ours", [True, False])
def test_in_place_commit_cut_at_every_step(tmpfs, builds, monkeypatch, ours):  # noqa: C901 - a kill injected at each step of the commit, with its check, in one loop
    """A kill at any moment of an in-place commit: the previous build, or after the next run's
    cleanup the new one; never a mix, never the manifest gone for good."""
    old, new = builds["fp16"], builds["fp32"]
    rename = os.rename
    for cut in range(1, 64):
        for p in tmpfs.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        for f in old.iterdir():
            shutil.copy2(f, tmpfs / f.name)
        staging = tmpfs / f"{outputs.INSIDE}staging-1-abc"
        shutil.copytree(new, staging)
        calls = []

        def killed(src, dst, calls=calls, cut=cut):
            calls.append(src)
            if len(calls) == cut:
                raise SystemExit("killed")  # what kill -9 leaves: no cleanup runs after this point
            return rename(src, dst)

        monkeypatch.setattr(os, "rename", killed)
        try:
            outputs.commit(staging, tmpfs, ours=ours, inside=True)
            finished = True
        except SystemExit:
            finished = False
        finally:
            monkeypatch.setattr(os, "rename", rename)
        if not finished:
            if snapshot(tmpfs, skip=outputs.INSIDE) == snapshot(old):
                continue  # cut before anything moved: the previous build, staging left to clean
            outputs.cleanup_leftovers(tmpfs)  # the next run, under the lock
        expected = {k: v for k, v in snapshot(new).items()}
        if not ours:  # a foreign folder keeps files of other names
            expected.update({k: v for k, v in snapshot(old).items() if k not in expected})
        outputs.cleanup_leftovers(tmpfs)
        assert snapshot(tmpfs) == expected, cut
        consistent(tmpfs)
        if finished:
            break
    else:
        pytest.fail("the commit never finished")


# -- verify reads only ------------------------------------------------------------------------------
def test_verify_limit_keeps_the_builds_figures(capsys, builds, tmp_path):
    """`verify --limit 5` goes to report.json; the manifest keeps the build's figures (20 images here)."""
    out = tmp_path / "out"
    shutil.copytree(builds["fp16"], out)
    manifest = (out / "manifest.json").read_bytes()
    assert read_manifest(out).to_json()["artifacts"]["model.onnx"]["verification"]["images"] == 20
    code, _, err = run(capsys, "-q", "verify", out, "--limit", "5")
    assert code == 0, err
    assert (out / "manifest.json").read_bytes() == manifest
    reports = json.loads((out / "report.json").read_text())
    assert [r["images"] for r in reports] == [5, 5]


@pytest.fixture
def read_only(tmp_path, builds, request):
    """A built folder under a real read-only bind mount: of the folder itself, or of its parent too."""
    parent = tmp_path / "image"
    out = parent / "out"
    shutil.copytree(builds["fp16"], out)
    point = out if request.param == "folder" else parent
    done = subprocess.run(["mount", "--bind", str(point), str(point)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here ({done.stderr.strip() or done.returncode}); needs root")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(point)], check=True, capture_output=True)
        yield out
    finally:
        subprocess.run(["umount", str(point)], check=True)


@pytest.mark.parametrize("read_only", ["folder", "parent"], indirect=True)
@pytest.mark.parametrize("reference", ["stored", "torch"])
def test_verify_a_read_only_folder(capsys, read_only, reference):
    out = read_only
    with pytest.raises(OSError):
        (out / "probe").write_text("x")  # really read-only
    before = snapshot(out.parent)
    code, stdout, err = run(capsys, "-q", "verify", out, "--reference", reference, "--limit", "10")
    assert code == 0, err
    assert "pass" in stdout and "FAIL" not in stdout
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [f"{out / 'report.json'} not written: {out} is read-only"], err
    assert snapshot(out.parent) == before


@pytest.mark.parametrize("read_only", ["folder"], indirect=True)
def test_diagnose_and_deploy_on_a_read_only_folder(capsys, read_only):
    """diagnose only reads (its probe goes to the temporary folder); deploy, which must write beside
    the folder, is one line naming the folder, exit 2, never a traceback."""
    out = read_only
    before = snapshot(out.parent)
    code, stdout, err = run(capsys, "-q", "diagnose", out, "--limit", "4", "--json")
    assert code == 0, err
    assert json.loads(stdout)["blocks"], stdout
    code, _, err = run(capsys, "-q", "deploy", out, "--to", "deepstream", "--force")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert f"{out}: cannot write in it (Read-only file system)" in lines[0], lines[0]
    assert snapshot(out.parent) == before


def test_a_lock_file_left_beside_an_output_folder_does_not_make_its_parent_foreign(capsys, builds, tmp_path):
    """Each build leaves `.<name>.lock` beside its folder (the lock must outlive the run); that file alone
    does not make the parent "not empty and not ours" for a build into the parent itself."""
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / ".out.lock").touch()  # what a build into parent/out leaves, failed or not
    code, _, err = run(capsys, "-q", "build", "--precision", "fp32", "--output", parent)
    assert code == 0, err
    assert (parent / "manifest.json").is_file()
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / ".notes.lock").write_text("a user's file, not empty")
    code, _, err = run(capsys, "-q", "build", "--precision", "fp32", "--output", tmp_path / "foreign")
    assert code == 2 and "not empty and not a focalnet-edge output folder" in err, err


@pytest.fixture
def umask_027():
    before = os.umask(0o027)
    yield
    os.umask(before)


def test_one_folder_replacement_and_one_mode_for_builds_and_deploy_folders(tmp_path, umask_027):
    """`replacing_folder` (the deploy targets) and `claim` (a build) give a new folder mkdir's mode under
    the umask, keep the mode of the folder they replace, and leave it untouched when the block fails."""
    from focalnet_edge.errors import ArtifactError
    from focalnet_edge.folder.io import replacing_folder
    from focalnet_edge.folder.manifest import TOOL

    def mode(p: Path) -> int:
        return p.stat().st_mode & 0o7777

    target = tmp_path / "repo" / "model"
    with replacing_folder(target) as tmp:
        (tmp / "a.txt").write_text("one")
    assert mode(target) == 0o750 and (target / "a.txt").read_text() == "one"
    target.chmod(0o700)
    with replacing_folder(target) as tmp:
        (tmp / "b.txt").write_text("two")
    assert mode(target) == 0o700 and sorted(p.name for p in target.iterdir()) == ["b.txt"]
    with pytest.raises(ArtifactError, match="could not be written"), replacing_folder(target) as tmp:
        (tmp / "c.txt").write_text("three")
        raise PermissionError(13, "Permission denied")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]  # no temporary or set-aside folder left

    build = tmp_path / "build"
    for expect in (0o750, 0o700):
        with outputs.claim(build, source="x") as stage:
            (stage.path / "manifest.json").write_text(json.dumps({"tool": {"name": TOOL}, "model": {"source": "x"}}))
        assert mode(build) == expect
        build.chmod(0o700)
