"""Train the bundled demo model: a small FocalNet on scikit-learn's digits, on the CPU.

    python scripts/train_demo.py [--size 64] [--epochs 25] [--output focalnet_edge/data/demo]

Writes, in the Hugging Face layout: config.json, model.safetensors, preprocessor_config.json,
metrics.json (test accuracy), calibration/ (images from the training split) and images/<class>/
(the held-out test split, one folder per class). Needs the `test` extra (scikit-learn).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from digits import accuracy, colored_digits, split, train_classifier  # scripts/digits.py
from focalnet_edge.model import FocalNetConfig, FocalNetForImageClassification, ImageSpec

DEMO_CONFIG = dict(
    embed_dim=16,
    depths=[1, 1, 2, 1],
    focal_levels=[2, 2, 2, 2],
    focal_windows=[3, 3, 3, 3],
    hidden_sizes=[32, 64, 128, 128],
    drop_path_rate=0.05,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64, help="image height and width (multiple of 32)")
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--calibration-images", type=int, default=128)
    ap.add_argument("--output", type=Path, default=Path(__file__).resolve().parent.parent / "focalnet_edge/data/demo")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    images, labels = colored_digits(args.size, seed=0)
    train_idx, test_idx = split(labels, 0.25, seed=0)
    spec = ImageSpec(
        height=args.size, width=args.size, resize_shortest_edge=None, center_crop=False, mean=(0.5,) * 3, std=(0.5,) * 3
    )
    x = np.stack([spec.normalize(im) for im in images])

    config = FocalNetConfig(
        image_size=args.size, num_labels=10, id2label={i: str(i) for i in range(10)}, **DEMO_CONFIG
    )
    torch.manual_seed(0)
    model = FocalNetForImageClassification(config)
    t0 = time.time()
    train_classifier(model, x[train_idx], labels[train_idx], epochs=args.epochs)
    acc = accuracy(model, x[test_idx], labels[test_idx])
    print(f"test accuracy {acc:.4f} on {len(test_idx)} held-out images, trained in {time.time() - t0:.0f} s")

    out = args.output
    if out.exists():
        shutil.rmtree(out)
    (out / "calibration").mkdir(parents=True)
    model.save_pretrained(out, preprocessing=spec)
    rng = np.random.default_rng(0)
    for i in sorted(rng.choice(train_idx, args.calibration_images, replace=False)):
        Image.fromarray(images[i]).save(out / "calibration" / f"train_{i:04d}.png", optimize=True)
    for i in test_idx:
        d = out / "images" / str(labels[i])
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(d / f"test_{i:04d}.png", optimize=True)
    metrics = {
        "test_accuracy": acc,
        "test_images": int(len(test_idx)),
        "train_images": int(len(train_idx)),
        "epochs": args.epochs,
        "image_size": args.size,
        "dataset": "sklearn.datasets.load_digits, coloured and upscaled (scripts/digits.py colored_digits, seed 0)",
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
