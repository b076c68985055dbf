"""examples/pyds_probe.py: type-checked against pyds-stubs, and its metadata walk run on stand-ins.

DeepStream's pyds cannot run here. The type check uses `pyds-stubs` (PyPI, the bindings' API as
stubs; its metadata says Python 3.6 only, so it is installed with --no-deps
--ignore-requires-python next to mypy and pygobject-stubs in a separate environment, named by
PYDS_MYPY=/path/to/python). The walk over frames -> objects -> classifier metas -> label infos
runs on plain objects shaped like pyds' GList and metadata classes (cast is the identity).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "pyds_probe.py"
MYPY_INI = """[mypy]
strict = True
python_version = 3.10
mypy_path = {stubs}
[mypy-pyds.*]
ignore_errors = True
"""
SETUP = (
    "python3 -m venv /tmp/stubs && /tmp/stubs/bin/pip install mypy numpy && /tmp/stubs/bin/pip install "
    "--no-deps --ignore-requires-python pyds-stubs==1.1.0.1 pygobject-stubs, then PYDS_MYPY=/tmp/stubs/bin/python"
)


def test_probe_type_checks_against_pyds_stubs(tmp_path):
    python = os.environ.get("PYDS_MYPY")
    if not python:
        pytest.skip(f"PYDS_MYPY not set (a Python with mypy, pyds-stubs and pygobject-stubs: {SETUP})")
    where = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.distribution('pyds-stubs').locate_file('pyds'))"],
        check=False, capture_output=True, text=True,
    )
    assert where.returncode == 0, f"{python} has no pyds-stubs: {where.stderr[-500:]}"
    # the stubs ship no py.typed, so mypy reads them from mypy_path (errors inside them ignored)
    stubs = tmp_path / "stubs"
    shutil.copytree(where.stdout.strip(), stubs / "pyds")
    ini = tmp_path / "mypy.ini"
    ini.write_text(MYPY_INI.format(stubs=stubs))
    r = subprocess.run([python, "-m", "mypy", "--config-file", str(ini), str(EXAMPLE)], check=False, capture_output=True, text=True)
    assert r.returncode == 0 and "Success" in r.stdout, r.stdout + r.stderr
    # and the check is real: a misspelt pyds attribute fails it
    bad = tmp_path / "bad_probe.py"
    bad.write_text(EXAMPLE.read_text().replace("info.result_prob,", "info.result_probability,"))
    r = subprocess.run([python, "-m", "mypy", "--config-file", str(ini), str(bad)], check=False, capture_output=True, text=True)
    assert r.returncode == 1 and '"NvDsLabelInfo" has no attribute "result_probability"' in r.stdout


# -- the walk, on stand-ins for pyds' metadata -----------------------------------------------------
class GList:
    def __init__(self, items):
        self.data, self.next = items[0], (GList(items[1:]) if len(items) > 1 else None)


def glist(items):
    return GList(items) if items else None


def _meta(**fields):
    return types.SimpleNamespace(**fields)


@pytest.fixture
def probe(monkeypatch):
    identity = types.SimpleNamespace(cast=lambda x: x)
    pyds = types.ModuleType("pyds")
    for name in ("NvDsFrameMeta", "NvDsObjectMeta", "NvDsClassifierMeta", "NvDsLabelInfo", "NvDsBatchMeta", "NvDsUserMeta",
                 "NvDsInferTensorMeta"):
        setattr(pyds, name, identity)
    pyds.NvDsMetaType = types.SimpleNamespace(NVDSINFER_TENSOR_OUTPUT_META=12, NVDS_USER_META=7)
    pyds.get_nvds_LayerInfo = lambda tensor_meta, i: tensor_meta.layers[i]
    pyds.get_ptr = lambda buffer: ctypes.addressof(buffer)
    pyds.gst_buffer_get_nvds_batch_meta = lambda address: batches[address]
    batches: dict[int, object] = {}
    gi = types.ModuleType("gi")
    gi.require_version = lambda name, version: None
    repository = types.ModuleType("gi.repository")
    repository.GLib = types.SimpleNamespace()
    repository.Gst = types.SimpleNamespace(PadProbeReturn=types.SimpleNamespace(OK="ok"))
    gi.repository = repository
    for name, module in (("pyds", pyds), ("gi", gi), ("gi.repository", repository)):
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("pyds_probe", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "pyds_probe", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    module.batches = batches
    return module


def _label(class_id, label, prob):
    return _meta(result_class_id=class_id, result_label=label, result_prob=prob, label_id=0, num_classes=10)


def test_probe_collects_only_its_classifiers_labels(probe):
    mine = _meta(unique_component_id=2, label_info_list=glist([_label(7, "7", 0.9)]))
    other = _meta(unique_component_id=3, label_info_list=glist([_label(1, "car", 0.8)]))
    car = _meta(object_id=11, classifier_meta_list=glist([other, mine]))
    person = _meta(object_id=12, classifier_meta_list=None)  # not classified (below the threshold)
    frame0 = _meta(frame_num=0, source_id=0, obj_meta_list=glist([car, person]))
    full = _meta(object_id=0xFFFFFFFFFFFFFFFF, classifier_meta_list=glist([
        _meta(unique_component_id=2, label_info_list=glist([_label(3, "3", 0.6)])),
    ]))
    frame1 = _meta(frame_num=5, source_id=1, obj_meta_list=glist([full]))
    batch = _meta(frame_meta_list=glist([frame0, frame1]))

    got = probe.classifier_labels(batch, gie_id=2)
    assert [(x.frame, x.source, x.object_id, x.class_id, x.label, x.probability) for x in got] == [
        (0, 0, 11, 7, "7", 0.9),
        (5, 1, 0xFFFFFFFFFFFFFFFF, 3, "3", 0.6),
    ]
    assert [x.label for x in probe.classifier_labels(batch, gie_id=3)] == ["car"]
    assert probe.classifier_labels(_meta(frame_meta_list=None), gie_id=2) == []

    buffer = object()
    probe.batches[hash(buffer)] = batch
    state = probe.ProbeState(gie_id=2)
    info = types.SimpleNamespace(get_buffer=lambda: buffer)
    assert probe.classifier_probe(None, info, state) == "ok"
    assert [x.label for x in state.labels] == ["7", "3"]


def _tensor_meta(gie_id, **arrays):
    """An NvDsUserMeta holding an NvDsInferTensorMeta whose layers hold `arrays` in ctypes buffers (as nvinfer's host copies)."""
    layers, keep = [], []
    for name, a in arrays.items():
        buffer = (ctypes.c_char * a.nbytes).from_buffer_copy(a.tobytes())
        keep.append(buffer)
        dtype = {np.dtype(np.float32): 0, np.dtype(np.float16): 1}[a.dtype]
        layers.append(_meta(layerName=name, dataType=dtype, buffer=buffer, dims=_meta(numDims=a.ndim, d=list(a.shape) + [0] * (8 - a.ndim))))
    tensor = _meta(unique_id=gie_id, num_output_layers=len(layers), layers=layers)
    return _meta(base_meta=_meta(meta_type=12), user_meta_data=tensor), keep


def test_tensor_outputs_reads_the_features_of_frames_and_objects(probe):
    rng = np.random.default_rng(0)
    frame_features = {"stage2": rng.standard_normal((16, 4, 4)).astype(np.float32), "stage4": rng.standard_normal((64, 1, 1)).astype(np.float32)}
    object_features = {"stage4": rng.standard_normal((64, 1, 1)).astype(np.float16)}
    mine, keep1 = _tensor_meta(2, **frame_features)
    other, keep2 = _tensor_meta(3, stage4=np.ones((2,), np.float32))
    on_object, keep3 = _tensor_meta(2, **object_features)
    not_tensor = _meta(base_meta=_meta(meta_type=7), user_meta_data=None)
    car = _meta(object_id=11, obj_user_meta_list=glist([not_tensor, on_object]), classifier_meta_list=None)
    frame = _meta(frame_num=4, source_id=1, frame_user_meta_list=glist([other, mine]), obj_meta_list=glist([car]))
    got = probe.tensor_outputs(_meta(frame_meta_list=glist([frame])), gie_id=2)
    assert [(t.frame, t.source, t.object_id, sorted(t.outputs)) for t in got] == [(4, 1, None, ["stage2", "stage4"]), (4, 1, 11, ["stage4"])]
    for t, expected in zip(got, (frame_features, object_features)):
        for name, a in expected.items():
            assert t.outputs[name].dtype == a.dtype and t.outputs[name].shape == a.shape
            assert np.array_equal(t.outputs[name], a)
    for buffer in keep1 + keep3:  # nvinfer reuses its buffers: the arrays must be copies
        ctypes.memset(buffer, 0, len(buffer))
    assert np.array_equal(got[0].outputs["stage2"], frame_features["stage2"])
    assert probe.tensor_outputs(_meta(frame_meta_list=glist([frame])), gie_id=5) == []
