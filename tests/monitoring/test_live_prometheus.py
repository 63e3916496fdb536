"""Every PromQL expression of the dashboards and the rules, evaluated by a real Prometheus that
scrapes a real regression service, a real classifier service and the real retrainer under traffic.

Dashboard queries and recording rules must return data; alert expressions must run, and every
series they read must exist (a renamed metric would otherwise silence an alert for good)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml

from dashboards import model, retraining, service
from dashboards.panels import queries
from stack.processes import (
    PROMETHEUS_DIR,
    Process,
    alertmanager_config,
    prometheus_config,
    start_alertmanager,
    start_prometheus,
    start_python,
)
from tests.helpers.bundles import make_bundle
from tests.helpers.net import free_port
from tests.helpers.paths import IRIS_SCHEMA
from tests.helpers.servers import FEEDBACK_AUTH, Server, start_server, stop_server

RETRAINER_TOKEN = "live-test-retrainer-token"
DASHBOARD_QUERIES = [q for module in (service, model, retraining) for q in queries(module.ROWS)]
SERIES = re.compile(r"\b(?:[a-z_]+:)?mloop_[a-z0-9_:]+|\bup\b")


def rules(kind: str) -> list[tuple[str, str]]:
    found = []
    for path in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            found += [(r[kind], r["expr"]) for r in group["rules"] if kind in r]
    return found


@dataclass
class Stack:
    prometheus: Process
    regression: Server
    classifier: Server

    def query(self, expr: str) -> dict[str, Any]:
        answer = httpx.get(
            f"{self.prometheus.url}/api/v1/query", params={"query": expr}, timeout=10
        )
        body: dict[str, Any] = answer.json()
        return body


def traffic(server: Server, rows: list[dict[str, Any]], labels: list[Any]) -> None:
    with server.client(headers=FEEDBACK_AUTH) as client:
        ids = [client.post("/predict", json=row).json()["id"] for row in rows]
        batch = client.post("/predict", json=rows[:20])
        assert batch.status_code == 200
        out_of_range = {**rows[0], next(iter(rows[0])): 1e6}
        assert client.post("/predict", json=out_of_range).status_code == 422
        assert client.get("/no-such-route").status_code == 404
        items = [{"id": i, "actual": label} for i, label in zip(ids, labels)]
        assert client.post("/feedback", json={"items": items}).status_code == 200


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from sklearn.datasets import load_diabetes, load_iris

    tmp = tmp_path_factory.mktemp("live")
    for folder in ("reg", "cls"):
        (tmp / folder).mkdir()
    regression = start_server(tmp / "reg", make_bundle(tmp / "reg-bundle" / "champion", "1"))
    iris_bundle = make_bundle(
        tmp / "cls-bundle" / "champion", "1", kind="random_forest", schema_file=IRIS_SCHEMA
    )
    classifier = start_server(tmp / "cls", iris_bundle)
    retrainer_port, am_port, prom_port = free_port(), free_port(), free_port()
    retrainer = start_python(
        "retrainer", retrainer_port,
        {"MLOOP_RETRAINER_TOKEN": RETRAINER_TOKEN, "MLOOP_RETRAINER_REPO_DIR": str(tmp)},
        tmp / "retrainer.log", "/health",
    )  # fmt: skip
    (tmp / "token").write_text(RETRAINER_TOKEN)
    alertmanager = start_alertmanager(
        tmp, alertmanager_config(f"http://127.0.0.1:{retrainer_port}/alerts", tmp / "token", None),
        am_port,
    )  # fmt: skip
    config = prometheus_config(
        [regression.url.removeprefix("http://"), classifier.url.removeprefix("http://")],
        f"127.0.0.1:{retrainer_port}", f"127.0.0.1:{am_port}", prom_port,
    )  # fmt: skip
    prometheus = start_prometheus(tmp, config, prom_port)
    try:
        diabetes = load_diabetes(as_frame=True).frame
        rows = diabetes.drop(columns="target").head(60).to_dict("records")
        traffic(regression, rows, diabetes["target"].head(60).tolist())
        iris = load_iris(as_frame=True).frame.sample(60, random_state=1)
        traffic(classifier, iris.drop(columns="target").to_dict("records"),
                iris["target"].tolist())  # fmt: skip
        live = Stack(prometheus, regression, classifier)
        deadline = time.monotonic() + 30  # scraped twice at least, rules evaluated after that
        while time.monotonic() < deadline:
            ready = live.query("count(model:mloop_live_error:served)")["data"]["result"]
            rates = live.query("sum(route_status:mloop_http_requests:rate5m)")["data"]["result"]
            if ready and rates and float(ready[0]["value"][1]) >= 3:
                break
            time.sleep(0.5)
        time.sleep(2)
        yield live
    finally:
        prometheus.stop()
        alertmanager.stop()
        retrainer.stop()
        stop_server(regression)
        stop_server(classifier)


def test_every_target_is_scraped(stack: Stack) -> None:
    result = stack.query("up")["data"]["result"]
    state = {(r["metric"]["job"], r["metric"]["instance"]): r["value"][1] for r in result}
    assert len(state) == 5 and set(state.values()) == {"1"}, state


@pytest.mark.parametrize("expr", DASHBOARD_QUERIES)
def test_each_dashboard_query_returns_data(stack: Stack, expr: str) -> None:
    answer = stack.query(expr)
    assert answer["status"] == "success", answer
    assert answer["data"]["result"], f"no data for {expr}"


@pytest.mark.parametrize(("name", "expr"), rules("record"), ids=[n for n, _ in rules("record")])
def test_each_recording_rule_returns_data(stack: Stack, name: str, expr: str) -> None:
    answer = stack.query(expr)
    assert answer["status"] == "success", answer
    assert answer["data"]["result"], f"no data for {name}"
    assert stack.query(name)["data"]["result"], f"{name} is not recorded"


@pytest.mark.parametrize(("name", "expr"), rules("alert"), ids=[n for n, _ in rules("alert")])
def test_each_alert_expression_runs_on_series_that_exist(
    stack: Stack, name: str, expr: str
) -> None:
    answer = stack.query(expr)
    assert answer["status"] == "success", answer
    for series in sorted(set(SERIES.findall(expr))):
        found = stack.query(f'count({{__name__="{series}"}})')["data"]["result"]
        assert found, f"{name} reads {series}, which nothing exports"
