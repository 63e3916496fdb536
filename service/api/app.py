"""HTTP routes. The work lives in service/runtime (hot path, housekeeping, feedback) and
service/model_store (reloads).

Run: ``python -m service`` (see service/__main__.py) or ``uvicorn --factory service.api.app:create_app``.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from mloop import __version__
from service.api import errors
from service.api import logs, page
from service.telemetry import metrics
from service.api.asgi import NOT_JSON, ASGIApp, BodyLimit, FastPredict, HttpMetrics, sends_json
from service.codecs.records import openapi_models
from service.api.http_protocol import configure as configure_protocol
from service.codecs.labels import FeedbackResponse
from service.runtime import Runtime
from service.settings import Settings

bearer = HTTPBearer(auto_error=False)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "detail": {
            "anyOf": [
                {"type": "string"},
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                            "msg": {"type": "string"},
                            "type": {"type": "string"},
                        },
                        "required": ["loc", "msg", "type"],
                    },
                },
            ]
        }
    },
    "required": ["detail"],
}


def error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_SCHEMA}}}


AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: error_response("missing or wrong bearer token"),
    403: error_response("disabled: no token is configured for this endpoint"),
}
BODY_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: error_response("malformed JSON"),
    413: error_response("body or batch too large"),
    415: error_response("the body is not sent as application/json"),
}


class ReloadResponse(BaseModel):
    reloaded: bool
    message: str
    model_version: str | None


class ReadyResponse(BaseModel):
    status: str = Field(description="ready")
    model_version: str
    prediction_log: str = Field(
        description="ok, down (the writer died: rows are dropped until it is restarted) or "
        "disabled; predictions are served either way"
    )


class NotReadyResponse(BaseModel):
    status: str = Field(description="not ready")
    reason: str = Field(description="what is missing (details are in the service's log only)")


def _predict_docs(runtime: Runtime) -> dict[str, Any]:
    """OpenAPI for /predict, generated from the served bundle's schema (requests never reach it)."""
    model = runtime.store.current
    if model is None:
        record_schema: dict[str, Any] = {"type": "object"}
        return {"requestBody": {"content": {"application/json": {"schema": record_schema}}}}
    record, single, batch = openapi_models(
        model.bundle.schema,
        with_bounds=runtime.settings.out_of_range == "reject",
        classes=model.bundle.classes,
    )
    record_schema = record.model_json_schema(by_alias=True)
    batch_schema = {
        "type": "array",
        "items": record_schema,
        "minItems": 1,
        "maxItems": runtime.settings.max_batch_rows,
    }
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"anyOf": [record_schema, batch_schema]}}},
        },
        "responses": {
            "200": {
                "description": "one prediction per record (an object for one record, columns for "
                "a list); a classifier adds each row's class probabilities, in the order of the "
                "classes listed by /model",
                "content": {
                    "application/json": {
                        "schema": {"anyOf": [single.model_json_schema(), batch.model_json_schema()]}
                    }
                },
            },
            **BODY_RESPONSES,
            "422": error_response(
                "a field is missing, unknown, repeated, of the wrong type, not finite or out of "
                "range"
            ),
            "503": error_response("no model loaded yet"),
        },
    }


