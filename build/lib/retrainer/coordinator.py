"""Which alerts start a retrain: at most one at a time, none during a cooldown, none twice for one alert.

Every webhook call gets a decision (started, or skipped/ignored and why), kept for ``GET /decisions``,
logged and counted; a retrain's end is a decision too (succeeded or failed, with the backend's detail).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from retrainer.backends import Backend, Outcome
from retrainer.metrics import RetrainerMetrics
from retrainer.payload import Alert, WebhookPayload

log = logging.getLogger("retrainer")


@dataclass(frozen=True)
class Decision:
    at: float
    action: str  # started | skipped | ignored | succeeded | failed
    reason: str
    group_key: str = ""
    alerts: list[str] = field(default_factory=list)
    detail: str = ""
    link: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Coordinator:
    """Turns webhook payloads into retrains on ``backend``, one at a time.

    An alert already acted on (its fingerprint and start time: one firing episode) is a duplicate
    for ``dedup_window_s``, so Alertmanager's repeats and an HA pair's copies start nothing.
    """

    def __init__(
        self,
        backend: Backend,
        allowlist: tuple[str, ...],
        cooldown_s: float,
        decisions_kept: int = 500,
        dedup_window_s: float = 86_400.0,
        clock: Callable[[], float] = time.time,
        metrics: RetrainerMetrics | None = None,
    ) -> None:
        self.backend = backend
        self.metrics = metrics or RetrainerMetrics()
        self.allowlist = frozenset(allowlist)
        self.cooldown_s = cooldown_s
        self.dedup_window_s = dedup_window_s
        self.clock = clock
        self.decisions: deque[Decision] = deque(maxlen=decisions_kept)
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._cooldown_until = 0.0
        self._seen: dict[tuple[str, str], float] = {}

    @property
    def running(self) -> bool:
        return not self._idle.is_set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no retrain runs (True), or until ``timeout`` (False)."""
        return self._idle.wait(timeout)

    def submit(self, payload: WebhookPayload) -> Decision:
        for alert in payload.alerts:
            self.metrics.alerts.labels(alert.name or "<none>", alert.status).inc()
        firing = [a for a in payload.alerts if a.status == "firing" and a.name in self.allowlist]
        names = sorted({a.name for a in firing})
        if not firing:
            return self._record("ignored", "no firing alert of the allowlist", payload.groupKey, [])
        self.metrics.requests.inc()
        now = self.clock()
        with self._lock:
            self._seen = {k: t for k, t in self._seen.items() if now - t < self.dedup_window_s}
            if all(a.identity in self._seen for a in firing):
                return self._skip("duplicate", "every alert was acted on already", payload, names)
            if self.running:
                self._remember(firing, now)  # the retrain under way answers these alerts too
                return self._skip("running", "a retrain is running", payload, names)
            if now < self._cooldown_until:
                left = self._cooldown_until - now
                return self._skip("cooldown", f"cooldown: {left:.0f} s left", payload, names)
            self._remember(firing, now)
            self._idle.clear()
            self.metrics.retrains.labels("started").inc()
            self.metrics.running.set(1)
            decision = self._record("started", _reason(firing), payload.groupKey, names)
        threading.Thread(
            target=self._retrain, args=(decision,), name="retrain", daemon=True
        ).start()
        return decision

    def _retrain(self, started: Decision) -> None:
        began = time.monotonic()
        try:
            outcome = self.backend.run(started.reason)
        except (
            Exception
        ) as exc:  # noqa: BLE001 - a backend bug is a failed retrain, not a dead thread
            log.exception("retrain backend raised")
            outcome = Outcome(False, f"{type(exc).__name__}: {exc}")
        seconds = time.monotonic() - began
        self.metrics.duration.observe(seconds)
        now = self.clock()
        if outcome.ok:
            self.metrics.retrains.labels("succeeded").inc()
            self.metrics.last_success.set(now)
            if outcome.promoted:
                self.metrics.last_promotion.set(now)
        else:
            self.metrics.retrains.labels("failed").inc()
        with self._lock:
            self._cooldown_until = now + self.cooldown_s
            self._record(
                "succeeded" if outcome.ok else "failed",
                f"after {seconds:.1f} s on {self.backend.name}",
                started.group_key,
                started.alerts,
                detail=outcome.detail,
                link=outcome.link,
            )
            self.metrics.running.set(0)
            self._idle.set()

    def _remember(self, alerts: list[Alert], now: float) -> None:
        for alert in alerts:
            self._seen.setdefault(alert.identity, now)

    def _skip(self, reason: str, text: str, payload: WebhookPayload, names: list[str]) -> Decision:
        self.metrics.skipped.labels(reason).inc()
        return self._record("skipped", text, payload.groupKey, names)

    def _record(
        self,
        action: str,
        reason: str,
        group_key: str,
        names: list[str],
        detail: str = "",
        link: str | None = None,
    ) -> Decision:
        decision = Decision(self.clock(), action, reason, group_key, names, detail, link)
        self.decisions.append(decision)
        log.info(
            "%s: %s%s%s", action, reason, f" [{', '.join(names)}]" if names else "",
            f" - {detail}" if detail else "",
        )  # fmt: skip
        return decision


def _reason(alerts: list[Alert]) -> str:
    parts = []
    for alert in alerts[:5]:
        detail = alert.labels.get("feature") or alert.labels.get("metric") or ""
        parts.append(f"{alert.name}({detail})" if detail else alert.name)
    more = f" and {len(alerts) - 5} more" if len(alerts) > 5 else ""
    return "alerts: " + ", ".join(parts) + more
