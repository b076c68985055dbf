"""`focalnet-edge serve`: the runner of an output folder behind a real Triton server (PyTriton).

NVIDIA's PyTriton (`nvidia-pytriton`) starts the `tritonserver` it bundles with its Python
backend; the backend's stub process forwards each batch to a function in this process, which
runs the runner. Two models are served, both with Triton's HTTP and gRPC protocols:

- `<name>`: the artifact's own input (float pixel values, or uint8 frames for a graph with fused
  preprocessing), batched across requests by Triton's dynamic batcher; Triton itself refuses
  a request of the wrong shape or data type before it reaches the batch.
- `<name>_image`: encoded images (BYTES, one per element, any format PIL reads), decoded with the
  project's one image loader and the contract's `prepare`, then run through `<name>`. A model
  of Triton's own Python backend in a repository of its own (`image_model`), since PyTriton
  answers any error as HTTP 500 with a traceback: bytes that are not an image answer their own
  request with HTTP 400 (gRPC INVALID_ARGUMENT) and one line.

Outputs are the runner's (e.g. `logits`).

Two conditions make the bundled server work, both measured (PyTriton 0.7.0, tritonserver 2.51):
- The stub embeds Python through `libpython3.X.so`; without help it loads the system's (Debian's
  3.11.2 here) under a pyenv 3.11.7 standard library and dies in `multiprocessing`
  (`'_thread.RLock' object has no attribute '_recursion_count'`). `serve` puts this
  interpreter's `LIBDIR` first on `LD_LIBRARY_PATH` before the server starts (PyTriton passes
  its environment on to tritonserver and the stub).
- The stub exchanges tensors with numpy through compiled code built for numpy 1.x: under numpy
  2.x every output arrives empty (`binary_data_size: 0`). nvidia-pytriton says so itself
  (`numpy<2`), so `serve` runs from an environment with numpy 1.x and refuses otherwise.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sysconfig
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError

log = logging.getLogger(__name__)

IMAGE_SUFFIX = "_image"


def free_ports(n: int) -> list[int]:
    """`n` TCP ports free on 127.0.0.1 now (for --port/--grpc-port/--metrics-port in tests and benchmarks)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@dataclass
class ServeOptions:
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    host: str = "0.0.0.0"  #: address the HTTP and gRPC endpoints bind to
    max_batch: int | None = None  #: largest server-side batch (default: the artifact's maximum)
    instances: int = 1  #: model instances, each with its own runner
    artifact: str | None = None
    max_queue_delay_us: int = 1000
    name: str | None = None
    exit_timeout_s: int = 5  #: how long stopping waits for requests in flight


def check_environment() -> None:
    """Refuse, with the reason, an environment in which the bundled Triton cannot serve."""
    try:
        import pytriton  # noqa: F401
    except ImportError:
        raise ConfigError(
            "serve needs NVIDIA PyTriton: pip install 'focalnet-edge[serve]' (it pins numpy<2, so use its own virtual environment)"
        ) from None
    if int(np.__version__.split(".")[0]) >= 2:
        raise ConfigError(
            f"serve needs numpy<2 (here {np.__version__}): PyTriton's Python backend stub returns empty outputs with numpy 2; "
            "install focalnet-edge[serve] into its own virtual environment"
        )


def python_library_path() -> str:
    """LD_LIBRARY_PATH with this interpreter's own libpython folder first, for the backend stub."""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    rest = os.environ.get("LD_LIBRARY_PATH", "")
    parts = [libdir] if libdir and Path(libdir).is_dir() else []
    parts += [p for p in rest.split(":") if p and p != libdir]
    return ":".join(parts)


def _probe(runner) -> dict[str, np.ndarray]:
    """One dummy batch through the runner: the output names, dtypes and ranks to declare."""
    c = runner.contract
    x = np.zeros(c.shape(1) if not c.dynamic_size else _fixed_shape(c), dtype=c.dtype)
    return runner.run(x)


def _fixed_shape(c) -> list[int]:
    return [1, 3, c.height, c.width] if c.layout == "NCHW" else [1, c.height, c.width, 3]


def _tensor_infer(runner, input_name: str):
    def infer(**inputs):
        return runner.run(np.ascontiguousarray(inputs[input_name]))

    return infer


