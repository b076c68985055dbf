"""What a timing depends on, read from the device's own tools: the board, power mode and clocks.

Each reader runs a tool where it is present and parses its output; absent tools give None, never
an error (a desktop has no `nvpmodel`, a Jetson before JetPack 7 no `nvidia-smi`):

- `/proc/device-tree/model`: the board ("NVIDIA Jetson AGX Orin Developer Kit");
- `nvpmodel -q`: the power mode's name and id ("NV Power Mode: MAXN" then "0");
- `tegrastats`: a few lines (a timeout stops it), each parsed for RAM, GPU (GR3D) and memory
  controller (EMC) load and clock, rail power and temperatures;
- `nvidia-smi --query-gpu=...`: name, driver, performance state, clocks, power and temperature.

The parsers are tested against real output of these tools (tests/data/device/).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

#: where JetPack puts the tools when PATH does not have them
TOOL_PATHS = {"nvpmodel": "/usr/sbin/nvpmodel", "tegrastats": "/usr/bin/tegrastats", "nvidia-smi": "/usr/bin/nvidia-smi"}
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
#: how long tegrastats runs (it prints a line per interval until stopped)
TEGRASTATS_SECONDS = 2.5
TEGRASTATS_INTERVAL_MS = 500
#: nvidia-smi's fields, in its --query-gpu order
NVIDIA_SMI_FIELDS = ("name", "driver_version", "pstate", "clocks.sm", "clocks.mem", "clocks.max.sm", "power.draw",
                     "power.limit", "temperature.gpu")


def tool(name: str) -> str | None:
    """The path of a device tool, or None where it is absent."""
    found = shutil.which(name)
    if found:
        return found
    fallback = TOOL_PATHS.get(name)
    return fallback if fallback and Path(fallback).is_file() else None


def run_tool(argv: list[str], timeout: float = 10.0, partial: bool = False) -> str | None:
    """A tool's stdout, or None where it is absent or fails. `partial`: what it printed before `timeout` stopped it."""
    path = tool(argv[0])
    if path is None:
        return None
    try:
        done = subprocess.run([path, *argv[1:]], capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        if not partial:
            return None
        out = e.stdout or b""
        return out.decode(errors="replace") if isinstance(out, bytes) else out
    except OSError:
        return None
    return done.stdout if done.returncode == 0 else None


def device_model(path: Path = DEVICE_TREE_MODEL) -> str | None:
    try:
        return path.read_bytes().rstrip(b"\x00").decode(errors="replace").strip() or None
    except OSError:
        return None


def parse_nvpmodel(text: str | None) -> dict[str, Any] | None:
    """`nvpmodel -q` (with or without --verbose): {"mode": "MAXN", "id": 0}."""
    if not text:
        return None
    mode = re.search(r"NV Power Mode:\s*(\S+)", text)
    if mode is None:
        return None
    after = text[mode.end():]
    ident = re.search(r"^\s*(\d+)\s*$", after, re.MULTILINE)
    return {"mode": mode.group(1), "id": int(ident.group(1)) if ident else None}


def _load_at(line: str, name: str) -> tuple[int | None, int | None]:
    """(load %, clock MHz) of `NAME X%@Y`, `NAME X%@[Y,...]` (first value) or `NAME X%`."""
    m = re.search(rf"\b{name} (\d+)%(?:@\[?(\d+))?", line)
    if m is None:
        return None, None
    return int(m.group(1)), int(m.group(2)) if m.group(2) else None


def parse_tegrastats(line: str) -> dict[str, Any]:
    """One tegrastats line: RAM used/total MB, GPU (GR3D) and EMC load % and MHz, rail power mW (now, average), temperatures."""
    ram = re.search(r"\bRAM (\d+)/(\d+)MB", line)
    gpu_load, gpu_mhz = _load_at(line, "GR3D_FREQ")
    emc_load, emc_mhz = _load_at(line, "EMC_FREQ")
    power = {m.group(1): [int(m.group(2)), int(m.group(3))] for m in re.finditer(r"\b((?:VDD|POM)_\w+) (\d+)(?:mW)?/(\d+)(?:mW)?", line)}
    temps = {m.group(1): float(m.group(2)) for m in re.finditer(r"\b(\w+)@(-?\d+(?:\.\d+)?)C\b", line)}
    return {"ram_mb": [int(ram.group(1)), int(ram.group(2))] if ram else None, "gpu_load_pct": gpu_load, "gpu_mhz": gpu_mhz,
            "emc_load_pct": emc_load, "emc_mhz": emc_mhz, "power_mw": power, "temperatures_c": temps}


def tegrastats_lines(seconds: float = TEGRASTATS_SECONDS) -> list[str]:
    """The lines tegrastats prints in `seconds` (none where it is absent)."""
    out = run_tool(["tegrastats", "--interval", str(TEGRASTATS_INTERVAL_MS)], timeout=seconds, partial=True)
    return [line.strip() for line in (out or "").splitlines() if "RAM " in line]


def _number(value: str) -> float | str | None:
    value = value.strip()
    if not value or value.startswith("[") or value in ("N/A", "[N/A]"):  # "[N/A]", "[Not Supported]"
        return None
    try:
        return float(value)
    except ValueError:
        return value


def parse_nvidia_smi(text: str | None) -> list[dict[str, Any]]:
    """`nvidia-smi --query-gpu=<NVIDIA_SMI_FIELDS> --format=csv,noheader,nounits`: one dict per GPU."""
    rows = []
    for line in (text or "").splitlines():
        values = [v.strip() for v in line.split(",")]
        if len(values) != len(NVIDIA_SMI_FIELDS):
            continue
        row = {k: _number(v) for k, v in zip(NVIDIA_SMI_FIELDS, values)}
        row.update(name=values[0], driver_version=values[1], pstate=values[2])  # words, not numbers
        rows.append(row)
    return rows


def nvidia_smi() -> list[dict[str, Any]]:
    return parse_nvidia_smi(run_tool(["nvidia-smi", f"--query-gpu={','.join(NVIDIA_SMI_FIELDS)}", "--format=csv,noheader,nounits"]))


def collect() -> dict[str, Any]:
    """The board, power mode and clocks of this machine, each None or empty where its tool is absent."""
    lines = tegrastats_lines()
    return {"model": device_model(), "power_mode": parse_nvpmodel(run_tool(["nvpmodel", "-q"])),
            "tegrastats": [{"line": line, **parse_tegrastats(line)} for line in lines], "nvidia_smi": nvidia_smi()}
