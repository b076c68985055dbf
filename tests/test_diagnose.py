"""`focalnet-edge diagnose`, `build --no-gate` and `--keep-float`, on the demo with one block made
hostile to int8 in the checkpoint itself (a few hidden channels of one MLP near 300: fc2's
per-tensor input scale leaves the other channels a level or two).

References: the PyTorch model's own block outputs (hooks, computed here independently of the
tool), the graphs' nodes and Q/DQ, the manifest.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from focalnet_edge.cli import main
from focalnet_edge.model import load_checkpoint, load_model

HOSTILE = "encoder.stages.3.layers.0"
FC2 = "/model/encoder/stages.3/layers.0/mlp/fc2/MatMul"


def plant_hostile_mlp(model, stage: int, layer: int, channels: int = 3, value: float = 300.0, seed: int = 0):
    """`channels` hidden channels of one block's MLP near `value` (fc1's bias), their fc2 weights divided by it."""
    mlp = model.focalnet.encoder.stages[stage].layers[layer].mlp
    picked = torch.from_numpy(np.random.default_rng(seed).choice(mlp.fc1.out_features, channels, replace=False))
    with torch.no_grad():
        mlp.fc1.bias[picked] = value
        mlp.fc2.weight[:, picked] /= value
    return model


@pytest.fixture(scope="module")
def hostile_ckpt(tmp_path_factory):
    ckpt = load_checkpoint("demo")
    model = plant_hostile_mlp(load_model(ckpt), 3, 0)
    path = tmp_path_factory.mktemp("hostile") / "ckpt"
    model.save_pretrained(path, preprocessing=ckpt.preprocessing)
    return path


@pytest.fixture(scope="module")
def ungated(hostile_ckpt, tmp_path_factory):
    """`build --precision int8 --no-gate` of the hostile checkpoint (TensorRT form only)."""
    out = tmp_path_factory.mktemp("ungated") / "out"
    code = main(["-q", "build", "--model", str(hostile_ckpt), "--precision", "int8", "--calib-data", "demo", "--no-cpu-int8",
                 "--no-gate", "--output", str(out)])
    return out, code


def _graph_quantizes(path, node: str) -> bool:
    m = onnx.load(str(path))
    producer = {o: n for n in m.graph.node for o in n.output}
    target = next(n for n in m.graph.node if n.name == node)
    return any(i in producer and producer[i].op_type == "DequantizeLinear" for i in target.input)


def test_no_gate_writes_the_quantized_graph_without_fallback(ungated):
    out, code = ungated
    assert code == 0
    entry = json.loads((out / "manifest.json").read_text())["artifacts"]["model.int8.onnx"]["int8"]
    assert entry["gate_enabled"] is False and entry["gate_passed"] is None and entry["kept_float"] == [] and entry["tried"] == []
    assert entry["gate"]["sqnr_db"] < 25  # the hostile block is there, and nothing was done about it
    assert _graph_quantizes(out / "model.int8.onnx", FC2)


def test_diagnose_ranks_the_planted_block_first(ungated, capsys):
    out, _ = ungated
    capsys.readouterr()
    assert main(["-q", "diagnose", str(out), "--limit", "24", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    blocks = doc["blocks"]
    assert blocks[0]["block"] == HOSTILE and doc["artifact"] == "model.int8.onnx" and doc["images"] == 24
    names = {b["block"] for b in blocks}
    assert {"embeddings", "encoder.stages.0.layers.0", "encoder.stages.0.downsample", "classifier"} <= names
    assert all(0.9 < b["cosine"] <= 1.0 for b in blocks)
    added = [b["added_db"] if b["added_db"] is not None else np.inf for b in blocks]
    assert added == sorted(added)  # worst first
    # the figures against an independent computation: the PyTorch block output vs the int8 graph's tensor
    from focalnet_edge.verify.metrics import sqnr_db
    from focalnet_edge.folder.onnx_io import ort_session
    from focalnet_edge.verify.references import load_references
    from focalnet_edge.folder.manifest import read_manifest

    manifest = read_manifest(out)
    frames = load_references(out, manifest).frames[:24]
    contract = manifest.contract
    model = load_model(load_checkpoint(manifest.model.source))
    seen = {}
    handle = model.focalnet.encoder.stages[3].layers[0].register_forward_hook(lambda m, i, o: seen.update(y=o[0] if isinstance(o, tuple) else o))
    with torch.no_grad():
        model(torch.from_numpy(contract.reference_inputs(frames)))
    handle.remove()
    m = onnx.load(str(out / "model.int8.onnx"))
    tap = next(b for b in blocks if b["block"] == HOSTILE)["tensor"]
    m.graph.output.append(onnx.helper.make_empty_tensor_value_info(tap))
    sess = ort_session(m, optimize=False)
    y = sess.run([tap], {sess.get_inputs()[0].name: contract.inputs_from_frames(frames)})[0].astype(np.float32)
    assert blocks[0]["sqnr_db"] == pytest.approx(sqnr_db(seen["y"].numpy().reshape(24, -1), y.reshape(24, -1)), abs=0.05)


def test_diagnose_table_and_bad_input(ungated, capsys, tmp_path):
    out, _ = ungated
    capsys.readouterr()
    assert main(["-q", "diagnose", str(out), "--limit", "8", "--artifact", "fp32"]) == 0
    text = capsys.readouterr().out
    assert "worst block first" in text and HOSTILE in text
    assert main(["-q", "diagnose", str(out), "--artifact", "model.int8.engine"]) == 2
    assert main(["-q", "diagnose", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "Traceback" not in err


def test_keep_float_by_module_path_and_the_gate_on_the_hostile_block(hostile_ckpt, tmp_path, capsys):
    """--keep-float with a module path keeps exactly that GEMM in float (int8) and its nodes in fp32 (fp16),
    recorded in the manifest; a pattern naming nothing is one line and exit 2, before anything is written."""
    out = tmp_path / "out"
    code = main(["-q", "build", "--model", str(hostile_ckpt), "--precision", "best", "--calib-data", "demo",
                 "--keep-float", f"{HOSTILE}.mlp.fc2", "--output", str(out)])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    int8 = manifest["artifacts"]["model.int8.onnx"]["int8"]
    assert int8["keep_float"] == {"patterns": [f"{HOSTILE}.mlp.fc2"], "nodes": [FC2]} and int8["user_float"] == [FC2]
    assert int8["gate_passed"] and int8["kept_float"] == [] and int8["float_blocks"][HOSTILE] == [FC2]
    assert not _graph_quantizes(out / "model.int8.onnx", FC2)
    fp16 = manifest["artifacts"]["model.fp16.onnx"]
    assert fp16["keep_float"]["nodes"] == [n for n in fp16["kept_fp32"] if n in fp16["keep_float"]["nodes"]]
    assert set(fp16["keep_float"]["nodes"]) == {FC2, "/model/encoder/stages.3/layers.0/mlp/fc2/Add"}
    capsys.readouterr()
    assert main(["-q", "info", str(out)]) == 0
    assert f"{HOSTILE} (1)" in capsys.readouterr().out
    for artifact in ("fp16", "int8-cpu"):  # the other forms through ONNX Runtime: every block tapped
        assert main(["-q", "diagnose", str(out), "--artifact", artifact, "--limit", "8", "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["precision"] == artifact and len(doc["blocks"]) == 10 and not doc["skipped"]
        assert all(b["sqnr_db"] > 20 for b in doc["blocks"])  # --keep-float holds the hostile fc2 out of every form
    bad = tmp_path / "bad"
    assert main(["-q", "build", "--model", str(hostile_ckpt), "--precision", "int8", "--calib-data", "demo",
                 "--keep-float", "encoder.stages.9", "--output", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "--keep-float encoder.stages.9: no" in err and err.count("\n") == 1 and not bad.exists()


def test_pick_artifact_prefers_quantized_onnx_and_refuses_engines():
    from focalnet_edge.verify.diagnose import pick_artifact
    from focalnet_edge.errors import ArtifactError, ConfigError

    entries = {n: {"path": n, "precision": p, "format": f} for n, p, f in [
        ("model.onnx", "fp32", "onnx"), ("model.fp16.onnx", "fp16", "onnx"), ("model.int8.cpu.onnx", "int8-cpu", "onnx"),
        ("model.int8.onnx", "int8", "onnx"), ("model.int8.engine", "int8", "tensorrt-plan")]}
    assert pick_artifact({"artifacts": entries}, None)["path"] == "model.int8.onnx"
    assert pick_artifact({"artifacts": entries}, "int8")["path"] == "model.int8.onnx"  # the precision: its ONNX file
    assert pick_artifact({"artifacts": entries}, "fp16")["path"] == "model.fp16.onnx"
    with pytest.raises(ConfigError, match="cannot be tapped"):
        pick_artifact({"artifacts": entries}, "model.int8.engine")
    with pytest.raises(ArtifactError, match="no fp16, int8 or fp8 artifact"):
        pick_artifact({"artifacts": {"model.onnx": entries["model.onnx"]}}, None)
