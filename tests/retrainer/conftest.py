"""The retrainer as a real HTTP server (uvicorn on loopback) around a backend the test controls."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
import uvicorn

from retrainer.app import create_app
from retrainer.backends import Outcome
from retrainer.coordinator import Coordinator
from retrainer.settings import Settings
from tests.helpers.servers import uvicorn_thread

TOKEN = "retrainer-test-token"


@dataclass
class SlowBackend:
    """A retrain that takes ``seconds`` and records each call (the pipeline is tested elsewhere)."""

    seconds: float = 0.3
    ok: bool = True
    name: str = "test"
    calls: list[str] = field(default_factory=list)

    def run(self, reason: str) -> Outcome:
        self.calls.append(reason)
        time.sleep(self.seconds)
        return Outcome(self.ok, "done" if self.ok else "broken", promoted=self.ok)


@dataclass
class Retrainer:
    url: str
    backend: SlowBackend
    coordinator: Coordinator
    server: uvicorn.Server

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)


def serve(settings: Settings, backend: SlowBackend) -> Iterator[Retrainer]:
    app = create_app(settings, backend)
    with uvicorn_thread(app, "the retrainer") as (url, server):
        yield Retrainer(url, backend, app.state.coordinator, server)


@pytest.fixture
def retrainer() -> Iterator[Retrainer]:
    settings = Settings(token=TOKEN, cooldown_s=0.0)  # type: ignore[arg-type]
    yield from serve(settings, SlowBackend())


def alert(
    name: str = "FeatureDrift",
    fingerprint: str = "f1",
    status: str = "firing",
    starts: str = "2026-12-02T10:00:00Z",
    **labels: str,
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "action": "retrain", **labels},
        "annotations": {"summary": "x"},
        "startsAt": starts,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": fingerprint,
    }


def payload(
    *alerts: dict[str, Any], group_key: str = '{}/{action="retrain"}:{action="retrain"}'
) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "retrainer",
        "groupLabels": {"action": "retrain"},
        "commonLabels": {"action": "retrain"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()
