"""Fault injection over one good output folder (issue 10).

One demo folder is built per module; each case copies it, breaks one thing (a manifest field,
a file, an option, the destination), runs a command and asserts: the exit code (2 for an
error, 1 for a failed verification), exactly ONE line on stderr and no traceback, and that the
folder afterwards is exactly the previous state (every file's sha256) or a new consistent
build (every listed artifact matches its hash).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from focalnet_edge.cli import main
from focalnet_edge.errors import ArtifactError, ConfigError, FocalNetEdgeError, InputError
from focalnet_edge.folder.manifest import check_artifact, read_manifest, write_manifest

IMAGES = Path(__file__).resolve().parents[1] / "focalnet_edge" / "data" / "demo" / "images"
SWITCHES = Path(__file__).parent / "data" / "switches"


def run(capsys, *argv) -> tuple[int, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    _, err = capsys.readouterr()
    return code, err


def one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (hidden ones too), by relative path; folders as 'dir'."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_consistent(folder: Path) -> dict:
    """A committed build: a manifest that reads, every listed artifact and the references matching their hash."""
    m = read_manifest(folder).to_json()
    assert m["artifacts"]
    for entry in m["artifacts"].values():
        check_artifact(folder, entry)
    if "references" in m:
        ref = folder / m["references"]["path"]
        assert hashlib.sha256(ref.read_bytes()).hexdigest() == m["references"]["sha256"]
    assert not list(folder.rglob("*.partial"))
    assert not list(folder.parent.glob(f".{folder.name}.staging-*"))
    return m


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("good") / "out"
    assert main(["-q", "build", "--precision", "fp16", "--output", str(out)]) == 0
    assert_consistent(out)
    return out


@pytest.fixture
def folder(good, tmp_path) -> Path:
    dst = tmp_path / "out"
    shutil.copytree(good, dst)
    return dst


# -- the manifest is untrusted input ----------------------------------------------------------------
def _set(path: str, value):
    """A mutation that sets manifest field `path` (dotted; 'artifacts.model.onnx.sha256' style keys split on '/')."""
    def mutate(folder: Path) -> None:
        m = json.loads((folder / "manifest.json").read_text())
        *parents, last = path.split("/")
        d = m
        for k in parents:
            d = d[k]
        if value is _DELETE:
            del d[last]
        else:
            d[last] = value
        (folder / "manifest.json").write_text(json.dumps(m))
    return mutate


_DELETE = object()


def _write(name: str, data: bytes):
    def mutate(folder: Path) -> None:
        (folder / name).write_bytes(data)
    return mutate


def _folder_instead(name: str):
    def mutate(folder: Path) -> None:
        (folder / name).unlink()
        (folder / name).mkdir()
    return mutate


def _delete(name: str):
    return lambda folder: (folder / name).unlink()


def _truncate(name: str):
    def mutate(folder: Path) -> None:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])
    return mutate


MANIFEST_FAULTS = {
    "not json": _write("manifest.json", b"{not json"),
    "not utf-8": _write("manifest.json", b"\xff\xfe\x00"),
    "a list": _write("manifest.json", b"[1, 2]"),
    "empty file": _write("manifest.json", b""),
    "manifest is a folder": _folder_instead("manifest.json"),
    "artifacts a list": _set("artifacts", ["model.onnx"]),
    "artifacts missing": _set("artifacts", _DELETE),
    "entry a string": _set("artifacts/model.onnx", "model.onnx"),
    "entry null": _set("artifacts/model.fp16.onnx", None),
    "path leaves the folder": _set("artifacts/model.onnx/path", "../../x.onnx"),
    "absolute path": _set("artifacts/model.onnx/path", "/etc/passwd"),
    "path names another file": _set("artifacts/model.onnx/path", "model.fp16.onnx"),
    "path a number": _set("artifacts/model.onnx/path", 7),
    "sha256 a number": _set("artifacts/model.onnx/sha256", 12345),
    "sha256 a list": _set("artifacts/model.fp16.onnx/sha256", ["ab"]),
    "sha256 missing": _set("artifacts/model.onnx/sha256", _DELETE),
    "sha256 wrong": _set("artifacts/model.fp16.onnx/sha256", "0" * 64),
    "format unknown": _set("artifacts/model.onnx/format", "pickle"),
    "precision a dict": _set("artifacts/model.onnx/precision", {"a": 1}),
    "bytes negative": _set("artifacts/model.onnx/bytes", -1),
    "requires a string": _set("artifacts/model.onnx/requires", "cuda"),
    "verification a string": _set("artifacts/model.fp16.onnx/verification", "passed"),
    "model missing": _set("model", _DELETE),
    "model a string": _set("model", "demo"),
    "source a number": _set("model/source", 3),
    "weights a list": _set("model/weights_sha256", ["x"]),
    "input missing": _set("input", _DELETE),
    "input a string": _set("input", "pixel_values"),
    "input unknown field": _set("input/colour", "RGB"),
    "input bad batch": _set("input/batch", [0, 0, 0]),
    "input bad layout": _set("input/layout", "CHWN"),
    "input bad preprocessing": _set("input/preprocessing", {"nonsense": 1}),
    "input height a string": _set("input/height", "abc"),
    "input batch a string": _set("input/batch", "1:1:32"),
    "input std 0": _set("input/preprocessing/std", [0, 0, 0]),
    "input mean a string": _set("input/preprocessing/mean", "0.5"),
    "input name empty": _set("input/name", ""),
    "labels a list": _set("labels", ["a", "b"]),
    "labels key not an index": _set("labels", {"cat": "cat"}),
    "labels value a number": _set("labels", {"0": 1}),
    "head a number": _set("head", 3),
    "outputs a string": _set("outputs", "logits"),
    "references a string": _set("references", "references.npz"),
    "references sha256 wrong": _set("references/sha256", "0" * 64),
    "model.onnx is a folder": _folder_instead("model.onnx"),
    "model.onnx missing": _delete("model.onnx"),
    "model.fp16.onnx truncated": _truncate("model.fp16.onnx"),
    "references.npz garbage": _write("references.npz", b"PK\x03\x04 not a zip"),
}

COMMANDS = {
    "info": lambda f: ["info", f],
    "predict": lambda f: ["predict", f, IMAGES],
    "verify": lambda f: ["-q", "verify", f, "--reference", "stored"],
    "bench": lambda f: ["-q", "bench", f, "--batch", "1", "--warmup", "0", "--iterations", "1"],
}

#: faults a command never reads (info lists artifacts without hashing them; predict and bench
#: read no stored references): these must give exit 0 or 2, never a traceback
UNREAD = {
    ("info", "sha256 wrong"), ("info", "model.onnx missing"), ("info", "model.fp16.onnx truncated"),
    ("info", "model.onnx is a folder"), ("info", "references sha256 wrong"), ("info", "references.npz garbage"),
    ("predict", "references sha256 wrong"), ("predict", "references.npz garbage"), ("predict", "sha256 wrong"),
    ("predict", "model.fp16.onnx truncated"), ("predict", "model.onnx missing"), ("predict", "model.onnx is a folder"),
    ("bench", "references sha256 wrong"), ("bench", "references.npz garbage"),
}


@pytest.mark.parametrize("fault", list(MANIFEST_FAULTS))
def test_malformed_folder_every_command(capsys, folder, fault):
    MANIFEST_FAULTS[fault](folder)
    before = snapshot(folder)
    for command, argv in COMMANDS.items():
        code, err = run(capsys, *argv(folder))
        if (command, fault) in UNREAD and code == 0:
            continue
        assert code == 2, (command, fault, err)
        line = one_line(err)
        assert line.startswith(f"focalnet-edge {command}: error: "), line
        assert snapshot(folder) == before, (command, fault)
    if fault in ("absolute path", "path leaves the folder"):
        assert "passwd" not in capsys.readouterr().out


def test_hash_check_and_run_are_the_same_file(capsys, folder):
    """A manifest whose model.onnx entry points at another listed file is refused, not run unchecked."""
    m = json.loads((folder / "manifest.json").read_text())
    m["artifacts"]["model.onnx"]["path"] = "model.fp16.onnx"
    m["artifacts"]["model.onnx"]["sha256"] = m["artifacts"]["model.fp16.onnx"]["sha256"]
    (folder / "manifest.json").write_text(json.dumps(m))
    code, err = run(capsys, "predict", folder, IMAGES, "--artifact", "model.onnx")
    assert code == 2 and "path is 'model.fp16.onnx'" in one_line(err)


def test_manifest_and_report_never_hold_non_finite_numbers(tmp_path):
    write_manifest(tmp_path, {"artifacts": {}, "x": float("nan"), "y": [float("inf"), np.float32("-inf"), 1.5]})
    text = (tmp_path / "manifest.json").read_text()

    def no_constants(name):
        raise AssertionError(f"{name} in {text}")

    data = json.loads(text, parse_constant=no_constants)
    assert data["x"] is None and data["y"] == [None, None, 1.5]


# -- a folder belongs to one build ---------------------------------------------------------------------
def _foreign(tmp_path: Path) -> Path:
    f = tmp_path / "theirs"
    f.mkdir()
    (f / "manifest.json").write_text('{"name": "their project"}')
    (f / "model.onnx").write_bytes(b"their model")
    (f / "report.json").write_text("[]")
    return f


def _other_fp32(folder: Path, tmp_path: Path) -> Path:
    """An fp32 ONNX file of the same model with other bytes (its own source metadata)."""
    import onnx

    m = onnx.load(str(folder / "model.onnx"))
    p = m.metadata_props.add()
    p.key, p.value = "other", "yes"
    path = tmp_path / "elsewhere" / "model.onnx"
    path.parent.mkdir()
    onnx.save(m, str(path))
    return path


@pytest.mark.parametrize("case", [
    "build into a foreign folder", "export into a foreign folder", "calibrate into a foreign folder",
    "build another model over it", "export another model over it", "calibrate another fp32 model into it",
    "build with missing calib data", "build with missing images", "build with missing labels",
    "build with a folder as calib cache", "build --output /", "build --output home", "export --output a file",
    "build --precision int8 with an empty calib folder", "calibrate --output /",
])
def test_folder_refused_or_kept(capsys, folder, tmp_path, case):
    target = folder
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = {
        "build into a foreign folder": lambda: ["-q", "build", "--output", target],
        "export into a foreign folder": lambda: ["-q", "export", "--output", target],
        "calibrate into a foreign folder": lambda: ["-q", "calibrate", folder / "model.onnx", "--precision", "fp16", "--output", target],
        "build another model over it": lambda: ["-q", "build", "--model", SWITCHES, "--output", target],
        "export another model over it": lambda: ["-q", "export", "--model", SWITCHES, "--output", target],
        "calibrate another fp32 model into it": lambda: ["-q", "calibrate", _other_fp32(folder, tmp_path), "--precision", "fp16", "--output", target],
        "build with missing calib data": lambda: ["-q", "build", "--precision", "int8", "--calib-data", tmp_path / "nope", "--output", target],
        "build with missing images": lambda: ["-q", "build", "--images", tmp_path / "nope", "--output", target],
        "build with missing labels": lambda: ["-q", "build", "--labels", tmp_path / "nope.csv", "--output", target],
        "build with a folder as calib cache": lambda: ["-q", "build", "--precision", "int8", "--calib-cache", empty, "--output", target],
        "build --output /": lambda: ["-q", "build", "--output", "/"],
        "build --output home": lambda: ["-q", "build", "--output", Path.home()],
        "export --output a file": lambda: ["-q", "export", "--output", folder / "model.onnx"],
        "build --precision int8 with an empty calib folder": lambda: ["-q", "build", "--precision", "int8", "--calib-data", empty, "--output", target],
        "calibrate --output /": lambda: ["-q", "calibrate", folder / "model.onnx", "--precision", "fp16", "--output", "/"],
    }
    if "foreign" in case:
        target = _foreign(tmp_path)
    watched = [folder, target]
    before = [snapshot(f) for f in watched]
    code, err = run(capsys, *argv[case]())
    assert code == 2, err
    line = one_line(err)
    if "foreign" in case:
        assert "--force" in line and ("not a focalnet-edge output folder" in line or "did not write" in line)
    if "another" in case:
        assert "--force" in line and "another" in line
    assert [snapshot(f) for f in watched] == before
    assert not list(folder.parent.glob(".out.staging-*"))


def test_force_replaces_a_damaged_folder_and_cleans_leftovers(capsys, folder, tmp_path):
    """--force over a malformed manifest and a killed run's leftovers: a new consistent folder, nothing stale."""
    (folder / "manifest.json").write_text('{"tool": {"name": "focalnet-edge"}, "artifacts": 3}')
    (folder / ".model.onnx.x1y2.partial").write_bytes(b"half")
    (folder / "notes.txt").write_text("mine")
    stale = tmp_path / ".out.staging-99999-abc"
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"half")
    code, err = run(capsys, "-q", "build", "--output", folder)
    assert code == 2 and "--force" in one_line(err)
    assert not stale.exists() and not (folder / ".model.onnx.x1y2.partial").exists()  # cleaned under the lock
    code, err = run(capsys, "-q", "export", "--force", "--output", folder)
    assert code == 0, err
    m = assert_consistent(folder)
    assert list(m["artifacts"]) == ["model.onnx"]
    assert (folder / "notes.txt").read_text() == "mine"  # the user's own file is kept
    assert not (folder / "model.fp16.onnx").exists()  # the previous build's artifacts are not


