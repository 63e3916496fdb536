"""The /predict decoder on its own: one record and a batch take different range-check paths (plain
Python comparisons for one record, numpy for a batch), so both are held to the same answers."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from mloop.config import DatasetSchema, load_schema
from service.codecs.records import RecordCodec, RequestError
from tests.helpers.paths import DIABETES_SCHEMA


@pytest.fixture(scope="module")
def schema() -> DatasetSchema:
    return load_schema(DIABETES_SCHEMA)


def record(schema: DatasetSchema, **changes: float) -> dict[str, float]:
    return {**{name: 0.01 for name in schema.features}, **changes}


def codec(schema: DatasetSchema, policy: str) -> RecordCodec:
    return RecordCodec(schema, max_rows=10, out_of_range=policy)


@pytest.mark.parametrize("policy", ["reject", "flag"])
def test_clean_input_has_no_out_of_range_counts(schema: DatasetSchema, policy: str) -> None:
    one = codec(schema, policy).decode(orjson.dumps(record(schema, bmi=0.5)))  # max is inclusive
    assert one.single and one.out_of_range is None
    assert one.features.shape == (1, len(schema.features)) and one.features.dtype == np.float64
    assert one.features[0, schema.features.index("bmi")] == 0.5
    many = codec(schema, policy).decode(orjson.dumps([record(schema)] * 3))
    assert not many.single and many.out_of_range is None and many.features.shape[0] == 3


@pytest.mark.parametrize("batch", [False, True], ids=["one-record", "batch"])
def test_flag_policy_serves_and_counts_per_feature(schema: DatasetSchema, batch: bool) -> None:
    body = [record(schema, bmi=0.9, age=-0.7), record(schema, bmi=0.6)] if batch else None
    payload = body if batch else record(schema, bmi=0.9, age=-0.7)
    decoded = codec(schema, "flag").decode(orjson.dumps(payload))
    assert decoded.out_of_range is not None
    counts = dict(zip(schema.features, decoded.out_of_range.tolist()))
    assert counts["bmi"] == (2 if batch else 1) and counts["age"] == 1
    assert sum(counts.values()) == (3 if batch else 2)


@pytest.mark.parametrize("batch", [False, True], ids=["one-record", "batch"])
def test_reject_policy_names_the_first_offender(schema: DatasetSchema, batch: bool) -> None:
    payload = [record(schema), record(schema, bp=-0.51)] if batch else record(schema, bp=-0.51)
    with pytest.raises(RequestError) as caught:
        codec(schema, "reject").decode(orjson.dumps(payload))
    error = caught.value
    assert error.status == 422
    assert error.detail[0]["loc"] == (["body", 1, "bp"] if batch else ["body", "bp"])
    assert "outside the allowed range [-0.5, 0.5]" in error.detail[0]["msg"]
    assert error.out_of_range is not None and error.out_of_range.sum() == 1


@pytest.mark.parametrize("policy", ["reject", "flag"])
@pytest.mark.parametrize("batch", [False, True], ids=["one-record", "batch"])
def test_overflowing_number_is_refused_under_either_policy(
    schema: DatasetSchema, policy: str, batch: bool
) -> None:
    text = orjson.dumps(record(schema, s1=0.25)).decode().replace("0.25", "1e999")
    body = f"[{text}]" if batch else text
    with pytest.raises(RequestError) as caught:
        codec(schema, policy).decode(body.encode())
    assert caught.value.status == 422
    assert caught.value.detail[0]["loc"] == (["body", 0, "s1"] if batch else ["body", "s1"])
    assert caught.value.detail[0]["msg"] == "Number out of range"  # msgspec's words, while parsing


@pytest.mark.parametrize("batch", [False, True], ids=["one-record", "batch"])
def test_a_repeated_key_is_refused_not_resolved(schema: DatasetSchema, batch: bool) -> None:
    one = orjson.dumps(record(schema)).decode()
    repeated = one[:-1] + ',"bmi":0.3}'  # bmi twice: 0.01, then 0.3
    body = f"[{one},{repeated}]" if batch else repeated
    with pytest.raises(RequestError) as caught:
        codec(schema, "reject").decode(body.encode())
    assert caught.value.status == 422
    assert caught.value.detail[0]["loc"] == (["body", 1, "bmi"] if batch else ["body", "bmi"])
    assert caught.value.detail[0]["type"] == "duplicate_key"


def test_names_with_colons_take_the_exact_check_and_pass(schema: DatasetSchema) -> None:
    columns = {"ratio a:b": {"dtype": "float"}, "time: s": {"dtype": "float"}}
    odd = DatasetSchema.model_validate(
        {**schema.model_dump(), "columns": {**columns, "target": {"dtype": "float"}}}
    )
    decoded = codec(odd, "reject").decode(b'{"ratio a:b": 1.5, "time: s": 2}')
    assert decoded.features.tolist() == [[1.5, 2.0]]
    with pytest.raises(RequestError):
        codec(odd, "reject").decode(b'{"ratio a:b": 1.5, "time: s": 2, "time: s": 3}')


def test_whitespace_and_escapes_do_not_fool_the_count(schema: DatasetSchema) -> None:
    names = schema.features
    body = "{ " + " ,\n".join(f'"{n}" :  0.01' for n in names) + "}"
    assert codec(schema, "reject").decode(body.encode()).features.shape == (1, len(names))
    escaped = body[:-1] + ', "\\u0062mi": 0.2}'  # "bmi" spelt with an escape, a second time
    with pytest.raises(RequestError) as caught:
        codec(schema, "reject").decode(escaped.encode())
    assert caught.value.detail[0]["type"] == "duplicate_key"


@pytest.fixture(scope="module")
def nullable_schema(schema: DatasetSchema) -> DatasetSchema:
    columns = dict(schema.columns)
    columns["bmi"] = columns["bmi"].model_copy(update={"nullable": True})
    return schema.model_copy(update={"columns": columns})


@pytest.mark.parametrize("batch", [False, True], ids=["one-record", "batch"])
def test_a_nullable_feature_takes_null_as_a_missing_value(
    nullable_schema: DatasetSchema, batch: bool
) -> None:
    one = record(nullable_schema, bmi=0.01)
    one["bmi"] = None  # type: ignore[assignment]
    payload = [one, record(nullable_schema, bmi=0.2)] if batch else one
    decoded = codec(nullable_schema, "reject").decode(orjson.dumps(payload))
    column = nullable_schema.features.index("bmi")
    assert np.isnan(decoded.features[0, column]) and decoded.out_of_range is None
    assert np.isfinite(np.delete(decoded.features, column, axis=1)).all()
    if batch:
        assert decoded.features[1, column] == 0.2


def test_null_stays_refused_where_the_schema_says_so(nullable_schema: DatasetSchema) -> None:
    other = record(nullable_schema)
    other["age"] = None  # type: ignore[assignment]
    with pytest.raises(RequestError) as caught:
        codec(nullable_schema, "reject").decode(orjson.dumps(other))
    assert caught.value.detail[0]["loc"] == ["body", "age"]
    text = orjson.dumps(record(nullable_schema, bmi=0.25)).decode().replace("0.25", "1e999")
    with pytest.raises(RequestError):  # a nullable feature still takes no infinity
        codec(nullable_schema, "reject").decode(text.encode())


@pytest.fixture(scope="module")
def colours() -> DatasetSchema:
    return DatasetSchema.model_validate(
        {
            "name": "colours",
            "task": "regression",
            "source": {"kind": "path", "path": "x.csv"},
            "target": "price",
            "columns": {
                "area": {"dtype": "float", "min": 0},
                "colour": {"dtype": "category", "allowed": ["red", "white", "rosé"]},
                "finish": {"dtype": "category", "allowed": ["dry", "sweet"], "nullable": True},
                "price": {"dtype": "float"},
            },
        }
    )


@pytest.mark.parametrize("policy", ["reject", "flag"])
def test_a_category_arrives_as_text_and_reaches_the_model_as_its_code(
    colours: DatasetSchema, policy: str
) -> None:
    one = codec(colours, policy).decode(
        orjson.dumps({"area": 2.5, "colour": "rosé", "finish": "sweet"})
    )
    assert one.single and one.features.tolist() == [[2.5, 2.0, 1.0]]
    rows = [
        {"area": 1.0, "colour": "red", "finish": None},
        {"area": 3.0, "colour": "white", "finish": "dry"},
    ]
    many = codec(colours, policy).decode(orjson.dumps(rows))
    assert many.features[:, :2].tolist() == [[1.0, 0.0], [3.0, 1.0]]
    assert np.isnan(many.features[0, 2]) and many.features[1, 2] == 0.0
    assert many.out_of_range is None


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        ({"area": 1.0, "colour": "blue", "finish": "dry"}, ["body", "colour"]),
        ({"area": 1.0, "colour": 0, "finish": "dry"}, ["body", "colour"]),
        ({"area": 1.0, "colour": None, "finish": "dry"}, ["body", "colour"]),
        ([{"area": 1.0, "colour": "red", "finish": "Dry"}], ["body", 0, "finish"]),
    ],
    ids=["unknown", "a-code", "null-not-nullable", "case-matters"],
)
def test_a_value_outside_the_categories_is_a_422_naming_the_field(
    colours: DatasetSchema, payload: object, loc: list[object]
) -> None:
    with pytest.raises(RequestError) as caught:
        codec(colours, "flag").decode(orjson.dumps(payload))
    assert caught.value.status == 422 and caught.value.detail[0]["loc"] == loc
