"""How the commands print: tables, facts, a build's stages, quantization figures, verification reports."""

from __future__ import annotations

import json


def format_table(rows) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_facts(facts: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(facts, indent=2, default=str))
        return
    width = max(map(len, facts))
    for k, v in facts.items():
        print(f"{k:<{width}}  " + str(v).replace("\n", "\n" + " " * (width + 2)))


def _rescale(v) -> str:
    """`1/255` for 0.00392156862745098 (exactly that float), else the number."""
    n = round(1 / v) if isinstance(v, float) and 0 < v < 1 else 0
    return f"1/{n}" if n and v == 1 / n else format_fact(v)


def _resample(v) -> str:
    """Pillow's filter number with its name: `2 (bilinear)`."""
    from ..model.preprocessing import RESAMPLE_NAMES

    name = RESAMPLE_NAMES.get(v) if isinstance(v, int) else None
    return f"{v} ({name})" if name else format_fact(v)


def _batch(v) -> str:
    """An input contract's (min, opt, max) batch: `1..32 (optimal 1)`."""
    if isinstance(v, (list, tuple)) and len(v) == 3:
        return f"{v[0]}..{v[2]} (optimal {v[1]})" if v[0] != v[2] else f"{v[0]} (static)"
    return format_fact(v)


#: items of a mapping said in their own words (anything else: `format_fact`)
_ITEM_WORDS = {"rescale_factor": _rescale, "resample": _resample, "batch": _batch}


def format_fact(value) -> str:
    """A value of `info`'s facts as text: lists as `a, b`, mappings as `key value` phrases (`none`, `yes`/`no`)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(format_fact, value)) or "none"
    if isinstance(value, dict):
        # "; " between the items where a value is itself a list, so `mean 0.5, 0.5, 0.5; std ...` reads unambiguously
        sep = "; " if any(isinstance(v, (list, tuple, dict)) for v in value.values()) else ", "
        return sep.join(f"{k} ({format_fact(v)})" if isinstance(v, dict) else f"{k} {_ITEM_WORDS.get(k, format_fact)(v)}"
                        for k, v in value.items()) or "none"
    return str(value)


def format_mapping(value: dict) -> str:
    """A mapping of `info`'s facts as lines: its plain items as one phrase, then one `key: phrase` line per nested mapping."""
    plain = {k: v for k, v in value.items() if not isinstance(v, dict)}
    lines = [format_fact(plain)] if plain else []
    return "\n".join(lines + [f"{k}: {format_fact(v)}" for k, v in value.items() if isinstance(v, dict)]) or "none"


def format_artifacts(artifacts: dict) -> str:
    """One line per artifact of a folder: `model.int8.onnx  int8, onnx, 617620 bytes, verified; requires runtime ...`."""
    verified = {True: "verified", False: "failed verification", None: "not verified"}

    def one(name: str, a: dict) -> str:
        head = [str(a.get(k)) for k in ("precision", "format") if a.get(k) is not None]
        if a.get("bytes") is not None:
            head.append(f"{a['bytes']} bytes")
        head.append(verified.get(a.get("verified"), f"verified {a.get('verified')}"))
        requires = a.get("requires")
        rest = {k: v for k, v in a.items() if k not in ("precision", "format", "bytes", "verified", "requires")}
        return (f"{name}  {', '.join(head)}" + (f"; requires {format_fact(requires)}" if requires else "")
                + (f"; {format_fact(rest)}" if rest else ""))

    return "\n".join(one(n, a) if isinstance(a, dict) else f"{n}  {format_fact(a)}" for n, a in artifacts.items()) or "none"


