"""Checkpoints as the ecosystem writes them: timm's, sharded transformers folders, hub ids, `demo`.

References: timm's own FocalNet (run by tests/timm_reference.py in its own process),
transformers' `save_pretrained(max_shard_size=...)` and models, and huggingface_hub's real
download code against a local Hub on 127.0.0.1 (tests/hub_server.py).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import hf_twin
from focalnet_edge.errors import CheckpointError
from focalnet_edge.model import FocalNetForImageClassification, FocalNetModel, load_checkpoint, load_model
from focalnet_edge.model.timm_layout import config_from_timm

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
#: the interpreter that runs timm (default: this one); e.g. a venv with timm where the shared env has none
TIMM_PYTHON = os.environ.get("FOCALNET_EDGE_TIMM_PYTHON", sys.executable)
TOL = 1e-5


def maxdiff(a, b) -> float:
    return (a - b).abs().max().item()


# -- timm ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def timm_ref(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("timm")
    done = subprocess.run([TIMM_PYTHON, str(TESTS / "timm_reference.py"), str(out)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode == 3:
        pytest.skip(f"timm is not installed for {TIMM_PYTHON} (set FOCALNET_EDGE_TIMM_PYTHON to an interpreter with timm)")
    assert done.returncode == 0, done.stderr[-3000:]
    return out


VARIANTS = [
    "focalnet_tiny_srf", "focalnet_small_srf", "focalnet_base_srf", "focalnet_tiny_lrf", "focalnet_small_lrf",
    "focalnet_base_lrf", "focalnet_large_fl3", "focalnet_large_fl4", "focalnet_xlarge_fl3", "focalnet_xlarge_fl4",
    "focalnet_huge_fl3", "focalnet_huge_fl4",
]


def _ours(model, x):
    with torch.no_grad():
        out = model(x)
    return out.logits if isinstance(model, FocalNetForImageClassification) else out.pooler_output


@pytest.mark.parametrize("file", ["model.pth", "model.safetensors"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_timm_checkpoints_match_timm(timm_ref, variant, file):
    folder = timm_ref / variant
    x, y = torch.load(folder / "x.pt"), torch.load(folder / "y.pt")
    model = load_model(folder / file)
    timm_kwargs = json.loads((timm_ref / "info.json").read_text())["variants"][variant]
    cfg = model.config
    # the switches of timm's own variant table, read back off the tensors
    assert cfg.focal_levels == list(timm_kwargs.get("focal_levels", [2] * 4))
    assert cfg.focal_windows == list(timm_kwargs.get("focal_windows", [3] * 4))
    assert cfg.use_post_layernorm == timm_kwargs.get("use_post_norm", False)
    assert cfg.use_post_layernorm_in_modulation == timm_kwargs.get("use_post_norm_in_modulation", False)
    assert cfg.use_conv_embed == timm_kwargs.get("use_overlap_down", False)
    assert cfg.use_layerscale == ("layerscale_value" in timm_kwargs)
    assert cfg.depths == [1, 1, 2, 1] and cfg.embed_dim == 8
    assert isinstance(model, FocalNetModel if variant == "focalnet_huge_fl4" else FocalNetForImageClassification)
    assert maxdiff(_ours(model, x), y) <= TOL


def test_timm_hub_folder_with_its_pretrained_cfg(timm_ref):
    folder = timm_ref / "hub_folder"
    ckpt = load_checkpoint(folder)
    spec = ckpt.preprocessing
    # timm's eval transform of focalnet_large_fl4: 384, crop_pct 1.0, bicubic
    assert (spec.height, spec.width, spec.resize_shortest_edge, spec.resample, spec.center_crop) == (384, 384, 384, 3, True)
    assert ckpt.config.image_size == 384 and ckpt.config.num_labels == 7
    x, y = torch.load(folder / "x.pt"), torch.load(folder / "y.pt")
    assert maxdiff(_ours(load_model(ckpt), x), y) <= TOL


def test_timm_names_read_without_timm():
    """The configuration reader on a state dict shaped like timm's focalnet_large_fl4 (no timm needed)."""
    state = {
        "stem.proj.weight": torch.zeros(8, 3, 7, 7),
        "layers.0.blocks.0.mlp.fc1.weight": torch.zeros(32, 8, 1, 1),
        "layers.0.blocks.0.ls1.gamma": torch.zeros(8),
        "layers.0.blocks.0.norm1_post.weight": torch.zeros(8),
        "layers.0.blocks.0.modulation.focal_layers.3.0.weight": torch.zeros(8, 1, 9, 9),
        "layers.0.blocks.0.modulation.focal_layers.0.0.weight": torch.zeros(8, 1, 3, 3),
        "layers.1.blocks.0.modulation.focal_layers.0.0.weight": torch.zeros(16, 1, 3, 3),
        "head.fc.weight": torch.zeros(5, 16),
    }
    cfg = config_from_timm(state, "x.pth")
    assert cfg.use_conv_embed and cfg.use_layerscale and cfg.use_post_layernorm and not cfg.normalize_modulator
    assert cfg.depths == [1, 1] and cfg.focal_levels == [4, 1] and cfg.num_labels == 5 and cfg.mlp_ratio == 4.0
    state["head.pre_logits.fc.weight"] = torch.zeros(5, 16)
    with pytest.raises(CheckpointError, match="MLP classifier head"):
        config_from_timm(state, "x.pth")