def serve(folder: str | os.PathLike, options: ServeOptions | None = None, ready: Callable[[str], None] | None = None,  # noqa: C901 - PyTriton's setup, signals and shutdown in one lifetime (one try/finally)
          stop: threading.Event | None = None) -> None:
    """Serve `folder`'s runner until SIGINT/SIGTERM (or `stop` is set); `ready(url)` once it answers."""
    from ..runtime import load

    options = options or ServeOptions()
    if options.instances < 1:
        raise ConfigError(f"--instances {options.instances} not accepted: expected 1 or more")
    for port in (options.http_port, options.grpc_port, options.metrics_port):
        if not 0 < port < 65536:
            raise ConfigError(f"port {port} not accepted: expected 1 to 65535")
    check_environment()
    for port in (options.http_port, options.grpc_port, options.metrics_port):
        _check_port_free(options.host, port)
    if not log.isEnabledFor(logging.DEBUG):  # PyTriton narrates every step at INFO
        logging.getLogger("pytriton").setLevel(logging.WARNING)
    os.environ["LD_LIBRARY_PATH"] = python_library_path()  # before tritonserver starts: see the module docstring

    from pytriton.client.exceptions import PyTritonClientError
    from pytriton.decorators import batch
    from pytriton.exceptions import PyTritonError
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig
    from tritonclient.utils import InferenceServerException

    from ..folder.manifest import read_manifest
    from .image_model import write_repository
    from .triton import check_name, default_name

    runners = [load(folder, artifact=options.artifact) for _ in range(options.instances)]
    try:
        first = runners[0]
        contract = first.contract
        folder = Path(folder)
        name = check_name(options.name or (default_name(read_manifest(folder)) if folder.is_dir() else "model"))
        max_batch = options.max_batch or contract.batch[2]
        if max_batch < 1:
            raise ConfigError(f"--max-batch {max_batch} not accepted: expected 1 or more")
        probe = _probe(first)
        outputs = [Tensor(name=k, dtype=v.dtype, shape=(-1,) * (v.ndim - 1) if contract.dynamic_size else v.shape[1:])
                   for k, v in probe.items()]
        dims = tuple(-1 if isinstance(d, str) else d for d in contract.shape()[1:])
        security = _security_config()
        stop = stop or threading.Event()
        _handle_signals(stop)
        try:  # PyTriton's own errors, and its client's while it loads the models, are a failed start
            with (tempfile.TemporaryDirectory(prefix="focalnet-edge-serve-") as repo,  # the image model's own repository
                  Triton(config=TritonConfig(
                      model_repository=write_repository(repo, name + IMAGE_SUFFIX, name, contract, max_batch,
                                                        {t.name: (t.dtype, tuple(t.shape)) for t in outputs}, options.instances),
                      http_address=options.host, grpc_address=options.host, http_port=options.http_port, grpc_port=options.grpc_port,
                      metrics_port=options.metrics_port, exit_timeout_secs=options.exit_timeout_s, log_verbose=0,
                  ), **security) as triton):
                triton.bind(
                    model_name=name,
                    infer_func=[batch(_tensor_infer(r, contract.name)) for r in runners],
                    inputs=[Tensor(name=contract.name, dtype=np.dtype(contract.dtype), shape=dims)],
                    outputs=outputs,
                    config=ModelConfig(max_batch_size=max_batch, batcher=DynamicBatcher(
                        max_queue_delay_microseconds=options.max_queue_delay_us,
                        preferred_batch_size=sorted({min(contract.batch[1], max_batch), max_batch} - {1}) or None,  # Triton refuses any over the max
                    )),
                    strict=True,
                )
                triton.run()
                if ready is not None:
                    ready(f"http://{options.host}:{options.http_port} grpc://{options.host}:{options.grpc_port} "
                          f"models {name} ({contract.name} {contract.dtype} {list(dims)}), {name}{IMAGE_SUFFIX} (encoded images)")
                while not stop.wait(1.0):
                    if not triton.is_alive():
                        raise ConfigError("the Triton server stopped on its own; run with -v for its log")
        except (PyTritonError, PyTritonClientError, InferenceServerException, TimeoutError) as e:
            raise ConfigError(f"the Triton server did not start ({str(e).splitlines()[0][:200] if str(e) else type(e).__name__}); "
                              "run with -v for its log") from None
    finally:
        for r in runners:
            r.close()


def _check_port_free(host: str, port: int) -> None:
    """Refuse a port in use: PyTriton would otherwise wait on (or talk to) whatever answers there."""
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise ConfigError(f"port {port} on {host} is not free ({e.strerror or e}); pick another with --port/--grpc-port/--metrics-port") from None


def _security_config() -> dict:
    """Triton's statistics endpoint open, as in a plain tritonserver; the rest as PyTriton protects it.

    PyTriton 0.7 protects statistics (and shared memory, the repository API, trace, logging)
    with a generated token; earlier releases protect nothing and have no such setting.
    """
    try:
        from pytriton.triton import DEFAULT_PROTECTED_ENDPOINTS, TritonSecurityConfig
    except ImportError:
        return {}
    return {"security_config": TritonSecurityConfig(restricted_endpoints=[e for e in DEFAULT_PROTECTED_ENDPOINTS if e != "statistics"])}


def _handle_signals(stop: threading.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
