"""The retrainer's Prometheus metrics (the retraining dashboard and the RetrainFailed alert).

One registry per app instance, not the global one: a process serves one retrainer, and the
tests start several.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

NAMESPACE = "mloop_retrainer"
OUTCOMES = ("started", "succeeded", "failed")
SKIP_REASONS = ("running", "cooldown", "duplicate")


class RetrainerMetrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.webhooks = Counter(
            "webhooks", "Webhook calls by result: accepted, unauthorized, disabled, invalid, "
            "too_large.", ["result"], namespace=NAMESPACE, registry=registry,
        )  # fmt: skip
        self.alerts = Counter(
            "alerts", "Alerts received by name and status (firing, resolved).",
            ["alertname", "status"], namespace=NAMESPACE, registry=registry,
        )  # fmt: skip
        self.requests = Counter(
            "retrain_requests", "Webhook calls with at least one firing alert of the allowlist.",
            namespace=NAMESPACE, registry=registry,
        )  # fmt: skip
        self.retrains = Counter(
            "retrains", "Retrains by outcome: started, succeeded, failed.", ["outcome"],
            namespace=NAMESPACE, registry=registry,
        )  # fmt: skip
        self.skipped = Counter(
            "skipped", "Retrain requests not acted on, by reason: running, cooldown, duplicate.",
            ["reason"], namespace=NAMESPACE, registry=registry,
        )  # fmt: skip
        self.duration = Histogram(
            "retrain_duration_seconds", "Time from a retrain's start to its end (any outcome).",
            namespace=NAMESPACE, registry=registry,
            buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
        )  # fmt: skip
        self.last_success = Gauge(
            "last_success_timestamp_seconds", "When the last retrain succeeded (0: never).",
            namespace=NAMESPACE, registry=registry,
        )  # fmt: skip
        self.last_promotion = Gauge(
            "last_promotion_timestamp_seconds",
            "When a retrain last promoted a new champion (0: never).",
            namespace=NAMESPACE, registry=registry,
        )  # fmt: skip
        self.running = Gauge(
            "running", "1 while a retrain runs.", namespace=NAMESPACE, registry=registry
        )
        for outcome in OUTCOMES:  # every series exists from the start (rates need a zero)
            self.retrains.labels(outcome)
        for reason in SKIP_REASONS:
            self.skipped.labels(reason)
