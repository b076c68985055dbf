"""`focalnet-edge deploy --to triton`: every generated config.pbtxt is parsed strictly with Triton's own
schema (tritonclient's model_config_pb2) and checked against the artifact's ONNX I/O read with onnx."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import onnx
import pytest

from focalnet_edge.cli import main
from focalnet_edge.deploy.triton import TritonOptions, deploy
from focalnet_edge.errors import ArtifactError, ConfigError
from focalnet_edge.folder.manifest import add_artifact, read_manifest, write_manifest
from focalnet_edge.pipeline import ExportOptions, PrecisionOptions, export_stage, precision_stage

pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] (the test extra) parses the configs")
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

#: ONNX element type -> Triton DataType, written out independently of the code under test
ONNX_TO_TRITON = {onnx.TensorProto.FLOAT: mc.TYPE_FP32, onnx.TensorProto.FLOAT16: mc.TYPE_FP16, onnx.TensorProto.UINT8: mc.TYPE_UINT8}


@pytest.fixture(scope="module")
def plain(tmp_path_factory, demo_ckpt):
    """fp32 with batch 1:4:8, plus an fp16 graph with fp16 I/O."""
    out = tmp_path_factory.mktemp("plain")
    _, manifest = export_stage(demo_ckpt, out, ExportOptions(batch=(1, 4, 8)))
    precision_stage(out, out / "model.onnx", "fp16", PrecisionOptions(keep_io_types=False), manifest)
    write_manifest(out, manifest)
    return out


@pytest.fixture(scope="module")
def fused(tmp_path_factory, demo_ckpt):
    out = tmp_path_factory.mktemp("fused")
    export_stage(demo_ckpt, out, ExportOptions(fuse_preprocess=True, batch=(1, 2, 16)))
    return out


@pytest.fixture(scope="module")
def static(tmp_path_factory, demo_ckpt):
    out = tmp_path_factory.mktemp("static")
    export_stage(demo_ckpt, out, ExportOptions(batch=(1, 2, 2), dynamic_batch=False))
    return out


def parse(model_dir: Path) -> mc.ModelConfig:
    config = mc.ModelConfig()
    text_format.Parse((model_dir / "config.pbtxt").read_text(), config)  # strict: unknown fields raise
    return config


def graph(path: Path):
    g = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name for i in g.initializer}

    def rows(values):
        return [(v.name, v.type.tensor_type.elem_type, [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim])
                for v in values if v.name not in inits]

    return rows(g.input), rows(g.output)


def check_io(config: mc.ModelConfig, onnx_path: Path, batched: bool) -> None:
    inputs, outputs = graph(onnx_path)
    for declared, actual in ((config.input, inputs), (config.output, outputs)):
        assert [t.name for t in declared] == [a[0] for a in actual]
        for t, (_, elem, shape) in zip(declared, actual):
            assert t.data_type == ONNX_TO_TRITON[elem]
            assert list(t.dims) == (shape[1:] if batched else shape)
            if batched:
                assert shape[0] == -1  # the batch axis Triton adds is the graph's dynamic one


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("artifact,dtype", [("model.onnx", mc.TYPE_FP32), ("model.fp16.onnx", mc.TYPE_FP16)])
def test_onnx_repository(plain, tmp_path, artifact, dtype):
    result = deploy(plain, TritonOptions(repo=tmp_path, artifact=artifact, instances=3, max_queue_delay_us=250, name="fn"))
    model = tmp_path / "fn"
    assert result.model_dir == model
    config = parse(model)
    assert config.name == "fn" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 8
    check_io(config, plain / artifact, batched=True)
    assert config.input[0].data_type == dtype  # fp16 I/O really declared as fp16
    assert config.input[0].format == mc.ModelInput.FORMAT_NCHW
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 250
    assert [(g.count, g.kind) for g in config.instance_group] == [(3, mc.ModelInstanceGroup.KIND_GPU)]
    assert config.version_policy.latest.num_versions == 1
    assert sha(model / "1" / "model.onnx") == read_manifest(plain).to_json()["artifacts"][artifact]["sha256"]
    # Triton's classification extension: one label per class, in index order
    assert config.output[0].label_filename == "labels.txt"
    labels = (model / "labels.txt").read_text().splitlines()
    assert len(labels) == config.output[0].dims[0] == 10
    assert labels == [read_manifest(plain).to_json()["labels"][str(i)] for i in range(10)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fn"]  # no temp folder left behind


def test_fused_uint8_frames(fused, tmp_path):
    deploy(fused, TritonOptions(repo=tmp_path, kind="cpu", version=3))
    config = parse(tmp_path / "demo")
    check_io(config, fused / "model.onnx", batched=True)
    assert config.input[0].data_type == mc.TYPE_UINT8
    assert list(config.input[0].dims) == [64, 64, 3]
    assert config.input[0].format == mc.ModelInput.FORMAT_NHWC
    assert config.max_batch_size == 16 and list(config.dynamic_batching.preferred_batch_size) == [2, 16]
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert (tmp_path / "demo" / "3" / "model.onnx").is_file()


def test_static_batch(static, tmp_path):
    deploy(static, TritonOptions(repo=tmp_path))
    config = parse(tmp_path / "demo")
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    check_io(config, static / "model.onnx", batched=False)
    assert list(config.input[0].dims) == [2, 3, 64, 64]


def test_engine_repository(plain, tmp_path):
    """An engine entry (made by hand here: no TensorRT) becomes model.plan, I/O from the ONNX it was built from."""
    folder = tmp_path / "out"
    shutil.copytree(plain, folder)
    manifest = read_manifest(folder).to_json()
    plan = folder / "model.fp16.engine"
    plan.write_bytes(b"not really a plan, but bytes to copy")
    add_artifact(manifest, plan, "fp16", "tensorrt-plan", built_from="model.fp16.onnx")
    write_manifest(folder, manifest)
    repo = tmp_path / "repo"
    result = deploy(folder, TritonOptions(repo=repo))  # engines come first for a GPU server
    assert result.artifact == "model.fp16.engine"
    config = parse(repo / "demo")
    assert config.platform == "tensorrt_plan"
    check_io(config, folder / "model.fp16.onnx", batched=True)
    assert (repo / "demo" / "1" / "model.plan").read_bytes() == plan.read_bytes()
    with pytest.raises(ConfigError, match="runs on a GPU only"):
        deploy(folder, TritonOptions(repo=repo, artifact="model.fp16.engine", kind="cpu", force=True))
    # without a GPU, the default is an ONNX file
    assert deploy(folder, TritonOptions(repo=tmp_path / "cpu", kind="cpu")).artifact == "model.onnx"


def test_refuses_existing_then_force_replaces(plain, tmp_path):
    deploy(plain, TritonOptions(repo=tmp_path, artifact="fp32"))
    stray = tmp_path / "demo" / "2"
    stray.mkdir()
    with pytest.raises(ArtifactError, match="exists; pass --force"):
        deploy(plain, TritonOptions(repo=tmp_path, artifact="fp16"))
    assert parse(tmp_path / "demo").input[0].data_type == mc.TYPE_FP32  # untouched
    deploy(plain, TritonOptions(repo=tmp_path, artifact="fp16", force=True))
    assert parse(tmp_path / "demo").input[0].data_type == mc.TYPE_FP16
    assert not stray.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


def test_changed_artifact_is_refused(plain, tmp_path):
    folder = tmp_path / "out"
    shutil.copytree(plain, folder)
    with open(folder / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ArtifactError, match="does not match manifest.json"):
        deploy(folder, TritonOptions(repo=tmp_path / "repo", artifact="model.onnx"))
    assert not (tmp_path / "repo" / "demo").exists()


def test_batch_range_above_one_refused(tmp_path, demo_ckpt):
    export_stage(demo_ckpt, tmp_path / "out", ExportOptions(batch=(2, 4, 8)))
    with pytest.raises(ConfigError, match="starts above 1"):
        deploy(tmp_path / "out", TritonOptions(repo=tmp_path / "repo"))


def test_cli(plain, tmp_path, capsys):
    repo = tmp_path / "repo"
    args = ["deploy", str(plain), "--to", "triton", "--repo", str(repo), "--name", "m1", "--artifact", "fp32", "--kind", "cpu",
            "--instances", "2", "--max-queue-delay-us", "500", "--version", "4"]
    assert main(args) == 0
    assert "wrote" in capsys.readouterr().out
    config = parse(repo / "m1")
    assert config.instance_group[0].count == 2 and config.dynamic_batching.max_queue_delay_microseconds == 500
    assert (repo / "m1" / "4" / "model.onnx").is_file()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--force" in err[0]
    assert main(args + ["--force"]) == 0
    assert main(["deploy", str(plain), "--to", "triton", "--repo", str(repo), "--name", "a/b"]) == 2
    assert main(["deploy", str(plain), "--to", "triton"]) == 2
    assert main(["deploy", str(plain), "--to", "triton", "--repo", str(repo), "--artifact", "int8"]) == 2
    capsys.readouterr()



# -- issue 24, item 10 ---------------------------------------------------------------------------------------------------
def _engine_folder(plain, tmp_path, **entry):
    folder = tmp_path / "out"
    shutil.copytree(plain, folder)
    manifest = read_manifest(folder).to_json()
    plan = folder / "model.fp16.engine"
    plan.write_bytes(b"not really a plan, but bytes to copy")
    add_artifact(manifest, plan, "fp16", "tensorrt-plan", built_from="model.fp16.onnx", **entry)
    write_manifest(folder, manifest)
    return folder


@pytest.mark.parametrize("profile_batch,max_batch,first_dim", [
    ((1, 2, 4), 4, None),  # an adopted plan built for at most 4, in a folder whose manifest says 8
    ((8, 8, 8), 0, 8),  # a DLA engine: one batch size, the full shape with it
])
def test_an_engines_batch_limits_come_from_its_profile(plain, tmp_path, capsys, profile_batch, max_batch, first_dim):
    profile = [[b, 3, 64, 64] for b in profile_batch]
    folder = _engine_folder(plain, tmp_path, engine={"profile": {"pixel_values": profile}}, requires={"version_compatible": False})
    assert read_manifest(folder).to_json()["input"]["batch"] == [1, 4, 8]
    result = deploy(folder, TritonOptions(repo=tmp_path / "repo"))
    config = parse(tmp_path / "repo" / "demo")
    assert result.artifact == "model.fp16.engine" and config.max_batch_size == max_batch
    if first_dim:
        assert list(config.input[0].dims) == [8, 3, 64, 64] and not config.HasField("dynamic_batching")
    else:
        assert list(config.dynamic_batching.preferred_batch_size) == [2, 4]
    assert result.server_flags == [] and "version-compatible" not in result.config


def test_a_version_compatible_plan_says_which_server_flag_it_needs(plain, tmp_path, capsys):
    folder = _engine_folder(plain, tmp_path, engine={"profile": {"pixel_values": [[1, 3, 64, 64], [4, 3, 64, 64], [8, 3, 64, 64]]}},
                            requires={"version_compatible": True})
    assert main(["deploy", str(folder), "--to", "triton", "--repo", str(tmp_path / "repo")]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("--backend-config=tensorrt,version-compatible=true")
    text = (tmp_path / "repo" / "demo" / "config.pbtxt").read_text()
    assert text.startswith("# a version-compatible TensorRT plan: start tritonserver with --backend-config=tensorrt,version-compatible=true\n")
    assert parse(tmp_path / "repo" / "demo").max_batch_size == 8  # the comment parses away
