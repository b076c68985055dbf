"""The `focalnetclassify` element: a GstBase.BaseTransform, in place, over `runtime.load(model).predict`.

- primary: the whole frame is classified; the result goes into a new GstVideoRegionOfInterestMeta
  (type `frame`, the frame's rectangle);
- secondary: each GstVideoRegionOfInterestMeta upstream attached (of type `roi-type`, or every
  type when it is empty), clipped to the frame (a region wholly outside is skipped), is cropped
  and classified; the result goes into that same meta.

The result is a parameter structure named `classification` (`label` string, `class-id` int,
`confidence` double, and `top-k-labels`, `top-k-class-ids`, `top-k-confidences` arrays),
attached when the top-1 confidence reaches `threshold`. An element message `focalnetclassify`
per frame gives the same results for bus readers.

Batching: `batch-size` frames (primary) or regions (secondary) go into one inference, as nvinfer
does, so a buffer waits until its batch is full (a shallow copy is kept: gst-python gives a
vfunc's buffer without a reference of its own) or until a serialized event (EOS, caps, segment)
flushes the batch. Preprocessing is `Runner.predict`'s own on the RGB frame or crop
(`frames.to_image`), so the numbers are those of `runtime.load(model).predict` on the same pixels.
"""

from __future__ import annotations

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstBase", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import GObject, Gst, GstBase, GstVideo  # noqa: E402

from ...errors import ConfigError, FocalNetEdgeError  # noqa: E402
from . import ELEMENT, frames, roi  # noqa: E402
from .element_spec import MODES, PRIMARY_ROI_TYPE, PROPERTIES  # noqa: E402

CAPS = Gst.Caps.from_string(
    f"video/x-raw, format=(string){{ {', '.join(frames.FORMATS)} }}, width=(int)[ 1, 2147483647 ], "
    "height=(int)[ 1, 2147483647 ], framerate=(fraction)[ 0/1, 2147483647/1 ]"
)


class _Frame:
    """A buffer on its way through: its crops (or the whole frame) and where each result goes."""

    def __init__(self, buffer: Gst.Buffer, index: int, width: int, height: int) -> None:
        self.buffer, self.index, self.width, self.height = buffer, index, width, height
        self.mapped = None  #: the buffer's read mapping while `images` view it
        self.images: list = []  #: the frame or its crops, as `predict` takes them (`frames.to_image`)
        self.targets: list[tuple[int | None, roi.Region | None, tuple[int, int, int, int]]] = []  #: (meta address, region, rect)

    def release(self) -> None:
        """Unmap the buffer (its images are no longer needed)."""
        if self.mapped is not None:
            self.images = []
            self.buffer.unmap(self.mapped)
            self.mapped = None


