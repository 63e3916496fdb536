"""The model being served, and its replacement without dropping a request.

A request reads ``store.current`` once and uses that object to the end, so a swap (one attribute
assignment) never mixes two models inside a request. A new bundle is loaded and checked off to the
side; only a bundle that loads, predicts and keeps the served feature contract replaces the old one.
Whatever goes wrong with a new bundle refuses it (counted, and logged with its reason): neither a
reload nor the watcher ever stops the service from serving, or from reloading later.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mloop.bundle import META_FILE, Bundle, BundleError, load_bundle
from service.codecs.records import RecordCodec
from service.codecs.labels import LabelCodec

log = logging.getLogger("mloop.service")


@dataclass(frozen=True)
class LoadedModel:
    bundle: Bundle
    codec: RecordCodec
    labels: LabelCodec
    identity: tuple[int, int]  # (inode of the bundle dir, mtime of bundle.json): changes on swap
    loaded_at: float
    # Read by every request: plain attributes, not properties.
    version: str = field(init=False)
    classifier: bool = field(init=False)  # answers carry class probabilities

    def __post_init__(self) -> None:
        object.__setattr__(self, "version", self.bundle.version)
        object.__setattr__(self, "classifier", self.bundle.classes is not None)


def bundle_identity(path: Path) -> tuple[int, int]:
    """Cheap fingerprint polled by the watcher; the pipeline swaps bundle dirs, so the inode moves."""
    return os.stat(path).st_ino, os.stat(path / META_FILE).st_mtime_ns


class ModelStore:
    def __init__(
        self,
        bundle_dir: Path,
        codec_factory: Callable[[Bundle], RecordCodec],
        labels_factory: Callable[[Bundle], LabelCodec],
        on_swap: Callable[[LoadedModel | None, LoadedModel], None] | None = None,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.bundle_dir = bundle_dir
        self._codec_factory = codec_factory
        self._labels_factory = labels_factory
        self._on_swap = on_swap
        self._on_failure = on_failure
        self._current: LoadedModel | None = None
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.last_error: str | None = None  # for the logs and the admin: it names paths

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def _load(self) -> LoadedModel:
        identity = bundle_identity(self.bundle_dir)
        bundle = load_bundle(self.bundle_dir)
        codec, labels = self._codec_factory(bundle), self._labels_factory(bundle)
        return LoadedModel(bundle, codec, labels, identity, time.time())

    def _compatible(self, old: LoadedModel, new: LoadedModel) -> str | None:
        """A reload may change the model, never the request contract clients were built against."""
        if new.bundle.features != old.bundle.features:
            return "its features differ from the served model's (deploy a new service for that)"
        if new.bundle.meta["task"] != old.bundle.meta["task"]:
            return "its task differs from the served model's"
        return None

    def reload(self, force: bool = False) -> tuple[bool, str]:
        """Load the bundle if it changed (or always, with force). Returns (swapped, message)."""
        with self._reload_lock:
            old = self._current
            if not self.bundle_dir.exists():  # nothing published yet: no refusal to count
                return False, f"no bundle at {self.bundle_dir} yet"
            try:
                if (
                    not force
                    and old is not None
                    and bundle_identity(self.bundle_dir) == old.identity
                ):
                    return False, f"version {old.version} is already served"
                new = self._load()
            except (BundleError, OSError) as exc:
                return self._fail(f"bundle refused: {exc}")
            except Exception as exc:  # noqa: BLE001 - a bundle must never take the service down
                log.exception("unexpected error loading %s", self.bundle_dir)
                return self._fail(f"bundle refused: {type(exc).__name__}: {exc}")
            if old is not None:
                problem = self._compatible(old, new)
                if problem:
                    return self._fail(f"bundle version {new.version} refused: {problem}")
            self._current = new
            self.last_error = None
            if self._on_swap:
                try:
                    self._on_swap(old, new)
                except Exception:  # noqa: BLE001 - the new model serves; its gauges may lag
                    log.exception("after the swap to version %s", new.version)
            was = "nothing" if old is None else f"version {old.version}"
            log.info(
                "serving %s version %s (was %s)",
                new.bundle.meta["registered_model"],
                new.version,
                was,
            )
            return True, f"serving version {new.version} (was {was})"

    def _fail(self, message: str) -> tuple[bool, str]:
        self.last_error = message
        log.warning(message)
        if self._on_failure:
            self._on_failure(message)
        return False, message

    def start_watching(self, interval_s: float) -> None:
        if interval_s <= 0 or self._watcher is not None:
            return
        self._watcher = threading.Thread(
            target=self._watch, args=(interval_s,), name="bundle-watcher", daemon=True
        )
        self._watcher.start()

    def _watch(self, interval_s: float) -> None:
        failed_identity: tuple[int, int] | None = None
        while not self._stop.wait(interval_s):
            try:
                failed_identity = self._watch_tick(failed_identity)
            except Exception:  # noqa: BLE001 - the watcher outlives any bug: it tries again
                log.exception("bundle watcher: unexpected error (it keeps watching)")

    def _watch_tick(self, failed_identity: tuple[int, int] | None) -> tuple[int, int] | None:
        """One look at the bundle; returns the identity of a bundle refused (not to retry it)."""
        try:
            identity = bundle_identity(self.bundle_dir)
        except OSError:
            return failed_identity  # mid-swap or not there yet: look again next tick
        current = self._current
        if (current is not None and identity == current.identity) or identity == failed_identity:
            return failed_identity  # unchanged, or a bundle already refused: not every tick
        swapped, _ = self.reload()
        return None if swapped else identity

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