def print_reports(reports, as_json: bool) -> None:
    """Verification reports: JSON, or a table of one row per artifact."""
    if as_json:
        print(json.dumps([r.to_dict() for r in reports], indent=2))
        return
    rows = [("artifact", "precision", "images", "max abs", "cosine", "top-1 agr", "top-5 agr", "accuracy", "ref acc", "result")]
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    for r in reports:
        rows.append((r.artifact, r.precision, str(r.images), fmt(r.max_abs_error, ".2e"), fmt(r.mean_cosine, ".6f"),
                     fmt(r.top1_agreement, ".4f"), fmt(r.top5_agreement, ".4f"), fmt(r.accuracy, ".4f"),
                     fmt(r.reference_accuracy, ".4f"), "pass" if r.passed else "FAIL: " + "; ".join(r.failures)))
    print(format_table(rows))


def format_stages(stages: list[dict]) -> str:
    """The build's stages as one line: `export 17.3 s (peak RSS 1590 MB), ...`."""
    def one(s: dict) -> str:
        rss = s.get("peak_rss_mb")
        return f"{s['name']} {s.get('seconds', 0):.1f} s" + (f" (peak RSS {rss:.0f} MB)" if isinstance(rss, (int, float)) else "")

    total = sum(s.get("seconds", 0) for s in stages)
    return ", ".join(one(s) for s in stages) + f"; total {total:.1f} s"


def _num(v, fmt: str) -> str:
    """A figure as text, `?` where a manifest lacks it (older or edited ones)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "?"
    if fmt == "d":  # a count: an edited manifest may hold 3.0, or 2.5
        return str(int(v)) if float(v).is_integer() else "?"
    return format(v, fmt)


def _quantization_line(name: str, f: dict) -> str:
    num = _num
    types = f.get("quantized_by_type")
    by_type = ", ".join(f"{k} {v}" for k, v in sorted(types.items())) if isinstance(types, dict) and types else "?"
    share = f.get("int8_flop_share")
    passed = {True: "passed", False: "FAILED"}.get(f.get("gate_passed"), "?") if f.get("gate_enabled", True) else "off (--no-gate)"
    line = (f"{name}: {f.get('qtype') or '?'} ({f.get('form') or '?'} form), gate {passed}: SQNR {num(f.get('sqnr_db'), '.1f')} dB, "
            f"cosine {num(f.get('cosine'), '.5f')}" + (f", top-1 {num(f.get('top1'), '.2f')}" if f.get("top1") is not None else "")
            + f" on {num(f.get('images'), 'd')} " + ("held-back images; " if f.get("held_out", True) is not False
                                                       else "calibration images (none held back); ")
            + f"{num(100 * share if isinstance(share, (int, float)) else None, '.1f')}% of GEMM/Conv FLOPs quantized ({by_type}; "
            f"{num(f.get('float_nodes'), 'd')} in float, {num(f.get('kept_float_by_gate'), 'd')} of them by the gate); "
            f"{num(f.get('qdq_pairs'), 'd')} activation Q/DQ pairs, {num(f.get('not_fusable'), 'd')} not fusable by TensorRT; "
            f"{num(f.get('smoothed_layernorms'), 'd')} LayerNorms smoothed")
    if f.get("smoothed_layernorms"):
        line += f" (alpha {num(f.get('smoothing_alpha'), 'g')})"
    if f.get("kept_by_user"):
        line += f"; {num(f.get('kept_by_user'), 'd')} kept in float by --keep-float"
    for key, what in (("kept_float_blocks", "returned to float by the gate in"), ("float_blocks", "float nodes by block")):
        blocks = f.get(key)
        if isinstance(blocks, dict) and blocks:
            line += f"; {what}: " + ", ".join(f"{b} ({n})" for b, n in blocks.items())
    short = f.get("shortfall")
    return line + (f"; short of the target: {'; '.join(map(str, short))}" if isinstance(short, list) and short else "")


def format_quantization(q: dict) -> str:
    """One line per quantized graph (`folder.facts.quantization_facts`): `model.int8.onnx: int8 (tensorrt form),
    gate passed: SQNR 39.9 dB, ...`. Figures a manifest lacks (older or edited ones) are shown as `?`."""
    return "\n".join(_quantization_line(n, f) for n, f in q.items()) if q else "none"
