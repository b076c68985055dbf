"""`DeepStreamOptions`: what `focalnet-edge deploy --to deepstream` may set, and their checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import ConfigError
from .plan import OBJECT_MIN_SIZE, parse_class_ids


@dataclass
class DeepStreamOptions:
    """What `focalnet-edge deploy --to deepstream` may set.

    Every option may be None, meaning its default (so a CLI can pass its unset flags through).
    """

    force: bool = False  #: replace an existing ``deepstream/`` (otherwise it is an error to have one)
    #: which ONNX of the folder to deploy: fp32, fp16 or int8 (explicit Q/DQ; nvinfer's INT8 mode then needs no
    #: calibration file). Default: the best by the precision table's rank (`runtime.choose_artifact`: verified
    #: first, then fp16, fp32, int8)
    precision: str | None = None
    batch_size: int | None = None  #: nvinfer ``batch-size`` of the primary (frames per batch); default the folder's optimum batch
    #: the same for the secondary (objects per batch); default 16, or the folder's maximum batch when smaller
    secondary_batch_size: int | None = None
    classifier_threshold: float | None = None  #: nvinfer attaches the top label only above this probability (default 0.0: always)
    gie_unique_id: int | None = None  #: the primary's ``gie-unique-id`` (default 1)
    secondary_gie_unique_id: int | None = None  #: the secondary's ``gie-unique-id`` (default 2)
    operate_on_gie_id: int | None = None  #: the detector whose objects the secondary classifies (default 1)
    operate_on_class_ids: list[int] | str | None = None  #: only those of its classes: [0, 2] or "0,2" (default all)
    #: with per-channel std, "auto"/"graph" put the normalisation into the DeepStream ONNX (exact); "nvinfer"
    #: approximates it with one net-scale-factor (error stated)
    normalize: str | None = None
    gpu_id: int | None = None  #: nvinfer ``gpu-id`` (also part of the engine file name nvinfer writes; default 0)
    #: the secondary's ``input-object-min-width/height``: smaller objects are not classified (default OBJECT_MIN_SIZE, 0: every object)
    object_min_width: int | None = None
    object_min_height: int | None = None
    #: the secondary's ``classifier-async-mode`` (default False; True attaches results a few frames later and works
    #: only on tracked objects)
    classifier_async_mode: bool | None = None
    secondary_reinfer_interval: int | None = None  #: frames between two classifications of one tracked object (default 0)


@dataclass(frozen=True)
class Settings:
    """The options with their defaults filled in, checked."""

    threshold: float
    gie_ids: tuple[int, int, int]  #: primary, secondary, the detector the secondary operates on
    class_ids: list[int] | None
    gpu_id: int
    secondary: dict[str, Any]  #: object_min (width, height), async_mode, reinfer_interval
    normalize: str


def settings(options: DeepStreamOptions) -> Settings:
    """`options` with their defaults, or a `ConfigError` naming the value and what was expected."""
    threshold = 0.0 if options.classifier_threshold is None else float(options.classifier_threshold)
    gie_ids = (
        1 if options.gie_unique_id is None else int(options.gie_unique_id),
        2 if options.secondary_gie_unique_id is None else int(options.secondary_gie_unique_id),
        1 if options.operate_on_gie_id is None else int(options.operate_on_gie_id),
    )
    class_ids = parse_class_ids(options.operate_on_class_ids)
    gpu_id = 0 if options.gpu_id is None else int(options.gpu_id)
    secondary = {
        "object_min": tuple(OBJECT_MIN_SIZE if v is None else int(v) for v in (options.object_min_width, options.object_min_height)),
        "async_mode": bool(options.classifier_async_mode),
        "reinfer_interval": 0 if options.secondary_reinfer_interval is None else int(options.secondary_reinfer_interval),
    }
    if min(*secondary["object_min"], secondary["reinfer_interval"]) < 0:
        raise ConfigError(f"object minimum {secondary['object_min']} and re-infer interval {secondary['reinfer_interval']} "
                          "not accepted: expected pixels and frames >= 0")
    if min(gie_ids) < 1:
        raise ConfigError(f"gie id {min(gie_ids)} not accepted: nvinfer's gie-unique-id must be > 0")
    if gie_ids[0] == gie_ids[1] or gie_ids[1] == gie_ids[2]:
        raise ConfigError(
            f"gie ids not distinct (primary {gie_ids[0]}, secondary {gie_ids[1]}, detector {gie_ids[2]}): "
            "each nvinfer in a pipeline needs its own gie-unique-id"
        )
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"classifier threshold {threshold} not accepted: expected a probability in 0..1")
    return Settings(threshold, gie_ids, class_ids, gpu_id, secondary, options.normalize or "auto")
