"""The champion bundle: the one contract between the training pipeline and the prediction service.

Layout of ``models/champion/``::

    bundle.json            version, lineage, metrics, feature order (this module's META fields),
                           and the sha256 of every other file of the bundle ("files")
    model/                 model.json + native model (+ model.onnx when that is what is served)
    schema.yaml            the dataset schema the model was trained on
    reference_stats.json   training feature histograms, for drift

A bundle is published by building it in a temp dir beside the target, loading it back, and swapping
it in with one rename, so a reader sees either the old bundle or the new one, never a mix. Loading
checks every file against its recorded digest, so a file copied in from another model is refused.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pydantic import BaseModel, ConfigDict, ValidationError

from mloop.config import ConfigError, DatasetSchema, load_schema
from mloop.fileio import read_json, write_json
from mloop.models.store import (
    ModelLoadError,
    load_native,
    load_predictor,
    read_meta,
    single_threaded,
)

# 2: bundle.json records the sha256 of every file ("files"), checked on load.
FORMAT_VERSION = 2
META_FILE = "bundle.json"
MODEL_DIR = "model"
SCHEMA_FILE = "schema.yaml"
REFERENCE_FILE = "reference_stats.json"
REQUIRED_META = (
    "format_version", "registered_model", "version", "task", "target", "features", "metrics",
    "trained_at", "promoted_at", "git_commit", "data_md5", "files",
)  # fmt: skip


class BundleError(RuntimeError):
    """The bundle is missing, incomplete or inconsistent; the service must keep its current model."""


class _Meta(BaseModel):
    """The types of bundle.json's required fields (other fields are free: lineage, latency...)."""

    model_config = ConfigDict(extra="allow")

    format_version: int
    registered_model: str
    version: str
    task: str
    target: str
    features: list[str]
    metrics: dict[str, float]
    trained_at: str
    promoted_at: str | None  # None in the bundle of a version registered and not promoted
    git_commit: str
    data_md5: str
    files: dict[str, str]


class _Reference(BaseModel):
    model_config = ConfigDict(extra="allow")

    features: dict[str, dict[str, Any]]


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or '(top level)'}: {error['msg']}"
        for error in exc.errors()
    )