class FocalNetClassify(GstBase.BaseTransform):
    __gstmetadata__ = (
        "FocalNet classifier", "Filter/Analyzer/Video",
        "Classifies frames (primary) or upstream regions of interest (secondary) with a focalnet-edge model: "
        "GstVideoRegionOfInterestMeta 'classification' params and an element message per frame",
        "focalnet-edge",
    )
    __gsttemplates__ = (
        Gst.PadTemplate.new("src", Gst.PadDirection.SRC, Gst.PadPresence.ALWAYS, CAPS),
        Gst.PadTemplate.new("sink", Gst.PadDirection.SINK, Gst.PadPresence.ALWAYS, CAPS),
    )
    __gtype_name__ = "GstFocalNetClassify"
    __gproperties__ = {name: (*spec, GObject.ParamFlags.READWRITE) for name, spec in PROPERTIES.items()}

    def __init__(self) -> None:
        super().__init__()
        self.set_in_place(True)
        self.set_passthrough(False)
        self._props = {name: spec[-1] for name, spec in PROPERTIES.items()}
        self._runner = None
        self._format: str | None = None
        self._layout: frames.Layout | None = None
        self._pending: list[_Frame] = []
        self._count = 0

    # -- properties ------------------------------------------------------------------------------
    def do_get_property(self, prop: GObject.ParamSpec):
        return self._props[prop.name]

    def do_set_property(self, prop: GObject.ParamSpec, value) -> None:
        self._props[prop.name] = value

    # -- states ----------------------------------------------------------------------------------
    def do_start(self) -> bool:
        """Load the model (READY -> PAUSED); a bad folder fails the state change with one message."""
        try:
            self._runner = self._load()
        except FocalNetEdgeError as e:
            return self._fail(Gst.ResourceError.OPEN_READ, str(e))
        except Exception as e:  # any other failure is one message too, never a traceback
            return self._fail(Gst.ResourceError.FAILED, f"{self._props['model']}: {e.__class__.__name__}: {e}")
        self._pending, self._count = [], 0
        return True

    def _load(self):
        from ...runtime import load

        model, mode = self._props["model"], self._props["mode"]
        if not model:
            raise ConfigError(f"{ELEMENT}: property model is not set: give a focalnet-edge output folder or artifact (model=OUT)")
        if mode not in MODES:
            raise ConfigError(f"{ELEMENT}: mode {mode!r} not supported: expected primary or secondary")
        runner = load(model, self._props["artifact"] or None)
        if runner.head not in ("logits", "probs"):
            runner.close()
            raise ConfigError(f"{model}: its artifact has the {runner.head!r} head; {ELEMENT} needs a classifier (logits or probs)")
        return runner

    def _fail(self, code, message: str) -> bool:
        self.message_full(Gst.MessageType.ERROR, Gst.ResourceError.quark(), code, message, None, __file__, "start", 0)
        return False

    def _drop(self) -> None:
        for frame in self._pending:
            frame.release()
        self._pending = []

    def do_stop(self) -> bool:
        self._drop()
        if self._runner is not None:
            self._runner.close()
            self._runner = None
        return True

    def do_set_caps(self, incaps: Gst.Caps, outcaps: Gst.Caps) -> bool:
        info = GstVideo.VideoInfo.new_from_caps(incaps)
        if info is None:
            return False
        self._format = GstVideo.VideoFormat.to_string(info.finfo.format)
        kr, kb = 0.299, 0.114
        ok, r, b = GstVideo.video_color_matrix_get_Kr_Kb(info.colorimetry.matrix)
        if ok:
            kr, kb = r, b
        self._layout = frames.Layout(info.width, info.height, tuple(info.offset), tuple(info.stride), kr, kb,
                                     info.colorimetry.range == getattr(GstVideo.VideoColorRange, "0_255"))
        return True

    def do_accept_caps(self, direction: Gst.PadDirection, caps: Gst.Caps) -> bool:
        """Fixed caps about to be sent: refused with a message naming the formats taken when not ours.

        (Where the caps filter sits right before the element, gst_parse_launch already refuses the
        link, naming the element and the caps.)"""
        return not self._refuse(caps) and GstBase.BaseTransform.do_accept_caps(self, direction, caps)

    def _refuse(self, caps: Gst.Caps) -> bool:
        """True when `caps` are fixed and not ours: then say on the bus which formats are taken."""
        if not caps.is_fixed() or caps.can_intersect(CAPS):
            return False
        s = caps.get_structure(0)
        what = s.get_string("format") or s.get_name()
        self.message_full(Gst.MessageType.ERROR, Gst.StreamError.quark(), Gst.StreamError.FORMAT,
                          f"{ELEMENT}: {what} frames are not supported: expected video/x-raw in "
                          f"{', '.join(frames.FORMATS)} (put videoconvert before {ELEMENT})", caps.to_string(), __file__, "caps", 0)
        return True

    # -- events: a serialized event flushes the batch first, a flush drops it ---------------------
    def do_sink_event(self, event: Gst.Event) -> bool:
        if event.type == Gst.EventType.FLUSH_STOP:
            self._drop()
        elif self._pending and Gst.EventType.get_flags(event.type) & Gst.EventTypeFlags.SERIALIZED:
            if self._guarded(self._flush) != Gst.FlowReturn.OK:
                return False
        return GstBase.BaseTransform.do_sink_event(self, event)

    # -- frames ------------------------------------------------------------------------------------
    def do_transform_ip(self, buffer: Gst.Buffer) -> Gst.FlowReturn:
        return self._guarded(self._transform, buffer)

    def _guarded(self, work, *args) -> Gst.FlowReturn:
        """`work(*args)`, with any failure one error message on the bus, not a traceback in the pipeline."""
        try:
            return work(*args)
        except FocalNetEdgeError as e:
            message = str(e)
        except Exception as e:
            message = f"{ELEMENT}: {e.__class__.__name__}: {e}"
        self.message_full(Gst.MessageType.ERROR, Gst.StreamError.quark(), Gst.StreamError.FAILED, message, None, __file__, work.__name__, 0)
        return Gst.FlowReturn.ERROR

    def _transform(self, buffer: Gst.Buffer) -> Gst.FlowReturn:
        index, self._count = self._count, self._count + 1
        layout = self._buffer_layout(buffer)
        wanted = self._wanted(buffer, layout) if index % self._props["interval"] == 0 else []
        if not wanted and not self._pending:
            self._post(index, buffer, [])
            return Gst.FlowReturn.OK
        waiting = sum(len(f.targets) for f in self._pending) + len(wanted)
        if waiting < self._props["batch-size"]:
            held = buffer.copy()  # a reference of our own, writable: gst-python's `buffer` dies with this call
            self._pending.append(self._collect(held, index, layout, self._wanted(held, layout) if wanted else []))
            return Gst.FlowReturn.CUSTOM_SUCCESS  # GST_BASE_TRANSFORM_FLOW_DROPPED: pushed later, in order
        self._pending.append(self._collect(buffer, index, layout, wanted))
        return self._flush(last_is_current=True)

    def _buffer_layout(self, buffer: Gst.Buffer) -> frames.Layout:
        """The caps' layout, or upstream's own plane layout where the buffer has a GstVideoMeta (e.g. padded rows)."""
        lay = self._layout
        vmeta = GstVideo.buffer_get_video_meta(buffer)
        if vmeta is None:
            return lay
        return frames.Layout(lay.width, lay.height, tuple(vmeta.offset), tuple(vmeta.stride), lay.kr, lay.kb, lay.full_range)

    def _wanted(self, buffer: Gst.Buffer, lay: frames.Layout) -> list[tuple[roi.Region | None, tuple[int, int, int, int]]]:
        """(region or None for the whole frame, rectangle clipped to the frame) of what to classify in `buffer`."""
        if self._props["mode"] == "primary":
            return [(None, (0, 0, lay.width, lay.height))]
        kind = self._props["roi-type"]
        wanted = []
        for region in roi.regions(buffer):
            rect = frames.clip_region(region.x, region.y, region.w, region.h, lay.width, lay.height)
            if (not kind or region.roi_type == kind) and rect is not None:
                wanted.append((region, rect))
        return wanted

    def _collect(self, buffer: Gst.Buffer, index: int, lay: frames.Layout, wanted: list) -> _Frame:
        """The images to classify in `buffer` (crops of one conversion of the frame) and where their results go."""
        frame = _Frame(buffer, index, lay.width, lay.height)
        if not wanted:
            return frame
        ok, frame.mapped = buffer.map(Gst.MapFlags.READ)
        if not ok:
            raise RuntimeError("could not map a buffer for reading")
        try:
            image = frames.to_image(frame.mapped.data, self._format, lay)
        except Exception:
            frame.release()
            raise
        for region, rect in wanted:
            frame.images.append(image if region is None else frames.crop(image, rect))
            frame.targets.append((region.address if region else None, region, rect))
        return frame

    def _flush(self, last_is_current: bool = False) -> Gst.FlowReturn:
        """Classify every waiting image in batches of batch-size, attach the results, push the held buffers."""
        pending, self._pending = self._pending, []
        images = [im for f in pending for im in f.images]
        step = self._props["batch-size"]
        try:
            results = [r for i in range(0, len(images), step) for r in self._runner.predict(images[i : i + step], top_k=self._props["top-k"])]
        finally:
            del images
            for frame in pending:
                frame.release()
        at = 0
        for frame in pending:
            mine = results[at : at + len(frame.targets)]
            at += len(frame.targets)
            self._post(frame.index, frame.buffer, self._attach(frame, mine))
        held = pending[:-1] if last_is_current else pending
        for frame in held:
            flow = self.srcpad.push(frame.buffer)
            if flow != Gst.FlowReturn.OK:
                return flow
        return Gst.FlowReturn.OK

    def _attach(self, frame: _Frame, results: list[list[dict]]) -> list[tuple[tuple[int, int, int, int], int, list[dict]]]:
        """The classification params on the frame's metas; (rect, region id, top-k) of what was attached."""
        attached = []
        for (address, region, rect), top in zip(frame.targets, results):
            if top[0]["score"] < self._props["threshold"]:
                continue
            if address is None:
                address = roi.add_region(frame.buffer, PRIMARY_ROI_TYPE, *rect)
            roi.add_param(address, classification(top))
            attached.append((rect, region.id if region else -1, top))
        return attached

    def _post(self, index: int, buffer: Gst.Buffer, attached: list) -> None:
        s = Gst.Structure.new_empty(ELEMENT)
        s.set_value("frame", GObject.Value(GObject.TYPE_UINT64, index))
        s.set_value("pts", GObject.Value(GObject.TYPE_UINT64, buffer.pts))
        columns = {"label": [], "class-id": [], "confidence": [], "roi-id": [], "x": [], "y": [], "width": [], "height": []}
        for (x, y, w, h), region_id, top in attached:
            for key, value in (("label", top[0]["label"]), ("class-id", top[0]["index"]), ("confidence", top[0]["score"]),
                               ("roi-id", region_id), ("x", x), ("y", y), ("width", w), ("height", h)):
                columns[key].append(value)
        for key, values in columns.items():
            s.set_value(key, Gst.ValueArray(values))
        self.post_message(Gst.Message.new_element(self, s))


def classification(top: list[dict]) -> Gst.Structure:
    """The `classification` param structure of one result (top-k dicts of `Runner.predict`)."""
    s = Gst.Structure.new_empty("classification")
    s.set_value("label", top[0]["label"])
    s.set_value("class-id", int(top[0]["index"]))
    s.set_value("confidence", float(top[0]["score"]))
    s.set_value("top-k-labels", Gst.ValueArray([t["label"] for t in top]))
    s.set_value("top-k-class-ids", Gst.ValueArray([int(t["index"]) for t in top]))
    s.set_value("top-k-confidences", Gst.ValueArray([float(t["score"]) for t in top]))
    return s


def register(cls: type = FocalNetClassify) -> tuple:
    """gst-python's `__gstelementfactory__` for the element."""
    GObject.type_register(cls)
    return (ELEMENT, Gst.Rank.NONE, cls)
