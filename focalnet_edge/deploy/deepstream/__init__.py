"""DeepStream `nvinfer` files for an output folder: a primary and a secondary classifier config.

`deploy(OUT)` writes `OUT/deepstream/` (atomically: a temporary folder renamed into place):

```
OUT/deepstream/
  config_infer_primary.txt     nvinfer config: classifier on full frames (process-mode=1)
  config_infer_secondary.txt   nvinfer config: classifier on a detector's objects (process-mode=2)
  labels.txt                   one line, the labels separated by ';' (nvinfer's classifier format)
  model.<precision>.deepstream.onnx   only when the folder's graph needs changing (below) and the
                               folder holds no such graph that `focalnet-edge engine` wrote and
                               verified with its engine (folder_graph.py); with one, the configs
                               name `../model.<precision>.deepstream.onnx` and `.engine` instead
  deepstream.json              what was derived from what: sha256 of every file, the
                               normalisation and resize rules, the warnings
```

What nvinfer does, and how the configs are derived from the input contract (NVIDIA DeepStream,
"Gst-nvinfer" plugin guide, and its config parser `gstnvinfer_property_parser.cpp`):

- nvinfer scales each frame (or object crop) to the network size, converts it to planar float
  RGB/BGR and computes ``y = net-scale-factor * (x - offsets[c])`` with x in 0..255: ONE scale
  for all channels, one offset per channel. A model normalised with ``(x/255 - mean[c]) /
  std[c]`` fits exactly when std is the same for every channel (scale = 1/(255 std), offsets =
  255 mean). With per-channel std (ImageNet's) the normalisation goes into the DeepStream ONNX
  instead (a Mul and an Add in front of the graph; nvinfer then passes 0..255 through with
  scale 1 and offsets 0), or, with ``normalize="nvinfer"``, one scale approximates the three
  and the generated file states the largest error over all 256 pixel values. A folder built
  with ``--fuse-preprocess --frames-dtype float32`` already normalises in the graph.
- A folder with the ``features`` head is deployed as nvinfer's "other" network
  (``network-type=100``) with ``output-tensor-meta=1``: nvinfer attaches the raw output tensors
  as NvDsInferTensorMeta (user meta of the frame in primary mode, of each object in secondary
  mode), which `examples/pyds_probe.py` (`tensor_outputs`) reads; no labels, no threshold.
- Secondary configs carry the keys a detector's objects need: ``input-object-min-width`` /
  ``-height`` (smaller objects are not classified), ``operate-on-class-ids``,
  ``secondary-reinfer-interval`` (frames between re-classifications of a tracked object) and, for
  classifiers, ``classifier-async-mode`` (results attached later, for tracked objects only: it
  needs a tracker upstream).
- nvinfer's default classifier parser reads its output as softmax probabilities and attaches
  the label with the highest probability above ``classifier-threshold``. A folder with the
  ``logits`` head gets a DeepStream ONNX with a Softmax appended (output ``probs``, fp32),
  written with the onnx library and hashed in deepstream.json.
- nvinfer only resizes: it stretches the frame (or object) to the network size by default, or,
  with ``maintain-aspect-ratio=1``, scales it to fit and pads with black, on both sides with
  ``symmetric-padding=1`` (gstnvinfer.cpp: the limiting side to the network size, the other to
  floor(size * ratio), offset floor(spare / 2); it rounds an object's rectangle to even pixels
  first). Its default ``scaling-filter`` is NvBufSurfTransformInter_Default, nearest on GPU and
  VIC; the configs name the model's filter instead. It cannot crop. The folder's resize mode
  (``--resize-mode``, in the input contract) decides the keys: ``stretch`` -> 0/0,
  ``letterbox`` -> 1/1. A folder in ``crop`` mode whose recipe really crops is refused: nvinfer
  would feed the model stretched frames its verification figures do not describe; rebuild with
  ``--resize-mode stretch`` or ``letterbox`` (then verified in that mode). A ``crop`` recipe
  that only warps to the input size (ViT's, the demo's) is a stretch and deploys as one.
- A folder built with ``--frame-size any`` (resize in the graph) is refused: nvinfer feeds the
  network size and does the resize itself.
- nvinfer feeds float tensors, so a folder whose input is uint8 or float16 is refused with the
  build options that make a suitable one; so is a chosen ONNX whose own input is float16 (an fp16
  graph built with ``--fp16-io``, in a folder whose contract says float32).

Paths in the configs are relative to the config file (nvinfer resolves them so), so the output
folder can be copied anywhere as a whole. GKeyFile has no inline comments: every comment is a
line of its own starting with '#'.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ...errors import ArtifactError
from ...folder.io import replacing_folder
from ...folder.manifest import read_manifest
from . import config
from .config import FACTS, LABELS, PRIMARY, SECONDARY
from .graph import write_onnx
from .options import DeepStreamOptions, settings
from .plan import batch_sizes, make_plan, use_folder_graph

log = logging.getLogger(__name__)

FOLDER = "deepstream"

__all__ = ["DeepStreamOptions", "deploy", "summary"]


def deploy(folder: str | os.PathLike, options: DeepStreamOptions | None = None) -> Path:
    """Write ``folder/deepstream/`` (configs, labels, DeepStream ONNX if needed); return that path.

    folder: a focalnet-edge output folder (its manifest.json is read, artifacts sha256-checked).
    options: `DeepStreamOptions` (each field says what it sets; None: its default).
    Warnings (an approximated normalisation) are logged, written as comments into
    the configs and listed in deepstream.json.
    """
    options = options or DeepStreamOptions()
    checked = settings(options)
    folder = Path(folder)
    target = folder / FOLDER
    if target.exists() and not options.force:
        raise ArtifactError(f"{target}: already exists; pass --force (force=True in Python) to replace it")
    manifest = read_manifest(folder)
    batches = batch_sizes(manifest.contract, options.batch_size, options.secondary_batch_size)
    plan = make_plan(folder, manifest, options.precision, batches, checked.normalize, checked.gpu_id)
    plan = use_folder_graph(folder, manifest, plan, batches, checked.gpu_id)  # the graph and engine `engine` verified

    with replacing_folder(target) as tmp:
        if plan.writes_graph:
            write_onnx(folder / plan.source.path, tmp / plan.onnx_name, plan)
        if plan.classifier:
            (tmp / LABELS).write_text(";".join(plan.labels) + "\n", encoding="utf-8")
        common: dict[str, Any] = {"plan": plan, "threshold": checked.threshold, "gpu_id": checked.gpu_id}
        (tmp / PRIMARY).write_text(
            config.render_config(**common, batch=batches[0], process_mode=1, gie_id=checked.gie_ids[0]), encoding="utf-8"
        )
        (tmp / SECONDARY).write_text(
            config.render_config(
                **common, batch=batches[1], process_mode=2, gie_id=checked.gie_ids[1],
                operate_on_gie_id=checked.gie_ids[2], operate_on_class_ids=checked.class_ids, secondary=checked.secondary,
            ),
            encoding="utf-8",
        )
        facts = config.facts(folder, tmp, plan, batches)
        (tmp / FACTS).write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    for w in plan.warnings:
        log.warning("deepstream: %s", w)
    return target


def summary(written: Path, options: DeepStreamOptions) -> str:
    """The line `deploy --to deepstream` prints."""
    return f"wrote {written} ({', '.join(sorted(p.name for p in written.iterdir() if p.suffix in ('.txt', '.onnx')))})"
