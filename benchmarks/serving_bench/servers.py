"""The contenders' processes: each in its own session and process group, pinned to the server core.

``Server`` starts one (until its ready path answers 200, or raises with its log's tail) and stops
it (SIGTERM to the group, SIGKILL after 20 s); ``running`` does both around a block. The three
kinds: ``service_server`` (``python -m service`` from this repo, 1 worker), ``mlflow_server``
(``mlflow models serve --env-manager local``) and ``bare_server`` (benchmarks/bare_asgi.py).
``wait_idle`` waits for a server to work off what a load generator left queued.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving_bench.cpu import group_ticks
from serving_bench.settings import BIN, CLOCK_TICKS, HOST, REPO, SERVER_CPU


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def http_request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@dataclass
class Server:
    """One contender process (group) pinned to the server core, with its log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    ready_path: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    startup_s: float = 0.0
    shutdown: dict[str, Any] = field(default_factory=dict)

    def start(self, timeout_s: float = 180.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        started = time.perf_counter()
        self.process = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, *self.argv],
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole, children too
        )
        log.close()
        while time.perf_counter() - started < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode} before it was ready:\n"
                    + self.log_tail()
                )
            with contextlib.suppress(OSError, http.client.HTTPException):
                status, _ = http_request(self.port, "GET", self.ready_path, timeout=2)
                if status == 200:
                    self.startup_s = time.perf_counter() - started
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM to the group (graceful: the service flushes its log), SIGKILL after 20 s."""
        if self.process is None or self.process.poll() is not None:
            return
        started = time.perf_counter()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        killed = False
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            killed = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # stray children of the group, if any
        self.shutdown = {
            "seconds": round(time.perf_counter() - started, 2),
            "returncode": self.process.returncode,
            "killed": killed,
        }

    @property
    def pgid(self) -> int | None:
        return self.process.pid if self.process else None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_problems(self) -> list[str]:
        """Lines of the server log that look like trouble (tracebacks, errors, warnings)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        pattern = re.compile(r"Traceback|ERROR|Exception|WARNING|CRITICAL", re.IGNORECASE)
        return [line for line in text.splitlines() if pattern.search(line)]


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    print(f"  starting {server.name} on :{server.port} ...", end="", flush=True)
    server.start()
    print(f" ready in {server.startup_s:.1f} s", flush=True)
    try:
        yield server
    finally:
        server.stop()


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def service_server(
    name: str,
    bundle: Path,
    workdir: Path,
    instrumented: bool,
    admin_token: str,
    tree: Path = REPO,
    env: dict[str, str] | None = None,
    log_db: str = "pred.db",
) -> Server:
    """``python -m service`` of ``tree`` (this repo by default, with ``env``), 1 worker; by
    default, instrumented ones share pred.db."""
    env = dict(env) if env is not None else base_env()
    env.update(
        MLOOP_BUNDLE_DIR=str(bundle),
        MLOOP_PREDICTION_LOG_URL=f"sqlite:///{workdir}/{log_db}",
        MLOOP_ADMIN_TOKEN=admin_token,
    )
    if not instrumented:
        env.update(MLOOP_METRICS_ENABLED="false", MLOOP_PREDICTION_LOG_ENABLED="false")
    port = free_port()
    return Server(
        name=name,
        argv=[sys.executable, "-m", "service", "--port", str(port), "--workers", "1"],
        env=env,
        cwd=tree,
        ready_path="/ready",
        port=port,
        log_path=workdir / "logs" / f"{name}.log",
    )


def mlflow_server(name: str, registered: str, repo: Path, workdir: Path) -> Server:
    port = free_port()
    env = base_env()
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{repo}/mlflow.db"
    argv = [
        str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{registered}@champion",
        "--env-manager", "local", "-p", str(port), "--host", HOST,
    ]  # fmt: skip
    return Server(name, argv, env, repo, "/ping", port, workdir / "logs" / f"{name}.log")


def bare_server(workdir: Path, loop: str = "uvloop") -> Server:
    port = free_port()
    name = "bare-asgi" if loop == "uvloop" else f"bare-asgi-{loop}"
    argv = [
        sys.executable, str(REPO / "benchmarks/bare_asgi.py"), "--port", str(port), "--loop", loop,
    ]  # fmt: skip
    return Server(name, argv, base_env(), REPO, "/", port, workdir / "logs" / f"{name}.log")


def wait_idle(server: Server, limit_s: float = 60.0, window_s: float = 0.25) -> float:
    """Wait until the server stops burning CPU; returns the seconds waited.

    A load generator that stops does not stop the server: a slow server still has up to 64 (or
    1000) queued requests to work through, which would land in the next measurement (MLflow at
    64 connections holds seconds of queued work).
    """
    started = time.perf_counter()
    if server.pgid is None:
        return 0.0
    last = group_ticks(server.pgid)
    while time.perf_counter() - started < limit_s:
        time.sleep(window_s)
        now = group_ticks(server.pgid)
        if (now - last) / CLOCK_TICKS <= 0.05 * window_s:
            break
        last = now
    return round(time.perf_counter() - started, 2)
