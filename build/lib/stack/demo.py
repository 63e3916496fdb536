"""The loop, watched: shifted traffic with labels into a running stack, and a timeline of what follows.

``python -m stack.demo`` (``make loop-demo``) against ``make stack``; the closed-loop test drives
the same classes against its own stack. The shifted population is built from the dataset the
champion was trained on (``data/raw/dataset.csv``): a few features moved by ``feature_shift_sd``
of their training spread, and the target by ``target_shift_sd`` (regression; a classifier's labels
move to the next class), so both the inputs and their relation to the target change.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from mloop.bundle import load_bundle
from mloop.config import DatasetSchema


@dataclass
class ShiftedPopulation:
    """Rows of the training data with ``shifted`` features and target moved; labels alongside."""

    frame: pd.DataFrame
    schema: DatasetSchema
    reference: dict[str, Any]
    shifted: list[str]
    feature_shift_sd: float = 2.0
    target_shift_sd: float = 1.0
    classes: list[Any] | None = None

    @classmethod
    def for_bundle(cls, bundle_dir: Path, data: Path, features: int = 2) -> ShiftedPopulation:
        bundle = load_bundle(bundle_dir)
        numeric = [
            name
            for name in bundle.schema.features
            if bundle.reference["features"][name]["kind"] == "numeric"
        ]
        frame = pd.read_csv(data)
        return cls(
            frame, bundle.schema, bundle.reference, numeric[-features:], classes=bundle.classes
        )

    def sample(self, rows: int, rng: np.random.Generator) -> tuple[list[dict[str, Any]], list[Any]]:
        picked = self.frame.sample(rows, replace=True, random_state=int(rng.integers(2**31)))
        picked = picked.reset_index(drop=True)
        for name in self.shifted:
            stats, spec = self.reference["features"][name], self.schema.columns[name]
            moved = picked[name] + self.feature_shift_sd * stats["std"]
            picked[name] = moved.clip(spec.min, spec.max)
        target = self.schema.target
        spec = self.schema.columns[target]
        if self.schema.task == "regression":
            moved = picked[target] + self.target_shift_sd * self.reference["target"]["std"]
            labels = moved.clip(spec.min, spec.max).astype(float).tolist()
        else:
            classes = self.classes or sorted(picked[target].unique().tolist())
            labels = [classes[(classes.index(v) + 1) % len(classes)] for v in picked[target]]
        records = picked[self.schema.features].to_dict("records")
        cleaned = [{str(k): (None if pd.isna(v) else v) for k, v in r.items()} for r in records]
        return cleaned, labels


@dataclass
class Traffic:
    """Batches of shifted rows, each with its labels sent as feedback, until stopped.

    Counts every answer that is not a 200 (``failed``) and the squared error (or the error rate)
    of the answers per model version, as the client sees them.
    """

    url: str
    feedback_token: str
    population: ShiftedPopulation
    batch_rows: int = 50
    interval_s: float = 0.5
    sent: int = 0
    failed: int = 0
    errors: dict[str, list[float]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def send(self, client: httpx.Client, rng: np.random.Generator) -> None:
        rows, labels = self.population.sample(self.batch_rows, rng)
        answer = client.post("/predict", json=rows)
        self.sent += 1
        if answer.status_code != 200:
            self.failed += 1
            return
        body = answer.json()
        regression = self.population.schema.task == "regression"
        scores = [
            (p - y) ** 2 if regression else float(p != y)
            for p, y in zip(body["predictions"], labels)
        ]
        self.errors.setdefault(body["model_version"], []).extend(scores)
        items = [{"id": i, "actual": y} for i, y in zip(body["ids"], labels)]
        feedback = client.post("/feedback", json={"items": items})
        self.sent += 1
        if feedback.status_code != 200:
            self.failed += 1

    def error_of(self, version: str) -> float:
        """RMSE (regression) or error rate of the answers of ``version``; NaN without any."""
        scores = self.errors.get(version, [])
        if not scores:
            return math.nan
        mean = float(np.mean(scores))
        return math.sqrt(mean) if self.population.schema.task == "regression" else mean

    def start(self, seed: int = 0) -> None:
        def loop() -> None:
            rng = np.random.default_rng(seed)
            headers = {"Authorization": f"Bearer {self.feedback_token}"}
            with httpx.Client(base_url=self.url, headers=headers, timeout=30) as client:
                while not self._stop.is_set():
                    try:
                        self.send(client, rng)
                    except httpx.HTTPError:
                        self.failed += 1
                    self._stop.wait(self.interval_s)

        self._thread = threading.Thread(target=loop, name="traffic", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)


@dataclass
class Timeline:
    """Watches Prometheus, the retrainer and the service; records the first time each step happens."""

    prometheus: str
    retrainer: str
    service: str
    started: float = field(default_factory=time.monotonic)
    events: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    first_version: str | None = None

    def _query(self, client: httpx.Client, expr: str) -> list[dict[str, Any]]:
        body = client.get(f"{self.prometheus}/api/v1/query", params={"query": expr}).json()
        result: list[dict[str, Any]] = body.get("data", {}).get("result", [])
        return result

    def mark(self, event: str, note: str = "") -> bool:
        if event in self.events:
            return False
        self.events[event] = time.monotonic() - self.started
        self.notes[event] = note
        return True

    def poll(self) -> list[str]:
        """One look at everything; the lines of events that happened since the last look."""
        new: list[str] = []
        with httpx.Client(timeout=5) as client:
            psi = self._query(client, "max(mloop_feature_drift_psi)")
            if (
                psi
                and float(psi[0]["value"][1]) > 0.25
                and self.mark("drift", f"max PSI {float(psi[0]['value'][1]):.2f}")
            ):
                new.append("drift")
            error = self._query(
                client, 'max(model:mloop_live_error:served{metric=~"rmse|accuracy"})'
            )
            holdout = self._query(
                client, 'max(mloop_model_holdout_metric{metric=~"rmse|accuracy"})'
            )
            if error and holdout:
                live, base = float(error[0]["value"][1]), float(holdout[0]["value"][1])
                self.notes["live_error"] = f"live {live:.3g} vs held-out {base:.3g}"
                if live > 1.25 * base and self.mark("error", self.notes["live_error"]):
                    new.append("error")
            firing = self._query(client, 'ALERTS{alertstate="firing", action="retrain"}')
            if firing and self.mark(
                "alert", ", ".join(sorted({a["metric"]["alertname"] for a in firing}))
            ):
                new.append("alert")
            decisions = client.get(f"{self.retrainer}/decisions", params={"limit": 100}).json()
            for decision in reversed(decisions):
                if decision["action"] in ("started", "succeeded", "failed"):
                    detail = decision["detail"] or decision["reason"]
                    if self.mark(f"retrain {decision['action']}", detail):
                        new.append(f"retrain {decision['action']}")
            model = client.get(f"{self.service}/model")
            if model.status_code == 200:
                version = str(model.json()["version"])
                if self.first_version is None:
                    self.first_version = version
                elif version != self.first_version and self.mark(
                    "serving", f"v{self.first_version} -> v{version}"
                ):
                    new.append("serving")
        return [f"{self.events[e]:7.1f} s  {e:<18} {self.notes[e]}" for e in new]


def run_demo(
    service: str,
    prometheus: str,
    retrainer: str,
    feedback_token: str,
    bundle_dir: Path,
    data: Path,
    timeout_s: float,
    settle_s: float,
    echo: Any = print,
) -> tuple[Timeline, Traffic]:
    """Shifted traffic until the new model serves (plus ``settle_s``) or ``timeout_s``."""
    population = ShiftedPopulation.for_bundle(bundle_dir, data)
    echo(f"shifted population: {', '.join(population.shifted)} moved by "
         f"{population.feature_shift_sd:g} sd, the target by {population.target_shift_sd:g} sd")  # fmt: skip
    traffic = Traffic(service, feedback_token, population)
    timeline = Timeline(prometheus, retrainer, service)
    traffic.start()
    deadline = time.monotonic() + timeout_s
    settled: float | None = None
    try:
        while time.monotonic() < deadline:
            for line in timeline.poll():
                echo(line)
            if "serving" in timeline.events and settled is None:
                settled = time.monotonic() + settle_s
            if settled is not None and time.monotonic() > settled:
                break
            time.sleep(1.0)
    finally:
        traffic.stop()
    return timeline, traffic


def main(
    service: str = "http://127.0.0.1:8000",
    prometheus: str = "http://127.0.0.1:9090",
    retrainer: str = "http://127.0.0.1:8090",
    feedback_token_file: Path = Path(".secrets/feedback_token"),
    bundle_dir: Path = Path("models/champion"),
    data: Path = Path("data/raw/dataset.csv"),
    timeout_s: float = 900.0,
    settle_s: float = 20.0,
) -> None:
    """Send shifted traffic with labels to a running stack and print the loop's timeline."""
    from rich.console import Console

    console = Console()
    token = feedback_token_file.read_text().strip()
    console.print(f"{'time':>9}  {'event':<18} detail")
    timeline, traffic = run_demo(
        service, prometheus, retrainer, token, bundle_dir, data, timeout_s, settle_s, console.print
    )
    if "serving" not in timeline.events:
        console.print(
            f"[red]the loop did not close within {timeout_s:g} s[/]: {sorted(timeline.events)}"
        )
    for version in traffic.errors:
        console.print(f"error on the shifted traffic, v{version}: {traffic.error_of(version):.4g}")
    console.print(f"requests: {traffic.sent}, failed: {traffic.failed}")


if __name__ == "__main__":
    import typer

    typer.run(main)
