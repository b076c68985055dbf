"""How close an artifact's outputs are to the reference's: one definition for every caller.

`verify` (the report of every artifact) and the INT8 accuracy gate measure with these same
functions, so a figure means the same wherever it is printed. Rows are images; every output
is flattened per image. Garbage never looks good: a non-finite value, or a zero vector
against a non-zero one, has cosine 0 (not 1), and the SQNR of such an output is -inf.
"""

from __future__ import annotations

import numpy as np


def _rows(x: np.ndarray) -> np.ndarray:
    return np.asarray(x).reshape(len(x), -1).astype(np.float64)


def cosine_per_row(ref: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Cosine similarity of each image's output with the reference's.

    Two all-zero rows are identical (1.0); a zero row against a non-zero one, or a row with a
    non-finite value, scores 0.0.
    """
    a, b = _rows(ref), _rows(out)
    finite = np.isfinite(a).all(1) & np.isfinite(b).all(1)
    a, b = np.where(np.isfinite(a), a, 0.0), np.where(np.isfinite(b), b, 0.0)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    cos = (a * b).sum(1) / np.maximum(na * nb, 1e-300)
    cos = np.where((na == 0) & (nb == 0), 1.0, np.where((na == 0) | (nb == 0), 0.0, cos))
    return np.where(finite, cos, 0.0)


def cosine(ref: np.ndarray, out: np.ndarray) -> float:
    """Mean cosine similarity over images (see `cosine_per_row`)."""
    return float(np.mean(cosine_per_row(ref, out)))


def max_abs(ref: np.ndarray, out: np.ndarray) -> float:
    """Largest absolute difference (inf where `out` is not finite)."""
    diff = np.abs(np.asarray(ref, np.float64) - np.asarray(out, np.float64))
    return float(np.inf) if not np.isfinite(diff).all() else float(diff.max(initial=0.0))


def sqnr_db(ref: np.ndarray, out: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB: 10 log10(sum ref^2 / sum (ref - out)^2)."""
    a, b = np.asarray(ref, np.float64), np.asarray(out, np.float64)
    if not np.isfinite(b).all():
        return float("-inf")
    noise = float(((a - b) ** 2).sum())
    signal = float((a**2).sum())
    if noise == 0.0:
        return float("inf")
    return float(10 * np.log10(max(signal, 1e-300) / noise))


def topk_agreement(ref: np.ndarray, out: np.ndarray, k: int = 1) -> float:
    """Share of images whose reference top-1 class is among the artifact's top-k.

    An image whose output has a non-finite value never agrees.
    """
    ref, out = _rows(ref), _rows(out)
    finite = np.isfinite(out).all(1)
    top_ref = ref.argmax(-1)
    top_out = np.argsort(-np.where(np.isfinite(out), out, -np.inf), axis=-1, kind="stable")[:, :k]
    hits = (top_out == top_ref[:, None]).any(1) & finite
    return float(hits.mean())