def test_a_state_dict_of_unknown_names_is_refused(tmp_path):
    path = tmp_path / "resnet.safetensors"
    from safetensors.torch import save_file

    save_file({"conv1.weight": torch.zeros(4, 3, 7, 7)}, str(path))
    with pytest.raises(CheckpointError, match="not a FocalNet checkpoint"):
        load_model(path)


# -- sharded transformers folders -----------------------------------------------------------------
def test_sharded_safetensors_from_transformers(tmp_path):
    hf, _ = hf_twin("FocalNetForImageClassification", use_layerscale=True)
    hf.save_pretrained(tmp_path, max_shard_size="100KB")
    _assert_sharded_folder_loads(tmp_path, "model.safetensors.index.json", hf)


def test_sharded_pytorch_bin_files(tmp_path):
    """transformers 5 writes only safetensors; .bin shards as transformers 4 wrote them, planned by
    huggingface_hub's splitter (the one transformers used), and read back by transformers itself."""
    from huggingface_hub import split_torch_state_dict_into_shards

    hf, _ = hf_twin("FocalNetForImageClassification", use_post_layernorm=True)
    hf.config.save_pretrained(tmp_path)
    state = hf.state_dict()
    plan = split_torch_state_dict_into_shards(state, filename_pattern="pytorch_model{suffix}.bin", max_shard_size="100KB")
    assert plan.is_sharded
    for filename, names in plan.filename_to_tensors.items():
        torch.save({k: state[k].contiguous() for k in names}, tmp_path / filename)
    index = {"metadata": plan.metadata, "weight_map": plan.tensor_to_filename}
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    transformers = pytest.importorskip("transformers")
    again = transformers.FocalNetForImageClassification.from_pretrained(tmp_path).eval()
    _assert_sharded_folder_loads(tmp_path, "pytorch_model.bin.index.json", again)


def _assert_sharded_folder_loads(folder: Path, index_name: str, reference) -> None:
    shards = set(json.loads((folder / index_name).read_text())["weight_map"].values())
    assert len(shards) > 2 and all((folder / s).is_file() for s in shards)
    assert not (folder / "model.safetensors").exists() and not (folder / "pytorch_model.bin").exists()
    ckpt = load_checkpoint(folder)
    assert {f.name for f in ckpt.files} >= shards
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert maxdiff(reference(x).logits, load_model(ckpt)(x).logits) <= TOL


