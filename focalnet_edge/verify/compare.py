"""Compare a runner with the PyTorch fp32 reference on real images -> a `Report`.

Element-wise tolerances go through Polygraphy's `Comparator.compare_accuracy` (its max abs
difference is the one reported); cosine similarity, top-k agreement and accuracy are ours.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..folder import artifacts
from ..folder.io import special_file
from ..demo import uses_bundled_demo
from ..errors import InputError
from .metrics import cosine, sqnr_db, top1_judgement, topk_agreement
from ..inputs.images import IMAGE_SUFFIXES, walk_images
from ..model.preprocessing import to_pil
from ..folder.contract import InputContract
from .references import References
from ..runtime.base import Runner

log = logging.getLogger(__name__)

@dataclass
class ImageSet:
    paths: list[Path]
    labels: list[int] | None = None  #: class index per image, when known
    skipped: int = 0  #: files that were not readable images
    frames: np.ndarray | None = None  #: uint8 RGB frames instead of paths (e.g. held-back calibration images)
    source: str | None = None  #: where the images came from (the --images folder), for messages

    def __len__(self) -> int:
        return len(self.frames) if self.frames is not None else len(self.paths)


def image_folder(source: str | Path) -> Path:
    """The folder of images `source` names ("demo": the demo model's held-out images), or one `InputError` saying
    what it is instead (checked before any work, e.g. by `build --images`)."""
    if uses_bundled_demo(str(source)):
        from ..demo import DEMO_IMAGES_DIR

        source = DEMO_IMAGES_DIR
    root = Path(source)
    if not root.is_dir():
        if not root.exists():
            raise InputError(f"{root}: no such image folder")
        # one image is no verification set (its agreement and accuracy would be one image's): a folder is asked for
        hint = "" if special_file(root) else " (to verify on this image alone, put it in a folder)"
        raise InputError(f"{root}: is {special_file(root) or 'a file'}, not a folder; expected a folder of images{hint}")
    return root


def load_image_set(source: str | Path, label_names: dict[int, str] | None = None, labels_file: str | Path | None = None, limit: int | None = None) -> ImageSet:
    """Images of a folder (recursively), with labels from a folder-per-class layout or a labels file.

    Folder per class: sub-folder names are label names (or class indices). A labels file is a
    CSV of `relative/path,label` rows. `source` "demo" is the demo model's held-out images.
    """
    root = image_folder(source)
    images, others = walk_images(root)
    skipped = len([p for p in others if p.name != Path(labels_file or "").name])
    if not images:
        raise InputError(f"{root}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    if limit:
        images = images[:limit]
    labels = None
    name_to_index = {v: k for k, v in (label_names or {}).items()}
    if labels_file:
        labels = _labels_from_file(Path(labels_file), root, images, name_to_index)
    else:
        parents = {p.parent for p in images}
        if all(p.parent != root for p in images) and all(parent.parent == root for parent in parents):
            labels = []
            for p in images:
                idx = _label_index(p.parent.name, name_to_index)
                if idx is None:
                    labels = None
                    break
                labels.append(idx)
    return ImageSet(images, labels, skipped, source=str(root))


#: images verified on when the user names none and the model is not the demo: a numeric check, not a benchmark
DEFAULT_VERIFY_IMAGES = 64


def default_image_set(holdout=None, count: int = DEFAULT_VERIFY_IMAGES) -> tuple[ImageSet, str]:
    """The first `count` held-back calibration frames, else `count` of the demo's digit images, evenly spread
    (also when nothing was held back: an image that calibrated is never called held back).

    No labels: neither belongs to the model's classes, so no accuracy is reported on them.
    """
    if holdout is not None and getattr(holdout, "frames", None) is not None and len(holdout.frames) and getattr(holdout, "held_out", True):
        found = ImageSet([], None, frames=holdout.frames[:count])
        return found, f"{len(found)} images held back from the calibration data (numbers only; pass --images for accuracy)"
    digits = load_image_set("demo", None)
    step = max(1, len(digits.paths) // count)  # spread over every digit folder, not the first folder's images
    found = ImageSet(digits.paths[::step][:count], None)  # no labels: the digits are not this model's classes
    return found, f"{len(found)} of the demo's digit images (numbers only; pass --images for your own)"


def verification_images(
    images: str | None,
    labels: dict[int, str],
    labels_file: str | None,
    is_demo: bool,
    holdout=None,
    limit: int | None = None,
) -> tuple[ImageSet, str, str | None]:
    """The images `build` verifies on, a phrase saying which, and a note for the user (or None).

    In order: the user's `--images`; the demo model's own labelled test images (accuracy against
    its digits); else a small default set without labels (`default_image_set`: the held-back
    calibration images, or the demo's digit images), for the numbers only. `limit`: at most
    that many images (`verify --limit`).
    """
    if images:
        found = load_image_set(images, labels, labels_file, limit)
        return found, f"{len(found)} images of {images}", None
    if is_demo:
        found = load_image_set("demo", labels, limit=limit)
        return found, f"the demo's {len(found)} held-out test images", None
    found, used = default_image_set(holdout, min(limit or DEFAULT_VERIFY_IMAGES, DEFAULT_VERIFY_IMAGES))
    return found, used, f"verified on {used.split(' (')[0]}, without accuracy: pass --images DIR to verify on your own domain"


def _label_index(name: str, name_to_index: dict[str, int]) -> int | None:
    if name in name_to_index:
        return name_to_index[name]
    return int(name) if name.isdigit() and (not name_to_index or int(name) in name_to_index.values()) else None


def _labels_from_file(path: Path, root: Path, images: list[Path], name_to_index: dict[str, int]) -> list[int]:
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a readable labels file ({e})") from None
    table = {}
    for row in rows:
        if len(row) != 2:
            continue
        idx = _label_index(row[1].strip(), name_to_index)
        if idx is None and row[0] != "path":
            raise InputError(f"{path}: label {row[1]!r} is not a class of this model")
        table[row[0].strip()] = idx
    out = []
    for p in images:
        rel = str(p.relative_to(root))
        if rel not in table:
            raise InputError(f"{path}: no label for {rel}")
        out.append(table[rel])
    return out


@dataclass
class Report:
    artifact: str
    precision: str
    images: int
    max_abs_error: float
    mean_cosine: float
    top1_agreement: float | None
    top5_agreement: float | None
    accuracy: float | None
    reference_accuracy: float | None
    thresholds: dict[str, float | None]
    elementwise_passed: bool
    max_abs_allowed: float | None = None  #: the max abs error allowed on these outputs (`Thresholds.max_abs_at`)
    sqnr_db: float | None = None  #: signal-to-noise ratio of the (first) output against the reference
    top1_decided: float | None = None  #: top-1 agreement on the images whose fp32 prediction is decided (`metrics.top1_judgement`)
    decided_images: int | None = None  #: how many of the images are decided
    flips: list[dict] = field(default_factory=list)  #: every top-1 disagreement: image, fp32 margin, decided or not
    device: str | None = None  #: what ran the artifact (ONNX Runtime's provider, or the TensorRT GPU)
    reference: str | None = None  #: what the outputs were compared with (live PyTorch, or stored outputs)
    passed: bool = False
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def polygraphy_compare(ref: dict[str, np.ndarray], out: dict[str, np.ndarray], atol: float | dict[str, float]) -> tuple[bool, float]:
    """Polygraphy's element-wise comparison: (passed within atol, one or one per output name; max abs difference)."""
    from polygraphy.comparator import Comparator, RunResults
    from polygraphy.comparator import compare as pg_compare
    from polygraphy.comparator.struct import IterationResult
    from polygraphy.logger import G_LOGGER

    results = RunResults()
    ref = {k: np.ascontiguousarray(v) for k, v in ref.items()}  # Polygraphy views arrays flat
    out = {k: np.ascontiguousarray(v) for k, v in out.items()}
    results.append(("reference", [IterationResult(outputs=ref, runner_name="reference")]))
    results.append(("artifact", [IterationResult(outputs=out, runner_name="artifact")]))
    simple = getattr(pg_compare, "SimpleCompareFunc", None)
    func = simple(atol=atol, rtol=0.0) if simple else pg_compare.CompareFunc.simple(atol=atol, rtol=0.0)
    with G_LOGGER.verbosity(G_LOGGER.CRITICAL):  # quiet for this call only; the global level stays the user's
        accuracy = Comparator.compare_accuracy(results, compare_func=func)
    # Polygraphy < 0.53 returns one AccuracyResult (a dict), newer releases a list of them
    result = accuracy if hasattr(accuracy, "values") else accuracy[0]
    per_output = next(iter(result.values()))[0]
    max_abs = max(r.max_absdiff for r in per_output.values())
    return bool(accuracy), float(max_abs)


#: images per run when verifying: memory grows with the batch (activations at 224: focalnet-tiny's
#: PyTorch reference peaks 760 MB at 32 and 500 MB at 8), not with the number of images
VERIFY_BATCH = 8

#: an output whose standard deviation differs from the reference's by more than this factor fails
SPREAD_RATIO = 2.0


def _finite_or_none(x: float) -> float | None:
    """JSON has no inf/NaN: a figure that is not finite is recorded as null (the failures say why)."""
    return float(x) if np.isfinite(x) else None


def compare_outputs(  # noqa: C901 - one report over the metrics and thresholds each output and precision take
    ref: dict[str, np.ndarray],
    out: dict[str, np.ndarray],
    precision: str,
    classify: bool,
    labels: list[int] | None,
    artifact: str,
    thresholds: dict[str, float | None] | None = None,
) -> Report:
    """The report for two sets of outputs (same images, same order)."""
    thr = dict(artifacts.thresholds(precision).to_dict(), **(thresholds or {}))
    out = {k: v.astype(np.float32) for k, v in out.items()}
    rule = artifacts.Thresholds(**thr)
    magnitude = {k: float(np.max(np.abs(v), initial=0.0)) for k, v in ref.items()}
    allowed = {k: rule.max_abs_at(m if np.isfinite(m) else 0.0) for k, m in magnitude.items()}
    elementwise, max_abs = polygraphy_compare(ref, out, {k: np.inf if a is None else a for k, a in allowed.items()})
    cos = min(cosine(ref[k], out[k]) for k in ref)
    top1 = top5 = acc = ref_acc = judged = None
    if classify:
        name = next(iter(ref))
        top1, top5 = topk_agreement(ref[name], out[name], 1), topk_agreement(ref[name], out[name], 5)
        judged = top1_judgement(ref[name], out[name])
        if labels is not None:
            y = np.asarray(labels)
            acc = float((out[name].argmax(-1) == y).mean())
            ref_acc = float((ref[name].argmax(-1) == y).mean())
    n = len(next(iter(ref.values())))
    first = next(iter(ref))
    worst = max(ref, key=lambda k: float(np.max(np.abs(ref[k] - out[k]), initial=0.0)) / (allowed[k] or np.inf))
    report = Report(artifact, precision, n, max_abs, cos, top1, top5, acc, ref_acc, thr, elementwise,
                    max_abs_allowed=allowed[worst], sqnr_db=_finite_or_none(sqnr_db(ref[first], out[first])))
    if judged is not None:
        report.top1_decided, report.decided_images, report.flips = judged["agreement"], judged["decided"], judged["flips"]
    fails = report.failures
    for k in ref:  # garbage fails whatever the thresholds say
        bad = int(np.size(out[k]) - np.isfinite(out[k]).sum())
        if bad:
            fails.append(f"{k}: {bad} non-finite values")
            report.max_abs_error = None  # type: ignore[assignment] # not finite: JSON has no inf
            report.elementwise_passed = False
            continue
        spread_ref, spread_out = float(np.std(ref[k])), float(np.std(out[k]))
        if not (spread_ref / SPREAD_RATIO <= spread_out <= spread_ref * SPREAD_RATIO or spread_ref == spread_out == 0):
            fails.append(f"{k}: spread (std) {spread_out:.3g} is not within x{SPREAD_RATIO:g} of the reference's {spread_ref:.3g}")
    if thr["max_abs"] is not None and not elementwise:
        for k in ref:
            diff = float(np.max(np.abs(ref[k] - out[k]), initial=0.0))
            if allowed[k] is not None and np.isfinite(out[k]).all() and not diff <= allowed[k]:  # non-finite: said above
                fails.append(f"max abs error {diff:.3g} > {allowed[k]:.3g}" + (f" on {k}" if len(ref) > 1 else "")
                             + (f" ({thr['max_abs']:g} x its largest |reference| {magnitude[k]:.3g})" if magnitude[k] > 1 else ""))
    if cos < thr["min_cosine"]:
        fails.append(f"mean cosine {cos:.6f} < {thr['min_cosine']}")
    # top-1 counts where the fp32 prediction is decided: near-ties flip on any noise (metrics.top1_judgement)
    if report.top1_decided is not None and report.top1_decided < thr["min_top1"]:
        bad = [f for f in report.flips if f["decided"]]
        fails.append(f"top-1 agreement {report.top1_decided:.4f} < {thr['min_top1']} on the {report.decided_images} images whose fp32 "
                     f"top-1 margin exceeds {judged['flip_margin']:.3g} (flipped: "
                     + ", ".join(f"#{f['image']} margin {f['fp32_margin']:.3g}" for f in bad[:5]) + ")")
    if acc is not None and (ref_acc - acc) * 100 > thr["max_accuracy_drop"] + 1e-9:
        fails.append(f"accuracy {acc:.4f} is {100 * (ref_acc - acc):.2f} points under the reference's {ref_acc:.4f}")
    report.passed = not fails
    return report


def reference_outputs(
    reference: Runner,
    images: ImageSet,
    contract: InputContract,
    batch_size: int = VERIFY_BATCH,
    progress: bool = False,
    source: str = "pytorch fp32",
) -> References:
    """The reference's outputs on `images`, with the frames they were computed from (computed once).

    Images are read, resized and cropped by `contract`'s preprocessing a batch at a time;
    unreadable files are skipped with a warning.
    """
    from tqdm import tqdm

    frame_parts: list[np.ndarray] = []
    ref_parts: list[dict[str, np.ndarray]] = []
    kept: list[int] = []
    skipped = 0
    for start in tqdm(range(0, len(images), batch_size), desc="reference", disable=None if progress else True, unit="batch"):
        if images.frames is not None:
            frames = images.frames[start : start + batch_size]
            idx = list(range(start, start + len(frames)))
        else:
            chunk, idx = [], []
            for i, p in enumerate(images.paths[start : start + batch_size], start):
                try:
                    chunk.append(to_pil(p))
                    idx.append(i)
                except InputError as e:
                    skipped += 1
                    log.warning("skipped %s", e)
            if not chunk:
                continue
            frames = contract.frames_from_images(chunk)
        ref_parts.append(reference.run(contract.reference_inputs(frames)))
        frame_parts.append(frames)
        kept.extend(idx)
    if not kept:
        where = f"{images.source}: none of its {len(images)} images" if images.source else f"none of the {len(images)} images"
        raise InputError(f"{where} could be read (each was skipped above); nothing to verify with")
    if skipped:
        log.warning("%d unreadable images skipped", skipped)
    outputs = {k: np.concatenate([p[k] for p in ref_parts]) for k in ref_parts[0]}
    labels = np.asarray([images.labels[i] for i in kept]) if images.labels is not None else None
    return References(np.concatenate(frame_parts), outputs, labels, source)


def verify(
    runner: Runner,
    refs: References,
    precision: str = "fp32",
    thresholds: dict[str, float | None] | None = None,
    batch_size: int = VERIFY_BATCH,
    progress: bool = False,
) -> Report:
    """Run `runner` on the reference's frames (through its own input contract) and compare."""
    from tqdm import tqdm

    out_parts = []
    for start in tqdm(range(0, len(refs), batch_size), desc=f"verify {runner.name}", disable=None if progress else True, unit="batch"):
        out_parts.append(runner.run(runner.contract.inputs_from_frames(refs.frames[start : start + batch_size])))
    out = {k: np.concatenate([p[k] for p in out_parts]) for k in out_parts[0]}
    ref = refs.for_outputs(list(out))
    if len(ref) != len(out):
        raise InputError(f"{runner.name}: outputs {sorted(out)} do not match the reference's {sorted(refs.outputs)}")
    labels = refs.labels.tolist() if refs.labels is not None else None
    report = compare_outputs(ref, out, precision, runner.head in ("logits", "probs"), labels, runner.name, thresholds)
    report.reference = refs.source
    return report
