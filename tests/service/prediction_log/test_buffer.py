"""The call buffer: every call taken exactly once, in order, in columns; bounded; never blocks."""

from __future__ import annotations

import numpy as np

from service.prediction_log.buffer import CallBuffer, Columns
from service.prediction_log.ids import request_id

PREFIX = "cafe-"


def tag(number: int) -> int:
    """A request's random tag, made up: any 64-bit value travels with its number."""
    return (number * 0x9E3779B97F4A7C15 + 1) % 2**64


def add(buffer: CallBuffer, version: str, first: int, rows: int, names: list[str]) -> None:
    """Request number ``first``: one record if ``rows`` is 1, else a list of ``rows`` records."""
    features = np.arange(first, first + rows, dtype=float)[:, None].repeat(len(names), axis=1)
    outputs = np.arange(first, first + rows, dtype=float) / 2
    buffer.add(
        version, first, tag(first), rows == 1, features, names, outputs, 0.001 * rows, 100.0 + first
    )


def answered_ids(first: int, rows: int) -> list[str]:
    """The ids ``/predict`` answers request ``first`` with."""
    base = request_id(PREFIX, first, tag(first))
    return [base] if rows == 1 else [f"{base}-{row}" for row in range(rows)]


def test_calls_come_out_once_in_order_as_columns() -> None:
    buffer = CallBuffer(max_rows=10_000, id_prefix=PREFIX)
    names = ["x", "y"]
    sizes = [1, 3, 1, 1029, 1]
    starts = [sum(sizes[:index]) for index in range(len(sizes))]  # also the request numbers
    for index, (first, rows) in enumerate(zip(starts, sizes)):
        add(buffer, "2" if index < 3 else "3", first, rows, names)
    (segment,) = buffer.take()
    assert buffer.take() == [], "a second take finds nothing"
    total = sum(sizes)
    assert segment.rows == total and segment.features.shape == (total, 2)
    np.testing.assert_array_equal(segment.features, np.arange(total)[:, None].repeat(2, axis=1))
    np.testing.assert_array_equal(segment.outputs, np.arange(total) / 2)
    assert list(segment.counts) == sizes
    expected_ids = [i for first, rows in zip(starts, sizes) for i in answered_ids(first, rows)]
    assert (segment.versions, segment.version_calls) == (["2", "3"], [3, 2])
    np.testing.assert_allclose(segment.model_seconds, [0.001 * rows for rows in sizes])
    packed = segment.packed()
    assert packed.rows == total and packed.ids() == expected_ids
    assert packed.call_versions() == ["2", "2", "2", "3", "3"]


def test_a_list_of_one_record_keeps_its_row_suffix() -> None:
    buffer = CallBuffer(max_rows=100, id_prefix=PREFIX)
    row, output = np.zeros((1, 1)), np.zeros(1)
    buffer.add("1", 10, 0xFF, True, row, ["x"], output, 0.0, 1.0)
    buffer.add("1", 11, 2**64 - 1, False, row, ["x"], output, 0.0, 1.0)  # [{...}]: a batch of one
    buffer.add("1", 12, 0, True, row, ["x"], output, 0.0, 1.0)
    (segment,) = buffer.take()
    assert segment.packed().ids() == [
        "cafe-00000000000a00000000000000ff",
        "cafe-00000000000bffffffffffffffff-0",
        "cafe-00000000000c0000000000000000",
    ]


def test_other_feature_names_or_output_types_start_a_new_segment() -> None:
    buffer = CallBuffer(max_rows=100, id_prefix=PREFIX)
    add(buffer, "1", 0, 2, ["x"])
    add(buffer, "1", 2, 1, ["z"])
    buffer.add("1", 3, 0, True, np.zeros((1, 1)), ["z"], np.array(["yes"]), 0.0, 1.0)
    segments = buffer.take()
    assert [(s.names, s.rows, s.outputs.dtype.kind) for s in segments] == [
        (["x"], 2, "f"), (["z"], 1, "f"), (["z"], 1, "U"),
    ]  # fmt: skip


def test_a_full_buffer_drops_and_counts_until_taken() -> None:
    buffer = CallBuffer(max_rows=4, id_prefix=PREFIX)
    add(buffer, "1", 0, 3, ["x"])
    add(buffer, "1", 3, 2, ["x"])  # accepted: 3 < 4 (one call may overshoot by its own size)
    add(buffer, "1", 5, 2, ["x"])  # dropped: 5 >= 4
    assert buffer.dropped_rows == 2
    (segment,) = buffer.take()
    assert segment.rows == 5
    add(buffer, "1", 7, 1, ["x"])  # room again after the take
    assert buffer.dropped_rows == 2 and buffer.take()[0].rows == 1


def test_outputs_of_any_layout_and_object_labels_come_back_as_sent() -> None:
    buffer = CallBuffer(max_rows=100, id_prefix=PREFIX)
    strided = np.arange(6.0)[::2]  # a view with no contiguous buffer
    buffer.add("1", 1, 0, False, np.zeros((3, 1)), ["x"], strided, 0.0, 1.0)
    labels = np.array(["low", None], dtype=object)
    buffer.add("1", 2, 0, False, np.ones((2, 1)), ["x"], labels, 0.0, 1.0)
    buffer.add("1", 3, 0, True, np.ones((1, 1)), ["x"], np.array(["high"], dtype=object), 0.0, 1.0)
    numbers, objects = buffer.take()
    np.testing.assert_array_equal(numbers.outputs, [0.0, 2.0, 4.0])
    assert objects.outputs.tolist() == ["low", None, "high"]
    assert objects.features.tolist() == [[1.0], [1.0], [1.0]]


def test_explicit_id_calls_accept_any_feature_layout_and_dtype() -> None:
    columns = Columns(["a", "b"], 2, np.dtype(np.float64))
    transposed = np.array([[1, 3], [2, 4]], dtype=np.int32).T  # not C-contiguous, not float
    columns.add("1", ["p", "q"], transposed, np.array([0.5, 1.5], dtype=np.float32), 1.0)
    assert columns.features.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert columns.outputs.tolist() == [0.5, 1.5] and columns.packed().ids() == ["p", "q"]
