"""The evaluate stage's choice of what serves large batches: native only when clearly faster."""

from __future__ import annotations

import pytest

from mloop.evaluate import batch_serving


@pytest.mark.parametrize(
    ("native_ms", "expected"),
    [(20.0, "native"), (40.0, "native"), (41.0, "onnx"), (49.5, "onnx"), (80.0, "onnx")],
    ids=["2.5x", "exactly-1.25x", "just-under", "a-near-tie", "slower"],
)
def test_native_needs_the_speedup(native_ms: float, expected: str) -> None:
    latency = {"serving": "onnx", "batch_ms_per_1k": 50.0, "native_batch_ms_per_1k": native_ms}
    assert batch_serving(latency, speedup=1.25) == expected


def test_a_model_served_natively_has_nothing_to_switch_to() -> None:
    assert batch_serving({"serving": "native", "batch_ms_per_1k": 1.0}, speedup=1.25) == "native"
    assert batch_serving({"serving": "onnx", "batch_ms_per_1k": 1.0}, speedup=1.0) == "onnx"
