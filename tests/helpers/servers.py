"""Servers for the tests, real ones: start a process (``python -m service``, ``mlflow server``, ...)
or an in-process HTTP server, return once it answers, stop it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from tests.helpers.net import answers, free_port, wait_until
from tests.helpers.paths import REPO

ADMIN_TOKEN = "test-token-" + "x" * 8
FEEDBACK_TOKEN = "feedback-token-" + "y" * 8
FEEDBACK_AUTH = {"Authorization": f"Bearer {FEEDBACK_TOKEN}"}


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, **kwargs)

    def output(self) -> str:
        return self.log_path.read_text() if self.log_path else ""


def start_process(
    command: list[str],
    port: int,
    log_path: Path,
    ready_path: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    what: str = "server",
    timeout: float = 60.0,
) -> Server:
    """Run ``command`` (which listens on 127.0.0.1:``port``), its output to ``log_path``; return
    once ``ready_path`` answers 200. RuntimeError, with the output, if it exits or is not ready
    in ``timeout`` seconds (then it is killed)."""
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT, text=True
    )
    server = Server(f"http://127.0.0.1:{port}", process, dict(env or {}), log_path)

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited {process.returncode}:\n{server.output()}")
        return answers(f"{server.url}{ready_path}")

    if not wait_until(ready, timeout, interval=0.2):
        process.kill()
        raise RuntimeError(f"{what} not ready in {timeout:.0f} s:\n{server.output()}")
    return server


def start_server(
    tmp: Path, bundle: Path, workers: int = 1, ready: bool = True, **env_overrides: str
) -> Server:
    """A real ``python -m service`` process; returns once /ready is 200 (``ready``) or, without
    ``ready``, once it answers at all (/health)."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "MLOOP_BUNDLE_DIR": str(bundle),
            "MLOOP_PREDICTION_LOG_URL": f"sqlite:///{tmp / 'predictions.db'}",
            "MLOOP_ADMIN_TOKEN": ADMIN_TOKEN,
            "MLOOP_FEEDBACK_TOKEN": FEEDBACK_TOKEN,
            "MLOOP_WATCH_INTERVAL_S": "0.2",
            "MLOOP_HOUSEKEEPING_INTERVAL_S": "0.2",
            "MLOOP_MAX_BATCH_ROWS": "50",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp / f"prom-{port}") if workers > 1 else "",
            **env_overrides,
        }
    )
    if not env["PROMETHEUS_MULTIPROC_DIR"]:
        env.pop("PROMETHEUS_MULTIPROC_DIR")
    return start_process(
        [sys.executable, "-m", "service", "--port", str(port), "--workers", str(workers)],
        port,
        tmp / f"server-{port}.log",
        "/ready" if ready else "/health",
        env=env,
        cwd=REPO,
    )


def stop_server(server: Server) -> None:
    """SIGTERM (a graceful shutdown), then SIGKILL if it is still running after 15 s."""
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()


@contextmanager
def http_server_thread(handler: Callable[..., BaseHTTPRequestHandler]) -> Iterator[str]:
    """A ``ThreadingHTTPServer`` on a free loopback port, served by a thread: yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)  # the system picks a free port
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def uvicorn_thread(
    app: Any, what: str = "the server", timeout: float = 10.0
) -> Iterator[tuple[str, uvicorn.Server]]:
    """An ASGI app served by uvicorn in a thread on a free loopback port, once it has started:
    yields its URL and the uvicorn server."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_until(lambda: server.started, timeout, interval=0.02), f"{what} did not start"
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(10)
