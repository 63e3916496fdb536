"""The loop, closed with real processes on 127.0.0.1: a trained champion served, shifted traffic with
labels, Prometheus' alert, Alertmanager's delivery, one retrain through DVC, the gate, the reload,
and a lower live error. The stack starts through `make stack`'s code; only intervals are shorter."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from stack.demo import run_demo
from stack.launcher import Ports, Tuning, launch
from tests.e2e.conftest import dvc_repro, pipeline_env
from tests.helpers.net import free_port

pytestmark = pytest.mark.slow

FAST = Tuning(
    scrape_interval="1s",
    rule_for="3s",
    alertmanager_waits="1s",
    retrainer_cooldown_s=600.0,
    service_env={"MLOOP_WATCH_INTERVAL_S": "0.5", "MLOOP_HOUSEKEEPING_INTERVAL_S": "0.5"},
)


def test_drift_and_live_error_retrain_promote_and_reload_without_a_failed_request(
    make_repo: Callable[[str], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo = make_repo("loop")
    dvc_repro(repo)  # the first champion, with the shipped candidates
    for key, value in pipeline_env(repo).items():  # the retrainer runs the copy's pipeline
        monkeypatch.setenv(key, value)
    ports = Ports(free_port(), free_port(), free_port(), free_port())
    stack = launch(tmp_path / "stack", repo=repo, ports=ports, tuning=FAST)
    try:
        token = stack.tokens["feedback"].read_text().strip()
        lines: list[str] = []
        timeline, traffic = run_demo(
            stack.service.url, stack.prometheus.url, stack.retrainer.url, token,
            repo / "models" / "champion", repo / "data" / "raw" / "dataset.csv",
            timeout_s=600, settle_s=15, echo=lines.append,
        )  # fmt: skip
        decisions = httpx.get(f"{stack.retrainer.url}/decisions", params={"limit": 500}).json()
        metrics = httpx.get(f"{stack.retrainer.url}/metrics").text
    finally:
        stack.stop()
    events = timeline.events
    assert {"alert", "retrain started", "retrain succeeded", "serving"} <= set(events), (
        lines, (tmp_path / "stack" / "retrainer.log").read_text()[-3000:]
    )  # fmt: skip
    requests = [m for m in metrics.splitlines() if m.startswith("mloop_retrainer_retrain_requests")]
    started = [d for d in decisions if d["action"] == "started"]
    old = str(timeline.first_version)
    new = next(v for v in traffic.errors if v != old)
    summary = [
        "", "timeline of the closed loop:", *lines,
        f"alert deliveries asking for a retrain: {requests[0].split()[-1]}; retrains: {len(started)}",
        f"first alert to the new model serving: {events['serving'] - events['alert']:.1f} s",
        f"requests {traffic.sent}, failed {traffic.failed}; error on the shifted traffic: "
        f"v{old} {traffic.error_of(old):.2f}, v{new} {traffic.error_of(new):.2f}",
    ]  # fmt: skip
    with capsys.disabled():  # the timeline is part of the test's report, in CI too
        print("\n".join(summary))
    assert len(started) == 1, decisions
    succeeded = next(d for d in decisions if d["action"] == "succeeded")
    assert succeeded["detail"].startswith("promoted"), succeeded
    assert traffic.failed == 0
    assert traffic.error_of(new) < traffic.error_of(old)
