"""Requests/s and p50/p99 latency through `focalnet-edge serve` (Triton over 127.0.0.1) vs direct runner calls.

    python benchmarks/serve.py [--python PY] [--requests 800] [--folder OUT]

Exports the demo model (fp32, batch 1:8:16) unless --folder is given, starts `focalnet-edge serve`
with PY (default $FOCALNET_EDGE_SERVE_PYTHON, else this Python; PyTriton needs numpy<2 there),
then sends the same single-image requests from 1, 4 and 16 concurrent clients, each with its own
HTTP client, and makes the same number of direct `runner(x)` calls from as many threads on one
runner of the same artifact in this process. Server and clients share this machine's cores.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from common import machine

from focalnet_edge.deploy.serve import free_ports

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = (1, 4, 16)


def start_server(python: str, folder: Path, log: Path) -> tuple[subprocess.Popen, int]:
    import tritonclient.http as th

    http, grpc, metrics = free_ports(3)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([python, "-m", "focalnet_edge.cli", "serve", str(folder), "--host", "127.0.0.1", "--port", str(http),
                             "--grpc-port", str(grpc), "--metrics-port", str(metrics), "--name", "m"],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    client = th.InferenceServerClient(f"127.0.0.1:{http}")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if client.is_model_ready("m"):
                return proc, http
        except Exception:
            pass
        time.sleep(0.25)
    proc.kill()
    sys.exit(f"serve did not start:\n{log.read_text()[-2000:]}")


def run_clients(concurrency: int, total: int, call) -> tuple[float, list[float]]:
    """(wall seconds, per-request latencies) of `total` calls split over `concurrency` threads."""
    per = total // concurrency
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    barrier = threading.Barrier(concurrency + 1)

    def worker(i: int) -> None:
        state = call.setup() if hasattr(call, "setup") else None
        barrier.wait()
        for k in range(per):
            t0 = time.perf_counter()
            call(state, i * per + k)
            latencies[i].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, [x for lat in latencies for x in lat]


class ServerCall:
    def __init__(self, port: int, inputs: np.ndarray, name: str) -> None:
        self.port, self.inputs, self.name = port, inputs, name

    def setup(self):
        import tritonclient.http as th

        return th.InferenceServerClient(f"127.0.0.1:{self.port}", network_timeout=60)

    def __call__(self, client, k: int) -> None:
        import tritonclient.http as th

        x = self.inputs[k % len(self.inputs)]
        i = th.InferInput(self.name, list(x.shape), "FP32")
        i.set_data_from_numpy(x)
        client.infer("m", [i]).as_numpy("logits")


def main() -> None:
    from focalnet_edge.model import load_checkpoint
    from focalnet_edge.pipeline import ExportOptions, export_stage
    from focalnet_edge.runtime import load

    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default=os.environ.get("FOCALNET_EDGE_SERVE_PYTHON") or sys.executable)
    ap.add_argument("--folder", type=Path, default=None)
    ap.add_argument("--requests", type=int, default=800, help="requests per row (default 800)")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp())
    folder = args.folder
    if folder is None:
        folder = tmp / "demo"
        export_stage(load_checkpoint("demo"), folder, ExportOptions(batch=(1, 8, 16)))
    runner = load(folder, artifact="fp32")
    c = runner.contract
    inputs = np.random.default_rng(0).standard_normal((64, 1, 3, c.height, c.width)).astype(np.float32)
    proc, port = start_server(args.python, folder, tmp / "serve.log")
    try:
        import tritonclient.http as th

        rows = []
        server = ServerCall(port, inputs, c.name)
        client = th.InferenceServerClient(f"127.0.0.1:{port}")
        for conc in CONCURRENCY:
            for _ in range(2):  # warm-up
                server(client, 0)
                runner(inputs[0])
            before = client.get_inference_statistics("m")["model_stats"][0]
            wall, lat = run_clients(conc, args.requests, server)
            after = client.get_inference_statistics("m")["model_stats"][0]
            batches = int(after["execution_count"]) - int(before["execution_count"])
            items = int(after["inference_count"]) - int(before["inference_count"])
            rows.append(("Triton (focalnet-edge serve, HTTP)", conc, len(lat) / wall, lat, f"{items / max(batches, 1):.2f}"))
            wall, lat = run_clients(conc, args.requests, lambda _, k: runner(inputs[k % len(inputs)]))
            rows.append(("direct runner calls", conc, len(lat) / wall, lat, "1 (no batching)"))
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        runner.close()

    import onnxruntime

    print(f"machine: {machine()}; onnxruntime {onnxruntime.__version__}; server Python {args.python}; "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (other work shares the cores)\n")
    print(f"model: the demo ({folder.name}, {runner.name}), one {c.height}x{c.width} image per request, "
          f"{args.requests} requests per row, server queue delay 1000 us, max batch 16\n")
    print("| path | concurrent clients | requests/s | p50 ms | p99 ms | mean server batch |")
    print("|---|---|---|---|---|---|")
    for path, conc, rps, lat, batch in sorted(rows, key=lambda r: (r[0] != "direct runner calls", r[1])):
        ms = np.array(lat) * 1e3
        print(f"| {path} | {conc} | {rps:.0f} | {np.percentile(ms, 50):.2f} | {np.percentile(ms, 99):.2f} | {batch} |")


if __name__ == "__main__":
    main()
