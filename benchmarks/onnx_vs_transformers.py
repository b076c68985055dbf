"""ONNX Runtime on the CPU: our model.onnx against transformers' FocalNet exported the usual way.

    python benchmarks/onnx_vs_transformers.py [--repeats 30] [--weights init|trained-like] [--no-int8] [--profile]

focalnet-tiny shape, 224, the same random weights in both. The baseline is transformers'
`FocalNetForImageClassification` through `torch.onnx.export` (opset 17, dynamic batch) and
onnxsim (onnxslim where onnxsim is not installed); ours is `focalnet-edge export`. In the same
run, and timed in the same turns, the ONNX Runtime CPU INT8 form of ours (`model.int8.cpu.onnx`:
`calibration.quantize(..., "cpu")`, ranges from 16 random inputs, stem and head in float).
Sessions are timed in turns in one process with intra-op spinning off. Prints a Markdown table
(latency ratios, node counts, the machine and its ISA) and, with --profile, ONNX Runtime's time
per operator type (the graphs profiled in turns).

`--weights init` (the default) is the config's initialisation: zero biases and unit LayerNorms,
which the simplifiers fold away; `trained-like` adds small random values to every parameter, so
the graphs keep every bias Add, as a trained checkpoint's do.

`rows()` returns the table's rows, for a combined script (benchmarks/ on `sys.path`).
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import transformers

from common import interleaved, machine
from focalnet_edge.export import export_onnx
from focalnet_edge.folder.onnx_io import ort_session
from focalnet_edge.model import FocalNetConfig, FocalNetForImageClassification, load_checkpoint

BASELINE, OURS, INT8 = "transformers", "focalnet-edge", "focalnet-edge int8 cpu"


class Logits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).logits


def export_transformers(model, path: Path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Logits(model), (torch.randn(1, 3, 224, 224),), str(path), input_names=["pixel_values"],
                          output_names=["logits"], dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=17, dynamo=False)
    try:
        import onnxsim

        simplified, ok = onnxsim.simplify(onnx.load(str(path)))
        assert ok
        name = f"onnxsim {onnxsim.__version__}"
    except ImportError:
        import onnxslim

        simplified, name = onnxslim.slim(onnx.load(str(path))), f"onnxslim {onnxslim.__version__}"
    onnx.save(simplified, str(path))
    return name


def export_int8_cpu(fp32: Path, path: Path) -> None:
    """The ONNX Runtime CPU INT8 form of `fp32`, as `build --precision int8-cpu` quantizes it."""
    from focalnet_edge.calibration import compute_ranges, quantize
    from focalnet_edge.calibration.placement import stem_and_head

    x = np.random.default_rng(0).standard_normal((16, 3, 224, 224)).astype(np.float32)
    ranges = compute_ranges(fp32, x, "max")
    onnx.save(quantize(fp32, ranges, "cpu", stem_and_head(onnx.load(str(fp32)))), str(path))


def session(path: Path, profile: bool = False):
    prefix = str(Path(tempfile.gettempdir()) / "focalnet_edge_ort_profile")  # not into the repo
    return ort_session(path, profile_prefix=prefix if profile else None)


def op_profiles(paths: dict[str, Path], x: np.ndarray, runs: int = 10) -> dict[str, dict[str, float]]:
    """ONNX Runtime's kernel time per operator type (ms per run) of each graph, the runs taken in turns."""
    sessions = {k: session(p, profile=True) for k, p in paths.items()}
    for _ in range(runs):
        for s in sessions.values():
            s.run(None, {"pixel_values": x})
    out = {}
    for k, s in sessions.items():
        per_op: collections.Counter = collections.Counter()
        for e in json.loads(Path(s.end_profiling()).read_text()):
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                per_op[e["args"]["op_name"]] += e["dur"] / runs / 1000
        out[k] = dict(per_op.most_common())
    return out


def graphs(work: Path, weights: str = "init", int8: bool = True) -> tuple[dict[str, Path], str]:
    """The graphs to time, by row name, and the baseline's simplifier."""
    torch.manual_seed(0)
    hf = transformers.FocalNetForImageClassification(transformers.FocalNetConfig(num_labels=1000)).eval()
    if weights == "trained-like":
        with torch.no_grad():
            for p in hf.parameters():
                p.add_(torch.randn(p.shape) * 0.02)
    ours = FocalNetForImageClassification(FocalNetConfig(num_labels=1000)).eval()
    ours.load_state_dict(hf.state_dict())
    ours.save_pretrained(work / "ckpt")
    paths = {BASELINE: work / "hf.onnx", OURS: work / "model.onnx"}
    export_onnx(load_checkpoint(work / "ckpt"), paths[OURS])
    simplifier = export_transformers(hf, paths[BASELINE])
    if int8:
        paths[INT8] = work / "model.int8.cpu.onnx"
        export_int8_cpu(paths[OURS], paths[INT8])
    return paths, simplifier


