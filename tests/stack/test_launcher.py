"""`make stack`'s launcher: the four processes wired on loopback, whatever the working folder."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import yaml

from stack.launcher import Ports, launch
from stack.processes import PROMETHEUS_DIR
from tests.helpers.net import free_port


def test_a_relative_workdir_still_loads_every_rule_and_wires_every_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    repo = tmp_path / "checkout"  # no champion yet: the service starts and waits for one
    (repo / "models").mkdir(parents=True)
    ports = Ports(free_port(), free_port(), free_port(), free_port())
    stack = launch(Path(".stack"), repo=repo, ports=ports)
    try:
        groups = httpx.get(f"{stack.prometheus.url}/api/v1/rules").json()["data"]["groups"]
        deadline = time.monotonic() + 20  # target discovery takes a moment after start-up
        while time.monotonic() < deadline:
            targets = httpx.get(f"{stack.prometheus.url}/api/v1/targets").json()["data"]
            alertmanagers = httpx.get(f"{stack.prometheus.url}/api/v1/alertmanagers").json()["data"]
            if len(targets["activeTargets"]) == 4 and alertmanagers["activeAlertmanagers"]:
                break
            time.sleep(0.2)
        retrainer = httpx.post(f"{stack.retrainer.url}/alerts", json={})
    finally:
        stack.stop()
    shipped = sum(
        len(yaml.safe_load(p.read_text())["groups"])
        for p in (PROMETHEUS_DIR / "rules").glob("*.yml")
    )
    assert len(groups) == shipped
    jobs = {t["labels"]["job"]: t["scrapeUrl"] for t in targets["activeTargets"]}
    assert jobs["mloop-service"] == f"http://127.0.0.1:{ports.service}/metrics"
    assert jobs["mloop-retrainer"] == f"http://127.0.0.1:{ports.retrainer}/metrics"
    assert alertmanagers["activeAlertmanagers"][0]["url"].startswith(
        f"http://127.0.0.1:{ports.alertmanager}/"
    )
    assert retrainer.status_code == 401, "the webhook is on, behind its token"
    assert (tmp_path / ".stack" / "secrets" / "retrainer_token").stat().st_mode & 0o077 == 0
