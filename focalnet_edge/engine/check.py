"""Will TensorRT's ONNX parser take this file? A check that runs without TensorRT.

Every node is checked against the operator support matrix that onnx-tensorrt publishes
(`docs/operators.md`), stored as data in `trt_operators.json`: per release, the opset range and,
per operator, whether it is supported, the element types it takes and the restriction text.
`scripts/trt_operators.py` regenerates that file from the document of a release (the parser is
`parse_operators_md` below); the tests compare the stored rows with the document.

The releases stored are those whose document this project could read (onnx-tensorrt 10.1 GA,
which documents TensorRT 10.x: opsets 9 to 20); `table_for(version)` takes the newest one not
newer than the TensorRT asked about, else the oldest. Add a release by running the script on
its operators.md.

Restrictions the document states in words and that can be read off a graph are checked here:
`axes` must be an initializer, a quantization zero point must be 0, only the first output of
LayerNormalization; INT8/INT4/FP8 only as quantized types behind Q/DQ, UINT8 only as a network
input or output (through a Cast). A node outside the table is reported as unknown, never passed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import onnx

from .gpu import version_tuple

TABLE = Path(__file__).with_name("trt_operators.json")

#: the document's type names -> ONNX TensorProto names
DOC_TYPES = {"FP32": "FLOAT", "FP16": "FLOAT16", "BF16": "BFLOAT16", "INT32": "INT32", "INT64": "INT64", "INT8": "INT8",
             "UINT8": "UINT8", "BOOL": "BOOL", "FP8": "FLOAT8E4M3FN", "INT4": "INT4", "DOUBLE": "DOUBLE"}

#: which input carries the element type the table's "Supported Types" speak of (default: input 0)
TYPED_INPUT = {"Where": 1}
#: which input is `axes` where the document says it must be an initializer (default: input 1)
AXES_INPUT = {"Slice": 3, "Pad": 3}


def parse_operators_md(text: str) -> dict[str, Any]:
    """onnx-tensorrt's docs/operators.md -> {"opsets": [lo, hi], "operators": {op: {...}}}."""
    m = re.search(r"opset (\d+) to opset (\d+)", text) or re.search(r"up to Opset (\d+)", text)
    opsets = [int(m.group(1)), int(m.group(2))] if m and m.lastindex == 2 else [9, int(m.group(1))] if m else None
    ops: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or cells[1] not in ("Y", "N") or not re.fullmatch(r"[A-Za-z0-9]+", cells[0]):
            continue
        types = [DOC_TYPES.get(t.strip(), t.strip()) for t in cells[2].split(",") if t.strip()] if len(cells) > 2 else []
        restriction = " ".join(c for c in cells[3:] if c)
        ops[cells[0]] = {"supported": cells[1] == "Y", "types": types, "restrictions": restriction}
    return {"opsets": opsets, "operators": ops}


@cache
def _tables() -> dict[str, Any]:
    return json.loads(TABLE.read_text(encoding="utf-8"))


def _release_key(release: str) -> tuple[int, int]:
    """'10.1-GA' -> (10, 1): a release compared with a TensorRT version by major and minor."""
    return version_tuple(release)[:2]


def table_for(tensorrt_version: str | None = None) -> tuple[str, dict[str, Any]]:
    """(release, table) of the newest stored onnx-tensorrt release not newer than `tensorrt_version`."""
    releases = sorted(_tables()["releases"], key=_release_key)
    if tensorrt_version is None:
        chosen = releases[-1]
    else:
        want = _release_key(tensorrt_version)
        older = [r for r in releases if _release_key(r) <= want]
        chosen = older[-1] if older else releases[0]
    return chosen, _tables()["releases"][chosen]


@dataclass(frozen=True)
class Finding:
    severity: str  #: "error": the parser refuses it; "warning": it may build, but check
    node: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.node}: {self.message}"


def _type_name(elem_type: int) -> str:
    return onnx.TensorProto.DataType.Name(elem_type)


