"""The drift window holds exactly the most recent rows, whatever mix of singles and batches."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from service.telemetry.drift import RecentWindow


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(min_value=1, max_value=50),
    batches=st.lists(st.integers(min_value=1, max_value=120), max_size=40),
)
def test_snapshot_is_the_tail_of_everything_added(size: int, batches: list[int]) -> None:
    window = RecentWindow(size, n_features=3)
    added = []
    start = 0
    for rows in batches:
        batch = np.arange(start, start + rows * 3, dtype=float).reshape(rows, 3)
        start += rows * 3
        window.add(batch)
        added.append(batch)
        everything = np.concatenate(added)
        np.testing.assert_array_equal(window.snapshot(), everything[-size:])
        assert len(window) == min(size, len(everything))
        # Bounded: without its oldest array the window would hold fewer than `size` rows.
        assert window._rows - len(window._arrays[0]) < size


def test_an_empty_window_has_no_drift() -> None:
    window = RecentWindow(10, n_features=2)
    assert window.snapshot().shape == (0, 2)
    assert window.drift({}, ["a", "b"]) == {}
