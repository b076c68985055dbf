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

Attach the probe downstream of the classifier's nvinfer (its src pad, or nvdsosd's sink pad):

    pad.add_probe(Gst.PadProbeType.BUFFER, classifier_probe, ProbeState(gie_id=1))

Running it needs DeepStream and its Python bindings (pyds); `main` is a minimal pipeline:

    python3 examples/pyds_probe.py OUT/deepstream/config_infer_primary.txt file:///path/clip.mp4
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import gi

gi.require_version("Gst", "1.0")
import pyds  # noqa: E402 (after gi.require_version)
from gi.repository import GLib, Gst  # noqa: E402


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
