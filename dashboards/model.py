"""The model dashboard: what it predicts, drift per feature, live error against held-out error, versions."""

from __future__ import annotations

from dashboards.panels import PanelSpec, Query

UID, TITLE = "mloop-model", "mloop / model"
DESCRIPTION = "The served model: is its input still the training population, is it still as good?"

ROWS = [
    (
        "Data drift",
        [
            PanelSpec(
                "Drift per feature (PSI)",
                "Population stability index of the last MLOOP_DRIFT_WINDOW inputs against the "
                "training reference, per feature: < 0.1 stable, 0.1-0.25 moderate, > 0.25 shifted.",
                "Above 0.25 for 10 minutes on a full window asks for a retrain (FeatureDrift). Look "
                "at the Evidently report (python -m service.prediction_log drift-report) for what "
                "moved; a broken upstream feed (units, a constant) needs a fix, not a retrain.",
                [Query("max by (feature) (mloop_feature_drift_psi)", "{{feature}}")],
            ),  # fmt: skip
            PanelSpec(
                "Largest PSI and rows in the drift window",
                "The most drifted feature's PSI, and how many rows the window holds.",
                "Fewer than 500 rows: PSI is noise and no drift alert fires; wait for traffic.",
                [Query("max(instance:mloop_feature_drift_psi:max)", "max PSI"),
                 Query("max(mloop_drift_window_rows)", "rows")],
                kind="stat", width=6,
            ),  # fmt: skip
            PanelSpec(
                "Inputs out of range per second",
                "Values outside the schema's range, per feature (counted whatever the policy).",
                "A steady rate on one feature: a client or feed sends another unit or a sentinel.",
                [Query("sum by (feature) (rate(mloop_feature_out_of_range_total[5m]))", "{{feature}}")],
                width=6,
            ),  # fmt: skip
        ],
    ),
    (
        "Quality",
        [
            PanelSpec(
                "Live error against held-out error",
                "The served version's error on labelled production rows (feedback window) next to "
                "its error on its own test split, per metric.",
                "Live RMSE over 1.25x held-out (or live error rate over 1.25x held-out) on 100+ "
                "labels asks for a retrain (LiveErrorAboveHoldout, LiveErrorRateAboveHoldout). Check "
                "the drift panels: a shifted population explains it; a label pipeline bug too.",
                [Query("max by (metric) (model:mloop_live_error:served)", "live {{metric}}"),
                 Query("max by (metric) (mloop_model_holdout_metric)", "held-out {{metric}}")],
            ),  # fmt: skip
            PanelSpec(
                "Labels in the feedback window",
                "Labelled predictions of the served version in the feedback window.",
                "Under 100: the live error is not trusted by the alerts; check that labels arrive "
                "(POST /feedback, mloop_feedback_total).",
                [Query("max(model:mloop_live_labelled_rows:served)", "labels"),
                 Query("sum by (result) (rate(mloop_feedback_total[5m]))", "feedback {{result}}")],
            ),  # fmt: skip
        ],
    ),
    (
        "Predictions and versions",
        [
            PanelSpec(
                "Predicted values (regression)",
                "Predicted rows per second in each bucket of the training target's quantiles.",
                "Mass moving to the outer buckets: the population or the model changed; compare "
                "with drift and with the version timeline.",
                [Query("sum by (le) (rate(mloop_predicted_value_bucket[5m]))", "<= {{le}}")],
                unit="rowsps",
            ),  # fmt: skip
            PanelSpec(
                "Predicted classes (classification)",
                "Predicted rows per second by class.",
                "One class taking over: check drift and the label feed before trusting it.",
                [Query("sum by (predicted_class) (rate(mloop_predicted_class_total[5m]))",
                       "class {{predicted_class}}")],
                unit="rowsps",
            ),  # fmt: skip
            PanelSpec(
                "Model version served",
                "Which registered version each instance serves (mloop_model_info).",
                "Several versions for long: a worker failed to reload; see the reloads panel.",
                [Query("max by (version) (mloop_model_info)", "v{{version}}")],
                kind="state",
            ),  # fmt: skip
            PanelSpec(
                "Reloads in the last hour",
                "Model reload attempts by result (a failure keeps the previous model serving).",
                "Any failure (ModelReloadFailing): the service's log names the bundle and why.",
                [Query("sum by (result) (increase(mloop_model_reloads_total[1h]))", "{{result}}")],
            ),  # fmt: skip
        ],
    ),
]
