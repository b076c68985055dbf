"""The export stage: `model.onnx` and a fresh manifest; and a foreign ONNX file adopted as `model.onnx`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from ..errors import InputError
from ..extras import require_torch
from ..folder import artifacts
from ..folder.artifacts import FP32_ONNX
from ..folder.manifest import add_artifact, new_manifest, write_manifest
from ..folder.onnx_io import load_onnx
from .options import ExportOptions

if TYPE_CHECKING:  # pragma: no cover - the export imports torch; the types are for readers
    from ..export.onnx_export import ExportResult
    from ..model.weights import Checkpoint


def default_output_dir(source: str) -> Path:
    name = Path(str(source).rstrip("/")).name.split(".")[0] or "model"
    return Path("focalnet-edge-out") / name


def export_stage(ckpt: Checkpoint, output_dir: Path, options: ExportOptions,
                 force: bool = False, release_checkpoint: bool = False) -> tuple[ExportResult, dict[str, Any]]:
    """Write `model.onnx` and a fresh manifest into `output_dir`.

    Called on a folder that no run of this process has claimed (`focalnet-edge export`), it
    claims it first (`outputs.claim`: refused when foreign or of another model unless `force`,
    locked, staged, committed only on success). `release_checkpoint`: see `export_onnx`.
    """
    require_torch("export")
    from ..export import export_onnx
    from ..folder.manifest import weights_sha256
    from ..folder.outputs import claim, is_staging

    output_dir = Path(output_dir)
    if not is_staging(output_dir):
        with claim(output_dir, force, weights_sha256(ckpt), ckpt.source) as stage:
            result, manifest = export_stage(ckpt, stage.path, options, release_checkpoint=release_checkpoint)
        final = Path(output_dir) / FP32_ONNX
        try:
            result.path = final
        except AttributeError:  # a frozen result
            import dataclasses

            result = dataclasses.replace(result, path=final)
        return result, manifest
    weights = weights_sha256(ckpt)
    result = export_onnx(ckpt, output_dir / FP32_ONNX, **options.as_kwargs(), release_checkpoint=release_checkpoint)
    manifest = new_manifest(ckpt, result, weights)
    add_artifact(
        manifest, result.path, "fp32", artifacts.ONNX,
        requires={"opset": result.opset, "runtime": artifacts.PRECISIONS["fp32"].runs_on},
        nodes=result.nodes, export_checks=result.checks, simplifier=result.simplifier,
    )
    write_manifest(output_dir, manifest)
    return result, manifest


def adopt_onnx(path: Path, output_dir: Path, image_size: tuple[int, int] | None = None, force: bool = False) -> Path:
    """`path` inside `output_dir` as model.onnx, with focalnet-edge metadata (inferred for foreign files).

    Another model's files are never replaced without `force` (`outputs.check_adoption`): a
    folder of ours holding another fp32 model (its model.onnx would change under a manifest
    that then lies), or a folder not ours holding files of the names this tool writes.
    """
    from ..folder.contract import InputContract
    from ..folder.io import atomic_path, sha256_file
    from ..model.preprocessing import ImageSpec, resize_edge_for
    from ..folder.onnx_io import has_external_data, read_metadata, save_onnx, set_metadata, sort_nodes
    from ..folder.outputs import check_adoption

    model = load_onnx(path)
    target = Path(output_dir) / FP32_ONNX
    adopting = Path(path).resolve() != target.resolve()
    if adopting:
        check_adoption(Path(output_dir), force, sha256_file(path))
    changed = "input" not in read_metadata(model)
    if changed:
        inp = model.graph.input[0]
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
        if inp.type.tensor_type.elem_type != onnx.TensorProto.FLOAT or len(dims) != 4 or dims[1] != 3:
            raise InputError(f"{path}: input {inp.name!r} is not float32 (N, 3, H, W); export with `focalnet-edge export` instead")
        h, w = image_size or (dims[2] or 224, dims[3] or 224)
        spec = ImageSpec(height=h, width=w, resize_shortest_edge=resize_edge_for(min(h, w)))
        contract = InputContract(name=inp.name, height=h, width=w, dynamic_batch=dims[0] is None,
                                 dynamic_size=dims[2] is None, batch=(1, 1, 32) if dims[0] is None else (1, dims[0], dims[0]),
                                 preprocessing=spec.to_dict())
        outs = model.graph.output
        rank = len(outs[0].type.tensor_type.shape.dim)
        set_metadata(model, {"input": json.loads(contract.to_json()), "head": "logits" if len(outs) == 1 and rank == 2 else "features",
                             "outputs": [o.name for o in outs], "labels": {}, "precision": "fp32", "source": str(path)})
    if adopting:
        changed = sort_nodes(model.graph) > 0 or changed
        if changed or has_external_data(load_onnx(path, external_data=False)):
            save_onnx(model, target)  # sorted, atomic, large weights beside it
        else:  # a valid file of ours (or already complete): the same bytes, so the same sha256
            with atomic_path(target) as tmp:
                shutil.copyfile(path, tmp)
    return target
