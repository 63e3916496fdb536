"""The /feedback decoder on its own: a label has the target's type and lies in its range or classes."""

from __future__ import annotations

import pytest

from mloop.config import load_schema
from service.codecs.labels import LabelCodec
from service.codecs.records import RequestError
from tests.helpers.paths import BREAST_CANCER_SCHEMA, DIABETES_SCHEMA, IRIS_SCHEMA


def body(actual: str, item_id: str = "a") -> bytes:
    return f'{{"items":[{{"id":"{item_id}","actual":{actual}}}]}}'.encode()


def refused(codec: LabelCodec, raw: bytes) -> tuple[int, list[object], str]:
    with pytest.raises(RequestError) as caught:
        codec.decode(raw)
    detail = caught.value.detail[0]
    return caught.value.status, detail["loc"], detail["msg"]


@pytest.fixture(scope="module")
def regression() -> LabelCodec:
    return LabelCodec(load_schema(DIABETES_SCHEMA), None, max_items=3)


@pytest.fixture(scope="module")
def classes() -> LabelCodec:
    return LabelCodec(load_schema(IRIS_SCHEMA), [0, 1, 2], max_items=3)


def test_labels_of_the_targets_type_and_range_are_taken(
    regression: LabelCodec, classes: LabelCodec
) -> None:
    assert regression.decode(body("151")) == [("a", 151.0)]
    assert regression.decode(body("0.5")) == [("a", 0.5)]
    assert classes.decode(body("2")) == [("a", 2)]


@pytest.mark.parametrize(
    ("actual", "status", "fragment"),
    [("NaN", 400, "malformed JSON"), ("Infinity", 400, "malformed JSON"),
     ("1e309", 422, "Number out of range"), ("true", 422, "got `bool`"),
     ('"0.01"', 422, "got `str`"), ("null", 422, "got `null`"),
     ("400.01", 422, "outside the target's range [0, 400]"),
     ("-0.5", 422, "outside the target's range [0, 400]")],
)  # fmt: skip
def test_regression_labels_are_refused_with_the_reason(
    regression: LabelCodec, actual: str, status: int, fragment: str
) -> None:
    code, loc, message = refused(regression, body(actual))
    assert code == status and fragment in message
    if status == 422:
        assert loc == ["body", "items", 0, "actual"]


@pytest.mark.parametrize(
    ("actual", "fragment"),
    [("3", "not one of the model's classes [0, 1, 2]"), ("-1", "not one of"),
     ("1.0", "Expected `int`, got `float`"), ("true", "got `bool`")],
)  # fmt: skip
def test_class_labels_must_be_one_of_the_models_classes(
    classes: LabelCodec, actual: str, fragment: str
) -> None:
    _, loc, message = refused(classes, body(actual))
    assert loc == ["body", "items", 0, "actual"] and fragment in message


def test_bool_classes_take_bools_only(tmp_path: object) -> None:
    schema = load_schema(BREAST_CANCER_SCHEMA)
    flags = schema.model_copy(
        update={"columns": {**schema.columns, "target": schema.columns["target"].model_copy(
            update={"dtype": "bool", "allowed": None})}}
    )  # fmt: skip
    codec = LabelCodec(flags, [False, True], max_items=3)
    assert codec.decode(body("true")) == [("a", True)]
    assert "got `int`" in refused(codec, body("1"))[2]


def test_items_ids_and_keys_are_checked(regression: LabelCodec) -> None:
    assert (
        "length <= 3"
        in refused(regression, b'{"items":[' + b",".join([body("1")[10:-2]] * 4) + b"]}")[2]
    )
    assert refused(regression, b'{"items":[]}')[0] == 422
    assert "length <= 100" in refused(regression, body("1", "x" * 101))[2]
    assert "length >= 1" in refused(regression, body("1", ""))[2]
    assert (
        "Object contains unknown field `extra`"
        in refused(regression, b'{"items":[{"id":"a","actual":1,"extra":2}]}')[2]
    )
    code, loc, message = refused(regression, b'{"items":[{"id":"a","actual":1,"actual":2}]}')
    assert (code, loc) == (422, ["body", "items", 0, "actual"]) and "appears twice" in message
    outer = b'{"items":[{"id":"a","actual":1}],"items":[{"id":"b","actual":2}]}'
    assert refused(regression, outer)[1] == ["body", "items"]
    # ids may hold colons (and so more colons than keys): the exact check lets them through
    assert regression.decode(body("1", "a:b:c")) == [("a:b:c", 1.0)]


def test_the_openapi_model_states_the_same_rules(
    regression: LabelCodec, classes: LabelCodec
) -> None:
    item = regression.openapi_request().model_json_schema()["$defs"]["FeedbackItem"]
    actual = item["properties"]["actual"]
    assert (actual["type"], actual["minimum"], actual["maximum"]) == ("number", 0, 400)
    assert item["properties"]["id"]["maxLength"] == 100
    item = classes.openapi_request().model_json_schema()["$defs"]["FeedbackItem"]
    assert item["properties"]["actual"]["enum"] == [0, 1, 2]
