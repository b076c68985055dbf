"""Print pyproject's requirements pinned to their declared lower bounds (`>=X` becomes `==X`).

Usage: python3 .ci/lowest.py [EXTRA ...] > constraints.txt
The base dependencies always; each named extra's too. A requirement with no lower bound is
printed as declared. Markers are kept, so pip skips what does not apply to the platform.
"""

import re
import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
requirements = list(project["dependencies"])
for extra in sys.argv[1:]:
    requirements += project["optional-dependencies"][extra]
for req in requirements:
    spec, _, marker = req.partition(";")
    name = re.match(r"[A-Za-z0-9_.-]+", spec.strip()).group(0)
    low = re.search(r">=\s*([0-9][^,\s]*)", spec)
    pinned = f"{name}=={low.group(1)}" if low else spec.strip()
    print(pinned + (f"; {marker.strip()}" if marker else ""))
