"""Which reference outputs an artifact is judged against: PyTorch live (the manifest's checkpoint, or another),
or the folder's stored ones (`references.py`) where PyTorch or the checkpoint is absent."""

from __future__ import annotations

import logging
from pathlib import Path

from ..demo import uses_bundled_demo
from ..errors import ConfigError, InputError
from ..extras import require_torch, torch_available
from ..folder.manifest import Manifest, read_manifest
from .compare import reference_outputs, verification_images
from .references import References, load_references

log = logging.getLogger(__name__)


def choose_references(folder: Path, manifest: Manifest, reference: str | None = None, images: str | None = None,
                      labels: str | None = None, limit: int | None = None, progress: bool = False) -> References:
    """The reference outputs `verify` compares with: live PyTorch, or the folder's stored ones.

    `reference` auto (None, the default) takes PyTorch with the manifest's checkpoint where both are here,
    else the stored references; `stored` and `torch` force one; anything else is a checkpoint.
    `images`, `labels`, `limit`: the images of a live reference (stored ones cover the images they were made from).
    """

    choice = reference or "auto"
    source = manifest.model.source
    if images:
        from .compare import image_folder

        image_folder(images)  # a mistyped path is named as such, whichever reference is chosen
    if choice == "auto":
        local = source == "demo" or Path(source).exists()
        choice = "torch" if local and torch_available() else "stored"
        if choice == "stored":
            log.info("verify: no PyTorch or no checkpoint here, so against the stored reference outputs")
    if choice == "stored":
        if images:
            raise ConfigError("--images needs the PyTorch reference: stored references cover the images they were made from")
        refs = load_references(folder, manifest)
        return refs.head(limit) if limit else refs
    image_set, _, note = verification_images(images, manifest.labels, labels, uses_bundled_demo(source), limit=limit)
    if note:
        log.info(note)
    return live_references(folder, image_set, None if choice == "torch" else choice, progress=progress)


def reference_for(manifest: Manifest, model: str | None = None):
    """The PyTorch reference runner for the artifacts of `manifest` (its own source by default)."""
    require_torch("the PyTorch reference (or verify against the stored references: --reference stored)")
    from ..model.weights import load_checkpoint
    from ..runtime.torch import TorchRunner

    source = model or manifest.model.source
    try:
        ckpt = load_checkpoint(source)
    except Exception as e:
        raise InputError(f"cannot load the reference model {source!r} ({e}); pass --reference SRC, or --reference stored") from None
    return TorchRunner(ckpt, head=manifest.head, out_features=manifest.outputs if manifest.head == "features" else None)


def live_references(output_dir: Path, images, model: str | None = None, progress: bool = False):
    """The PyTorch fp32 outputs on `images`, at the folder's input contract (computed once for all artifacts)."""

    manifest = read_manifest(output_dir)
    contract = manifest.contract
    reference = reference_for(manifest, model)
    reference.for_contract(contract)
    return reference_outputs(reference, images, contract, progress=progress, source=f"pytorch fp32 ({model or manifest.model.source})")
