"""Rows to the model's numeric input and back: category features as codes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mloop.config import DatasetSchema
from mloop.encoding import decode_codes, feature_matrix
from mloop.rows import row_ids


def schema_with(**columns: dict[str, object]) -> DatasetSchema:
    return DatasetSchema.model_validate(
        {
            "name": "t",
            "task": "regression",
            "source": {"kind": "path", "path": "x.csv"},
            "target": "y",
            "columns": {**columns, "y": {"dtype": "float"}},
        }
    )


COLOURS = schema_with(
    size={"dtype": "float"}, colour={"dtype": "category", "allowed": ["red", "white", "rosé"]}
)


def test_a_category_becomes_its_position_in_the_list_and_back() -> None:
    frame = pd.DataFrame({"size": [1.5, 2.0, 3.0], "colour": ["rosé", None, "red"], "y": 0.0})
    matrix = feature_matrix(frame, COLOURS)
    assert matrix.dtype == np.float64 and matrix[:, 0].tolist() == [1.5, 2.0, 3.0]
    assert matrix[[0, 2], 1].tolist() == [2.0, 0.0] and np.isnan(matrix[1, 1])
    back = decode_codes(pd.DataFrame(matrix, columns=["size", "colour"]), COLOURS)
    assert back["colour"].tolist() == ["rosé", None, "red"]


def test_an_unknown_category_is_an_error_naming_column_and_value() -> None:
    frame = pd.DataFrame({"size": [1.0], "colour": ["blue"], "y": 0.0})
    with pytest.raises(ValueError, match=r"column 'colour': 'blue' is not one of"):
        feature_matrix(frame, COLOURS)


def test_codes_outside_the_list_decode_to_missing() -> None:
    frame = pd.DataFrame({"size": [1.0] * 4, "colour": [0.5, -1.0, 3.0, 1.0]})
    assert decode_codes(frame, COLOURS)["colour"].tolist() == [None, None, None, "white"]


def test_row_ids_of_numeric_rows_are_unchanged_by_the_encoding() -> None:
    """Identities recorded before category support (in the registry) stay valid."""
    schema = schema_with(a={"dtype": "float"}, b={"dtype": "int"})
    frame = pd.DataFrame({"a": [0.1, 0.2, 0.1], "b": [1, 2, 1], "y": [5.0, 6.0, 7.0]})
    before = pd.util.hash_pandas_object(frame[["a", "b"]].astype("float64"), index=False)
    assert row_ids(frame, schema).tolist() == before.to_numpy(dtype=np.uint64).tolist()
    assert row_ids(frame, schema)[0] == row_ids(frame, schema)[2]


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ({"dtype": "category"}, "needs 'allowed'"),
        ({"dtype": "category", "allowed": [1, 2]}, "quote numbers"),
        ({"dtype": "category", "allowed": ["a", "a"]}, "twice"),
        ({"dtype": "category", "allowed": ["a"], "max": 3}, "no 'min' or 'max'"),
        ({"dtype": "float", "allowed": ["a"]}, "must be numbers"),
    ],
)
def test_a_category_column_is_declared_with_its_values_as_text(
    column: dict[str, object], message: str
) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        schema_with(c=column)


def test_a_category_target_is_refused_with_what_to_do() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="encode its classes as integers"):
        DatasetSchema.model_validate(
            {
                "name": "t",
                "task": "classification",
                "source": {"kind": "path", "path": "x.csv"},
                "target": "y",
                "columns": {"a": {"dtype": "float"}, "y": {"dtype": "category", "allowed": ["x"]}},
            }
        )
