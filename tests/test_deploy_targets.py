"""What every deploy target must do, parametrized over the deploy table (`focalnet_edge.deploy.TARGETS`), so
a new row is checked as the others are: `deploy --to` offers exactly the table's names, every option of a
target is a CLI flag, the CLI prints the target's summary line, and every target refuses to overwrite
without force, refuses a changed artifact, leaves nothing half-written behind and chooses its
artifact by the precision table's rank (`runtime.choose_artifact`).

The references: argparse's own parse of the real CLI, the files on disk (listed before and after), and
the manifest's sha256 check failing on a byte appended by the test.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from focalnet_edge.cli import build_parser, main
from focalnet_edge.deploy import TARGETS
from focalnet_edge.errors import ArtifactError
from focalnet_edge.folder.manifest import add_artifact, read_manifest, write_manifest
from focalnet_edge.pipeline import ExportOptions, export_stage


@pytest.fixture(scope="module")
def plain(tmp_path_factory, demo_ckpt):
    out = tmp_path_factory.mktemp("targets") / "out"
    export_stage(demo_ckpt, out, ExportOptions(batch=(1, 2, 8)))
    return out


def _options(name: str, tmp_path: Path, **fields):
    """The target's options; Triton writes into a model repository of its own (`repo`), DeepStream into the folder."""
    cls = TARGETS[name].options
    if "repo" in {f.name for f in dataclasses.fields(cls)}:
        fields.setdefault("repo", tmp_path / "repo")
    return cls(**fields)


def _written(result) -> Path:
    """The folder a target wrote: Triton's model folder, DeepStream's deepstream/."""
    return Path(getattr(result, "model_dir", result))


def _files(*roots: Path) -> set[Path]:
    return {p for root in roots if root.exists() for p in root.rglob("*")}


def test_deploy_to_offers_exactly_the_tables_targets():
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["deploy", "out", "--to", "nowhere"])
    for name in TARGETS:
        assert parser.parse_args(["deploy", "out", "--to", name]).to == name


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_option_of_a_target_is_a_cli_flag(name):
    args = vars(build_parser().parse_args(["deploy", "out", "--to", name]))
    fields = {f.name for f in dataclasses.fields(TARGETS[name].options)}
    assert fields <= set(args), f"options of {name} without a flag: {sorted(fields - set(args))}"
    assert "force" in fields  # every target replaces its output only when asked


@pytest.mark.parametrize("name", list(TARGETS))
def test_the_cli_prints_the_targets_summary(name, plain, tmp_path, capsys):
    folder = tmp_path / "out"
    shutil.copytree(plain, folder)
    extra = ["--repo", str(tmp_path / "repo")] if name == "triton" else []
    assert main(["deploy", str(folder), "--to", name, *extra]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    written = _written(TARGETS[name].deploy(folder, _options(name, tmp_path, force=True)))
    assert line.startswith(f"wrote {written} (")
    assert written.is_dir() and any(written.iterdir())


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_target_replaces_its_output_only_with_force(name, plain, tmp_path):
    folder = tmp_path / "out"
    shutil.copytree(plain, folder)
    target = TARGETS[name]
    written = _written(target.deploy(folder, _options(name, tmp_path)))
    (written / "stale.txt").write_text("x")
    with pytest.raises(ArtifactError, match="force"):
        target.deploy(folder, _options(name, tmp_path))
    assert (written / "stale.txt").exists()  # the refused run changed nothing
    assert not (_written(target.deploy(folder, _options(name, tmp_path, force=True))) / "stale.txt").exists()


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_target_refuses_a_changed_artifact_and_writes_nothing(name, plain, tmp_path):
    folder = tmp_path / "out"
    shutil.copytree(plain, folder)
    with open(folder / "model.onnx", "ab") as f:
        f.write(b"\0")
    before = _files(folder, tmp_path / "repo")
    with pytest.raises(ArtifactError, match="sha256|does not match"):
        TARGETS[name].deploy(folder, _options(name, tmp_path))
    assert _files(folder, tmp_path / "repo") - before <= {tmp_path / "repo"}  # at most the empty repository folder


#: what each target deployed, read off what it wrote (a new row of the table needs one here)
CHOSEN = {
    "triton": lambda result: result.artifact,
    "deepstream": lambda written: json.loads((written / "deepstream.json").read_text())["source"]["path"],
}


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_target_chooses_by_the_tables_rank(name, plain, tmp_path):
    """Verified before failed, then the table's GPU order (fp16 before fp32): one `choose_artifact` for all
    (DeepStream used to take fp16 whenever it was built, failed or not)."""
    folder = tmp_path / "out"
    shutil.copytree(plain, folder)
    shutil.copyfile(folder / "model.onnx", folder / "model.fp16.onnx")  # an fp32 graph filed as fp16: its input is float32, as nvinfer needs
    manifest = read_manifest(folder).to_json()
    fp16 = add_artifact(manifest, folder / "model.fp16.onnx", "fp16", "onnx")
    for passed, expected in ((True, "model.fp16.onnx"), (False, "model.onnx")):
        manifest["artifacts"]["model.onnx"]["verification"] = {"passed": True}
        fp16["verification"] = {"passed": passed}
        write_manifest(folder, manifest)
        assert CHOSEN[name](TARGETS[name].deploy(folder, _options(name, tmp_path, force=True))) == expected


#: a value for one option of each target that differs from its default (what a user would type)
OTHER_VALUE = {"triton": ("--instances", "2"), "deepstream": ("--batch-size", "4")}


@pytest.mark.parametrize("name", list(TARGETS))
def test_another_targets_option_is_refused_not_ignored(name, plain, tmp_path, capsys):
    """`deploy --to A` with an option only target B reads would have no effect: one line, exit 2, nothing written."""
    assert set(OTHER_VALUE) == set(TARGETS)  # a new target brings its row here
    folder = tmp_path / "out"
    shutil.copytree(plain, folder)
    before = _files(folder, tmp_path / "repo")
    extra = ["--repo", str(tmp_path / "repo")] if name == "triton" else []
    for other, (flag, value) in OTHER_VALUE.items():
        if other == name:
            continue
        assert main(["-q", "deploy", str(folder), "--to", name, *extra, flag, value]) == 2
        (line,) = capsys.readouterr().err.splitlines()
        assert line.endswith(f"error: {flag} {value} is an option of --to {other}, not of --to {name}"), line
    assert _files(folder, tmp_path / "repo") == before
