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


#: an fp32 prediction is "decided" when its top-1/top-2 margin exceeds this many standard deviations
#: of the difference of two logits' errors (sqrt(2) x the measured per-logit RMS error): with
#: Gaussian errors a decided image flips with probability under 1e-4, so a flip there is real
FLIP_SIGMAS = 4.0


def top1_judgement(ref: np.ndarray, out: np.ndarray, sigmas: float = FLIP_SIGMAS) -> dict | None:
    """Top-1 agreement counted where the fp32 prediction is decided, and every flip with its fp32 margin.

    The noise is measured, not assumed: sigma is the RMS error of the logits over every image
    (finite rows), and an image is decided when its fp32 top-1/top-2 margin exceeds
    `sigmas` x sqrt(2) x sigma (the spread of the difference of two logits' errors). Near-ties
    below that flip by chance whatever the quantization's quality; a flip on a decided image
    means the error there is far beyond the measured noise. Returns {"decided": images decided,
    "agreement": top-1 agreement on them (None when none is decided), "flip_margin": the
    threshold, "flips": [{"image", "fp32_margin", "decided"}]}; None for outputs of one class.
    """
    a, b = _rows(ref), _rows(out)
    if a.shape[1] < 2 or not len(a):
        return None
    finite = np.isfinite(b).all(1)
    err = (b - a)[finite]
    sigma = float(np.sqrt(np.mean(err**2))) if err.size else float("inf")
    threshold = sigmas * np.sqrt(2.0) * sigma
    top2 = np.sort(a, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    decided = margin > threshold
    agree = (a.argmax(1) == np.where(np.isfinite(b), b, -np.inf).argmax(1)) & finite
    flips = [{"image": int(i), "fp32_margin": round(float(margin[i]), 6), "decided": bool(decided[i])} for i in np.flatnonzero(~agree)]
    return {"decided": int(decided.sum()), "agreement": float(agree[decided].mean()) if decided.any() else None,
            "flip_margin": round(float(threshold), 6), "flips": flips}
