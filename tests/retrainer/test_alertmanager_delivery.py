"""The shipped Alertmanager configuration, run for real, delivering to a real retrainer: routing,
the bearer token from a file, grouping (a storm is one retrain) and the NoModelReady inhibition.
Only the receiver's URL, the secret's path and the waits are adapted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from retrainer.settings import Settings
from stack.processes import alertmanager_config, start_alertmanager
from tests.helpers.net import free_port, wait_until
from tests.retrainer.conftest import TOKEN, Retrainer, SlowBackend, serve


@pytest.fixture
def retrainer() -> Iterator[Retrainer]:
    yield from serve(Settings(token=TOKEN, cooldown_s=0.0), SlowBackend(seconds=0.1))  # type: ignore[arg-type]


@pytest.fixture
def alertmanager(tmp_path: Path, retrainer: Retrainer) -> Iterator[str]:
    secret = tmp_path / "retrainer_token"
    secret.write_text(TOKEN)
    config = alertmanager_config(f"{retrainer.url}/alerts", secret, waits="1s")
    for route in config["route"]["routes"]:
        route["group_interval"] = "2s"
    process = start_alertmanager(tmp_path, config, free_port())
    try:
        yield process.url
    finally:
        process.stop()


def post_alerts(url: str, *alerts: dict[str, Any]) -> None:
    now = datetime.now(timezone.utc)
    for alert in alerts:
        alert.setdefault("startsAt", now.isoformat())
        alert.setdefault("endsAt", (now + timedelta(minutes=5)).isoformat())
    answer = httpx.post(f"{url}/api/v2/alerts", json=list(alerts), timeout=5)
    assert answer.status_code == 200, answer.text


def drift(feature: str) -> dict[str, Any]:
    labels = {"alertname": "FeatureDrift", "action": "retrain", "severity": "warning",
              "feature": feature, "job": "mloop-service", "instance": "service:8000"}  # fmt: skip
    return {"labels": labels, "annotations": {"summary": f"{feature} drifted"}}


def test_a_storm_of_drift_alerts_reaches_the_retrainer_as_one_retrain(
    alertmanager: str, retrainer: Retrainer
) -> None:
    for round_ in range(3):  # Prometheus re-sends firing alerts every evaluation
        post_alerts(alertmanager, *[drift(f"x{i}") for i in range(10)])
        time.sleep(0.3)
    delivered = wait_until(lambda: retrainer.backend.calls, timeout=20, interval=0.1)
    assert delivered, "no delivery to the retrainer"
    time.sleep(5)  # a few group intervals: any extra delivery would have come
    assert retrainer.coordinator.wait_idle(10)
    assert len(retrainer.backend.calls) == 1
    decisions = list(retrainer.coordinator.decisions)
    started = [d for d in decisions if d.action == "started"]
    assert len(started) == 1 and started[0].alerts == ["FeatureDrift"]
    assert "FeatureDrift(x" in started[0].reason


def test_no_retrain_is_asked_while_no_model_is_ready(
    alertmanager: str, retrainer: Retrainer
) -> None:
    no_model = {
        "labels": {"alertname": "NoModelReady", "severity": "page", "job": "mloop-service",
                   "instance": "service:8000"},
        "annotations": {"summary": "no model"},
    }  # fmt: skip
    post_alerts(alertmanager, no_model)
    time.sleep(1)
    post_alerts(alertmanager, drift("alcohol"))

    def inhibited() -> bool:
        alerts = httpx.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()
        state = {a["labels"]["alertname"]: a["status"] for a in alerts}
        return bool(state.get("FeatureDrift", {}).get("inhibitedBy"))

    assert wait_until(
        inhibited, timeout=20, interval=0.1
    ), "the drift alert is not inhibited by NoModelReady"
    time.sleep(4)
    assert retrainer.backend.calls == [] and len(retrainer.coordinator.decisions) == 0
