"""What the prediction page reads and writes: form fields from the bundle's schema, wire values
from form text, and CSV files in and out (:mod:`service.api.page` has the routes).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any


import orjson

from mloop.config import ColumnSpec
from service.model_store.store import LoadedModel

_OMIT = object()  # an empty value of a feature that takes no null: left out, as by a JSON client


@dataclass(frozen=True)
class FieldView:
    """One input of the form: a feature, the values it takes, its typical training value."""

    index: int
    name: str
    description: str
    options: list[str]  # a select's choices (a category, or a list of allowed numbers); else []
    rule: str  # the allowed values, in words
    typical: str  # the value the form is prefilled with
    nullable: bool  # takes an empty value (a missing one)


def number_text(value: float) -> str:
    """A number as the form shows it: whole numbers without a point, others to 6 digits."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def _options(spec: ColumnSpec) -> list[str]:
    if spec.dtype == "category":
        return spec.categories
    return [number_text(float(v)) for v in spec.allowed or ()]


def _median(stats: dict[str, Any]) -> float:
    """The training median from the reference's quantile bins: the first bin edge at or past half
    of the rows (the middle edge itself for an even number of bins); else the mean."""
    cumulative = 0.0
    for edge, share in zip(stats.get("bin_edges") or (), stats.get("proportions") or ()):
        cumulative += float(share)
        if cumulative >= 0.5 - 1e-9:
            return float(edge)
    return float(stats.get("mean", 0.0))


def typical_value(spec: ColumnSpec, stats: dict[str, Any] | None) -> str:
    """The value a feature's input is prefilled with: the most frequent training value of a feature
    with few values (categories included), else the training median; the middle of the allowed
    range without reference statistics. Kept inside the allowed range; '' when nothing is known."""
    options = _options(spec)
    value: float | None
    if stats is not None and stats.get("kind") == "categorical" and stats.get("proportions"):
        shares = [float(share) for share in stats["proportions"]]
        code = float(stats["categories"][shares.index(max(shares))])
        if spec.dtype == "category":
            return options[int(code)] if 0 <= int(code) < len(options) else options[0]
        value = code
    elif stats is not None and stats.get("kind") == "numeric":
        value = _median(stats)
    elif options:
        return options[0]
    elif spec.min is not None and spec.max is not None:
        value = (spec.min + spec.max) / 2
    else:
        value = spec.min if spec.min is not None else spec.max
    if value is None or not math.isfinite(value):
        return ""
    if spec.min is not None:
        value = max(value, spec.min)
    if spec.max is not None:
        value = min(value, spec.max)
    if spec.dtype in ("int", "bool"):
        value = float(round(value))
    return number_text(value)


def rule_text(spec: ColumnSpec) -> str:
    """The values a feature takes, in words (the same rules the API checks)."""
    options = _options(spec)
    if options:
        text = "one of " + ", ".join(options)
    elif spec.min is not None and spec.max is not None:
        text = f"from {number_text(spec.min)} to {number_text(spec.max)}"
    elif spec.min is not None:
        text = f"at least {number_text(spec.min)}"
    elif spec.max is not None:
        text = f"at most {number_text(spec.max)}"
    else:
        text = "any number"
    return text + ("; may be left empty" if spec.nullable else "")


def field_views(model: LoadedModel) -> list[FieldView]:
    """The form's inputs, in the model's feature order."""
    columns = model.bundle.schema.columns
    stats = model.bundle.reference.get("features", {})
    return [
        FieldView(
            index, name, columns[name].description, _options(columns[name]),
            rule_text(columns[name]), typical_value(columns[name], stats.get(name)),
            columns[name].nullable,
        )
        for index, name in enumerate(model.bundle.schema.features)
    ]  # fmt: skip


def wire_value(spec: ColumnSpec | None, text: str) -> Any:
    """A form field or CSV cell as /predict takes it: the text of a category, a number otherwise.

    Empty: null if the feature takes null (or is no feature: the API names it unknown), else left
    out (the API names it missing). Text that is no finite number is sent as text, for the API to
    name its type: the page adds no rule of its own.
    """
    text = text.strip()
    if not text:
        return None if spec is None or spec.nullable else _OMIT
    if spec is not None and spec.dtype == "category":
        return text
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def record_json(pairs: list[tuple[str, str]], model: LoadedModel) -> bytes:
    """One /predict record as JSON, from (name, text) pairs in their order. A name that repeats
    stays repeated, so the API's own check answers it (a dict would keep one value silently)."""
    columns = model.bundle.schema.columns
    members = [
        orjson.dumps(name) + b":" + orjson.dumps(value)
        for name, value in ((name, wire_value(columns.get(name), text)) for name, text in pairs)
        if value is not _OMIT
    ]
    return b"{" + b",".join(members) + b"}"


def _repeated(names: list[str]) -> str | None:
    return next((name for name, count in Counter(names).items() if count > 1), None)


class CsvProblem(Exception):
    """An upload that is no CSV of records (not text, no header, ragged rows): a 400."""


def read_csv(data: bytes) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, rows and each row's line number of a comma-separated UTF-8 file; blank lines are
    skipped. Raises :class:`CsvProblem` for what cannot be read as records."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CsvProblem("the file is not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader, [])]
        if not header:
            raise CsvProblem("the file is empty: it needs a header row of the feature names")
        repeated = _repeated(header)
        if repeated is not None:
            raise CsvProblem(f"column {repeated!r} appears twice in the header")
        rows, lines = [], []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise CsvProblem(
                    f"line {reader.line_num}: {len(row)} values, the header has {len(header)} "
                    "columns"
                )
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise CsvProblem(f"line {reader.line_num}: not valid CSV ({exc})") from None
    return header, rows, lines


def csv_message(item: dict[str, Any], lines: list[int]) -> str:
    """One 422 ``detail`` item of a batch, as a line of the file: ``loc`` is body, row, column."""
    loc = [part for part in item.get("loc", []) if part != "body"]
    where = []
    if loc and isinstance(loc[0], int):
        row = loc.pop(0)
        where.append(f"line {lines[row]}" if 0 <= row < len(lines) else f"row {row + 1}")
    if loc:
        where.append(f"column {loc[0]}")
    return f"{', '.join(where)}: {item.get('msg', '')}" if where else str(item.get("msg", ""))


def predictions_csv(
    header: list[str], rows: list[list[str]], answer: dict[str, Any], classes: list[Any] | None
) -> str:
    """The uploaded rows as they came, then each row's prediction, its class probabilities (a
    classifier's, one column per class) and its prediction id (the id /feedback takes)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    proba_columns = [f"probability_{label}" for label in classes or ()]
    writer.writerow([*header, "prediction", *proba_columns, "prediction_id"])
    probabilities = answer.get("probabilities") or [[] for _ in rows]
    for row, prediction, proba, ident in zip(
        rows, answer["predictions"], probabilities, answer["ids"]
    ):
        writer.writerow([*row, prediction, *proba, ident])
    return out.getvalue()


def _download_name(version: str) -> str:
    return f"predictions-v{re.sub(r'[^A-Za-z0-9._-]', '_', version)}.csv"
