"""The typed manifest (issue 28): manifest.json parsed once into `Manifest`/`Artifact`/`ModelSource`, labels
decoded once, the same one-line errors as the hand validator it replaced, and the JSON written back unchanged."""

from __future__ import annotations

import json

import pytest

from focalnet_edge.errors import ArtifactError, ConfigError
from focalnet_edge.folder.artifacts import ONNX
from focalnet_edge.folder.contract import InputContract
from focalnet_edge.folder.manifest import Artifact, Manifest, read_manifest, write_manifest


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from focalnet_edge.cli import main

    out = tmp_path_factory.mktemp("built")
    assert main(["-q", "build", "--precision", "fp16", "--output", str(out)]) == 0
    return out


@pytest.fixture()
def folder(built, tmp_path):
    import shutil

    copy = tmp_path / "out"
    shutil.copytree(built, copy)
    return copy


def test_the_attributes_are_the_json_read_once(folder):
    data = json.loads((folder / "manifest.json").read_text())
    m = read_manifest(folder)
    assert isinstance(m, Manifest) and m.to_json() == data  # the document as read, for the writers
    assert not isinstance(m, dict)  # not the JSON itself: a reader gets the checked fields only
    assert m.model.source == data["model"]["source"] and m.model.weights_sha256 == data["model"]["weights_sha256"]
    assert m.labels == {int(k): v for k, v in data["labels"].items()} and all(isinstance(k, int) for k in m.labels)
    assert m.contract == InputContract.from_dict(data["input"]) and m.head == data["head"] and m.outputs == data["outputs"]
    assert set(m.artifacts) == set(data["artifacts"])
    for name, a in m.artifacts.items():
        entry = data["artifacts"][name]
        assert isinstance(a, Artifact) and (a.path, a.sha256, a.bytes, a.precision, a.format) == (
            entry["path"], entry["sha256"], entry["bytes"], entry["precision"], entry["format"])
        assert a.verified is entry["verification"]["passed"] and a.is_engine is (entry["format"] != ONNX)
    assert m.references == data["references"] and m.stages == data["stages"]


def test_written_back_it_is_the_same_bytes(folder):
    before = (folder / "manifest.json").read_bytes()
    write_manifest(folder, read_manifest(folder).to_json())
    assert (folder / "manifest.json").read_bytes() == before


@pytest.mark.parametrize("edit,message", [
    (lambda m: m["model"].update(source=3), "model.source is 3, expected a string"),
    (lambda m: m.update(head=3), "head is 3, expected a string"),
    (lambda m: m.update(outputs="logits"), "outputs is 'logits', expected a list of output names"),
    (lambda m: m.update(labels={"cat": "cat"}), "labels is {'cat': 'cat'}, expected an object of class index -> label"),
    (lambda m: m["artifacts"]["model.onnx"].update(sha256="ab"), "artifacts['model.onnx'].sha256 is 'ab', expected 64 hex digits"),
    (lambda m: m["artifacts"]["model.onnx"].update(bytes=-1), "artifacts['model.onnx'].bytes is -1, expected a size in bytes"),
    (lambda m: m["artifacts"]["model.onnx"].pop("sha256"), "artifacts['model.onnx'].sha256 is None, expected 64 hex digits"),
    (lambda m: m.update(stages=[{"seconds": 1}]), "stages is [{'seconds': 1}], expected a list of {name, seconds, peak_rss_mb} objects"),
])
def test_a_damaged_field_is_one_error_naming_it(folder, edit, message):
    data = json.loads((folder / "manifest.json").read_text())
    edit(data)
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError) as e:
        read_manifest(folder)
    assert str(e.value) == f"{folder / 'manifest.json'}: {message}; the manifest is damaged, rebuild the folder"


def test_a_label_no_target_can_carry_is_refused_when_read(folder):
    data = json.loads((folder / "manifest.json").read_text())
    data["labels"]["3"] = "cat;dog"
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="the label of class 3"):
        read_manifest(folder)


def test_no_runner_reads_the_manifest():
    """Runners are built from the loader's facts (Polygraphy's loader/runner split)."""
    import inspect

    from focalnet_edge.runtime import onnxruntime, tensorrt, torch

    for module in (onnxruntime, tensorrt, torch):
        source = inspect.getsource(module)
        assert "read_manifest" not in source and "MANIFEST" not in source, module.__name__


