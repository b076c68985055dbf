"""`focalnet-edge serve`: a real tritonserver (PyTriton) over 127.0.0.1, driven with tritonclient.

The server runs as a subprocess of $FOCALNET_EDGE_SERVE_PYTHON, else of this Python. PyTriton's
backend stub needs numpy<2 (see focalnet_edge/deploy/serve.py); where that Python cannot serve,
`serve` refuses in one line (exit 2) and the server tests skip with that line as the reason.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from focalnet_edge.cli import main
from focalnet_edge.deploy.serve import check_environment, free_ports
from focalnet_edge.errors import ConfigError
from focalnet_edge.pipeline import ExportOptions, export_stage
from focalnet_edge.runtime import load

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 90
TOL = dict(rtol=1e-5, atol=1e-5)  # a request may be computed inside a larger batch than the reference's

pytest.importorskip("tritonclient.http", reason="tritonclient[http,grpc] (the test extra) is the client")
import tritonclient.grpc as tgrpc  # noqa: E402
import tritonclient.http as thttp  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), "HF_HUB_OFFLINE": "1"}


class Server:
    """`focalnet-edge serve` in a subprocess, ready when both models are."""

    def __init__(self, python: str, folder: Path, log: Path, *extra: str) -> None:
        self.http, self.grpc, metrics = free_ports(3)
        self.log = log
        self.proc = subprocess.Popen(
            [python, "-m", "focalnet_edge.cli", "serve", str(folder), "--host", "127.0.0.1", "--port", str(self.http),
             "--grpc-port", str(self.grpc), "--metrics-port", str(metrics), "--name", "m", *extra],
            stdout=log.open("w"), stderr=subprocess.STDOUT, env=_env(), cwd=log.parent,  # not the checkout: the stub finds focalnet_edge all the same
        )
        self.client = thttp.InferenceServerClient(f"127.0.0.1:{self.http}", network_timeout=30)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                refusal = log.read_text().strip().splitlines()[-1:] or [""]
                if self.proc.returncode == 2 and "serve needs" in refusal[0]:
                    pytest.skip(f"PyTriton's server cannot run in {python}: {refusal[0]}")
                raise AssertionError(f"serve exited with {self.proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if self.client.is_model_ready("m") and self.client.is_model_ready("m_image"):
                    return
            except Exception:
                pass
            time.sleep(0.25)
        self.stop()
        raise AssertionError(f"serve not ready in {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.client.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def python() -> str:
    """$FOCALNET_EDGE_SERVE_PYTHON (an environment with nvidia-pytriton and numpy<2), else this Python."""
    python = os.environ.get("FOCALNET_EDGE_SERVE_PYTHON") or sys.executable
    if python == sys.executable:  # ask here, without starting a process, whether `serve` would refuse
        try:
            check_environment()
        except ConfigError as e:
            pytest.skip(f"PyTriton's server cannot run in {python}: {e}")
    return python


@pytest.fixture(scope="module")
def folder(tmp_path_factory, demo_ckpt):
    out = tmp_path_factory.mktemp("serve")
    export_stage(demo_ckpt, out, ExportOptions(batch=(1, 4, 16)))
    return out


@pytest.fixture(scope="module")
def runner(folder):
    with load(folder) as r:
        yield r


@pytest.fixture(scope="module")
def server(python, folder, tmp_path_factory):
    s = Server(python, folder, tmp_path_factory.mktemp("log") / "serve.log", "--max-queue-delay-us", "5000")
    yield s
    assert s.stop() == 0, s.log.read_text()[-3000:]


def http_input(x: np.ndarray, name: str = "pixel_values"):
    i = thttp.InferInput(name, list(x.shape), "BYTES" if x.dtype == object else {"float32": "FP32", "uint8": "UINT8", "float16": "FP16"}[x.dtype.name])
    i.set_data_from_numpy(x)
    return i


def png(seed: int, size=(80, 96)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_round_trip_http_and_grpc(server, runner):
    x = np.random.default_rng(0).standard_normal((3, 3, 64, 64)).astype(np.float32)
    expect = runner(x)
    got = server.client.infer("m", [http_input(x)]).as_numpy("logits")
    np.testing.assert_allclose(got, expect, **TOL)
    with tgrpc.InferenceServerClient(f"127.0.0.1:{server.grpc}") as g:
        i = tgrpc.InferInput("pixel_values", list(x.shape), "FP32")
        i.set_data_from_numpy(x)
        np.testing.assert_allclose(g.infer("m", [i]).as_numpy("logits"), expect, **TOL)
        assert [t.name for t in g.get_model_metadata("m").outputs] == runner.output_names


def test_encoded_images(server, runner):
    """PNG bytes decoded server-side equal the runner on the same bytes (one loader, one `prepare`)."""
    images = [png(1), png(2, (64, 64)), png(3, (120, 50))]
    got = server.client.infer("m_image", [http_input(np.array(images, dtype=object), "image")]).as_numpy("logits")
    np.testing.assert_allclose(got, runner(runner.prepare(images)), **TOL)


def test_concurrent_clients_are_batched(server, runner):
    threads_n, per_thread = 8, 50
    rng = np.random.default_rng(1)
    inputs = rng.standard_normal((threads_n, per_thread, 1, 3, 64, 64)).astype(np.float32)
    expect = runner(inputs.reshape(-1, 3, 64, 64)).reshape(threads_n, per_thread, 1, -1)
    before = _items(server.client)
    errors: list[str] = []
    results = np.full_like(expect, np.nan)

    def client(t: int) -> None:
        c = thttp.InferenceServerClient(f"127.0.0.1:{server.http}", network_timeout=30)
        try:
            for k in range(per_thread):
                results[t, k] = c.infer("m", [http_input(inputs[t, k])]).as_numpy("logits")
        except Exception as e:  # reported below, with the thread
            errors.append(f"thread {t}: {e}")
        finally:
            c.close()

    threads = [threading.Thread(target=client, args=(t,)) for t in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "clients did not finish in 120 s"
    assert not errors, errors[:3]
    np.testing.assert_allclose(results, expect, **TOL)
    stats = server.client.get_inference_statistics("m")["model_stats"][0]
    assert int(stats["inference_count"]) - before == threads_n * per_thread
    sizes = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats["batch_stats"]}
    assert max(sizes) > 1, f"no server-side batching seen: {sizes}"
    assert max(sizes) <= 16


def _items(client) -> int:
    return int(client.get_inference_statistics("m")["model_stats"][0].get("inference_count", 0))


@pytest.mark.parametrize("bad,match", [
    (np.zeros((1, 3, 32, 32), np.float32), "shape"),
    (np.zeros((1, 3, 64, 64), np.float16), "FP16"),
    (np.zeros((1, 64, 64, 3), np.uint8), "UINT8"),
])
def test_bad_tensor_refused_and_server_keeps_serving(server, runner, bad, match):
    with pytest.raises(InferenceServerException, match=match) as refused:
        server.client.infer("m", [http_input(bad)])
    assert refused.value.status() == "400" and "Traceback" not in refused.value.message(), refused.value.message()
    x = np.ones((1, 3, 64, 64), np.float32)
    np.testing.assert_allclose(server.client.infer("m", [http_input(x)]).as_numpy("logits"), runner(x), **TOL)


def test_corrupt_image_is_a_client_error_and_server_keeps_serving(server, runner):
    """Bytes that are not an image: HTTP 400 / gRPC INVALID_ARGUMENT with the loader's one line (no traceback),
    for that request alone; a good image in the same server answers before and after, as the runner does."""
    good = [png(5), png(6, (50, 70))]
    expect = runner(runner.prepare(good))
    bad = np.array([png(4), b"not an image"], dtype=object)

    def check_refusal(e: InferenceServerException, status: str) -> None:
        message = e.message()
        assert e.status() == status, (e.status(), message)
        assert "image 1" in message and "not a readable image" in message, message
        assert "Traceback" not in message and len(message.strip().splitlines()) == 1, message

    with tgrpc.InferenceServerClient(f"127.0.0.1:{server.grpc}") as g:
        for _ in range(3):  # bounded: each refusal, then a good request, on both protocols
            with pytest.raises(InferenceServerException) as http_error:
                server.client.infer("m_image", [http_input(bad, "image")])
            check_refusal(http_error.value, "400")
            got = server.client.infer("m_image", [http_input(np.array(good, dtype=object), "image")]).as_numpy("logits")
            np.testing.assert_allclose(got, expect, **TOL)

            i = tgrpc.InferInput("image", [2], "BYTES")
            i.set_data_from_numpy(bad)
            with pytest.raises(InferenceServerException) as grpc_error:
                g.infer("m_image", [i])
            check_refusal(grpc_error.value, "StatusCode.INVALID_ARGUMENT")
            i.set_data_from_numpy(np.array(good, dtype=object))
            np.testing.assert_allclose(g.infer("m_image", [i]).as_numpy("logits"), expect, **TOL)
    assert server.proc.poll() is None


def test_image_request_larger_than_max_batch(python, folder, tmp_path, runner):
    """More images in one request than the tensor model's max batch: run in chunks, the same numbers as the runner."""
    s = Server(python, folder, tmp_path / "serve.log", "--max-batch", "2")
    try:
        images = [png(10 + k, (40 + 8 * k, 64)) for k in range(5)]
        got = s.client.infer("m_image", [http_input(np.array(images, dtype=object), "image")]).as_numpy("logits")
        np.testing.assert_allclose(got, runner(runner.prepare(images)), **TOL)
        stats = s.client.get_inference_statistics("m")["model_stats"][0]
        assert int(stats["inference_count"]) == 5
        assert max(int(b["batch_size"]) for b in stats["batch_stats"]) <= 2
    finally:
        assert s.stop() == 0, s.log.read_text()[-3000:]


