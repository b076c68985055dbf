"""The coloured digits and a small training loop: the data and the trainer of the repository's trained FocalNets.

scikit-learn's 1,797 8x8 digits, upscaled and painted in random colours, trained with AdamW.
Used by `scripts/train_demo.py` (the bundled demo model) and `scripts/make_switches_model.py`
(the second trained model in tests/data). Needs the `test` extra (scikit-learn).
"""

from __future__ import annotations

import numpy as np
import torch


def colored_digits(size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits as uint8 RGB images (N, size, size, 3) and labels (N,).

    Each 8x8 digit is upscaled (bilinear) and painted with a random foreground colour on a
    random dark background, so the colour order of an input matters to the numbers.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    images = np.empty((len(digits.images), size, size, 3), np.uint8)
    for i, d in enumerate(digits.images):
        gray = np.asarray(Image.fromarray((d * 255 / 16).astype(np.uint8)).resize((size, size), Image.BILINEAR))
        fg = rng.uniform(0.45, 1.0, 3)
        bg = rng.uniform(0.0, 0.3, 3)
        t = gray[..., None].astype(np.float32) / 255
        images[i] = np.clip((bg + (fg - bg) * t) * 255, 0, 255).astype(np.uint8)
    return images, digits.target.astype(np.int64)


def split(labels: np.ndarray, test_fraction: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/test indices."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    train, test = train_test_split(idx, test_size=test_fraction, stratify=labels, random_state=seed)
    return np.sort(train), np.sort(test)


def train_classifier(
    model: torch.nn.Module,
    pixel_values: np.ndarray,
    labels: np.ndarray,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    log=print,
) -> torch.nn.Module:
    """Train `model` (a FocalNetForImageClassification) with AdamW, cosine schedule, random shifts."""
    torch.manual_seed(seed)
    x_all = torch.from_numpy(pixel_values)
    y_all = torch.from_numpy(labels)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps = epochs * ((len(x_all) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    pad = x_all.shape[-1] // 16
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(x_all))
        total = 0.0
        for i in range(0, len(perm), batch_size):
            b = perm[i : i + batch_size]
            x = torch.nn.functional.pad(x_all[b], (pad,) * 4, mode="replicate")
            dx, dy = torch.randint(0, 2 * pad + 1, (2,)).tolist()
            x = x[..., dy : dy + x_all.shape[-2], dx : dx + x_all.shape[-1]]
            loss = model(x, labels=y_all[b]).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(b)
        if log:
            log(f"epoch {epoch + 1}/{epochs}: loss {total / len(x_all):.4f}")
    return model.eval()


@torch.no_grad()
def accuracy(model: torch.nn.Module, pixel_values: np.ndarray, labels: np.ndarray, batch_size: int = 128) -> float:
    model.eval()
    preds = []
    for i in range(0, len(pixel_values), batch_size):
        preds.append(model(torch.from_numpy(pixel_values[i : i + batch_size])).logits.argmax(-1).numpy())
    return float((np.concatenate(preds) == labels).mean())
