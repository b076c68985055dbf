"""Train the second FocalNet of the test suite (non-default switches) and write it to tests/data/switches.

    python scripts/make_switches_model.py [--output tests/data/switches] [--epochs 12]

The model behind tests/test_precision_accuracy.py: coloured digits at 32x32 with a
convolutional stem, layer scale, post-layernorm, normalised modulator and mixed focal levels,
so that the FP16 and INT8 gates are judged on a genuinely trained model whose switches differ
from the bundled demo's. Writes, in the Hugging Face layout: config.json, model.safetensors,
preprocessor_config.json, plus images.npz (uint8 calibration images from the training split,
the held-out test images and their labels) and metrics.json (test accuracy). About 30 s on
2 cores; needs the `test` extra (scikit-learn).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from digits import accuracy, colored_digits, split, train_classifier  # scripts/digits.py
from focalnet_edge.model import FocalNetConfig, FocalNetForImageClassification, ImageSpec

SWITCHES = dict(
    use_conv_embed=True, use_layerscale=True, layerscale_value=0.5, use_post_layernorm=True,
    normalize_modulator=True, focal_levels=[3, 3, 2, 2], focal_windows=[3, 3, 3, 3],
)
SIZE = 32


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", type=Path, default=Path(__file__).resolve().parent.parent / "tests/data/switches")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    images, labels = colored_digits(SIZE, seed=1)
    train, test = split(labels, 0.25, seed=1)
    spec = ImageSpec(height=SIZE, width=SIZE, resize_shortest_edge=None, center_crop=False, mean=(0.5,) * 3, std=(0.5,) * 3)
    x = np.stack([spec.normalize(im) for im in images])
    config = FocalNetConfig(
        image_size=SIZE, embed_dim=16, depths=[1, 1, 1, 1], num_labels=10, drop_path_rate=0.0,
        hidden_sizes=[32, 64, 128, 128], id2label={i: str(i) for i in range(10)}, **SWITCHES,
    )
    model = FocalNetForImageClassification(config)
    t0 = time.time()
    train_classifier(model, x[train], labels[train], epochs=args.epochs, lr=3e-3, log=None)
    acc = accuracy(model, x[test], labels[test])
    print(f"test accuracy {acc:.4f} on {len(test)} held-out images, trained in {time.time() - t0:.0f} s")

    out = args.output
    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(out, preprocessing=spec)
    np.savez_compressed(
        out / "images.npz", calibration=images[train[::4]], test=images[test], test_labels=labels[test].astype(np.int64)
    )
    metrics = {
        "test_accuracy": acc,
        "test_images": int(len(test)),
        "calibration_images": int(len(train[::4])),
        "epochs": args.epochs,
        "dataset": "sklearn.datasets.load_digits, coloured and upscaled (scripts/digits.py colored_digits, size 32, seed 1)",
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
