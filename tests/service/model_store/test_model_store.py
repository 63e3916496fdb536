"""The model store on its own: a watcher that meets any exception keeps watching."""

from __future__ import annotations

import threading
from pathlib import Path

from mloop.bundle import Bundle
from service.codecs.records import RecordCodec
from service.codecs.labels import LabelCodec
from service.model_store.store import ModelStore
from tests.helpers.bundles import make_bundle
from tests.helpers.net import wait_until


def test_the_watcher_survives_an_exception_and_loads_the_next_bundle(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "champion", version="1")
    calls: list[str] = []

    def on_failure(message: str) -> None:  # a hook that fails, as any code can
        calls.append(message)
        raise RuntimeError("a bug in a failure hook")

    store = ModelStore(
        bundle,
        lambda b: RecordCodec(b.schema, 10, "reject"),
        lambda b: LabelCodec(b.schema, b.classes, 10),
        on_failure=on_failure,
    )
    assert store.reload()[0] and store.current is not None
    store.start_watching(0.05)
    try:
        (bundle / "bundle.json").write_text("123", encoding="utf-8")  # refused: the hook raises
        assert wait_until(lambda: calls), "the watcher tried the malformed bundle"
        assert any(t.name == "bundle-watcher" for t in threading.enumerate())
        make_bundle(bundle, version="2")
        assert wait_until(lambda: store.current is not None and store.current.version == "2")
    finally:
        store.stop()


def test_an_unexpected_error_while_loading_is_a_refusal_not_a_crash(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "champion", version="1")
    failures: list[str] = []

    def broken_codec(b: Bundle) -> RecordCodec:
        raise ZeroDivisionError("a bug in the codec")

    store = ModelStore(
        bundle,
        broken_codec,
        lambda b: LabelCodec(b.schema, b.classes, 10),
        on_failure=failures.append,
    )
    swapped, message = store.reload()
    assert not swapped and "ZeroDivisionError: a bug in the codec" in message
    assert failures == [message] and store.current is None