def test_fused_frames_and_clean_stop(python, demo_ckpt, tmp_path):
    """A fused-preprocessing graph takes uint8 NHWC frames; SIGTERM stops the server with exit 0 and frees its port."""
    export_stage(demo_ckpt, tmp_path / "fused", ExportOptions(fuse_preprocess=True))
    frames = np.random.default_rng(6).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    s = Server(python, tmp_path / "fused", tmp_path / "serve.log")
    try:
        with load(tmp_path / "fused") as r:
            got = s.client.infer("m", [http_input(frames, r.contract.name)]).as_numpy("logits")
            np.testing.assert_allclose(got, r(frames), **TOL)
    finally:
        t0 = time.monotonic()
        code = s.stop()
        took = time.monotonic() - t0
    assert code == 0, s.log.read_text()[-3000:]
    assert took < 20, f"stopping took {took:.1f} s"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", s.http), timeout=2).close()


def test_serve_refuses_where_it_cannot_run(tmp_path, capsys):
    """Where PyTriton can't serve (missing, or numpy 2), `serve` says why in one line, exit 2."""
    try:
        check_environment()
    except ConfigError:
        assert main(["serve", str(tmp_path), "--port", "1"]) == 2  # refused before the folder is read
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and ("numpy<2" in err[0] or "PyTriton" in err[0])
    else:
        pytest.skip("this Python can serve; the refusal is not reachable here")


def test_library_path_puts_this_pythons_libdir_first(monkeypatch):
    import sysconfig

    from focalnet_edge.deploy.serve import python_library_path

    libdir = sysconfig.get_config_var("LIBDIR")
    monkeypatch.setenv("LD_LIBRARY_PATH", f"/opt/x:{libdir}")
    assert python_library_path().split(":") == [libdir, "/opt/x"]



def test_busy_port_refused():
    """A port in use is refused in one sentence before anything starts (PyTriton would wait on whatever answers)."""
    from focalnet_edge.deploy.serve import _check_port_free

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} on 127.0.0.1 is not free"):
            _check_port_free("127.0.0.1", port)
    _check_port_free("127.0.0.1", port)  # free again once closed
