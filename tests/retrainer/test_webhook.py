"""POST /alerts over real HTTP: authenticated, validated, capped; a storm of alerts is one retrain."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from retrainer.settings import Settings
from tests.retrainer.conftest import TOKEN, Retrainer, SlowBackend, alert, payload, serve


def test_no_token_or_a_wrong_one_is_a_401_and_starts_nothing(retrainer: Retrainer) -> None:
    body = payload(alert())
    with retrainer.client(token=None) as client:
        assert client.post("/alerts", json=body).status_code == 401
    with retrainer.client(token="wrong") as client:
        answer = client.post("/alerts", json=body)
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
    with retrainer.client(token=None) as client:
        basic = client.post("/alerts", json=body, headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status_code == 401
    assert retrainer.backend.calls == []


def test_without_a_configured_token_the_webhook_is_off() -> None:
    for server in serve(Settings(), SlowBackend()):
        with server.client() as client:
            answer = client.post("/alerts", json=payload(alert()))
        assert answer.status_code == 403 and server.backend.calls == []


@pytest.mark.parametrize(
    ("body", "status", "loc"),
    [
        (b"{not json", 400, ["body"]),
        (b'{"version": "3"}', 422, ["body", "version"]),
        (b'{"version": "4", "groupKey": "g", "status": "firing", "receiver": "r", "alerts": [{}]}',
         422, ["body", "alerts", 0, "status"]),
        (b'{"version": "4", "groupKey": "g", "status": "firing", "receiver": "r", "alerts": '
         b'[{"status": "firing", "labels": {}, "startsAt": "yesterday", "fingerprint": "x"}]}',
         422, ["body", "alerts", 0, "startsAt"]),
    ],
    ids=["malformed", "old-version", "alert-without-fields", "bad-time"],
)  # fmt: skip
def test_a_body_that_is_no_valid_payload_is_a_4xx_with_the_reason(
    retrainer: Retrainer, body: bytes, status: int, loc: list[object]
) -> None:
    with retrainer.client() as client:
        answer = client.post("/alerts", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == status, answer.text
    assert answer.json()["detail"][0]["loc"] == loc and answer.json()["detail"][0]["msg"]
    assert retrainer.backend.calls == []


def test_a_body_over_the_cap_is_refused_before_it_is_parsed() -> None:
    settings = Settings(token=TOKEN, max_body_bytes=4096)  # type: ignore[arg-type]
    for server in serve(settings, SlowBackend()):
        big = payload(*[alert(fingerprint=f"f{i}") for i in range(200)])
        with server.client() as client:
            answer = client.post("/alerts", json=big)

            def chunks() -> Iterator[bytes]:  # no declared length: counted while read
                yield b'{"version": "4", "alerts": ['
                for _ in range(100):
                    yield b" " * 100

            streamed = client.post("/alerts", content=chunks())
        assert answer.status_code == 413 and streamed.status_code == 413
        assert server.backend.calls == []


def test_only_firing_alerts_of_the_allowlist_start_a_retrain(retrainer: Retrainer) -> None:
    with retrainer.client() as client:
        other = client.post("/alerts", json=payload(alert("ScrapeTargetDown", "o1")))
        resolved = client.post("/alerts", json=payload(alert(status="resolved")))
        drift = client.post("/alerts", json=payload(alert(feature="alcohol")))
    assert other.json()["action"] == resolved.json()["action"] == "ignored"
    assert drift.status_code == 202 and drift.json()["action"] == "started"
    assert "FeatureDrift(alcohol)" in drift.json()["reason"]
    assert retrainer.coordinator.wait_idle(5)
    assert len(retrainer.backend.calls) == 1


def test_a_storm_of_alerts_is_one_retrain_and_every_decision_is_recorded(
    retrainer: Retrainer,
) -> None:
    """Twenty concurrent deliveries (an HA pair's copies, repeats, new features drifting) while
    one retrain runs: one starts, the others are skipped, each with its reason, all counted."""
    retrainer.backend.seconds = 1.0
    bodies = [payload(alert(fingerprint=f"f{i % 4}", feature=f"x{i % 4}")) for i in range(20)]
    answers: list[httpx.Response] = []

    def send(body: dict[str, object]) -> None:
        with retrainer.client() as client:
            answers.append(client.post("/alerts", json=body))

    threads = [threading.Thread(target=send, args=(b,)) for b in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    actions = sorted(a.json()["action"] for a in answers)
    assert actions.count("started") == 1 and actions.count("skipped") == 19, actions
    assert retrainer.coordinator.wait_idle(10)
    assert len(retrainer.backend.calls) == 1
    with retrainer.client() as client:
        repeat = client.post("/alerts", json=bodies[0])  # Alertmanager's repeat of one alert
        decisions = client.get("/decisions", params={"limit": 100}).json()
        text = client.get("/metrics").text
    assert repeat.json()["action"] == "skipped" and repeat.json()["reason"].startswith(
        "every alert"
    )
    assert decisions[1]["action"] == "succeeded" and decisions[1]["detail"] == "done"
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    retrains = {
        k[1][0][1]: v for k, v in samples.items() if k[0] == "mloop_retrainer_retrains_total"
    }
    skipped = {k[1][0][1]: v for k, v in samples.items() if k[0] == "mloop_retrainer_skipped_total"}
    assert retrains == {"started": 1.0, "succeeded": 1.0, "failed": 0.0}
    assert skipped["running"] + skipped["duplicate"] == 20 and skipped["cooldown"] == 0
    assert samples[("mloop_retrainer_retrain_requests_total", ())] == 21
    assert samples[("mloop_retrainer_last_success_timestamp_seconds", ())] > 0


def test_a_cooldown_follows_each_retrain_and_a_failure_is_counted() -> None:
    settings = Settings(token=TOKEN, cooldown_s=60.0)  # type: ignore[arg-type]
    for server in serve(settings, SlowBackend(seconds=0.05, ok=False)):
        with server.client() as client:
            first = client.post("/alerts", json=payload(alert(fingerprint="a")))
            assert server.coordinator.wait_idle(5)
            second = client.post("/alerts", json=payload(alert(fingerprint="b")))
            failed = client.get("/decisions").json()[1]
        assert first.json()["action"] == "started"
        assert second.json()["action"] == "skipped" and "cooldown" in second.json()["reason"]
        assert failed["action"] == "failed" and failed["detail"] == "broken"
        assert len(server.backend.calls) == 1
