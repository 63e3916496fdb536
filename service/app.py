"""HTTP routes. The work lives in runtime.py (hot path, feedback) and model_store.py (reloads).

Run: ``python -m service`` (see service/__main__.py) or ``uvicorn --factory service.app:create_app``.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from mloop import __version__
from service import metrics
from service.asgi import ASGIApp, FastPredict, HttpMetrics
from service.codec import openapi_models
from service.runtime import Runtime
from service.settings import Settings

bearer = HTTPBearer(auto_error=False)


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    id: str = Field(min_length=1, max_length=100, description="prediction id returned by /predict")
    actual: float = Field(description="the true outcome (class label for classification)")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[FeedbackItem] = Field(min_length=1, max_length=10_000)


class FeedbackResponse(BaseModel):
    accepted: int
    unknown_ids: list[str] = Field(description="ids with no logged prediction: nothing was stored")


class ReloadResponse(BaseModel):
    reloaded: bool
    message: str
    model_version: str | None


def _predict_docs(runtime: Runtime) -> dict[str, Any]:
    """OpenAPI for /predict, generated from the served bundle's schema (requests never reach it)."""
    model = runtime.store.current
    if model is None:
        record_schema: dict[str, Any] = {"type": "object"}
        return {"requestBody": {"content": {"application/json": {"schema": record_schema}}}}
    record, single, batch = openapi_models(
        model.bundle.schema, with_bounds=runtime.settings.out_of_range == "reject"
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
                "description": "one prediction per record (an object for one record, columns for a list)",
                "content": {
                    "application/json": {
                        "schema": {"anyOf": [single.model_json_schema(), batch.model_json_schema()]}
                    }
                },
            },
            "400": {"description": "malformed JSON"},
            "413": {"description": "batch or body too large"},
            "422": {
                "description": "a field is missing, unknown, of the wrong type, not finite or out of range"
            },
            "503": {"description": "no model loaded yet"},
        },
    }


def create_app(settings: Settings | None = None) -> FastPredict:
    settings = settings or Settings()
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

    @api.post("/predict", openapi_extra=_predict_docs(runtime), tags=["predict"])
    async def predict(request: Request) -> Response:
        """One record (object) or a batch (list of objects), fields named as the dataset's features.

        Served by the ASGI fast path in front of FastAPI; this route only documents it.
        """
        status, payload = runtime.predict(await request.body())
        return Response(payload, status_code=status, media_type="application/json")

    @api.post("/feedback", response_model=FeedbackResponse, tags=["predict"])
    def feedback(body: FeedbackRequest) -> FeedbackResponse:
        """The true outcome of earlier predictions; unknown ids are reported back."""
        try:
            items: list[tuple[str, float | int | str]] = [(i.id, i.actual) for i in body.items]
            accepted, unknown = runtime.feedback(items)
        except RuntimeError as exc:
            raise HTTPException(503, str(exc)) from None
        return FeedbackResponse(accepted=len(accepted), unknown_ids=unknown)

    @api.get("/health", tags=["ops"])
    def health() -> dict[str, str]:
        """The process is alive (it may not have a model yet: see /ready)."""
        return {"status": "ok"}

    @api.get("/ready", tags=["ops"], responses={503: {"description": "no model loaded"}})
    def ready(response: Response) -> dict[str, Any]:
        """A model is loaded and answers a prediction."""
        model = runtime.store.current
        if model is None:
            response.status_code = 503
            return {"status": "not ready", "reason": runtime.store.last_error or "no model loaded"}
        return {"status": "ready", "model_version": model.version}

    @api.get("/model", tags=["ops"], responses={503: {"description": "no model loaded"}})
    def model_info() -> dict[str, Any]:
        """The champion being served: version, lineage (git commit, data hash) and metrics."""
        model = runtime.store.current
        if model is None:
            raise HTTPException(503, "no model loaded yet")
        meta = model.bundle.meta
        keys = (
            "registered_model", "version", "candidate", "kind", "serving", "dataset", "task",
            "target", "features", "metrics", "latency", "trained_at", "promoted_at", "git_commit",
            "git_dirty", "data_md5", "run_id", "model_uri",
        )  # fmt: skip
        return {
            **{k: meta.get(k) for k in keys},
            "batch_serving": model.bundle.batch_serving,
            "native_batch_min_rows": settings.native_batch_min_rows,
            "loaded_at": model.loaded_at,
        }

    @api.get("/metrics", tags=["ops"], include_in_schema=True)
    def prometheus_metrics() -> Response:
        """Prometheus text exposition (aggregated across workers in multiprocess mode)."""
        runtime.drain()
        payload, content_type = metrics.exposition()
        return Response(payload, media_type=content_type)

    @api.post(
        "/admin/reload",
        response_model=ReloadResponse,
        tags=["ops"],
        responses={401: {"description": "bad or missing token"}, 403: {"description": "disabled"},
                   409: {"description": "bundle refused; the old model keeps serving"}},
    )  # fmt: skip
    def reload(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> ReloadResponse:
        """Load the newest champion bundle now (the service also watches it by itself)."""
        expected = settings.resolved_admin_token()
        if expected is None:
            raise HTTPException(403, "reload endpoint disabled: set MLOOP_ADMIN_TOKEN")
        given = credentials.credentials if credentials else ""
        if not secrets.compare_digest(given.encode(), expected.encode()):
            raise HTTPException(401, "invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
        swapped, message = runtime.store.reload(force=True)
        current = runtime.store.current
        if not swapped:
            raise HTTPException(409, message)
        return ReloadResponse(
            reloaded=swapped, message=message, model_version=current.version if current else None
        )

    routes = {str(getattr(route, "path")) for route in api.routes if hasattr(route, "path")}
    rest: ASGIApp = HttpMetrics(api, routes) if settings.metrics_enabled else api
    app = FastPredict(
        rest, runtime.predict, runtime.predict_in_worker, settings.max_body_bytes, runtime.samples
    )
    return app
