"""Eager PyTorch on the CPU: our FocalNet against transformers' FocalNet, focalnet-tiny, 224.

    python benchmarks/eager_vs_transformers.py [--repeats 20]

Same weights in both; batch 1 and 8; timed in turns in one process. Prints a Markdown table.
"""

from __future__ import annotations

import argparse

import torch
import transformers

from common import interleaved, machine
from focalnet_edge.model import FocalNetConfig, FocalNetForImageClassification


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    torch.manual_seed(0)
    hf = transformers.FocalNetForImageClassification(transformers.FocalNetConfig(num_labels=1000)).eval()
    ours = FocalNetForImageClassification(FocalNetConfig(num_labels=1000)).eval()
    ours.load_state_dict(hf.state_dict())
    print(f"machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| batch | transformers (ms) | focalnet-edge (ms) | ratio |")
    print("|---|---|---|---|")
    for batch in (1, 8):
        x = torch.randn(batch, 3, 224, 224)
        with torch.inference_mode():
            assert (hf(x).logits - ours(x).logits).abs().max() <= 1e-4
            t = interleaved({"hf": lambda x=x: hf(x), "ours": lambda x=x: ours(x)}, args.repeats if batch == 1 else max(5, args.repeats // 3))
        print(f"| {batch} | {t['hf'] * 1e3:.1f} | {t['ours'] * 1e3:.1f} | {t['ours'] / t['hf']:.2f} |")


if __name__ == "__main__":
    main()
