"""DeepStream nvinfer files: parsed by GLib's own GKeyFile, typed as nvinfer reads them, and run.

The independent references:
- GLib's GKeyFile (Debian's python3-gi under /usr/bin/python3), the parser nvinfer itself uses;
- nvinfer's key table below, with each key's GKeyFile getter as NVIDIA's config parser calls it;
- nvinfer's documented preprocessing ``y = net-scale-factor * (x - offsets[c])``, applied here
  with the values GLib parsed, fed to the ONNX file the config names, and compared with the
  folder's own ONNX on transformers-style preprocessing, softmax computed in numpy.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from focalnet_edge.demo import demo_images
from focalnet_edge.deploy.deepstream import config as deepstream_config
from focalnet_edge.deploy.deepstream import DeepStreamOptions, deploy
from focalnet_edge.deploy.deepstream.plan import OBJECT_MIN_SIZE, best_single_scale
from focalnet_edge.errors import ArtifactError, ConfigError
from focalnet_edge.folder.io import sha256_file
from focalnet_edge.folder.contract import InputContract
from focalnet_edge.folder.onnx_io import ort_session
from focalnet_edge.folder.manifest import read_manifest, write_manifest
from focalnet_edge.model.preprocessing import ImageSpec
from focalnet_edge.pipeline import (
    ExportOptions,
    PrecisionOptions,
    export_stage,
    precision_stage,
)

SYSTEM_PYTHON = "/usr/bin/python3"

#: nvinfer's [property] keys with the GKeyFile getter its parser calls for each: NVIDIA DeepStream
#: plugin guide, "Gst-nvinfer" > "Gst-nvinfer File Configuration Specifications" > "Gst-nvinfer
#: Property Group Supported Keys" (https://docs.nvidia.com/metropolis/deepstream/dev-guide/text/
#: DS_plugin_gst-nvinfer.html), and the parser that reads them, sources/gst-plugins/gst-nvinfer/
#: gstnvinfer_property_parser.cpp (g_key_file_get_integer / _boolean / _double / _string /
#: _integer_list / _double_list / _string_list).
NVINFER_KEYS = {
    "gpu-id": "integer",
    "network-type": "integer",  # 0 detector, 1 classifier, 2 segmentation, 3 instance seg., 100 other
    "process-mode": "integer",  # 1 primary, 2 secondary
    "gie-unique-id": "integer",  # > 0
    "operate-on-gie-id": "integer",
    "operate-on-class-ids": "integer_list",
    "onnx-file": "string",
    "model-engine-file": "string",
    "network-mode": "integer",  # 0 FP32, 1 INT8, 2 FP16
    "batch-size": "integer",
    "infer-dims": "integer_list",  # c;h;w, length 3
    "network-input-order": "integer",  # 0 NCHW, 1 NHWC
    "model-color-format": "integer",  # 0 RGB, 1 BGR, 2 GRAY
    "net-scale-factor": "double",
    "offsets": "double_list",
    "maintain-aspect-ratio": "boolean",
    "symmetric-padding": "boolean",
    "scaling-filter": "integer",  # NvBufSurfTransform_Inter
    "scaling-compute-hw": "integer",
    "output-blob-names": "string_list",
    "labelfile-path": "string",
    "classifier-threshold": "double",
    "classifier-async-mode": "boolean",
    "interval": "integer",
    "int8-calib-file": "string",
    "workspace-size": "integer",
    "output-tensor-meta": "boolean",
    "input-object-min-width": "integer",
    "input-object-min-height": "integer",
    "secondary-reinfer-interval": "integer",
}
REQUIRED = {
    "network-type", "process-mode", "gie-unique-id", "onnx-file", "model-engine-file", "network-mode",
    "batch-size", "infer-dims", "model-color-format", "net-scale-factor", "offsets", "maintain-aspect-ratio",
    "symmetric-padding", "output-blob-names", "labelfile-path", "classifier-threshold",
}

GLIB_DUMP = r"""
import json, sys
from gi.repository import GLib
table = json.loads(sys.argv[1])
out = {}
for path in sys.argv[2:]:
    kf = GLib.KeyFile()
    try:
        kf.load_from_file(path, GLib.KeyFileFlags.NONE)
    except GLib.Error as e:
        out[path] = {"load_error": e.message}
        continue
    groups = {}
    for group in kf.get_groups()[0]:
        keys = {}
        for key in kf.get_keys(group)[0]:
            kind = table.get(key)
            entry = {"raw": kf.get_value(group, key), "type": kind}
            if kind is not None:
                try:
                    entry["value"] = getattr(kf, "get_" + kind)(group, key)
                except GLib.Error as e:
                    entry["error"] = e.message
            keys[key] = entry
        groups[group] = keys
    out[path] = {"groups": groups}
