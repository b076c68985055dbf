"""Reference outputs: the PyTorch fp32 outputs of the verification images, computed once.

`build` computes them with the live PyTorch model, verifies every artifact against them, and
stores a sample of them in the output folder (`references.npz`: the uint8 frames the images
became after resizing and cropping, their labels, and the reference outputs), hashed in the
manifest. On a device without PyTorch (or without the checkpoint) `verify` judges artifacts
against that file instead, in the spirit of Polygraphy's `--save-outputs/--load-outputs`.
Frames are stored rather than preprocessed tensors: they are exact, 4x smaller than float32
pixels, and every artifact's input is derived from them by its own input contract.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..folder.artifacts import MANIFEST, REFERENCES
from ..errors import ArtifactError
from ..folder.io import atomic_write_bytes, sha256_file
from ..folder.manifest import Manifest

log = logging.getLogger(__name__)

#: how many verification images `build` stores with their reference outputs
STORED_IMAGES = 200


@dataclass
class References:
    frames: np.ndarray  #: uint8 (N, H, W, 3) RGB at the input contract's size
    outputs: dict[str, np.ndarray]  #: reference output per name, (N, ...) float32
    labels: np.ndarray | None  #: class index per image, when the images were labelled
    source: str  #: what computed the outputs, e.g. "pytorch fp32 (demo)"

    def __len__(self) -> int:
        return len(self.frames)

    def for_outputs(self, names) -> dict[str, np.ndarray]:
        """The reference of each output in `names` that it has: its own, or `probs` as the softmax of its `logits`
        (a DeepStream graph appends that Softmax to a logits head: nvinfer's parser reads probabilities)."""
        from ..runtime.base import softmax

        out = {k: self.outputs[k] for k in names if k in self.outputs}
        if "probs" in names and "probs" not in out and "logits" in self.outputs:
            out["probs"] = softmax(self.outputs["logits"])
        return out

    def head(self, n: int) -> References:
        """The first `n` images."""
        return References(self.frames[:n], {k: v[:n] for k, v in self.outputs.items()},
                          None if self.labels is None else self.labels[:n], self.source)


def save_references(folder: str | os.PathLike, refs: References, limit: int = STORED_IMAGES) -> dict[str, Any]:
    """Write the first `limit` images of `refs` to `folder/references.npz` (atomically); its manifest entry."""
    part = refs.head(limit)
    buf = io.BytesIO()
    arrays = {"frames": part.frames, **{f"output:{k}": np.ascontiguousarray(v, np.float32) for k, v in part.outputs.items()}}
    if part.labels is not None:
        arrays["labels"] = np.asarray(part.labels, np.int64)
    np.savez_compressed(buf, **arrays)
    path = Path(folder) / REFERENCES
    atomic_write_bytes(path, buf.getvalue())
    return {"path": REFERENCES, "sha256": sha256_file(path), "images": len(part), "labelled": part.labels is not None,
            "outputs": list(part.outputs), "source": part.source}


def load_references(folder: str | os.PathLike, manifest: Manifest) -> References:
    """The stored references of an output folder, after checking their sha256 against the manifest."""
    entry = manifest.references
    path = Path(folder) / REFERENCES
    if not isinstance(entry, dict) or entry.get("path") != REFERENCES:
        raise ArtifactError(f"{Path(folder) / MANIFEST}: no stored reference outputs (build the folder with focalnet-edge build)")
    if not path.is_file():
        raise ArtifactError(f"{path}: listed in {MANIFEST} but missing")
    if sha256_file(path) != entry.get("sha256"):
        raise ArtifactError(f"{path}: sha256 does not match {MANIFEST}: the file changed after the build")
    try:
        with np.load(path, allow_pickle=False) as data:
            frames = data["frames"]
            outputs = {k.split(":", 1)[1]: data[k] for k in data.files if k.startswith("output:")}
            labels = data["labels"] if "labels" in data.files else None
    except (OSError, ValueError, KeyError) as e:
        raise ArtifactError(f"{path}: not a readable references file ({e.__class__.__name__})") from None
    if frames.dtype != np.uint8 or frames.ndim != 4 or not outputs or any(len(v) != len(frames) for v in outputs.values()):
        raise ArtifactError(f"{path}: references file is inconsistent (frames {frames.dtype} {frames.shape})")
    if any(not np.isfinite(v).all() for v in outputs.values()):
        raise ArtifactError(f"{path}: reference outputs hold non-finite values")
    return References(frames, outputs, labels, str(entry.get("source", "stored")) + f" (stored in {REFERENCES})")
