"""The writer's bulk JSON encoding: the same text as one orjson call per row, values exact."""

from __future__ import annotations

import json

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from service.prediction_log.inserts import json_rows, json_values

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=300, deadline=None)
@given(
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, max_side=12), elements=finite)
)
def test_rows_match_one_call_per_row_and_read_back_exactly(matrix: np.ndarray) -> None:
    encoded = json_rows(matrix)
    assert encoded == [orjson.dumps(row).decode() for row in matrix.tolist()]
    if len(matrix):
        np.testing.assert_array_equal(np.array([orjson.loads(text) for text in encoded]), matrix)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        hnp.arrays(np.float64, hnp.array_shapes(max_dims=1, max_side=20), elements=finite),
        hnp.arrays(np.int64, hnp.array_shapes(max_dims=1, max_side=20)),
        hnp.arrays(np.bool_, hnp.array_shapes(max_dims=1, max_side=20)),
        hnp.arrays(np.dtype("U5"), hnp.array_shapes(max_dims=1, max_side=20)),
    )
)
def test_values_match_one_call_per_value(values: np.ndarray) -> None:
    encoded = json_values(values)
    assert [json.loads(text) for text in encoded] == values.tolist()
    for text, value in zip(encoded, values.tolist()):
        try:
            expected = orjson.dumps(value).decode()
        except TypeError:  # a label with a lone surrogate: escaped by json instead, read back above
            continue
        assert text == expected


def test_a_label_orjson_refuses_is_still_written() -> None:
    labels = np.array(["ok", "\ud800x"])
    assert json_values(labels) == ['"ok"', '"\\ud800x"']
