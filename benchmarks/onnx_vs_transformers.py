"""ONNX Runtime on the CPU: our model.onnx against transformers' FocalNet exported the usual way.

    python benchmarks/onnx_vs_transformers.py [--repeats 20] [--profile]

focalnet-tiny shape, 224, the same random weights in both. The baseline is transformers'
`FocalNetForImageClassification` through `torch.onnx.export` (opset 17, dynamic batch) and
onnxsim (onnxslim where onnxsim is not installed); ours is `focalnet-edge export`. Sessions are
timed in turns in one process with intra-op spinning off. Prints a Markdown table (latency
ratio, node counts) and, with --profile, ONNX Runtime's time per operator type.
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
        name = "onnxsim"
    except ImportError:
        import onnxslim

        simplified, name = onnxslim.slim(onnx.load(str(path))), "onnxslim"
    onnx.save(simplified, str(path))
    return name


def session(path: Path, profile: bool = False):
    prefix = str(Path(tempfile.gettempdir()) / "focalnet_edge_ort_profile")  # not into the repo
    return ort_session(path, profile_prefix=prefix if profile else None)


def op_profile(path: Path, x: np.ndarray, runs: int = 10) -> dict[str, float]:
    s = session(path, profile=True)
    for _ in range(runs):
        s.run(None, {"pixel_values": x})
    events = json.loads(Path(s.end_profiling()).read_text())
    per_op: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"] / runs / 1000
    return dict(per_op.most_common())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    hf = transformers.FocalNetForImageClassification(transformers.FocalNetConfig(num_labels=1000)).eval()
    tmp = Path(tempfile.mkdtemp())
    ours = FocalNetForImageClassification(FocalNetConfig(num_labels=1000)).eval()
    ours.load_state_dict(hf.state_dict())
    ours.save_pretrained(tmp / "ckpt")
    export_onnx(load_checkpoint(tmp / "ckpt"), tmp / "ours.onnx")
    simplifier = export_transformers(hf, tmp / "hf.onnx")
    paths = {"transformers": tmp / "hf.onnx", "focalnet-edge": tmp / "ours.onnx"}
    nodes = {k: len(onnx.load(str(p)).graph.node) for k, p in paths.items()}
    sessions = {k: session(p) for k, p in paths.items()}
    print(f"machine: {machine()}; onnxruntime {ort.__version__}, CPUExecutionProvider\n")
    print(f"nodes: transformers + {simplifier} {nodes['transformers']}, focalnet-edge {nodes['focalnet-edge']}\n")
    print(f"| batch | transformers + {simplifier} (ms) | focalnet-edge (ms) | ratio |")
    print("|---|---|---|---|")
    for batch in (1, 8):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 224, 224)).astype(np.float32)
        a, b = (s.run(None, {"pixel_values": x})[0] for s in sessions.values())
        assert np.abs(a - b).max() <= 1e-3, np.abs(a - b).max()
        fns = {k: (lambda s=s, x=x: s.run(None, {"pixel_values": x})) for k, s in sessions.items()}
        t = interleaved(fns, args.repeats if batch == 1 else max(5, args.repeats // 3))
        print(f"| {batch} | {t['transformers'] * 1e3:.1f} | {t['focalnet-edge'] * 1e3:.1f} | {t['focalnet-edge'] / t['transformers']:.2f} |")
    if args.profile:
        x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
        for k, p in paths.items():
            prof = op_profile(p, x)
            print(f"\n{k}, batch 1, ms per run by operator: " + ", ".join(f"{op} {ms:.1f}" for op, ms in list(prof.items())[:8]))


if __name__ == "__main__":
    main()