print(json.dumps(out))
"""


def _system_glib() -> str | None:
    """Why GLib can't be used here, or None when /usr/bin/python3 has it."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found (GLib's GKeyFile comes from Debian's python3-gi)"
    r = subprocess.run([SYSTEM_PYTHON, "-c", "from gi.repository import GLib"], check=False, capture_output=True, text=True)
    return None if r.returncode == 0 else f"{SYSTEM_PYTHON} has no GLib bindings (apt-get install python3-gi)"


def glib_parse(*paths: Path) -> dict[str, dict]:
    reason = _system_glib()
    if reason:
        pytest.skip(reason)
    r = subprocess.run(
        [SYSTEM_PYTHON, "-c", GLIB_DUMP, json.dumps(NVINFER_KEYS), *map(str, paths)],
        check=False, capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


# -- output folders ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fp16_logits(tmp_path_factory, demo_ckpt):
    """The demo as `build --precision fp16` makes it: logits head, uniform std, stretch resize."""
    out = tmp_path_factory.mktemp("fp16")
    _, manifest = export_stage(demo_ckpt, out, ExportOptions(batch=(1, 4, 8)))
    precision_stage(out, out / "model.onnx", "fp16", PrecisionOptions(), manifest)
    write_manifest(out, manifest)
    return out


@pytest.fixture(scope="module")
def imagenet_letterbox(tmp_path_factory, demo_ckpt):
    """Per-channel (ImageNet) std and a resize + centre crop recipe, as real FocalNet checkpoints have, built with
    --resize-mode letterbox."""
    out = tmp_path_factory.mktemp("imagenet")
    spec = ImageSpec(height=64, width=64, resize_shortest_edge=73, center_crop=True)
    export_stage(dataclasses.replace(demo_ckpt, preprocessing=spec), out, ExportOptions(batch=(1, 2, 32), resize_mode="letterbox"))
    return out


@pytest.fixture(scope="module")
def fused_bgr_probs(tmp_path_factory, demo_ckpt):
    """`--fuse-preprocess --frames-dtype float32 --layout NCHW --color-order BGR --head probs`."""
    out = tmp_path_factory.mktemp("fused")
    options = ExportOptions(
        head="probs", fuse_preprocess=True, frames_dtype="float32", layout="NCHW", color_order="BGR", batch=(1, 2, 4)
    )
    export_stage(demo_ckpt, out, options)
    return out


def _deployed(folder: Path, **options) -> Path:
    return deploy(folder, DeepStreamOptions(force=True, **options))


# -- the configs as GLib and nvinfer read them ---------------------------------------------------
@pytest.mark.parametrize("name", ["fp16_logits", "imagenet_letterbox", "fused_bgr_probs"])
def test_configs_parse_with_glib_and_every_key_has_nvinfers_type(name, request):
    folder = request.getfixturevalue(name)
    ds = _deployed(folder)
    primary, secondary = ds / "config_infer_primary.txt", ds / "config_infer_secondary.txt"
    parsed = glib_parse(primary, secondary)
    manifest = read_manifest(folder).to_json()
    contract = InputContract.from_dict(manifest["input"])
    facts = json.loads((ds / "deepstream.json").read_text())
    for path, process_mode in ((primary, 1), (secondary, 2)):
        doc = parsed[str(path)]
        assert "load_error" not in doc, doc
        assert list(doc["groups"]) == ["property"]
        keys = doc["groups"]["property"]
        unknown = sorted(set(keys) - set(NVINFER_KEYS))
        assert not unknown, f"keys nvinfer doesn't document: {unknown}"
        errors = {k: v["error"] for k, v in keys.items() if "error" in v}
        assert not errors, errors
        assert REQUIRED <= set(keys), sorted(REQUIRED - set(keys))
        v = {k: e["value"] for k, e in keys.items()}
        for key, entry in keys.items():  # no value carries a comment or stray text (GKeyFile has no inline #)
            assert "#" not in entry["raw"] and entry["raw"] == entry["raw"].strip(), (key, entry["raw"])

        assert v["network-type"] == 1 and v["process-mode"] == process_mode
        assert v["infer-dims"] == [3, contract.height, contract.width]
        assert v["model-color-format"] == (0 if contract.color_order == "RGB" else 1)
        assert v["network-input-order"] == 0
        assert v["output-blob-names"] == ["probs"]
        letterbox = contract.resize_mode == "letterbox"
        assert v["maintain-aspect-ratio"] is letterbox and v["symmetric-padding"] is letterbox
        assert v["batch-size"] == facts["batch_size"]["primary" if process_mode == 1 else "secondary"]
        assert 1 <= v["batch-size"] <= contract.batch[2]
        if process_mode == 1:
            assert "operate-on-gie-id" not in v and v["gie-unique-id"] == 1
            assert not {"input-object-min-width", "classifier-async-mode", "secondary-reinfer-interval"} & set(v)
        else:
            assert v["operate-on-gie-id"] == 1 and v["gie-unique-id"] == 2
            assert (v["input-object-min-width"], v["input-object-min-height"]) == (OBJECT_MIN_SIZE,) * 2
            assert v["classifier-async-mode"] is False and v["secondary-reinfer-interval"] == 0

        # files resolve relative to the config (as nvinfer resolves them) and match their hashes
        onnx_path = (path.parent / v["onnx-file"]).resolve()
        assert onnx_path.is_file()
        source = manifest["artifacts"][facts["source"]["path"]]
        if facts["onnx"]["derived"]:
            assert onnx_path.parent == ds.resolve()
            assert facts["files"][onnx_path.name] == sha256_file(onnx_path)
        else:
            assert onnx_path == (folder / source["path"]).resolve()
        assert v["network-mode"] == {"fp32": 0, "int8": 1, "fp16": 2}[source["precision"]]
        assert v["model-engine-file"] == f"{v['onnx-file']}_b{v['batch-size']}_gpu0_{source['precision']}.engine"
        labels = (path.parent / v["labelfile-path"]).read_text(encoding="utf-8").splitlines()
        assert labels == [";".join(manifest["labels"][str(i)] for i in range(len(manifest["labels"])))]


@pytest.mark.parametrize("mode,keys", [("stretch", (False, False)), ("letterbox", (True, True))])
def test_resize_keys_follow_the_resize_mode(mode, keys, tmp_path, demo_ckpt):
    """maintain-aspect-ratio / symmetric-padding as GLib reads them, per mode of a folder whose recipe crops."""
    spec = ImageSpec(height=64, width=64, resize_shortest_edge=73, center_crop=True, resample=3)
    export_stage(dataclasses.replace(demo_ckpt, preprocessing=spec), tmp_path, ExportOptions(resize_mode=mode))
    ds = _deployed(tmp_path)
    for path in (ds / "config_infer_primary.txt", ds / "config_infer_secondary.txt"):
        v = {k: e["value"] for k, e in glib_parse(path)[str(path)]["groups"]["property"].items()}
        assert (v["maintain-aspect-ratio"], v["symmetric-padding"]) == keys
        assert v["scaling-filter"] == 2  # PIL bicubic -> NvBufSurfTransformInter_Algo1 (GPU cubic)
    assert json.loads((ds / "deepstream.json").read_text())["resize"]["mode"] == mode


def test_a_crop_that_nvinfer_cannot_do_is_refused_with_the_rebuild_flags(tmp_path, demo_ckpt):
    spec = ImageSpec(height=64, width=64, resize_shortest_edge=73, center_crop=True)
    export_stage(dataclasses.replace(demo_ckpt, preprocessing=spec), tmp_path, ExportOptions())
    with pytest.raises(ConfigError, match="--resize-mode stretch .* or --resize-mode letterbox"):
        deploy(tmp_path)
    assert not (tmp_path / "deepstream").exists()


def test_a_crop_recipe_that_only_warps_deploys_as_stretch(fp16_logits):
    """The demo's recipe (ViT-like: warp to the input size, no crop) is crop mode by default and a stretch in fact."""
    assert InputContract.from_dict(read_manifest(fp16_logits).to_json()["input"]).resize_mode == "crop"
    ds = _deployed(fp16_logits)
    assert json.loads((ds / "deepstream.json").read_text())["resize"]["mode"] == "stretch"


# -- the configs do what the model expects -------------------------------------------------------
def _frames(contract: InputContract, n: int = 12) -> np.ndarray:
    """Demo images as uint8 RGB frames already at the network size (so nvinfer's resize is identity)."""
    ims = [Image.open(p).convert("RGB").resize((contract.width, contract.height), Image.BILINEAR) for p, _ in demo_images()[:n]]
    return np.stack([np.asarray(im) for im in ims])


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _nvinfer_like(config: Path, frames_rgb: np.ndarray) -> np.ndarray:
    """What nvinfer feeds the network and gets back, from the values GLib parsed."""
    v = {k: e["value"] for k, e in glib_parse(config)[str(config)]["groups"]["property"].items()}
    x = frames_rgb.astype(np.float32)
    if v["model-color-format"] == 1:
        x = x[..., ::-1]
    x = x.transpose(0, 3, 1, 2)  # planar, network-input-order 0
    y = np.float32(v["net-scale-factor"]) * (x - np.asarray(v["offsets"], np.float32).reshape(1, 3, 1, 1))
    model = onnx.load(str(config.parent / v["onnx-file"]))
    assert [o.name for o in model.graph.output] == v["output-blob-names"]
    (probs,) = ort_session(model).run(None, {model.graph.input[0].name: y.astype(np.float32)})
    return probs


def _reference_probs(folder: Path, frames_rgb: np.ndarray) -> np.ndarray:
    """The folder's fp32 ONNX on the model's own preprocessing; softmax here when its head is logits."""
    manifest = read_manifest(folder).to_json()
    contract = InputContract.from_dict(manifest["input"])
    model = onnx.load(str(folder / "model.onnx"))
    if contract.fused_preprocess:
        x = frames_rgb[..., ::-1] if contract.color_order == "BGR" else frames_rgb
        feed = np.ascontiguousarray(x.transpose(0, 3, 1, 2)).astype(np.float32)
    else:
        feed = np.stack([contract.image_spec.normalize(f) for f in frames_rgb])
    (out,) = ort_session(model).run(None, {contract.name: feed})
    return _softmax(out) if manifest["head"] == "logits" else out


@pytest.mark.parametrize("name,tol", [("fp16_logits", 5e-3), ("imagenet_letterbox", 1e-5), ("fused_bgr_probs", 1e-5)])
def test_nvinfers_preprocessing_with_the_config_reproduces_the_model(name, tol, request):
    folder = request.getfixturevalue(name)
    ds = _deployed(folder)
    contract = InputContract.from_dict(read_manifest(folder).to_json()["input"])
    frames = _frames(contract)
    ref = _reference_probs(folder, frames)
    for config in ("config_infer_primary.txt", "config_infer_secondary.txt"):
        got = _nvinfer_like(ds / config, frames)
        assert got.shape == ref.shape
        assert np.allclose(got.sum(-1), 1.0, atol=1e-5)  # probabilities, as nvinfer's parser expects
        assert float(np.abs(got - ref).max()) < tol
        assert (got.argmax(-1) == ref.argmax(-1)).all()


def test_per_channel_std_goes_into_the_graph_exactly(imagenet_letterbox):
    ds = _deployed(imagenet_letterbox)
    model = onnx.load(str(ds / "model.deepstream.onnx"))
    assert [i.name for i in model.graph.input] == ["frames"]
    assert [n.op_type for n in model.graph.node[:2]] == ["Mul", "Add"]
    assert model.graph.node[-1].op_type == "Softmax"
    facts = json.loads((ds / "deepstream.json").read_text())
    assert facts["normalisation"] == {
        "net_scale_factor": 1.0, "offsets": [0.0, 0.0, 0.0], "in_graph": True, "max_error": 0.0,
        "note": facts["normalisation"]["note"],
    }


def test_single_scale_approximation_states_its_measured_error(imagenet_letterbox, caplog):
    with caplog.at_level("WARNING"):
        ds = _deployed(imagenet_letterbox, normalize="nvinfer")
    facts = json.loads((ds / "deepstream.json").read_text())["normalisation"]
    spec = ImageSpec()  # ImageNet mean/std, as the fixture
    # independent brute force: every pixel value, every channel, against the model's normalisation
    x = np.arange(256, dtype=np.float64)
    s, off = facts["net_scale_factor"], np.asarray(facts["offsets"])
    exact = (x[None, :] / 255.0 - np.asarray(spec.mean)[:, None]) / np.asarray(spec.std)[:, None]
    err = float(np.abs(s * (x[None, :] - off[:, None]) - exact).max())
    assert facts["max_error"] == pytest.approx(err, rel=1e-6)
    assert 0.005 < err < 0.05  # ImageNet's stds differ by ~2%: a real but small error
    # no single scale does better (grid search around the chosen one)
    grid = np.linspace(s * 0.97, s * 1.03, 2001)
    errs = np.abs((grid[:, None, None] * (x[None, None, :] - off[None, :, None])) - exact[None]).max(axis=(1, 2))
    assert err <= errs.min() + 1e-12
    assert f"{err:.3g}" in (ds / "config_infer_primary.txt").read_text()
    assert any("approximated" in r.getMessage() for r in caplog.records)
    # and the model still agrees through the approximation
    contract = InputContract.from_dict(read_manifest(imagenet_letterbox).to_json()["input"])
    frames = _frames(contract)
    got, ref = _nvinfer_like(ds / "config_infer_primary.txt", frames), _reference_probs(imagenet_letterbox, frames)
    assert (got.argmax(-1) == ref.argmax(-1)).all()


def test_best_single_scale_on_equal_stds_is_exact():
    s, err = best_single_scale([0.5, 0.5, 0.5], (127.5, 127.5, 127.5))
    assert s == 0.5 and err == 0.0


# -- the folder: atomic, refused when present, errors --------------------------------------------
def test_existing_folder_is_refused_unless_forced(fused_bgr_probs, tmp_path):
    folder = tmp_path / "out"
    shutil.copytree(fused_bgr_probs, folder, ignore=shutil.ignore_patterns("deepstream"))
    first = deploy(folder)
    assert sorted(p.name for p in first.iterdir()) == [
        "config_infer_primary.txt", "config_infer_secondary.txt", "deepstream.json", "labels.txt",
    ]  # fused + probs: the folder's own ONNX is used as is
    with pytest.raises(ArtifactError, match="already exists; pass --force"):
        deploy(folder)
    (first / "stale.txt").write_text("x")
    assert not (deploy(folder, DeepStreamOptions(force=True)) / "stale.txt").exists()


def test_a_failure_leaves_no_partial_folder(fp16_logits, tmp_path, monkeypatch):
    folder = tmp_path / "out"
    shutil.copytree(fp16_logits, folder, ignore=shutil.ignore_patterns("deepstream"))

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(deepstream_config, "render_config", boom)
    with pytest.raises(RuntimeError):
        deploy(folder)
    assert sorted(p.name for p in folder.iterdir() if "deepstream" in p.name) == []


def test_a_changed_artifact_is_refused(fp16_logits, tmp_path):
    folder = tmp_path / "out"
    shutil.copytree(fp16_logits, folder, ignore=shutil.ignore_patterns("deepstream"))
    with open(folder / "model.fp16.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ArtifactError, match="sha256"):
        deploy(folder)


@pytest.mark.parametrize(
    "options,message",
    [
        ({"precision": "int8"}, r"no int8 ONNX .* build with --precision int8"),
        ({"batch_size": 9}, r"batch size 9 not accepted: the folder's graph takes batches 1..8"),
        ({"normalize": "maybe"}, r"normalize 'maybe' not supported"),
        ({"secondary_gie_unique_id": 1}, r"gie ids not distinct"),
        ({"classifier_threshold": 1.5}, r"expected a probability"),
    ],
)
def test_bad_options_are_one_sentence_errors(fp16_logits, options, message):
    with pytest.raises((ConfigError, ArtifactError), match=message):
        deploy(fp16_logits, DeepStreamOptions(force=True, **options))


def test_folders_nvinfer_cannot_feed_are_refused(tmp_path, demo_ckpt):
    uint8 = tmp_path / "uint8"
    export_stage(demo_ckpt, uint8, ExportOptions(fuse_preprocess=True))
    with pytest.raises(ConfigError, match="nvinfer feeds float32 tensors; rebuild with --frames-dtype float32"):
        deploy(uint8)
    any_size = tmp_path / "any"
    export_stage(demo_ckpt, any_size, ExportOptions(fuse_preprocess=True, frames_dtype="float32", frame_size="any", resize_mode="stretch"))
    with pytest.raises(ConfigError, match="rebuild without --frame-size any"):
        deploy(any_size)
    assert not any((f / "deepstream").exists() for f in (uint8, any_size))


def test_the_folders_own_engine_is_used_when_nvinfer_can_load_it(fused_bgr_probs, tmp_path):
    from focalnet_edge.folder.manifest import add_artifact

    folder = tmp_path / "out"
    shutil.copytree(fused_bgr_probs, folder, ignore=shutil.ignore_patterns("deepstream"))
    manifest = read_manifest(folder).to_json()
    for name, facts in (("model.fp32.dla0.engine", {"dla_core": 0}), ("model.fp32.engine", {"dla_core": None})):
        (folder / name).write_bytes(b"plan")
        add_artifact(manifest, folder / name, "fp32", "tensorrt-plan", engine=facts, built_from="model.onnx")
    write_manifest(folder, manifest)
    config = deploy(folder) / "config_infer_primary.txt"
    v = {k: e["value"] for k, e in glib_parse(config)[str(config)]["groups"]["property"].items()}
    assert v["model-engine-file"] == "../model.fp32.engine" and v["onnx-file"] == "../model.onnx"
    (folder / "model.fp32.engine").write_bytes(b"changed")
    with pytest.raises(ArtifactError, match="sha256"):
        deploy(folder, DeepStreamOptions(force=True))


# -- README's nvinfer block (issue 9, item 3) ------------------------------------------------------
def _readme_nvinfer_blocks() -> list[str]:
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", readme, flags=re.DOTALL | re.MULTILINE)
    return [b[b.index("[property]"):] for b in blocks if "[property]" in b]


def test_readme_nvinfer_block_parses_with_glib(tmp_path):
    blocks = _readme_nvinfer_blocks()
    assert blocks, "README shows no nvinfer [property] block"
    paths = []
    for i, block in enumerate(blocks):
        paths.append(tmp_path / f"readme_{i}.txt")
        paths[-1].write_text(block)
    for path, doc in glib_parse(*paths).items():
        assert "load_error" not in doc, (path, doc)
        keys = doc["groups"]["property"]
        assert set(keys) <= set(NVINFER_KEYS), sorted(set(keys) - set(NVINFER_KEYS))
        assert not [k for k, e in keys.items() if "error" in e or "#" in e["raw"]], keys


def test_readme_nvinfer_block_is_what_deploy_writes_for_the_demo(tmp_path, demo_ckpt):
    """README's example config, comments aside, is the demo's `build --precision fp16` + `deploy` config, value for value."""
    _, manifest = export_stage(demo_ckpt, tmp_path, ExportOptions())
    precision_stage(tmp_path, tmp_path / "model.onnx", "fp16", PrecisionOptions(), manifest)
    write_manifest(tmp_path, manifest)
    written = (deploy(tmp_path) / "config_infer_primary.txt").read_text()
    (block,) = _readme_nvinfer_blocks()

    def values(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]

    assert values(block) == values(written)


def test_options_reach_the_configs_and_none_means_default(fused_bgr_probs):
    ds = deploy(
        fused_bgr_probs, DeepStreamOptions(force=True, batch_size=None, secondary_batch_size=3, classifier_threshold=0.25,
        gie_unique_id=5, secondary_gie_unique_id=7, operate_on_gie_id=4, operate_on_class_ids="0,2", normalize=None,
        gpu_id=None)
    )
    parsed = glib_parse(ds / "config_infer_primary.txt", ds / "config_infer_secondary.txt")
    p, s = ({k: e["value"] for k, e in doc["groups"]["property"].items()} for doc in parsed.values())
    assert (p["gie-unique-id"], p["batch-size"], p["classifier-threshold"], p["gpu-id"]) == (5, 2, 0.25, 0)
    assert (s["gie-unique-id"], s["operate-on-gie-id"], s["operate-on-class-ids"], s["batch-size"]) == (7, 4, [0, 2], 3)


def test_secondary_object_keys_reach_the_config(fused_bgr_probs):
    ds = deploy(fused_bgr_probs, DeepStreamOptions(force=True, object_min_width=48, object_min_height=24, classifier_async_mode=True,
                secondary_reinfer_interval=10, operate_on_class_ids=[2]))
    config = ds / "config_infer_secondary.txt"
    s = {k: e["value"] for k, e in glib_parse(config)[str(config)]["groups"]["property"].items()}
    assert (s["input-object-min-width"], s["input-object-min-height"]) == (48, 24)
    assert s["classifier-async-mode"] is True and s["secondary-reinfer-interval"] == 10 and s["operate-on-class-ids"] == [2]
    with pytest.raises(ConfigError, match="expected pixels and frames >= 0"):
        deploy(fused_bgr_probs, DeepStreamOptions(force=True, secondary_reinfer_interval=-1))


def test_features_head_deploys_as_tensor_output(tmp_path, demo_ckpt):
    """network-type=100 with output-tensor-meta=1: nvinfer attaches the raw features as NvDsInferTensorMeta."""
    import onnx

    folder = tmp_path / "features"
    export_stage(demo_ckpt, folder, ExportOptions(head="features", out_features=["stage2", "stage4"]))
    manifest = read_manifest(folder).to_json()
    assert manifest["outputs"] == ["stage2", "stage4"]  # two outputs: nvinfer attaches both
    ds = deploy(folder)
    parsed = glib_parse(ds / "config_infer_primary.txt", ds / "config_infer_secondary.txt")
    for path, doc in parsed.items():
        keys = doc["groups"]["property"]
        assert not sorted(set(keys) - set(NVINFER_KEYS)) and not [k for k, e in keys.items() if "error" in e]
        v = {k: e["value"] for k, e in keys.items()}
        assert v["network-type"] == 100 and v["output-tensor-meta"] is True
        assert v["output-blob-names"] == list(manifest["outputs"])
        assert not {"labelfile-path", "classifier-threshold", "classifier-async-mode"} & set(v)
        onnx_file = (Path(path).parent / v["onnx-file"]).resolve()
        assert [o.name for o in onnx.load(str(onnx_file)).graph.output] == v["output-blob-names"]
    assert not (ds / "labels.txt").exists()
    assert json.loads((ds / "deepstream.json").read_text())["network_type"] == 100


def test_the_chosen_onnx_is_checked_not_only_the_folders_contract(tmp_path, demo_ckpt):
    """Issue 24, item 9: with --fp16-io the fp16 graph takes float16 while the manifest's contract says float32."""
    out = tmp_path / "fp16io"
    _, manifest = export_stage(demo_ckpt, out, ExportOptions(batch=(1, 4, 8)))
    precision_stage(out, out / "model.onnx", "fp16", PrecisionOptions(keep_io_types=False), manifest)
    write_manifest(out, manifest)
    assert json.loads((out / "manifest.json").read_text())["input"]["dtype"] == "float32"
    graph_input = onnx.load(str(out / "model.fp16.onnx"), load_external_data=False).graph.input[0]
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16  # what the check reads, read here with onnx
    with pytest.raises(ConfigError, match=r"model.fp16.onnx: input 'pixel_values' is float16 \(built with --fp16-io\), "
                                          "but nvinfer feeds float32 tensors; deploy --precision fp32 or int8"):
        deploy(out)
    assert not (out / "deepstream").exists()
    written = deploy(out, DeepStreamOptions(precision="fp32"))  # the fp32 graph of the same folder deploys
    onnx.checker.check_model(str(written / "model.deepstream.onnx"))