def test_force_into_a_foreign_folder(capsys, tmp_path):
    target = _foreign(tmp_path)
    (target / "data.csv").write_text("theirs")
    code, err = run(capsys, "-q", "export", "--force", "--output", target)
    assert code == 0, err
    assert_consistent(target)
    assert (target / "data.csv").read_text() == "theirs"


def test_calibrate_force_over_another_model_leaves_no_lying_manifest(capsys, folder, tmp_path):
    other = _other_fp32(folder, tmp_path)
    code, err = run(capsys, "-q", "calibrate", other, "--precision", "fp16", "--output", folder, "--force")
    assert code == 0, err
    assert not (folder / "manifest.json").exists()  # it described the replaced model.onnx
    assert (folder / "model.onnx").read_bytes() == other.read_bytes()


def test_calibrate_beside_a_foreign_file_that_clashes_with_nothing(capsys, good, tmp_path):
    """The file's own folder with unrelated files is fine: nothing of another model is replaced."""
    folder = tmp_path / "downloads"
    folder.mkdir()
    shutil.copy(good / "model.onnx", folder / "exported.onnx")
    (folder / "notes.txt").write_text("mine")
    code, err = run(capsys, "-q", "calibrate", folder / "exported.onnx", "--precision", "fp16")
    assert code == 0, err
    assert {p.name for p in folder.iterdir()} == {"exported.onnx", "notes.txt", "model.onnx", "model.fp16.onnx"}


