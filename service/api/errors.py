"""Error answers of the FastAPI routes: always valid JSON, never larger than a few KB.

FastAPI's own handler for request validation errors echoes each offending input as it came: a
non-finite number then fails to serialise (a 500 instead of a 422), and an 18 MB input is sent
back whole. This one makes every value JSON-safe (non-finite numbers as text) and echoes at most
``MAX_ECHO_CHARS`` of an input, for every route.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

MAX_ECHO_CHARS = 200
MAX_ERRORS = 20
_MAX_ITEMS = 20  # of a list or object in an echoed input


def json_safe(value: Any, depth: int = 0) -> Any:
    """``value`` with non-finite floats as text, containers cut to a few items, others as text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth >= 3:
        return "…"
    if isinstance(value, dict):
        items = list(value.items())[:_MAX_ITEMS]
        return {str(key): json_safe(item, depth + 1) for key, item in items}
    if isinstance(value, (list, tuple)):
        return [json_safe(item, depth + 1) for item in value[:_MAX_ITEMS]]
    return str(value)


def echo(value: Any) -> Any:
    """An input as echoed in an error: JSON-safe, and a short text when it is long."""
    safe = json_safe(value)
    encoded = orjson.dumps(safe)
    if len(encoded) <= MAX_ECHO_CHARS:
        return safe
    return encoded[:MAX_ECHO_CHARS].decode(errors="ignore") + f"… ({len(encoded)} bytes)"


def validation_detail(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """FastAPI-style ``detail`` items (loc, msg, type, input, ctx) that always serialise."""
    detail = []
    for item in list(errors)[:MAX_ERRORS]:
        entry: dict[str, Any] = {
            "loc": [part if isinstance(part, (int, str)) else str(part) for part in item["loc"]],
            "msg": str(item["msg"]),
            "type": str(item["type"]),
        }
        if "input" in item:
            entry["input"] = echo(item["input"])
        if item.get("ctx"):
            entry["ctx"] = {str(k): echo(v) for k, v in dict(item["ctx"]).items()}
        detail.append(entry)
    return detail


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    payload = orjson.dumps({"detail": validation_detail(exc.errors())})
    return Response(payload, status_code=422, media_type="application/json")


def install(api: FastAPI) -> None:
    api.add_exception_handler(RequestValidationError, _validation_error)
