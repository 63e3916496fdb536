"""The retraining dashboard: alerts firing, retrains and their outcomes, time since the last promotion."""

from __future__ import annotations

from dashboards.panels import PanelSpec, Query

UID, TITLE = "mloop-retraining", "mloop / retraining"
DESCRIPTION = "The closed loop: which alerts fire, what the retrainer did about them, and when."

ROWS = [
    (
        "Alerts and requests",
        [
            PanelSpec(
                "Alerts firing",
                "Firing alerts by name (0: none).",
                "Drift and quality alerts start retrains; the others need a person: each alert's "
                "description says what to check.",
                [Query('sum by (alertname) (ALERTS{alertstate="firing"}) or on () vector(0)',
                       "{{alertname}}")],
            ),  # fmt: skip
            PanelSpec(
                "Retrain requests and decisions in the last hour",
                "Webhook calls asking for a retrain, retrains by outcome, and skipped requests by "
                "reason (running, cooldown, duplicate).",
                "Requests but no 'started': all skipped (see the reasons). Many 'cooldown': alerts "
                "keep firing after retrains, so the retrained model does not fix them; look at the "
                "gate's verdicts (GET /decisions on the retrainer).",
                [Query("sum(increase(mloop_retrainer_retrain_requests_total[1h]))", "requested"),
                 Query("sum by (outcome) (increase(mloop_retrainer_retrains_total[1h]))", "{{outcome}}"),
                 Query("sum by (reason) (increase(mloop_retrainer_skipped_total[1h]))",
                       "skipped: {{reason}}")],
            ),  # fmt: skip
        ],
    ),
    (
        "Retrains",
        [
            PanelSpec(
                "Retrain running",
                "1 while the retrainer runs a retrain.",
                "1 for longer than the retrain timeout: the pipeline hangs; the retrainer stops it "
                "at MLOOP_RETRAINER_TIMEOUT_S.",
                [Query("max(mloop_retrainer_running)", "running")],
                kind="stat", width=6,
            ),  # fmt: skip
            PanelSpec(
                "Median retrain duration (last day)",
                "Median time from a retrain's start to its end.",
                "Growing: the data grew (more production rows) or the candidate list is heavy; "
                "trim candidates in params.yaml.",
                [Query("histogram_quantile(0.5, sum by (le) "
                       "(rate(mloop_retrainer_retrain_duration_seconds_bucket[1d])))", "median")],
                unit="s", kind="stat", width=6,
            ),  # fmt: skip
            PanelSpec(
                "Since the served model was loaded",
                "Time since the served model was loaded: a promotion shows as a reset.",
                "Days while quality alerts fire: retrains run but the gate keeps the champion; "
                "check the retrainer's decisions and reports/promotion.json.",
                [Query("time() - max(mloop_model_loaded_timestamp_seconds)", "model age")],
                unit="s", kind="stat", width=6,
            ),  # fmt: skip
            PanelSpec(
                "Since a retrain last promoted",
                "Time since a retrain last promoted a new champion (-1: never since the retrainer "
                "started).",
                "Long while quality alerts fire: the gate keeps rejecting challengers; read the "
                "verdicts in the retrainer's GET /decisions and in reports/promotion.json.",
                [Query("time() - max(mloop_retrainer_last_promotion_timestamp_seconds > 0) "
                       "or on () vector(-1)", "since promotion")],
                unit="s", kind="stat", width=6,
            ),  # fmt: skip
            PanelSpec(
                "Since the last successful retrain",
                "Time since a retrain last succeeded (its gate may have kept the champion).",
                "Large while alerts fire: retrains fail (RetrainFailed); read the retrainer's log.",
                [Query("time() - max(mloop_retrainer_last_success_timestamp_seconds > 0) "
                       "or on () vector(-1)", "since success")],
                unit="s", kind="stat", width=6,
            ),  # fmt: skip
        ],
    ),
]