def file_digests(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` but bundle.json, by path relative to it (POSIX)."""
    digests = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if relative != META_FILE:
            with path.open("rb") as handle:
                digests[relative] = hashlib.file_digest(handle, "sha256").hexdigest()
    return digests


def _check_files(path: Path, recorded: dict[str, str]) -> None:
    """Refuse a bundle whose files are not exactly those recorded at promotion, byte for byte."""
    try:
        found = file_digests(path)
    except OSError as exc:
        raise BundleError(f"{path}: unreadable bundle file: {exc}") from None
    missing = sorted(set(recorded) - set(found))
    extra = sorted(set(found) - set(recorded))
    changed = sorted(name for name in set(found) & set(recorded) if found[name] != recorded[name])
    problems = [
        *(f"{name} is missing" for name in missing),
        *(f"{name} was not in the bundle when it was promoted" for name in extra),
        *(f"{name} does not match its recorded sha256" for name in changed),
    ]
    if problems:
        raise BundleError(f"{path}: {'; '.join(problems)}")


@dataclass(frozen=True)
class Bundle:
    path: Path
    meta: dict[str, Any]
    schema: DatasetSchema
    reference: dict[str, Any]
    predictor: Any
    # The native model, for large batches, when the evaluate stage measured it faster than the
    # served (ONNX) one on a batch; None otherwise.
    batch_predictor: Any = None
    # Class labels in the order of the model's probability columns (classification only).
    classes: list[Any] | None = None

    @property
    def batch_serving(self) -> str:
        return "native" if self.batch_predictor is not None else str(self.meta.get("serving", ""))

    @property
    def version(self) -> str:
        return str(self.meta["version"])

    @property
    def features(self) -> list[str]:
        return list(self.meta["features"])


def _batch_predictor(
    path: Path, meta: dict[str, Any], model_meta: dict[str, Any], probe: npt.NDArray[Any]
) -> Any:
    """The native model for large batches, if the evaluate stage chose it for batches (timed
    clearly faster than the served export); None otherwise. scikit-learn only: a Keras model
    loaded natively would pull TensorFlow into the service."""
    latency = meta.get("latency") or {}
    if meta.get("serving") == "native" or model_meta.get("flavor") != "sklearn":
        return None
    if latency.get("batch_serving") != "native":
        return None
    try:
        native = single_threaded(load_native(path / MODEL_DIR))
        output = np.asarray(native.predict(probe))
    except Exception as exc:  # noqa: BLE001 - the same rule as for the served model
        raise BundleError(f"{path}: native model (for batches) unusable: {exc}") from None
    if output.shape != (1,):
        raise BundleError(f"{path}: native model returned shape {output.shape} for one row")
    return native


def load_bundle(path: Path) -> Bundle:
    """Load and cross-check a bundle; any inconsistency raises :class:`BundleError`."""
    if not (path / META_FILE).is_file():
        raise BundleError(f"{path}: no {META_FILE} (not a champion bundle)")
    try:
        meta = read_json(path / META_FILE)
        if not isinstance(meta, dict):
            raise BundleError(f"{path}: {META_FILE} is not a JSON object")
        reference = read_json(path / REFERENCE_FILE)
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: unreadable bundle file: {exc}") from None
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise BundleError(f"{path}: {META_FILE} lacks {', '.join(missing)}")
    if meta["format_version"] != FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format {meta['format_version']}, expected {FORMAT_VERSION} "
            "(publish it again with the promote stage)"
        )
    try:
        _Meta.model_validate(meta)
    except ValidationError as exc:
        raise BundleError(f"{path}: {META_FILE} is malformed: {_problems(exc)}") from None
    try:
        _Reference.model_validate(reference)
    except ValidationError as exc:
        raise BundleError(f"{path}: {REFERENCE_FILE} is malformed: {_problems(exc)}") from None
    _check_files(path, meta["files"])
    try:
        schema = load_schema(path / SCHEMA_FILE)
        model_meta = read_meta(path / MODEL_DIR)
        predictor = load_predictor(path / MODEL_DIR)
    except (ConfigError, ModelLoadError) as exc:
        raise BundleError(f"{path}: {exc}") from None
    if meta["features"] != schema.features or model_meta["features"] != schema.features:
        raise BundleError(f"{path}: feature order differs between bundle.json, model and schema")
    if meta["task"] != schema.task or model_meta.get("task") != schema.task:
        raise BundleError(f"{path}: the task differs between bundle.json, model and schema")
    missing_ref = [f for f in schema.features if f not in reference["features"]]
    if missing_ref:
        raise BundleError(f"{path}: reference statistics lack {', '.join(missing_ref)}")
    classes = model_meta.get("classes") if schema.task == "classification" else None
    if schema.task == "classification" and not (isinstance(classes, list) and len(classes) >= 2):
        raise BundleError(f"{path}: a classifier's model.json must list its classes")
    probe = np.zeros((1, len(schema.features)))
    try:
        output = np.asarray(predictor.predict(probe))
    except Exception as exc:  # noqa: BLE001 - whatever the runtime raises, the bundle is unusable
        raise BundleError(f"{path}: model cannot predict one row: {exc}") from None
    if output.shape != (1,):
        raise BundleError(f"{path}: model returned shape {output.shape} for one row")
    batch_predictor = _batch_predictor(path, meta, model_meta, probe)
    return Bundle(
        path=path,
        meta=meta,
        schema=schema,
        reference=reference,
        predictor=predictor,
        batch_predictor=batch_predictor,
        classes=classes,
    )


def _exchange(first: Path, second: Path) -> bool:
    """Atomically swap two directories (Linux renameat2 RENAME_EXCHANGE); False if unsupported.

    Hand-written with ctypes because the standard library has no exchange-rename and a directory
    cannot be renamed over a non-empty one: without it, readers would briefly see no bundle at all.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange)
    return int(result) == 0


def write_bundle(
    destination: Path,
    model_dir: Path,
    schema_file: Path,
    reference_file: Path,
    meta: dict[str, Any],
) -> Bundle:
    """Build the bundle next to ``destination``, verify it loads, then swap it in atomically."""

    def build(staging: Path) -> None:
        shutil.copytree(model_dir, staging / MODEL_DIR)
        shutil.copyfile(schema_file, staging / SCHEMA_FILE)
        shutil.copyfile(reference_file, staging / REFERENCE_FILE)
        files = file_digests(staging)
        write_json(staging / META_FILE, {"format_version": FORMAT_VERSION, **meta, "files": files})

    return _publish(destination, build)


def install_bundle(source: Path, destination: Path) -> Bundle:
    """Put a complete bundle (one restored from the registry, say) in place of ``destination``:
    copied beside it, verified like any bundle (digests included), then swapped in atomically."""

    def build(staging: Path) -> None:
        shutil.rmtree(staging)
        shutil.copytree(source, staging)

    return _publish(destination, build)


def _publish(destination: Path, build: Callable[[Path], None]) -> Bundle:
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}.new-"))
    try:
        build(staging)
        bundle = load_bundle(staging)  # never publish a bundle the service could not load
        if destination.exists():
            if not _exchange(staging, destination):
                retired = destination.with_name(f".{destination.name}.old")
                shutil.rmtree(retired, ignore_errors=True)
                os.rename(destination, retired)
                os.rename(staging, destination)
                staging = retired
        else:
            os.rename(staging, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return replace(bundle, path=destination)  # the models are in memory already