def _feedback_docs(runtime: Runtime) -> dict[str, Any]:
    """OpenAPI for /feedback: the label's type and range come from the served bundle."""
    model = runtime.store.current
    body_schema: dict[str, Any] = (
        {"type": "object"}
        if model is None
        else inline_refs(model.labels.openapi_request().model_json_schema())
    )
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": body_schema}}}
    }


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema with its local ``$defs`` references replaced by the definitions (a route's
    ``openapi_extra`` cannot add components of its own)."""
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(definitions[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def _check_token(credentials: HTTPAuthorizationCredentials | None, tokens: list[str]) -> None:
    """401 unless the bearer token is one of ``tokens`` (constant time); 403 if there are none."""
    if not tokens:
        raise HTTPException(403, "endpoint disabled: no token is configured for it")
    given = (credentials.credentials if credentials else "").encode()
    if not any(secrets.compare_digest(given, token.encode()) for token in tokens):
        raise HTTPException(401, "invalid bearer token", headers={"WWW-Authenticate": "Bearer"})


def create_app(settings: Settings | None = None) -> FastPredict:
    settings = settings or Settings()
    configure_protocol(settings.request_timeout_s)
    logs.configure()
    logs.limit_peer_messages()
    runtime = Runtime(settings)
    runtime.store.reload()  # serve at once if a bundle is there; /ready says 503 until one is

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        runtime.start()
        yield
        runtime.stop()

    api = FastAPI(
        title="mloop prediction service",
        version=__version__,
        description="Predictions from the promoted champion, with metrics, drift and feedback.",
        lifespan=lifespan,
    )
    api.state.runtime = runtime
    errors.install(api)

    @api.post("/predict", openapi_extra=_predict_docs(runtime), tags=["predict"])
    async def predict(request: Request) -> Response:
        """One record (object) or a batch (list of objects), fields named as the dataset's features.

        Served by the ASGI fast path in front of FastAPI; this route only documents it.
        """
        status, payload = runtime.predict(await request.body())
        return Response(payload, status_code=status, media_type="application/json")

    @api.post(
        "/feedback",
        tags=["predict"],
        openapi_extra=_feedback_docs(runtime),
        response_model=FeedbackResponse,
        responses={
            **AUTH_RESPONSES,
            **BODY_RESPONSES,
            422: error_response("an item is malformed, or a label is not of the target's type, "
                                "range or classes"),
            503: error_response("no model loaded yet, or the prediction log is disabled"),
        },
    )  # fmt: skip
    async def feedback(request: Request, credentials: Credentials) -> Response:
        """The true outcome of earlier predictions (bearer token: MLOOP_FEEDBACK_TOKEN).

        A prediction keeps its first label: the same label again is ``unchanged``, another one a
        conflict (refused). Unknown ids are reported back.
        """
        _check_token(credentials, settings.resolved_feedback_tokens())
        if not sends_json(request.scope):
            return Response(NOT_JSON, status_code=415, media_type="application/json")
        body = await request.body()  # read whole, within the limit, by BodyLimit
        status, payload = await run_in_threadpool(runtime.feedback.answer, body)
        return Response(payload, status_code=status, media_type="application/json")

    @api.get("/health", tags=["ops"])
    def health() -> dict[str, str]:
        """The process is alive (it may not have a model yet: see /ready)."""
        return {"status": "ok"}

    @api.get(
        "/ready",
        tags=["ops"],
        response_model=ReadyResponse,
        responses={503: {"model": NotReadyResponse, "description": "no model loaded"}},
    )
    def ready() -> Any:
        """A model is loaded and answers a prediction; the state of the prediction log."""
        model = runtime.store.current
        if model is None:
            reason = (
                "the bundle was refused (the reason is in the service's log)"
                if runtime.store.last_error
                else "no model loaded"
            )
            answer = NotReadyResponse(status="not ready", reason=reason)
            return JSONResponse(answer.model_dump(), status_code=503)
        return ReadyResponse(
            status="ready", model_version=model.version, prediction_log=runtime.log_status()
        )

    @api.get("/model", tags=["ops"], responses={503: error_response("no model loaded")})
    def model_info() -> dict[str, Any]:
        """The champion being served: version, lineage (git commit, data hash) and metrics."""
        model = runtime.store.current
        if model is None:
            raise HTTPException(503, "no model loaded yet")
        meta = model.bundle.meta
        keys = (
            "registered_model", "version", "candidate", "kind", "serving", "dataset", "task",
            "target", "features", "metrics", "metrics_split", "latency", "trained_at",
            "registered_at", "promoted_at", "git_commit", "git_dirty", "data_md5", "run_id",
            "model_uri",
        )  # fmt: skip
        return {
            **{k: meta.get(k) for k in keys},
            "classes": model.bundle.classes,
            "batch_serving": model.bundle.batch_serving,
            "native_batch_min_rows": settings.native_batch_min_rows,
            "loaded_at": model.loaded_at,
        }

    @api.get(
        "/metrics",
        tags=["ops"],
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                         "description": "Prometheus text exposition format 0.0.4"}},
    )  # fmt: skip
    def prometheus_metrics() -> Response:
        """Prometheus text exposition (aggregated across workers in multiprocess mode)."""
        runtime.housekeeper.drain()
        payload, content_type = metrics.exposition()
        return Response(payload, media_type=content_type)

    @api.post(
        "/admin/reload",
        response_model=ReloadResponse,
        tags=["ops"],
        responses={**AUTH_RESPONSES, 413: error_response("a body was sent, and too large"),
                   409: error_response("bundle refused; the old model keeps serving")},
    )  # fmt: skip
    def reload(credentials: Credentials) -> ReloadResponse:
        """Load the newest champion bundle now (the service also watches it by itself)."""
        admin = settings.resolved_admin_token()
        _check_token(credentials, [admin] if admin else [])
        swapped, message = runtime.store.reload(force=True)
        current = runtime.store.current
        if not swapped:
            raise HTTPException(409, message)
        return ReloadResponse(
            reloaded=swapped, message=message, model_version=current.version if current else None
        )

    page.install(api, runtime)  # GET / and POST /, /predictions.csv: before the routes are taken
    routes = {str(getattr(route, "path")) for route in api.routes if hasattr(route, "path")}
    limited: ASGIApp = BodyLimit(api, settings.max_feedback_body_bytes)
    rest: ASGIApp = HttpMetrics(limited, routes) if settings.metrics_enabled else limited
    app = FastPredict(
        rest, runtime.predict, runtime.predict_in_worker, settings.max_body_bytes, runtime.samples
    )
    return app
