"""Validation errors of every FastAPI route: JSON-safe and bounded, whatever the input held."""

from __future__ import annotations

import math

import orjson
import pytest
from fastapi import FastAPI, Query
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict

from service.api import errors


class Strict(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)
    value: float


def app() -> FastAPI:
    api = FastAPI()
    errors.install(api)

    @api.post("/strict")
    def strict(body: Strict) -> dict[str, float]:
        return {"value": body.value}

    @api.get("/limit")
    def limit(n: int = Query(le=10)) -> dict[str, int]:
        return {"n": n}

    return api


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_input_is_a_422_not_a_500(token: str) -> None:
    with TestClient(app()) as client:
        response = client.post(
            "/strict", content=f'{{"value": {token}}}', headers={"content-type": "application/json"}
        )
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "value"] and detail["input"] in ("nan", "inf", "-inf")


def test_a_large_input_is_not_echoed_whole() -> None:
    with TestClient(app()) as client:
        response = client.post("/strict", json={"value": "x" * 1_000_000})
        query = client.get("/limit", params={"n": "9" * 5000})
    assert response.status_code == query.status_code == 422
    assert len(response.content) < 1_000 and len(query.content) < 1_000
    assert response.json()["detail"][0]["input"].endswith("(1000002 bytes)")


def test_json_safe_handles_nested_non_finite_values() -> None:
    value = {"a": [math.nan, 1.5, {"b": -math.inf}], "c": object()}
    safe = errors.json_safe(value)
    assert orjson.loads(orjson.dumps(safe)) == {"a": ["nan", 1.5, {"b": "-inf"}], "c": safe["c"]}
