"""Region-of-interest metas of a GstBuffer, read and written through GStreamer's C API (ctypes).

gst-python 1.22 has no `Gst.Buffer.iterate_meta` / `iterate_meta_filtered` (their `gpointer *state`
does not introspect), `foreach_meta`'s callback gets nothing it can cast to a region, and every
`GstVideoRegionOfInterestMeta` added from C or Python carries id 0, so
`GstVideo.buffer_get_video_region_of_interest_meta_id` cannot enumerate them. So the metas are
walked with `gst_buffer_iterate_meta_filtered` and read as the C struct (stable since 1.0);
`hash()` of a PyGObject boxed value is its C pointer (the idiom DeepStream's pyds uses).
Parameters are given to `gst_video_region_of_interest_meta_add_param` as copies
(`gst_structure_copy`), since the meta takes ownership and Python keeps its own structure.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

_GST = ctypes.CDLL("libgstreamer-1.0.so.0")
_VIDEO = ctypes.CDLL("libgstvideo-1.0.so.0")
_GLIB = ctypes.CDLL("libglib-2.0.so.0")


class _RoiMeta(ctypes.Structure):
    """struct GstVideoRegionOfInterestMeta (gstvideometa.h)."""

    _fields_ = [
        ("flags", ctypes.c_uint), ("info", ctypes.c_void_p),  # GstMeta
        ("roi_type", ctypes.c_uint32), ("id", ctypes.c_int), ("parent_id", ctypes.c_int),
        ("x", ctypes.c_uint), ("y", ctypes.c_uint), ("w", ctypes.c_uint), ("h", ctypes.c_uint),
        ("params", ctypes.c_void_p),
    ]


def _fn(lib: ctypes.CDLL, name: str, restype, *argtypes):
    f = getattr(lib, name)
    f.restype, f.argtypes = restype, list(argtypes)
    return f


_api_type = _fn(_VIDEO, "gst_video_region_of_interest_meta_api_get_type", ctypes.c_size_t)
_iterate = _fn(_GST, "gst_buffer_iterate_meta_filtered", ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t)
_add_roi = _fn(_VIDEO, "gst_buffer_add_video_region_of_interest_meta", ctypes.c_void_p,
               ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint)
_add_param = _fn(_VIDEO, "gst_video_region_of_interest_meta_add_param", None, ctypes.c_void_p, ctypes.c_void_p)
_structure_copy = _fn(_GST, "gst_structure_copy", ctypes.c_void_p, ctypes.c_void_p)
_quark_to_string = _fn(_GLIB, "g_quark_to_string", ctypes.c_char_p, ctypes.c_uint32)
_is_writable = _fn(_GST, "gst_mini_object_is_writable", ctypes.c_int, ctypes.c_void_p)


@dataclass(frozen=True)
class Region:
    """One region of interest of a buffer: its meta's address, type name, id and rectangle."""

    address: int
    roi_type: str
    id: int
    x: int
    y: int
    w: int
    h: int


def regions(buffer) -> list[Region]:
    """Every GstVideoRegionOfInterestMeta of `buffer` (a Gst.Buffer), in the order they were added."""
    state = ctypes.c_void_p(None)
    api = _api_type()
    out = []
    while True:
        address = _iterate(hash(buffer), ctypes.byref(state), api)
        if not address:
            return out
        m = _RoiMeta.from_address(address)
        name = _quark_to_string(m.roi_type)
        out.append(Region(address, name.decode("utf-8", "replace") if name else "", m.id, m.x, m.y, m.w, m.h))


def add_region(buffer, roi_type: str, x: int, y: int, w: int, h: int) -> int:
    """Add a region meta to `buffer` (which must be writable); its address."""
    if not _is_writable(hash(buffer)):
        raise RuntimeError("the buffer is not writable: cannot add a region of interest meta")
    return _add_roi(hash(buffer), roi_type.encode(), x, y, w, h)


def add_param(region_address: int, structure) -> None:
    """Attach a copy of `structure` (a Gst.Structure) to the region meta at `region_address`."""
    _add_param(region_address, _structure_copy(hash(structure)))