# -- ONNX metadata, limits, config -------------------------------------------------------------------
@pytest.mark.parametrize("key,value", [
    ("input", "garbage"), ("input", json.dumps({"height": "abc"})), ("input", json.dumps({"batch": [0, 0, 0]})),
    ("input", json.dumps({"preprocessing": {"nonsense": 1}})), ("input", json.dumps({"height": 64.5})),
    ("input", json.dumps({"preprocessing": {"std": [0.0, 1.0, 1.0]}})), ("labels", "[1, 2]"), ("labels", json.dumps({"x": "cat"})),
    ("head", "5"), ("outputs", "7"),
])
def test_malformed_onnx_metadata(capsys, good, tmp_path, key, value):
    import onnx

    m = onnx.load(str(good / "model.onnx"))
    for p in m.metadata_props:
        if p.key == f"focalnet_edge.{key}":
            p.value = value
    path = tmp_path / "lone.onnx"
    onnx.save(m, str(path))
    code, err = run(capsys, "predict", path, IMAGES / os.listdir(IMAGES)[0])
    assert code == 2 and f"focalnet_edge.{key}" in one_line(err)


def test_bench_batch_beyond_memory(capsys, good):
    before = snapshot(good)
    code, err = run(capsys, "bench", good, "--batch", "1,100000000")
    assert code == 2 and "choose a smaller --batch" in one_line(err)
    assert snapshot(good) == before


