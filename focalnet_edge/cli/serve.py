"""`focalnet-edge serve`: an output folder over Triton's HTTP/gRPC protocol (PyTriton)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import COUNT, NONNEGATIVE

NAME = "serve"
HELP = "serve an output folder over Triton's HTTP/gRPC protocol (PyTriton)"
EPILOG = """examples:
  focalnet-edge serve out/                                   # HTTP on 8000, gRPC on 8001
  focalnet-edge serve out/ --port 9000 --grpc-port 9001 --max-batch 16 --instances 2
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="an output folder or an artifact")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0, as tritonserver)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001)")
    p.add_argument("--metrics-port", type=int, default=8002, help="metrics port (default 8002)")
    p.add_argument("--max-batch", type=COUNT, default=None, metavar="N", help="largest server-side batch (default: the artifact's)")
    p.add_argument("--instances", type=COUNT, default=1, metavar="N", help="model instances (default 1)")
    p.add_argument("--artifact", default=None, help="artifact of the folder to serve (default: the best this machine runs)")
    p.add_argument("--max-queue-delay-us", type=NONNEGATIVE, default=1000, metavar="N", help="dynamic batcher queue delay (default 1000)")
    p.add_argument("--name", default=None, help="model name (default: from the model source)")


def run(args: argparse.Namespace) -> int:
    from ..deploy.serve import ServeOptions, serve

    options = ServeOptions(http_port=args.port, grpc_port=args.grpc_port, metrics_port=args.metrics_port, host=args.host,
                           max_batch=args.max_batch, instances=args.instances, artifact=args.artifact,
                           max_queue_delay_us=args.max_queue_delay_us, name=args.name)
    serve(Path(args.folder), options, ready=lambda url: print(f"serving {url}", flush=True))
    return 0