def test_a_missing_shard_is_named(tmp_path):
    hf, _ = hf_twin("FocalNetForImageClassification")
    hf.save_pretrained(tmp_path, max_shard_size="100KB")
    shard = sorted(tmp_path.glob("model-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=f"{shard.name}: weight file is missing"):
        load_model(tmp_path)


# -- hub ids against a local Hub -----------------------------------------------------------------
_LOAD = """
import json, sys, torch
from focalnet_edge.errors import CheckpointError
from focalnet_edge.model import load_model
x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
for source, revision in json.loads(sys.argv[1]):
    try:
        model = load_model(source, revision=revision)
    except CheckpointError as e:
        print(json.dumps({"error": str(e)}))
        continue
    with torch.no_grad():
        print(json.dumps({"logits": model(x).logits.tolist(), "source": model.source}))
"""


def _load_in_process(env: dict[str, str], *sources: tuple[str, str | None]) -> list[dict]:
    """load_model in a fresh interpreter: huggingface_hub reads HF_ENDPOINT and the rest at import."""
    done = subprocess.run([sys.executable, "-c", _LOAD, json.dumps(sources)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.strip().splitlines()[-len(sources):]]


def test_hub_ids_through_a_local_hub(tmp_path):
    from hub_server import LocalHub

    main, _ = hf_twin("FocalNetForImageClassification")
    tagged, _ = hf_twin("FocalNetForImageClassification", use_post_layernorm=True)
    main.save_pretrained(tmp_path / "main")
    tagged.save_pretrained(tmp_path / "v1", max_shard_size="100KB")  # a sharded revision
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = {"main": main(x).logits, "v1": tagged(x).logits}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "0",
           "HF_HUB_DISABLE_TELEMETRY": "1", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    env.pop("HF_TOKEN", None)

    with LocalHub() as hub:
        hub.add("acme/focalnet-digits", tmp_path / "main", ("main",))
        v1_commit = hub.add("acme/focalnet-digits", tmp_path / "v1", ("v1",))
        env["HF_ENDPOINT"] = hub.url
        got_main, got_v1, no_repo, no_revision = _load_in_process(
            env, ("acme/focalnet-digits", None), ("acme/focalnet-digits", "v1"),
            ("acme/no-such-model", None), ("acme/focalnet-digits", "v9"),
        )
        assert maxdiff(torch.tensor(got_main["logits"]), want["main"]) <= TOL
        assert got_main["source"] == "acme/focalnet-digits"
        assert maxdiff(torch.tensor(got_v1["logits"]), want["v1"]) <= TOL
        # the real download path was taken: repository info, then the files at the resolved commit
        assert "GET /api/models/acme/focalnet-digits/revision/v1" in hub.requests
        assert any(r.startswith(f"GET /acme/focalnet-digits/resolve/{v1_commit}/model-00001-of-") for r in hub.requests)
        for got, expect in ((no_repo, "acme/no-such-model"), (no_revision, "acme/focalnet-digits@v9")):
            err = got["error"]
            assert f"could not get {expect!r} from the Hugging Face Hub" in err and "--model DIR" in err
            assert "\n" not in err

    # the server is gone: offline, both revisions come from the cache
    env["HF_HUB_OFFLINE"] = "1"
    got_main, got_v1, never = _load_in_process(
        env, ("acme/focalnet-digits", None), ("acme/focalnet-digits", "v1"), ("acme/never-downloaded", None)
    )
    assert maxdiff(torch.tensor(got_main["logits"]), want["main"]) <= TOL
    assert maxdiff(torch.tensor(got_v1["logits"]), want["v1"]) <= TOL
    assert "could not get 'acme/never-downloaded'" in never["error"] and "\n" not in never["error"]


# -- `demo` never shadows a local path -----------------------------------------------------------
def test_demo_means_the_bundled_model_unless_a_local_demo_exists(tmp_path, monkeypatch, caplog):
    from focalnet_edge.demo import DEMO_DIR, uses_bundled_demo

    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO, logger="focalnet_edge")
    bundled = load_checkpoint("demo")
    assert uses_bundled_demo("demo") and bundled.files[0].parent == DEMO_DIR
    assert "the bundled demo model" in caplog.text

    hf, _ = hf_twin("FocalNetForImageClassification")
    hf.save_pretrained(tmp_path / "demo")
    caplog.clear()
    local = load_checkpoint("demo")
    assert not uses_bundled_demo("demo")
    assert local.files[0].parent.resolve() == (tmp_path / "demo").resolve()
    assert local.config.num_labels == 7 and bundled.config.num_labels == 10
    assert "'demo' is the local folder" in caplog.text and "not the bundled demo model" in caplog.text
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert maxdiff(hf(x).logits, load_model("demo")(x).logits) <= TOL


def test_a_bare_focalnet_model_checkpoint_builds_with_the_features_head(tmp_path, capsys):
    """transformers' `FocalNetModel.save_pretrained` (keys `layernorm.*`, no `focalnet.` prefix, no head): the default
    logits head says why not in one line; `--head features` builds, and its maps equal transformers' FocalNetBackbone's
    on the same checkpoint."""
    import numpy as np
    import onnxruntime as ort
    import transformers

    from focalnet_edge.cli import main
    from helpers import perturb_, small_config_dict

    ckpt = tmp_path / "bare"
    perturb_(transformers.FocalNetModel(transformers.FocalNetConfig(**small_config_dict()))).save_pretrained(ckpt)
    assert main(["-q", "build", "--model", str(ckpt), "--precision", "fp32", "--output", str(tmp_path / "no")]) == 2
    assert "has no classifier weights, so no logits head; try --head features" in capsys.readouterr().err
    out = tmp_path / "out"
    code = main(["-q", "build", "--model", str(ckpt), "--head", "features", "--out-features", "stage1,stage2,stage4",
                 "--precision", "fp16", "--output", str(out)])
    assert code == 0, capsys.readouterr().err
    reference = transformers.FocalNetBackbone.from_pretrained(ckpt, out_features=["stage1", "stage2", "stage4"]).eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expect = [t.numpy() for t in reference(torch.from_numpy(x)).feature_maps]
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["stage1", "stage2", "stage4"]
    for got, want in zip(sess.run(None, {"pixel_values": x}), expect):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert json.loads((out / "manifest.json").read_text())["head"] == "features"
