"""focalnet-tiny with realistic weight statistics and photo crops: the INT8/FP8 benchmarks' subject.

    python benchmarks/int8_tiny.py [--out /tmp/focalnet-edge-tiny] [--outliers 0.02] [--hostile]

Random initialisation is not what a trained network looks like (every LayerNorm weight 1,
every bias 0, logits near zero), and quantization error depends on exactly those statistics.
No trained focalnet-tiny can be downloaded here, so the weights are made realistic by hand,
deterministically (seed 0):
- LayerNorm weights drawn from |N(1, 0.3)| and biases from N(0, 0.1), with 2% of the
  channels given 4-8x larger weights: the outlier channels of trained transformers' residual
  streams (`outliers=0` makes the same subject without them, in `DEFAULT_OUT_NO_OUTLIERS`);
- biases of every Linear/Conv from N(0, 0.05);
- the classifier scaled so that the logits have a standard deviation of about 3 (a trained
  classifier's confident spread, instead of init's ~0.3).
Images: random crops (10-100% of the area, flips, brightness and colour jitter) of the two
photographs that scikit-learn ships (`load_sample_images`), written as PNG: not ImageNet, but
real photographs with natural image statistics.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DEFAULT_OUT = Path("/tmp/focalnet-edge-tiny")
DEFAULT_OUT_NO_OUTLIERS = Path("/tmp/focalnet-edge-tiny-no-outliers")
DEFAULT_OUT_HOSTILE = Path("/tmp/focalnet-edge-tiny-hostile")
#: issue 22's second subject: focalnet-tiny (realistic statistics) with one block hostile to int8
#: (`--hostile-config small`: embed 48, depths 1-1-3-1, where the float stem and downsampling
#: Convs alone cost 12% of the GEMM/Conv FLOPs)
HOSTILE_CONFIGS = {"tiny": {"num_labels": 1000}, "small": {"embed_dim": 48, "depths": [1, 1, 3, 1], "num_labels": 1000}}
HOSTILE_BLOCK = (2, 1)  #: encoder.stages.2.layers.1


def realistic_weights(model, seed: int = 0, outliers: float = 0.02) -> None:
    """Move biases and norms away from their initial values (see the module docstring)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm) and m.weight is not None:
                w = (1 + 0.3 * torch.randn(m.weight.shape, generator=g)).abs()
                picked = torch.rand(m.weight.shape, generator=g) < outliers
                w[picked] *= 4 + 4 * torch.rand(int(picked.sum()), generator=g)
                m.weight.copy_(w)
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and m.bias is not None:
                m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=g))
        head = model.classifier
        x = torch.randn(16, 3, 224, 224, generator=g)
        std = float(model(x).logits.std())
        head.weight.mul_(3.0 / max(std, 1e-6))
        head.bias.mul_(3.0 / max(std, 1e-6))


def hostile_mlp(model, stage: int, layer: int, channels: int = 3, value: float = 300.0, seed: int = 0) -> list[int]:
    """Make one block hostile to int8: `channels` hidden channels of its MLP sit near `value` (fc1's
    bias), their fc2 weights divided by it (the fp32 output keeps its scale), so fc2's per-tensor
    input scale (`value`/127) leaves the other hidden channels a level or two. Returns the channels."""
    import torch

    mlp = model.focalnet.encoder.stages[stage].layers[layer].mlp
    picked = np.random.default_rng(seed).choice(mlp.fc1.out_features, channels, replace=False)
    with torch.no_grad():
        mlp.fc1.bias[torch.from_numpy(picked)] = value
        mlp.fc2.weight[:, torch.from_numpy(picked)] /= value
    return [int(c) for c in picked]


def photo_crops(folder: Path, count: int = 320, size: int = 288, seed: int = 0) -> None:
    """`count` PNG crops of scikit-learn's sample photographs into `folder`."""
    from PIL import Image, ImageEnhance
    from sklearn.datasets import load_sample_images

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(a) for a in load_sample_images().images]
    for i in range(count):
        im = photos[i % len(photos)]
        w, h = im.size
        area = rng.uniform(0.1, 1.0) * w * h
        side = int(min(np.sqrt(area), w, h))
        x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        crop = im.crop((x0, y0, x0 + side, y0 + side)).resize((size, size), Image.BILINEAR)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        crop = ImageEnhance.Brightness(crop).enhance(rng.uniform(0.6, 1.4))
        crop = ImageEnhance.Color(crop).enhance(rng.uniform(0.5, 1.5))
        crop.save(folder / f"crop_{i:04d}.png")


def prepare(out: Path = DEFAULT_OUT, outliers: float = 0.02, hostile: str | None = None) -> tuple[Path, Path]:
    """(fp32 model.onnx, image folder) of focalnet-tiny with realistic statistics, made once
    (`outliers`: the share of LayerNorm channels given 4-8x weights); `hostile` (a key of
    `HOSTILE_CONFIGS`): that FocalNet with the block `HOSTILE_BLOCK` made hostile by `hostile_mlp`."""
    onnx_path, images = out / "model.onnx", out / "images"
    if onnx_path.is_file() and images.is_dir():
        return onnx_path, images
    import torch

    from focalnet_edge.export import export_onnx
    from focalnet_edge.model import FocalNetConfig, FocalNetForImageClassification, load_checkpoint

    torch.manual_seed(0)
    model = FocalNetForImageClassification(FocalNetConfig(**HOSTILE_CONFIGS[hostile or "tiny"])).eval()
    realistic_weights(model, outliers=outliers)
    if hostile:
        hostile_mlp(model, *HOSTILE_BLOCK)
    model.save_pretrained(out / "ckpt")
    export_onnx(load_checkpoint(out / "ckpt"), onnx_path)
    photo_crops(images)
    return onnx_path, images


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--outliers", type=float, default=0.02, help="share of LayerNorm channels with 4-8x weights")
    ap.add_argument("--hostile", choices=tuple(HOSTILE_CONFIGS), default=None, help="issue 22's subject with one block hostile to int8")
    args = ap.parse_args()
    default = DEFAULT_OUT_HOSTILE if args.hostile else (DEFAULT_OUT if args.outliers else DEFAULT_OUT_NO_OUTLIERS)
    print(*prepare(args.out or (default.with_name(default.name + "-small") if args.hostile == "small" else default),
                   args.outliers, args.hostile))
