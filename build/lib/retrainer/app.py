"""The retrainer's HTTP API: ``POST /alerts`` (Alertmanager's webhook), ``GET /decisions``,
``GET /metrics``, ``GET /health``."""

from __future__ import annotations

import secrets
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from retrainer.backends import Backend, make_backend
from retrainer.coordinator import Coordinator
from retrainer.payload import WebhookPayload
from retrainer.settings import Settings


def _problem(status: int, msg: str, kind: str, loc: list[Any] | None = None) -> JSONResponse:
    return JSONResponse(
        {"detail": [{"loc": ["body", *(loc or [])], "msg": msg, "type": kind}]}, status_code=status
    )


async def _read_capped(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it exceeds ``limit`` bytes (a declared length is checked first)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(settings: Settings | None = None, backend: Backend | None = None) -> FastAPI:
    settings = settings or Settings()
    token = settings.webhook_token()
    coordinator = Coordinator(
        backend or make_backend(settings),
        settings.alerts,
        settings.cooldown_s,
        decisions_kept=settings.decisions_kept,
    )
    metrics = coordinator.metrics
    app = FastAPI(title="mloop retrainer", version="1", docs_url="/docs", redoc_url=None)
    app.state.coordinator = coordinator

    @app.post("/alerts", status_code=202)
    async def alerts(request: Request) -> Response:
        """Alertmanager's webhook (payload version 4; bearer token: MLOOP_RETRAINER_TOKEN)."""
        if token is None:
            metrics.webhooks.labels("disabled").inc()
            return _problem(
                403, "no MLOOP_RETRAINER_TOKEN configured: the webhook is off", "disabled"
            )
        given = request.headers.get("authorization", "")
        scheme, _, credentials = given.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            credentials.encode(), token.encode()
        ):
            metrics.webhooks.labels("unauthorized").inc()
            return JSONResponse(
                {"detail": "missing or wrong bearer token"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        body = await _read_capped(request, settings.max_body_bytes)
        if body is None:
            metrics.webhooks.labels("too_large").inc()
            return _problem(413, f"body over {settings.max_body_bytes} bytes", "too_large")
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            metrics.webhooks.labels("invalid").inc()
            return _problem(400, f"malformed JSON: {exc}", "json_invalid")
        try:
            payload = WebhookPayload.model_validate(document)
        except ValidationError as exc:
            metrics.webhooks.labels("invalid").inc()
            first = exc.errors(include_input=False, include_url=False)[0]
            return _problem(422, str(first["msg"]), str(first["type"]), list(first["loc"]))
        metrics.webhooks.labels("accepted").inc()
        decision = coordinator.submit(payload)
        return JSONResponse(decision.as_dict(), status_code=202)

    @app.get("/decisions")
    def decisions(limit: int = 50) -> list[dict[str, Any]]:
        """The latest decisions, newest first."""
        kept = list(coordinator.decisions)[::-1]
        return [d.as_dict() for d in kept[: max(limit, 0)]]

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "backend": coordinator.backend.name, "running": coordinator.running}

    return app