@pytest.mark.parametrize("field,value", [("embed_dim", 10**6), ("embed_dim", 1e6), ("depths", [10**9, 1, 1, 1])])
def test_absurd_config_refused_before_allocation(tmp_path, capsys, field, value):
    from focalnet_edge.model import FocalNetConfig

    with pytest.raises(ConfigError):
        FocalNetConfig(**{field: value})
    ckpt = tmp_path / "ckpt"
    shutil.copytree(SWITCHES, ckpt)
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg[field] = value
    (ckpt / "config.json").write_text(json.dumps(cfg))
    code, err = run(capsys, "info", "--model", ckpt)
    assert code == 2 and field in one_line(err)


@pytest.mark.parametrize("where", ["--image-size", "config.json"])
@pytest.mark.parametrize("command", ["export", "build"])
def test_image_size_beyond_memory_is_refused_up_front(tmp_path, capsys, where, command):
    """`--image-size 32768` (or a config with it): one line naming the size, exit 2, nothing written (was numpy's MemoryError)."""
    from focalnet_edge.limits import available_memory
    from focalnet_edge.model import FocalNetConfig

    ckpt = tmp_path / "ckpt"
    shutil.copytree(SWITCHES, ckpt)
    cfg = json.loads((ckpt / "config.json").read_text())
    if 0.5 * (available_memory() or 0) > FocalNetConfig.from_dict(cfg).forward_bytes(32768, 32768, 2):
        pytest.skip("this machine has the memory to export at 32768x32768")
    extra = ["--image-size", "32768"]
    if where == "config.json":
        cfg["image_size"], extra = 32768, []
        (ckpt / "config.json").write_text(json.dumps(cfg))
        (ckpt / "preprocessor_config.json").unlink()  # else its size wins
    code, err = run(capsys, "-q", command, "--model", ckpt, "--output", tmp_path / "out", *extra, "--precision" if command == "build" else "--opset",
                    "fp32" if command == "build" else "17")
    line = one_line(err)
    assert code == 2 and "32768x32768" in line and "GiB of memory" in line and "--image-size" in line, line
    assert not (tmp_path / "out").exists()