def check_model(model: onnx.ModelProto, tensorrt_version: str | None = None) -> list[Finding]:  # noqa: C901 - one branch per restriction onnx-tensorrt's operators.md states, in the document's order
    """Findings for every node TensorRT's ONNX parser would refuse or treat specially."""
    release, table = table_for(tensorrt_version)
    ops = table["operators"]
    lo, hi = table["opsets"]
    findings: list[Finding] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or not lo <= opset <= hi:
        sev = "warning" if opset and opset > hi else "error"
        findings.append(Finding(sev, "model", f"opset {opset} outside the range {lo}-{hi} onnx-tensorrt {release} documents"))
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a graph shape inference can't handle: check names only
        inferred = model
    types = {v.name: _type_name(v.type.tensor_type.elem_type) for v in
             list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    inits = {i.name: i for i in model.graph.initializer}
    types.update({n: _type_name(i.data_type) for n, i in inits.items()})
    constants = set(inits) | {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    for inp in model.graph.input:
        if types.get(inp.name) == "UINT8" and any(c.op_type != "Cast" for c in consumers.get(inp.name, [])):
            findings.append(Finding("error", inp.name, "UINT8 input must feed only Cast nodes (TensorRT takes UINT8 only at the network's edge)"))
    for node in model.graph.node:
        name = node.name or node.op_type
        if node.domain not in ("", "ai.onnx"):
            findings.append(Finding("error", name, f"custom domain {node.domain!r} ({node.op_type}) needs a TensorRT plugin"))
            continue
        row = ops.get(node.op_type)
        if row is None:
            findings.append(Finding("warning", name, f"{node.op_type} is not in onnx-tensorrt {release}'s operators.md; check it"))
            continue
        if not row["supported"]:
            findings.append(Finding("error", name, f"{node.op_type} is not supported by TensorRT's ONNX parser (onnx-tensorrt {release})"))
            continue
        index = TYPED_INPUT.get(node.op_type, 0)
        data = node.input[index] if len(node.input) > index else ""
        t = types.get(data) if data and (data not in constants or node.op_type in ("DequantizeLinear", "Cast")) else None
        if t and row["types"] and t not in row["types"] and not (t == "UINT8" and node.op_type == "Cast"):
            findings.append(Finding("error", name, f"input {data} is {t}; TensorRT's {node.op_type} takes {', '.join(row['types'])}"))
        text = row["restrictions"]
        if "zero_point` must be" in text and len(node.input) > 2 and node.input[2]:
            zp = inits.get(node.input[2])
            if zp is None:
                findings.append(Finding("error", name, "zero point must be a constant 0"))
            else:
                arr = onnx.numpy_helper.to_array(zp)
                if arr.dtype.name not in ("int8", "float8_e4m3fn", "int4"):
                    findings.append(Finding("error", name, f"{arr.dtype.name} zero point: TensorRT quantizes to int8 (or fp8/int4) only"))
                elif arr.astype("float32").any():
                    findings.append(Finding("error", name, "zero point must be 0 (symmetric quantization)"))
        if re.search(r"`axes` must be (an initializer|a constant)", text):
            i = AXES_INPUT.get(node.op_type, 1)
            if len(node.input) > i and node.input[i] and node.input[i] not in constants:
                findings.append(Finding("error", name, "axes must be an initializer"))
        if "Only the first output" in text and any(consumers.get(o) for o in node.output[1:] if o):
            findings.append(Finding("error", name, f"only the first output of {node.op_type} is supported"))
        if node.op_type == "Resize":
            findings += _resize_findings(node, name, text, constants)
    return findings


def _listed(text: str, what: str) -> set[str] | None:
    """The `quoted` values of the document's "Supported <what>: ..." sentence, or None when it has none."""
    m = re.search(rf"Supported {what}: (.*?)(?:<br />|$)", text)
    return set(re.findall(r"`([^`]+)`", m.group(1))) if m else None


def _resize_findings(node: onnx.NodeProto, name: str, text: str, constants: set[str]) -> list[Finding]:
    """The Resize restrictions of operators.md that an attribute shows (modes, antialiasing, scales with axes).

    Cubic is a warning, not an error: the document lists nearest and linear, while the importer
    of the same release builds cubic resizes (IResizeLayer's kCUBIC with the node's coefficient).
    """
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    get = lambda key, default: attrs[key].decode() if isinstance(attrs.get(key), bytes) else attrs.get(key, default)  # noqa: E731
    out = []
    for key, default, what in (("coordinate_transformation_mode", "half_pixel", "resize transformation modes"),
                               ("mode", "nearest", "resize modes"), ("nearest_mode", "round_prefer_floor", "nearest modes")):
        value, allowed = get(key, default), _listed(text, what)
        if key == "nearest_mode" and get("mode", "nearest") != "nearest" or allowed is None or value in allowed:
            continue
        cubic = key == "mode" and value == "cubic"
        out.append(Finding("warning" if cubic else "error", name, f"{key} {value!r}: TensorRT's Resize documents {', '.join(sorted(allowed))}"
                           + ("; its ONNX importer builds cubic resizes (check with trtexec)" if cubic else "")))
    if get("antialias", 0) and "Antialiasing is not supported" in text:
        out.append(Finding("error", name, "antialias=1: TensorRT's Resize has no antialiasing"))
    scales = node.input[2] if len(node.input) > 2 else ""
    axes = attrs.get("axes")
    if scales and scales not in constants and axes is not None and list(axes) != list(range(len(axes))):
        out.append(Finding("error", name, f"scales is a tensor and axes {list(axes)} is not 0..rank-1 (TensorRT needs the iota)"))
    return out


def check_onnx(path: str | Path, tensorrt_version: str | None = None) -> list[Finding]:
    from ..folder.onnx_io import load_onnx

    return check_model(load_onnx(path, external_data=False), tensorrt_version)  # the graph: its large weights stay on disk


def record_checks(output_dir: Path, manifest: dict[str, Any]) -> list[str]:
    """Check every TensorRT-bound ONNX file of `manifest` once and record the result in its entry.

    The manifest is changed in memory (the caller writes it); the engine stage reads the record
    instead of checking again. Returns a note per file the parser would refuse.
    """
    from ..folder.artifacts import engine_sources

    notes = []
    for name in engine_sources(manifest["artifacts"]):
        entry = manifest["artifacts"][name]
        findings = check_onnx(Path(output_dir) / name)
        errors = [str(f) for f in findings if f.severity == "error"]
        entry["tensorrt_check"] = {"errors": len(errors), "warnings": len(findings) - len(errors), "first": errors[:3],
                                   "table": f"onnx-tensorrt {table_for()[0]}"}
        if errors:
            notes.append(f"{name}: TensorRT's ONNX parser would refuse it ({errors[0]}; run focalnet-edge check)")
    return notes
