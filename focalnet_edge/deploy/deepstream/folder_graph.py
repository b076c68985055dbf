"""The DeepStream graph written into the output folder, so that its engine is built and verified on the device.

`deploy --to deepstream` derives the graph nvinfer runs (the folder's ONNX with the normalisation in
front and/or a Softmax behind, see the package docstring) into `OUT/deepstream/`, where nvinfer builds
its own engine on its first run: never verified, and weakly typed. `focalnet-edge engine OUT` calls
`add_graph` first instead: the same graph (`graph.write_onnx`, from the same `Plan`) is written
beside its source as `model.<precision>.deepstream.onnx` and listed in the manifest with its
`deepstream` facts; the engine stage then checks it, builds `model.<precision>.deepstream.engine`
from it like any other source (strongly typed), and both are verified against the stored
references (its output `probs` against the softmax of the reference logits). `deploy` later finds
the graph it would have written (`plan.use_folder_graph`: same source sha256, normalisation and
Softmax) and points `onnx-file` and `model-engine-file` at the two verified files.

The choosers (`runtime.choose`, `artifacts.select`) never pick these artifacts unless named by
file name: they take 0..255 pixels and answer probabilities, which is nvinfer's contract, not the
folder's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import ArtifactError, ConfigError
from ...folder.artifacts import DEEPSTREAM_CHOICES, MANIFEST, ONNX, deepstream_name
from ...folder.manifest import Manifest, add_artifact
from .graph import write_onnx
from .plan import graph_facts, make_plan


def add_graph(folder: Path, document: dict[str, Any], choice: str = "auto", dla_core: int | None = None,
              version_compatible: bool = False) -> tuple[list[str], str | None]:
    """Write the DeepStream graph of `choice`'s ONNX into `folder` and list it in `document` (the manifest's JSON,
    extended in memory; the caller writes it). Returns the notes to print and the file written (None: none).

    `choice` (`DEEPSTREAM_CHOICES`): "auto", the ONNX `deploy --to deepstream` would choose, and a folder nvinfer
    cannot take is a note; a precision, its ONNX, and such a folder is an error; "none", nothing. With `dla_core`
    or `version_compatible` (engines nvinfer does not load as they are) no graph is written.
    """
    if choice not in DEEPSTREAM_CHOICES:
        raise ConfigError(f"--deepstream {choice!r} not supported; expected one of {', '.join(DEEPSTREAM_CHOICES)}")
    if choice == "none":
        return [], None
    if dla_core is not None or version_compatible:
        return ["deepstream: no graph for nvinfer with --dla-core or --version-compatible (nvinfer does not load those "
                "engines as they are; it builds its own from the ONNX)"], None
    folder = Path(folder)
    manifest = Manifest(document, folder / MANIFEST)
    contract = manifest.contract
    try:
        plan = make_plan(folder, manifest, None if choice == "auto" else choice, (contract.batch[1], contract.batch[1]))
    except (ConfigError, ArtifactError) as e:
        if choice != "auto":
            raise
        return [f"deepstream: no graph for nvinfer ({str(e).removeprefix(f'{folder}: ')})"], None
    if not plan.derived:
        return [f"deepstream: nvinfer runs {plan.source.path} as it is, and its engine"], None
    name = deepstream_name(plan.source.path)
    old = document["artifacts"].get(name)
    write_onnx(folder / plan.source.path, folder / name, plan)
    new = add_artifact({"artifacts": {}}, folder / name, plan.precision, ONNX, requires=plan.source.requires,
                       deepstream=graph_facts(plan))
    if not (isinstance(old, dict) and all(old.get(k) == new[k] for k in ("sha256", "deepstream", "external_data") if k in new)):
        document["artifacts"][name] = new  # a graph written again as it was keeps its entry: its verification, its check
    added = " and ".join((["the normalisation in front"] if plan.normalisation.prepend is not None else [])
                         + (["a Softmax behind"] if plan.softmax else []))
    return [f"wrote {name}: {plan.source.path} as DeepStream's nvinfer runs it ({added}); "
            "`deploy --to deepstream` points nvinfer at it and at its engine"], name
