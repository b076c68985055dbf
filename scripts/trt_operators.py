"""Regenerate focalnet_edge/engine/trt_operators.json from onnx-tensorrt's docs/operators.md.

    git -C onnx-tensorrt show release/10.1-GA:docs/operators.md > operators.md
    python scripts/trt_operators.py operators.md 10.1-GA [COMMIT]

Adds (or replaces) the release's table; other releases stay.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from focalnet_edge.engine.check import TABLE, parse_operators_md


def main(argv: list[str]) -> int:
    doc, release = Path(argv[0]), argv[1]
    data = json.loads(TABLE.read_text()) if TABLE.is_file() else {"source": "https://github.com/onnx/onnx-tensorrt docs/operators.md", "releases": {}}
    table = parse_operators_md(doc.read_text(encoding="utf-8"))
    if len(argv) > 2:
        table["commit"] = argv[2]
    data["releases"][release] = table
    TABLE.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{TABLE}: {release}: {len(table['operators'])} operators, opsets {table['opsets']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