def rows(repeats: int = 30, batches: tuple[int, ...] = (1, 8), weights: str = "init", int8: bool = True,
         work: Path | None = None) -> list[dict]:
    """One row per batch: median ms of each graph (timed in the same turns) and the ratios.

    Every row also names the machine (CPU, ISA), ONNX Runtime's version, the baseline's
    simplifier and the node count of each graph."""
    paths, simplifier = graphs(work or Path(tempfile.mkdtemp()), weights, int8)
    nodes = {k: len(onnx.load(str(p), load_external_data=False).graph.node) for k, p in paths.items()}
    sessions = {k: session(p) for k, p in paths.items()}
    out = []
    for batch in batches:
        x = np.random.default_rng(batch).standard_normal((batch, 3, 224, 224)).astype(np.float32)
        got = {k: s.run(None, {"pixel_values": x})[0] for k, s in sessions.items()}
        max_abs = float(np.abs(got[BASELINE] - got[OURS]).max())
        assert max_abs <= 1e-3, max_abs
        fns = {k: (lambda s=s, x=x: s.run(None, {"pixel_values": x})) for k, s in sessions.items()}
        t = interleaved(fns, repeats if batch == 1 else max(5, repeats // 3))
        row = {"batch": batch, "machine": machine(), "onnxruntime": ort.__version__, "weights": weights,
               "baseline": f"{BASELINE} + {simplifier}", "nodes": nodes, "ms": {k: v * 1e3 for k, v in t.items()},
               "ours / baseline": t[OURS] / t[BASELINE], "max abs ours - baseline": max_abs}
        if INT8 in t:
            ref = got[OURS]
            row["int8 cpu / fp32"] = t[INT8] / t[OURS]
            row["int8 cpu cosine"] = float((got[INT8] * ref).sum() / np.linalg.norm(got[INT8]) / np.linalg.norm(ref))
        out.append(row)
    return out


def print_table(table: list[dict]) -> None:
    first = table[0]
    names = list(first["ms"])
    print(f"machine: {first['machine']}; onnxruntime {first['onnxruntime']}, CPUExecutionProvider, "
          f"weights {first['weights']}\n")
    print("nodes: " + ", ".join(f"{first['baseline'] if k == BASELINE else k} {n}" for k, n in first["nodes"].items()) + "\n")
    int8 = INT8 in names
    print("| batch | " + " | ".join(f"{first['baseline'] if k == BASELINE else k} (ms)" for k in names)
          + " | ours / transformers |" + (" int8 cpu / fp32 |" if int8 else ""))
    print("|---" * (len(names) + 2 + int8) + "|")
    for r in table:
        print(f"| {r['batch']} | " + " | ".join(f"{r['ms'][k]:.1f}" for k in names) + f" | {r['ours / baseline']:.3f} |"
              + (f" {r['int8 cpu / fp32']:.3f} |" if int8 else ""))
    if int8:
        print("\nint8 cpu logits vs fp32, cosine: " + ", ".join(f"batch {r['batch']} {r['int8 cpu cosine']:.5f}" for r in table))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--weights", choices=("init", "trained-like"), default="init")
    ap.add_argument("--no-int8", action="store_true", help="leave out the CPU INT8 row")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp())
    table = rows(args.repeats, weights=args.weights, int8=not args.no_int8, work=work)
    print_table(table)
    if args.profile:
        x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
        for k, prof in op_profiles(graphs_in(work), x).items():
            print(f"\n{k}, batch 1, ms per run by operator (total {sum(prof.values()):.1f}): "
                  + ", ".join(f"{op} {ms:.1f}" for op, ms in list(prof.items())[:10]))


def graphs_in(work: Path) -> dict[str, Path]:
    """The graphs `rows` wrote into `work`, by row name."""
    files = {BASELINE: "hf.onnx", OURS: "model.onnx", INT8: "model.int8.cpu.onnx"}
    return {k: work / f for k, f in files.items() if (work / f).exists()}


if __name__ == "__main__":
    main()
