"""Read the labels nvinfer attached with focalnet-edge's DeepStream configs, in a pyds pad probe.

`focalnet-edge deploy OUT --to deepstream` writes OUT/deepstream/config_infer_primary.txt and
config_infer_secondary.txt. nvinfer's classifier output lands in the batch metadata as
NvDsClassifierMeta, one NvDsLabelInfo per output layer (one here, `probs`):

- primary classifier (process-mode=1): nvinfer adds ONE NvDsObjectMeta per frame covering the
  whole frame, with the classifier meta in its `classifier_meta_list`;
- secondary classifier (process-mode=2): the classifier meta is added to the
  `classifier_meta_list` of each object of the detector (operate-on-gie-id) it classified.

Either way the probe walks frames -> objects -> classifier metas and keeps those whose
`unique_component_id` is the classifier's gie-unique-id. nvinfer attaches a label only when its
probability is above `classifier-threshold`.

A folder with the `features` head deploys as network-type=100 with output-tensor-meta=1:
nvinfer parses nothing and attaches the output tensors as NvDsInferTensorMeta, a user meta
(meta_type NVDSINFER_TENSOR_OUTPUT_META) of the frame (`frame_user_meta_list`, primary) or of
each object (`obj_user_meta_list`, secondary). `tensor_outputs` copies them into numpy arrays by
layer name (`pyds.get_nvds_LayerInfo`, `layer.dims`, `pyds.get_ptr(layer.buffer)`: the
host copy of the layer, float32 or float16 as `layer.dataType` says).

Attach the probe downstream of the classifier's nvinfer (its src pad, or nvdsosd's sink pad):

    pad.add_probe(Gst.PadProbeType.BUFFER, classifier_probe, ProbeState(gie_id=1))

Running it needs DeepStream and its Python bindings (pyds); `main` is a minimal pipeline:

    python3 examples/pyds_probe.py OUT/deepstream/config_infer_primary.txt file:///path/clip.mp4
"""

from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import gi
import numpy as np

gi.require_version("Gst", "1.0")
import pyds  # noqa: E402 (after gi.require_version)
from gi.repository import GLib, Gst  # noqa: E402

if TYPE_CHECKING:  # the stubs' GList (pyds-stubs); at run time pyds' lists need no import
    from pyds.typing import GList


@dataclass
class Label:
    frame: int
    source: int
    object_id: int  #: the tracker's id (or UNTRACKED_OBJECT_ID); the full-frame object of a primary classifier
    class_id: int
    label: str
    probability: float


@dataclass
class ProbeState:
    gie_id: int  #: gie-unique-id of the classifier's config
    labels: list[Label] = field(default_factory=list)


def classifier_labels(batch_meta: pyds.NvDsBatchMeta, gie_id: int) -> list[Label]:
    """Every label the classifier `gie_id` attached in this batch."""
    out: list[Label] = []
    l_frame = batch_meta.frame_meta_list
    while l_frame is not None:
        frame_meta = pyds.NvDsFrameMeta.cast(l_frame.data)
        l_obj = frame_meta.obj_meta_list
        while l_obj is not None:
            obj_meta = pyds.NvDsObjectMeta.cast(l_obj.data)
            l_cls = obj_meta.classifier_meta_list
            while l_cls is not None:
                cls_meta = pyds.NvDsClassifierMeta.cast(l_cls.data)
                if cls_meta.unique_component_id == gie_id:
                    l_label = cls_meta.label_info_list
                    while l_label is not None:
                        info = pyds.NvDsLabelInfo.cast(l_label.data)
                        out.append(Label(
                            frame=frame_meta.frame_num,
                            source=frame_meta.source_id,
                            object_id=obj_meta.object_id,
                            class_id=info.result_class_id,
                            label=info.result_label,
                            probability=info.result_prob,
                        ))
                        l_label = l_label.next
                l_cls = l_cls.next
            l_obj = l_obj.next
        l_frame = l_frame.next
    return out


@dataclass
class Tensors:
    frame: int
    source: int
    object_id: int | None  #: None: the frame's tensors (primary); else the object's (secondary)
    outputs: dict[str, np.ndarray]  #: layer name -> the tensor, copied out of nvinfer's buffer


#: NvDsInferDataType -> numpy dtype (the layers a FocalNet graph outputs)
_DTYPES = {0: np.float32, 1: np.float16}


