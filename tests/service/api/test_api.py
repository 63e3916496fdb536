"""API contract against a real server process: happy paths, every bad-input case, auth."""

from __future__ import annotations

import json
import math

import pytest

from tests.helpers.bundles import diabetes_rows, valid_record
from tests.helpers.servers import ADMIN_TOKEN, FEEDBACK_AUTH, Server


def test_single_record_returns_one_prediction_with_id_and_version(server: Server) -> None:
    with server.client() as client:
        response = client.post("/predict", json=valid_record())
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "prediction", "model_version"}
    assert body["model_version"] == "1" and isinstance(body["prediction"], float)
    assert len(body["id"]) >= 16


def test_batch_returns_one_prediction_per_row_in_order(server: Server) -> None:
    X, _, features = diabetes_rows()
    rows = [dict(zip(features, map(float, row))) for row in X[:20]]
    with server.client() as client:
        batch = client.post("/predict", json=rows).json()
        singles = [client.post("/predict", json=row).json()["prediction"] for row in rows[:3]]
    assert len(batch["predictions"]) == len(batch["ids"]) == 20
    assert len(set(batch["ids"])) == 20
    assert batch["predictions"][:3] == pytest.approx(singles)


def bad(
    record_changes: dict[str, object] | None = None, drop: str | None = None
) -> dict[str, object]:
    record: dict[str, object] = dict(valid_record())
    if drop:
        record.pop(drop)
    record.update(record_changes or {})
    return record


@pytest.mark.parametrize(
    ("body", "status", "loc", "fragment"),
    [
        (bad(drop="bmi"), 422, ["body", "bmi"], "missing required field"),
        (bad({"colour": 1.0}), 422, ["body", "colour"], "unknown field"),
        (bad({"bmi": "high"}), 422, ["body", "bmi"], "Expected `float`, got `str`"),
        (bad({"bmi": True}), 422, ["body", "bmi"], "got `bool`"),
        (bad({"bmi": None}), 422, ["body", "bmi"], "got `null`"),
        (bad({"bmi": 3.0}), 422, ["body", "bmi"], "outside the allowed range"),
        ([], 422, ["body"], "empty batch"),
        ([bad(), bad({"s1": "x"})], 422, ["body", 1, "s1"], "Expected `float`"),
        ("just a string", 422, ["body"], "Expected `object | array`"),
    ],
    ids=[
        "missing", "extra", "wrong-type", "bool", "null", "out-of-range", "empty-batch",
        "bad-row-in-batch", "not-an-object",
    ],
)  # fmt: skip
def test_bad_input_is_a_4xx_naming_field_and_reason(
    server: Server, body: object, status: int, loc: list[object], fragment: str
) -> None:
    with server.client() as client:
        response = client.post("/predict", json=body)
    assert response.status_code == status, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == loc
    assert fragment in detail["msg"]


@pytest.mark.parametrize(
    ("raw", "status", "fragment"),
    [
        (b'{"age": 0.01,', 400, "malformed JSON"),
        (json.dumps(bad()).replace("0.0", "NaN", 1).encode(), 400, "malformed JSON"),
        (
            json.dumps(bad()).replace('"bmi": ', '"bmi": 1e999', 1).encode()[:0] + b"",
            400,
            "malformed",
        ),
    ],
    ids=["truncated", "nan-token", "empty-body"],
)
def test_malformed_json_is_a_400(server: Server, raw: bytes, status: int, fragment: str) -> None:
    with server.client() as client:
        response = client.post(
            "/predict", content=raw, headers={"content-type": "application/json"}
        )
    assert response.status_code == status, response.text
    assert fragment in response.json()["detail"][0]["msg"]


def test_infinite_value_is_a_422(server: Server) -> None:
    text = json.dumps(bad({"bmi": 0.5})).replace("0.5", "1e999")
    with server.client() as client:
        response = client.post(
            "/predict", content=text, headers={"content-type": "application/json"}
        )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "bmi"]


def test_oversized_batch_is_a_413(server: Server) -> None:
    with server.client() as client:  # the server under test allows 50 rows
        response = client.post("/predict", json=[valid_record()] * 51)
    assert response.status_code == 413
    assert "exceeds the maximum of 50" in response.json()["detail"][0]["msg"]


def test_ops_endpoints(server: Server) -> None:
    with server.client() as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/ready").json() == {
            "status": "ready", "model_version": "1", "prediction_log": "ok"
        }  # fmt: skip
        model = client.get("/model").json()
        assert model["version"] == "1" and model["registered_model"] == "mloop-diabetes"
        assert model["git_commit"] == "0" * 40 and model["data_md5"] == "0" * 32
        assert model["features"] == list(valid_record())
        assert "mloop_predictions_total" in client.get("/metrics").text


def test_reload_requires_the_bearer_token(server: Server) -> None:
    with server.client() as client:
        assert client.post("/admin/reload").status_code == 401
        wrong = client.post("/admin/reload", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = client.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert right.status_code == 200 and right.json()["model_version"] == "1"
    assert ADMIN_TOKEN not in server.output(), "the token must never reach the logs"


def test_feedback_accepts_known_ids_and_reports_unknown_ones(server: Server) -> None:
    with server.client(headers=FEEDBACK_AUTH) as client:
        answer = client.post("/predict", json=valid_record()).json()
        first = answer["id"]
        batch = client.post("/predict", json=[valid_record()] * 2).json()
        batch_ids = batch["ids"]
        response = client.post(
            "/feedback",
            json={"items": [{"id": first, "actual": 151.0}, {"id": batch_ids[1], "actual": 75.0},
                            {"id": "no-such-id", "actual": 1.0}]},
        )  # fmt: skip
        assert response.status_code == 200, response.text
        assert response.json() == {
            "accepted": 2, "unchanged": 0, "unknown_ids": ["no-such-id"], "conflicting_ids": []
        }  # fmt: skip
        assert client.post("/feedback", json={"items": []}).status_code == 422
        assert client.post("/feedback", json={"items": [{"id": first}]}).status_code == 422
        metrics = client.get("/metrics").text
    assert 'mloop_feedback_total{result="unknown_id"} 1.0' in metrics
    errors = [answer["prediction"] - 151.0, batch["predictions"][1] - 75.0]
    rmse = math.sqrt(sum(e * e for e in errors) / 2)
    (line,) = [x for x in metrics.splitlines() if x.startswith('mloop_live_error{metric="rmse"')]
    assert 'model_version="1"' in line and math.isclose(float(line.split()[-1]), rmse, rel_tol=1e-9)
    # the sample size and the served model's held-out figure, for the live-quality alert
    assert 'mloop_live_labelled_rows{model_version="1"} 2.0' in metrics
    with server.client() as client:
        holdout = client.get("/model").json()["metrics"]
    for name, value in holdout.items():
        (line,) = [
            x
            for x in metrics.splitlines()
            if x.startswith(f'mloop_model_holdout_metric{{metric="{name}"')
        ]
        assert math.isclose(float(line.split()[-1]), value, rel_tol=1e-9), name