# -- the Python API -------------------------------------------------------------------------------------
def test_python_api_errors(good):
    from focalnet_edge.runtime import load

    frame = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ArtifactError, match="output folder or an artifact"):
        load(None)
    runner = load(good)
    for bad in (None, 5, b"\x89PNG", bytearray(3), [], np.zeros((0, 0, 3), np.uint8), [frame, None]):
        with pytest.raises(InputError):
            runner.predict(bad)
    for k in (0, -1, None, 2.5, True, "3"):
        with pytest.raises(InputError, match="top_k"):
            runner.predict(frame, top_k=k)
    assert len(runner.predict(frame, top_k=2)[0]) == 2
    runner.close()
    for call in (lambda: runner.predict(frame), lambda: runner(runner.prepare(frame))):
        with pytest.raises(ArtifactError, match="after close"):
            call()
    with pytest.raises(FocalNetEdgeError):
        load(good / "nope")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float64", "int64"])
def test_a_torch_tensor_of_another_dtype_is_one_input_error(good, dtype):
    """A bfloat16 tensor (numpy has no such type: a bare TypeError before) is refused like any other dtype, naming it,
    by the runners and by the PyTorch model alike; the same values as float32 run."""
    import torch

    from focalnet_edge.model import load_model
    from focalnet_edge.runtime import load

    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 64, 64), dtype=np.float32)).to(getattr(torch, dtype))
    with load(good) as runner:
        with pytest.raises(InputError, match=f"dtype {dtype}, expected float32") as e:
            runner(x)
        assert "\n" not in str(e.value)
        assert runner(x.float()).shape == (2, 10)
    model = load_model("demo")
    with pytest.raises(InputError, match=f"pixel_values are {dtype} but the model's weights are float32"):
        model(x)
    if dtype == "bfloat16":  # what the message offers works
        assert model.to(torch.bfloat16)(x).logits.dtype == torch.bfloat16


