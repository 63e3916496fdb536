"""The prediction page: ``GET /`` a form built from the served bundle's schema, ``POST /`` its
prediction, ``POST /predictions.csv`` the predictions of an uploaded CSV file, as a download.

Every prediction goes through :meth:`Runtime.predict`, the code behind ``POST /predict``, with the
JSON body /predict takes (an object for the form, a list for the CSV): the page answers what the API
answers and shows the API's own messages for bad input, next to their field (form) or as a list
(CSV). Server-rendered (Jinja2, one small script), no state changed, so no token, like /predict.
Uploads share the body limit of every route but /predict (``MLOOP_MAX_FEEDBACK_BODY_BYTES``): the
page refuses a larger file before sending it, and the service answers 413 if it is sent anyway.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.datastructures import UploadFile

from service.model_store.store import LoadedModel
from service.runtime import Runtime
from service.api.page_inputs import (
    CsvProblem,
    _download_name,
    csv_message,
    field_views,
    number_text,
    predictions_csv,
    read_csv,
    record_json,
)

TEMPLATES = Path(__file__).with_name("templates")
PAGE_ROUTE = "/"
CSV_ROUTE = "/predictions.csv"
# Room left in the body limit for the multipart envelope around an uploaded file (boundary lines,
# part headers): the page refuses files larger than the limit less this.
ENVELOPE_BYTES = 1024

_templates = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


async def _predict(runtime: Runtime, body: bytes) -> tuple[int, dict[str, Any]]:
    """``body`` through the code of ``POST /predict``, in a worker thread; its status and answer."""
    status, answer = await run_in_threadpool(runtime.predict, body, in_worker=True)
    decoded: dict[str, Any] = orjson.loads(answer)
    return status, decoded


def _result(answer: dict[str, Any], classes: list[Any] | None) -> dict[str, Any]:
    """A single prediction's answer, as the page shows it."""
    prediction = answer["prediction"]
    shown = number_text(prediction) if isinstance(prediction, float) else str(prediction)
    probabilities = [
        {
            "label": str(label),
            "raw": repr(float(share)),
            "percent": 100 * float(share),
            "chosen": label == prediction,
        }
        for label, share in zip(classes or (), answer.get("probabilities") or ())
    ]
    return {
        "prediction": shown,
        "raw": orjson.dumps(prediction).decode(),
        "id": answer["id"],
        "model_version": answer["model_version"],
        "probabilities": probabilities,
    }


class Page:
    """Renders the page for the model being served when the request came."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.csv_limit = limit = settings.max_feedback_body_bytes - ENVELOPE_BYTES
        self.csv_limit_text = f"{limit / 2**20:.1f} MB" if limit >= 2**20 else f"{limit // 1024} KB"
        self.max_rows = settings.max_batch_rows
        self.enforced = settings.out_of_range == "reject"

    def show(self) -> HTMLResponse:
        """The form, prefilled with typical training values."""
        return self.render(self.runtime.store.current)

    def render(
        self,
        model: LoadedModel | None,
        status: int = 200,
        values: dict[str, str] | None = None,
        result: dict[str, Any] | None = None,
        field_errors: dict[str, list[str]] | None = None,
        errors: list[str] | None = None,
        csv_errors: list[str] | None = None,
    ) -> HTMLResponse:
        """The page for ``model`` with a request's outcome (values typed, a result, errors), or a
        503 page without a model; fields with no typed value show their typical value."""
        if model is None:
            html = _templates.get_template("no_model.html").render()
            return HTMLResponse(html, status_code=503)
        bundle = model.bundle
        schema = bundle.schema
        fields = field_views(model)
        typical = {field.name: field.typical for field in fields}
        example = io.StringIO()  # the template file: the header and a row of typical values
        csv.writer(example, lineterminator="\n").writerows([list(typical), list(typical.values())])
        html = _templates.get_template("page.html").render(
            meta=bundle.meta,
            schema=schema,
            target_description=schema.columns[schema.target].description,
            version=model.version,
            classes=bundle.classes,
            fields=fields,
            values={**typical, **(values or {})},
            result=result,
            field_errors=field_errors or {},
            errors=errors or [],
            csv_errors=csv_errors or [],
            csv_limit=self.csv_limit,
            csv_limit_text=self.csv_limit_text,
            max_rows=self.max_rows,
            enforced=self.enforced,
            template_csv="data:text/csv;charset=utf-8," + quote(example.getvalue()),
        )
        return HTMLResponse(html, status_code=status)

    async def predict_form(self, request: Request) -> HTMLResponse:
        """One record from the form's fields, predicted; the API's errors next to their field."""
        model = self.runtime.store.current
        if model is None:
            return self.render(None)
        async with request.form() as form:
            pairs = [(name, value) for name, value in form.multi_items() if isinstance(value, str)]
        values = dict(pairs)
        status, answer = await _predict(self.runtime, record_json(pairs, model))
        model = self.runtime.store.current  # the one that answered, if it was swapped meanwhile
        if status == 200 and model is not None:
            result = _result(answer, model.bundle.classes)
            return self.render(model, values=values, result=result)
        names = set(model.codec.features) if model else set()
        field_errors: dict[str, list[str]] = {}
        errors = []
        for item in answer.get("detail", []):
            loc = [part for part in item.get("loc", []) if part != "body"]
            msg = str(item.get("msg", ""))
            if loc and loc[0] in names:
                field_errors.setdefault(str(loc[0]), []).append(msg)
            else:
                errors.append(f"{loc[0]}: {msg}" if loc else msg)
        return self.render(model, status, values, None, field_errors, errors)

    async def predict_csv(self, request: Request) -> Response:
        """The uploaded file's rows, predicted as one batch: a CSV download, or the page with the
        API's errors (and the file's own problems) as a list."""
        model = self.runtime.store.current
        if model is None:
            return self.render(None)
        async with request.form(max_fields=10) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile) or not upload.filename:
                return self.render(model, 400, csv_errors=["choose a CSV file to upload"])
            data = await upload.read()
        try:
            header, rows, lines = read_csv(data)
        except CsvProblem as exc:
            return self.render(model, 400, csv_errors=[str(exc)])
        records = [record_json(list(zip(header, row)), model) for row in rows]
        status, answer = await _predict(self.runtime, b"[" + b",".join(records) + b"]")
        if status != 200:
            messages = [csv_message(item, lines) for item in answer.get("detail", [])]
            return self.render(self.runtime.store.current, status, csv_errors=messages)
        answered = self.runtime.store.current or model
        text = predictions_csv(header, rows, answer, answered.bundle.classes)
        name = _download_name(str(answer["model_version"]))
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )


def install(api: FastAPI, runtime: Runtime) -> None:
    """Add the page's routes to ``api`` (out of the OpenAPI document: they are for people).

    Call before the set of routes for the HTTP metrics is taken, so they are counted by name.
    """
    page = Page(runtime)
    hidden: dict[str, Any] = {"include_in_schema": False, "response_class": HTMLResponse}
    api.add_api_route(PAGE_ROUTE, page.show, methods=["GET"], **hidden)
    api.add_api_route(PAGE_ROUTE, page.predict_form, methods=["POST"], **hidden)
    api.add_api_route(CSV_ROUTE, page.predict_csv, methods=["POST"], include_in_schema=False)