def tensor_outputs(batch_meta: pyds.NvDsBatchMeta, gie_id: int) -> list[Tensors]:
    """Every NvDsInferTensorMeta the nvinfer `gie_id` attached in this batch (output-tensor-meta=1)."""
    out: list[Tensors] = []
    l_frame = batch_meta.frame_meta_list
    while l_frame is not None:
        frame_meta = pyds.NvDsFrameMeta.cast(l_frame.data)
        for layers in _tensor_metas(frame_meta.frame_user_meta_list, gie_id):
            out.append(Tensors(frame_meta.frame_num, frame_meta.source_id, None, layers))
        l_obj = frame_meta.obj_meta_list
        while l_obj is not None:
            obj_meta = pyds.NvDsObjectMeta.cast(l_obj.data)
            for layers in _tensor_metas(obj_meta.obj_user_meta_list, gie_id):
                out.append(Tensors(frame_meta.frame_num, frame_meta.source_id, obj_meta.object_id, layers))
            l_obj = l_obj.next
        l_frame = l_frame.next
    return out


def _tensor_metas(l_user: GList[pyds.NvDsUserMeta] | None, gie_id: int) -> list[dict[str, np.ndarray]]:
    """The layers of each tensor meta of `gie_id` in a user meta list (a frame's or an object's)."""
    found = []
    while l_user is not None:
        user_meta = pyds.NvDsUserMeta.cast(l_user.data)
        if user_meta.base_meta.meta_type == pyds.NvDsMetaType.NVDSINFER_TENSOR_OUTPUT_META:
            tensor_meta = pyds.NvDsInferTensorMeta.cast(user_meta.user_meta_data)
            if tensor_meta.unique_id == gie_id:
                found.append(_layers(tensor_meta))
        l_user = l_user.next
    return found


def _layers(tensor_meta: pyds.NvDsInferTensorMeta) -> dict[str, np.ndarray]:
    """Layer name -> a copy of its host buffer (nvinfer reuses the buffer for the next batch)."""
    layers = {}
    for i in range(tensor_meta.num_output_layers):
        layer = pyds.get_nvds_LayerInfo(tensor_meta, i)
        shape = tuple(int(layer.dims.d[k]) for k in range(layer.dims.numDims))
        dtype = np.dtype(_DTYPES[int(layer.dataType)])
        raw = ctypes.string_at(pyds.get_ptr(layer.buffer), int(np.prod(shape)) * dtype.itemsize)
        layers[layer.layerName] = np.frombuffer(raw, dtype).reshape(shape)
    return layers


def classifier_probe(pad: Gst.Pad, info: Gst.PadProbeInfo, state: ProbeState) -> Gst.PadProbeReturn:
    """Buffer probe: collect (and print) the classifier's labels; the buffer passes on unchanged."""
    buffer = info.get_buffer()
    if buffer is None:
        return Gst.PadProbeReturn.OK
    # pyds takes the C address of the GstBuffer, which PyGObject gives as hash()
    batch_meta = pyds.gst_buffer_get_nvds_batch_meta(hash(buffer))
    for label in classifier_labels(batch_meta, state.gie_id):
        state.labels.append(label)
        print(f"frame {label.frame} source {label.source} object {label.object_id}: "
              f"{label.label} ({label.probability:.3f})")
    return Gst.PadProbeReturn.OK


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {argv[0]} CONFIG_INFER_PRIMARY.txt URI", file=sys.stderr)
        return 2
    config, uri = argv[1], argv[2]
    Gst.init(None)
    pipeline = Gst.parse_launch(
        f"uridecodebin uri={uri} ! nvvideoconvert ! video/x-raw(memory:NVMM),format=NV12 ! m.sink_0 "
        "nvstreammux name=m batch-size=1 width=1280 height=720 "
        f"! nvinfer name=classifier config-file-path={config} ! fakesink sync=false"
    )
    assert isinstance(pipeline, Gst.Bin)
    classifier = pipeline.get_by_name("classifier")
    assert classifier is not None
    src = classifier.get_static_pad("src")
    assert src is not None
    state = ProbeState(gie_id=int(classifier.get_property("unique-id")))
    src.add_probe(Gst.PadProbeType.BUFFER, classifier_probe, state)

    loop = GLib.MainLoop()
    bus = pipeline.get_bus()
    assert bus is not None
    bus.add_signal_watch()

    def on_message(_bus: Gst.Bus, message: Gst.Message) -> None:
        if message.type == Gst.MessageType.ERROR:
            err, _debug = message.parse_error()
            print(f"error: {err.message}", file=sys.stderr)
            loop.quit()
        elif message.type == Gst.MessageType.EOS:
            loop.quit()

    bus.connect("message", on_message)
    pipeline.set_state(Gst.State.PLAYING)
    try:
        loop.run()
    finally:
        pipeline.set_state(Gst.State.NULL)
    print(f"{len(state.labels)} labels")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
