"""`focalnet-edge deploy`: a Triton model repository or DeepStream nvinfer files from an output folder (`deploy.TARGETS`)."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from ..deploy import TARGETS
from ..errors import ConfigError
from ..folder.artifacts import PRECISIONS
from .args import COUNT, NONNEGATIVE

NAME = "deploy"
HELP = "write a Triton model repository or DeepStream nvinfer files from an output folder"
EPILOG = """examples:
  focalnet-edge deploy out/ --to triton --repo models/                 # the best artifact for a GPU server
  focalnet-edge deploy out/ --to triton --repo models/ --artifact model.int8.cpu.onnx --kind cpu --instances 2
  focalnet-edge deploy out/ --to deepstream
"""


def _triton_args(add, g) -> None:
    add(g, "--repo", default=None, metavar="DIR", help="the model repository to write <model>/ into")
    add(g, "--name", default=None, help="model name (default: from the model source)")
    add(g, "--artifact", default=None, help="file name or precision (default: the one `load` prefers on a --kind machine, engines first on a GPU)")
    add(g, "--instances", type=COUNT, default=1, metavar="N", help="instance_group count (default 1)")
    add(g, "--kind", choices=("gpu", "cpu"), default=None, help="instance kind (default gpu; engines need gpu)")
    add(g, "--max-queue-delay-us", type=NONNEGATIVE, default=100, metavar="N", help="dynamic batcher queue delay (default 100)")
    add(g, "--version", type=COUNT, default=1, metavar="N", help="model version folder (default 1)")


def _deepstream_args(add, g) -> None:
    from ..deploy.deepstream.plan import NETWORK_MODE

    add(g, "--precision", choices=tuple(p for p in PRECISIONS if p in NETWORK_MODE), default=None,
        help="nvinfer network-mode (default fp16 if built, else fp32)")
    add(g, "--batch-size", type=COUNT, default=None, metavar="N", help="primary batch-size (default: the folder's opt batch)")
    add(g, "--secondary-batch-size", type=COUNT, default=None, metavar="N", help="secondary batch-size (default min(16, max batch))")
    add(g, "--classifier-threshold", type=float, default=None, metavar="P", help="classifier-threshold (default 0.0)")
    add(g, "--gie-id", dest="gie_unique_id", type=COUNT, default=None, metavar="N", help="gie-unique-id of the primary classifier (default 1)")
    add(g, "--secondary-gie-id", dest="secondary_gie_unique_id", type=COUNT, default=None, metavar="N", help="gie-unique-id of the secondary classifier (default 2)")
    add(g, "--operate-on-gie-id", type=COUNT, default=None, metavar="N", help="the detector's gie-unique-id (default 1)")
    add(g, "--operate-on-class-ids", default=None, metavar="0,2", help="the detector's classes to classify (default all)")
    add(g, "--normalize", choices=("auto", "graph", "nvinfer"), default=None,
        help="per-channel std: in the DeepStream ONNX (graph, auto) or one approximate nvinfer scale")
    add(g, "--gpu-id", type=NONNEGATIVE, default=None, metavar="N", help="gpu-id (default 0)")
    add(g, "--object-min-width", type=int, default=None, metavar="PX", help="secondary: smallest object width classified (default 32)")
    add(g, "--object-min-height", type=int, default=None, metavar="PX", help="secondary: smallest object height classified (default 32)")
    add(g, "--classifier-async-mode", action="store_true", default=None,
        help="secondary classifier: attach results asynchronously (tracked objects only; needs a tracker)")
    add(g, "--secondary-reinfer-interval", type=int, default=None, metavar="N",
        help="secondary: frames between two inferences on one tracked object (default 0)")


#: each target's option group: --to NAME -> the function that adds its options
TARGET_ARGS = {"triton": _triton_args, "deepstream": _deepstream_args}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="an output folder (with manifest.json)")
    p.add_argument("--to", choices=tuple(TARGETS), required=True)
    p.add_argument("--force", action="store_true", help="replace an existing model folder")
    flags: dict[str, str] = {}  #: dest -> flag, for the refusal of another target's option

    def add(group, *names, **kwargs) -> None:
        flags[group.add_argument(*names, **kwargs).dest] = names[0]

    for name in TARGETS:
        TARGET_ARGS[name](add, p.add_argument_group(f"--to {name}"))
    p.set_defaults(deploy_flags=flags)


def _refuse_other_targets(args: argparse.Namespace) -> None:
    """Another target's option would have no effect here: refused, not ignored."""
    own = {f.name for f in fields(TARGETS[args.to].options)}
    for name, other in TARGETS.items():
        for f in fields(other.options):
            given = getattr(args, f.name, None)
            if f.name not in own and given is not None and given != f.default:
                flag = args.deploy_flags.get(f.name, f.name)
                raise ConfigError(f"{flag} {given} is an option of --to {name}, not of --to {args.to}")


def run(args: argparse.Namespace) -> int:
    target = TARGETS[args.to]
    _refuse_other_targets(args)
    options = target.options(**{f.name: getattr(args, f.name) for f in fields(target.options) if hasattr(args, f.name)})
    print(target.summary(target.deploy(Path(args.folder), options), options))
    return 0
