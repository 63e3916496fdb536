"""Request decoding for /feedback: the true outcomes the next model learns from.

A label must have the target's type (the schema's dtype: ``5.0`` is no int, ``true`` no number,
``"0.01"`` no float), lie in the schema's range (regression) or among the model's classes
(classification), and be finite. Anything else is a 422 naming the item and the reason: a label
that the validate stage would refuse must not enter the log, where it would stop every retrain.
Decoded with msgspec, like /predict, and in a worker thread: a 2 MB body costs ~3 ms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field, create_model

from mloop.config import DatasetSchema
from service.codecs.records import RequestError, check_unique_keys, error, request_error

ID_MAX_LENGTH = 100
Label = float | int | bool
_TYPES: dict[str, type] = {"float": float, "int": int, "bool": bool}


class LabelCodec:
    """Decoder and checks of feedback bodies, built once per model bundle."""

    def __init__(
        self, schema: DatasetSchema, classes: Sequence[Any] | None, max_items: int
    ) -> None:
        spec = schema.columns[schema.target]
        self.task = schema.task
        self.dtype = spec.dtype
        self.max_items = max_items
        label_type = _TYPES[spec.dtype]
        if schema.task == "classification":
            allowed = list(classes) if classes is not None else spec.allowed
            self.low, self.high = -math.inf, math.inf
        else:
            allowed = spec.allowed
            self.low = -math.inf if spec.min is None else spec.min
            self.high = math.inf if spec.max is None else spec.max
        # as the target's type: a model trained on float labels lists 1.0 for the class 1
        self.allowed: list[Any] | None = (
            None if allowed is None else [_TYPES[spec.dtype](value) for value in allowed]
        )
        self._allowed_set = None if self.allowed is None else set(self.allowed)
        item: Any = msgspec.defstruct(
            "FeedbackItem",
            [
                ("id", Annotated[str, msgspec.Meta(min_length=1, max_length=ID_MAX_LENGTH)]),
                ("actual", label_type),
            ],
            forbid_unknown_fields=True,
        )
        body: Any = msgspec.defstruct(
            "Feedback",
            [("items", Annotated[list[item], msgspec.Meta(min_length=1, max_length=max_items)])],
            forbid_unknown_fields=True,
        )
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(body)

    def decode(self, body: bytes) -> list[tuple[str, Label]]:
        """The (prediction id, label) pairs of a body, in order; raises :class:`RequestError`."""
        try:
            decoded = self._decoder.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise request_error(exc) from None
        items = [(item.id, item.actual) for item in decoded.items]
        check_unique_keys(body, 1 + 2 * len(items), items=(["items"], len(items)))
        for index, (_, label) in enumerate(items):
            problem = self.problem(label)
            if problem is not None:
                raise error(422, ["items", index, "actual"], problem, "label_invalid")
        return items

    def problem(self, label: Label) -> str | None:
        """Why a label of the right type is refused, or None."""
        if self._allowed_set is not None:
            # bool is an int in Python: True == 1 would pass for class 1 (and 1 for True)
            if label not in self._allowed_set or not _same_kind(label, self.allowed):
                what = "classes" if self.task == "classification" else "allowed values"
                return f"label {label!r} is not one of the model's {what} {self.allowed}"
            return None
        if isinstance(label, float) and not math.isfinite(label):
            return "label is not finite"
        if not self.low <= label <= self.high:
            return f"label {label!r} is outside the target's range [{self.low:g}, {self.high:g}]"
        return None

    def openapi_request(self) -> type[BaseModel]:
        """A pydantic model with the same rules, for the OpenAPI document only."""
        actual: Any
        if self.allowed is not None and self.dtype != "float":
            actual = Literal[tuple(self.allowed)]
            constraints: dict[str, Any] = {}
        else:
            actual = _TYPES[self.dtype]
            finite = {"allow_inf_nan": False} if self.dtype == "float" else {}
            bounds = {
                key: value
                for key, value in (("ge", self.low), ("le", self.high))
                if math.isfinite(value)
            }
            constraints = {**finite, **bounds}
        item = create_model(
            "FeedbackItem",
            __config__=ConfigDict(extra="forbid", strict=True),
            id=(
                str,
                Field(
                    min_length=1,
                    max_length=ID_MAX_LENGTH,
                    description="prediction id returned by /predict",
                ),
            ),
            actual=(actual, Field(description=self._describe(), **constraints)),
        )
        return create_model(
            "FeedbackRequest",
            __config__=ConfigDict(extra="forbid"),
            items=(list[item], Field(min_length=1, max_length=self.max_items)),
        )

    def _describe(self) -> str:
        if self.allowed is not None:
            return f"the true outcome: one of {self.allowed}"
        return f"the true outcome ({self.dtype}, within [{self.low:g}, {self.high:g}])"


def _same_kind(label: Label, allowed: list[Any] | None) -> bool:
    """A bool label for bool classes, a number for numeric ones."""
    if not allowed:
        return True
    return isinstance(label, bool) == isinstance(allowed[0], bool)


class FeedbackResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    accepted: int = Field(description="labels stored now")
    unchanged: int = Field(description="labels sent again with the value already stored")
    unknown_ids: list[str] = Field(description="ids with no logged prediction: nothing stored")
    conflicting_ids: list[str] = Field(
        description="ids labelled before with another value: the first label stays (a label "
        "is never overwritten)"
    )


__all__ = ["FeedbackResponse", "Label", "LabelCodec", "RequestError"]