def test_finite_helper_handles_numpy_scalars():
    from focalnet_edge.folder.io import dumps_json

    text = dumps_json({"a": np.float64("nan"), "b": [np.float16(2.0)], "c": math.inf, "d": 1})
    assert json.loads(text) == {"a": None, "b": [2.0], "c": None, "d": 1}


# -- calibration caches and .npz calibration sets ----------------------------------------------------
CALIB_IMAGES = Path(__file__).resolve().parents[1] / "focalnet_edge" / "data" / "demo" / "calibration"


@pytest.mark.parametrize("name,text", [
    ("empty file", ""), ("not json", "{"), ("a list", "[1]"), ("no ranges", '{"format": 1}'), ("ranges empty", '{"ranges": {}}'),
    ("ranges a list", '{"ranges": [1, 2]}'), ("NaN", '{"ranges": {"x": [NaN, 1.0]}}'), ("inf", '{"ranges": {"x": [0, Infinity]}}'),
    ("lo > hi", '{"ranges": {"x": [2.0, 1.0]}}'), ("a string range", '{"ranges": {"x": "0,1"}}'), ("short range", '{"ranges": {"x": [1]}}'),
])
def test_bad_calibration_cache(capsys, folder, tmp_path, name, text):
    cache = tmp_path / "calibration.json"
    cache.write_text(text)
    before = snapshot(folder)
    code, err = run(capsys, "-q", "calibrate", folder / "model.onnx", "--precision", "int8",
                    "--calib-data", CALIB_IMAGES, "--calib-cache", cache)
    assert code == 2 and str(cache) in one_line(err)
    assert snapshot(folder) == before


def test_calibration_cache_of_another_model(tmp_path):
    from focalnet_edge.calibration import load_ranges

    cache = tmp_path / "c.json"
    cache.write_text(json.dumps({"model_sha256": "a" * 64, "ranges": {"x": [0.0, 1.0]}}))
    assert load_ranges(cache, model_sha256="a" * 64)[0] == {"x": (0.0, 1.0)}
    with pytest.raises(InputError, match="another model"):
        load_ranges(cache, model_sha256="b" * 64)


@pytest.mark.parametrize("case", ["0 rows", "NaN", "inf", "not a zip", "pickled objects"])
def test_bad_npz_calibration_set(capsys, folder, tmp_path, case):
    from focalnet_edge.folder.contract import InputContract

    contract = InputContract.from_dict(read_manifest(folder).to_json()["input"])
    x = contract.sample_input(4)
    path = tmp_path / "calib.npz"
    if case == "0 rows":
        np.savez(path, **{contract.name: x[:0]})
    elif case in ("NaN", "inf"):
        x[1, 0, 0, 0] = np.nan if case == "NaN" else np.inf
        np.savez(path, **{contract.name: x})
    elif case == "not a zip":
        path.write_bytes(b"PK\x03\x04 nope")
    else:
        np.savez(path, **{contract.name: np.array([object()], dtype=object)})
    before = snapshot(folder)
    code, err = run(capsys, "-q", "calibrate", folder / "model.onnx", "--precision", "fp16", "--calib-data", path)
    assert code == 2 and str(path) in one_line(err)
    assert snapshot(folder) == before
