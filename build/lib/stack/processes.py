"""The stack's processes on loopback: Prometheus and Alertmanager with the shipped configuration
(only targets, ports, paths and intervals adapted), the prediction service and the retrainer."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = REPO / "monitoring" / "prometheus"
ALERTMANAGER_CONFIG = REPO / "monitoring" / "alertmanager" / "alertmanager.yml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    url: str
    process: subprocess.Popen[str]
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def prometheus_config(
    service_targets: list[str], retrainer_target: str, alertmanager_target: str, port: int
) -> dict[str, Any]:
    """The shipped prometheus.yml, pointed at loopback targets, scraping and evaluating every 1 s."""
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_DIR / "rules" / "*.yml")]
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [alertmanager_target]
    targets = {
        "mloop-service": service_targets,
        "mloop-retrainer": [retrainer_target],
        "prometheus": [f"127.0.0.1:{port}"],
        "alertmanager": [alertmanager_target],
    }
    for job in config["scrape_configs"]:
        job["static_configs"][0]["targets"] = targets[job["job_name"]]
    return config


def start_prometheus(tmp: Path, config: dict[str, Any], port: int) -> Process:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: make system-deps (Debian prometheus)"
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    log = tmp / "prometheus.log"
    process = subprocess.Popen(
        [binary, f"--config.file={path}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--rules.alert.resend-delay=1s"],
        stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    _wait_http(url, process, log, "prometheus", "/-/ready")
    return Process(url, process, log)


def alertmanager_config(webhook_url: str, token_file: Path, waits: str | None) -> dict[str, Any]:
    """The shipped alertmanager.yml with the retrainer's URL and secret path; ``waits`` (e.g. "1s")
    shortens group_wait and group_interval."""
    config: dict[str, Any] = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    (hook,) = next(r for r in config["receivers"] if r["name"] == "retrainer")["webhook_configs"]
    hook["url"] = webhook_url
    hook["http_config"]["authorization"]["credentials_file"] = str(token_file)
    if waits:
        for route in [config["route"], *config["route"]["routes"]]:
            route.update(group_wait=waits, group_interval=waits)
    return config


def start_alertmanager(tmp: Path, config: dict[str, Any], port: int) -> Process:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    assert binary, "alertmanager is missing: make system-deps (Debian prometheus-alertmanager)"
    path = tmp / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    log = tmp / "alertmanager.log"
    process = subprocess.Popen(
        [binary, f"--config.file={path}", f"--storage.path={tmp / 'am'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    _wait_http(url, process, log, "alertmanager", "/-/ready")
    return Process(url, process, log)


def _wait_http(url: str, process: subprocess.Popen[str], log: Path, what: str, path: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(f"{url}{path}", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{what} did not start:\n{log.read_text()[-3000:]}")


def start_python(
    module: str, port: int, env: dict[str, str], log: Path, ready_path: str, cwd: Path = REPO
) -> Process:
    """``python -m <module> --port <port>`` with ``env`` added, once ``ready_path`` answers 200."""
    full_env = {**os.environ, **env}
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--port", str(port)], cwd=cwd, env=full_env,
        stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    _wait_http(url, process, log, module, ready_path)
    return Process(url, process, log)