def test_a_writer_extends_a_copy_and_writes_back_the_same_bytes(folder):
    """`to_json()`: the document as read, for a stage to extend; the parsed manifest stays as read."""
    before = (folder / "manifest.json").read_bytes()
    m = read_manifest(folder)
    document = m.to_json()
    assert type(document) is dict and document == json.loads(before)
    document["artifacts"]["model.onnx"]["verification"] = {"passed": False}
    document["head"] = "features"
    assert m.artifacts["model.onnx"].verified is True and m.head == "logits" and m.to_json() == json.loads(before)
    write_manifest(folder, document)
    assert read_manifest(folder).artifacts["model.onnx"].verified is False
    write_manifest(folder, m.to_json())
    assert (folder / "manifest.json").read_bytes() == before


@pytest.mark.parametrize("field,value,expected", [("built_from", 3, "a file name"), ("engine", [1], "an object")])
def test_an_engines_facts_are_checked_when_read(folder, field, value, expected):
    data = json.loads((folder / "manifest.json").read_text())
    data["artifacts"]["model.onnx"][field] = value
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError) as e:
        read_manifest(folder)
    assert str(e.value) == (f"{folder / 'manifest.json'}: artifacts['model.onnx'].{field} is {value!r}, expected {expected}; "
                            "the manifest is damaged, rebuild the folder")
    data["artifacts"]["model.onnx"].update(built_from="model.onnx", engine={"profile": {"pixel_values": [[1, 3, 8, 8]] * 3}})
    (folder / "manifest.json").write_text(json.dumps(data))
    a = read_manifest(folder).artifacts["model.onnx"]
    assert a.built_from == "model.onnx" and a.engine == {"profile": {"pixel_values": [[1, 3, 8, 8]] * 3}}


def test_labels_in_order_and_the_config_s_class_count(folder):
    data = json.loads((folder / "manifest.json").read_text())
    m = read_manifest(folder)
    n = len(data["labels"])
    assert m.ordered_labels(n + 1) == [data["labels"][str(i)] for i in range(n)] + [str(n)]  # a class without a label: its index
    assert "num_labels" not in data["model"]["config"] and m.model.num_labels is None  # transformers' to_dict: id2label only
    data["model"]["config"]["num_labels"] = n + 2
    (folder / "manifest.json").write_text(json.dumps(data))
    assert read_manifest(folder).model.num_labels == n + 2


def test_the_chooser_takes_the_typed_manifest_and_the_json_alike(folder):
    """`choose_artifact` over a read `Manifest` gives its `Artifact`; over the JSON of one, the same choice as its entry."""
    from focalnet_edge.runtime.choose import choose_artifact

    data = json.loads((folder / "manifest.json").read_text())
    m = read_manifest(folder)
    assert choose_artifact(m, "fp16", gpu=False) is m.artifacts["model.fp16.onnx"]
    for gpu in (False, True):
        chosen = choose_artifact(m, gpu=gpu)
        assert isinstance(chosen, Artifact) and choose_artifact(data, gpu=gpu) == data["artifacts"][chosen.path]
    no_fp32 = lambda a: "not here" if a.precision == "fp32" else None  # noqa: E731
    assert choose_artifact(m, runs=no_fp32, gpu=False).path == "model.fp16.onnx"


def test_readers_use_the_typed_attributes():
    """The readers (deploy, verify, runtime, folder facts) take the typed facts: none decodes the manifest's JSON
    again (the writers, pipeline/ and engine/, extend its JSON)."""
    import re
    from pathlib import Path

    import focalnet_edge

    root = Path(focalnet_edge.__file__).parent
    readers = [*root.glob("deploy/**/*.py"), *root.glob("verify/*.py"), *root.glob("runtime/*.py"), root / "folder" / "facts.py"]
    pattern = re.compile(r'manifest\.get\(|manifest\["(input|labels|model|head|outputs|references)"\]|from_dict\(manifest|int\(k\)')
    assert readers and [str(p.relative_to(root)) for p in readers if pattern.search(p.read_text())] == []
