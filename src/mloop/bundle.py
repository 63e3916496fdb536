"""The champion bundle: the one contract between the training pipeline and the prediction service.

Layout of ``models/champion/``::

    bundle.json            version, lineage, metrics, feature order (this module's META fields)
    model/                 model.json + native model (+ model.onnx when that is what is served)
    schema.yaml            the dataset schema the model was trained on
    reference_stats.json   training feature histograms, for drift

A bundle is published by building it in a temp dir beside the target, loading it back, and swapping
it in with one rename, so a reader sees either the old bundle or the new one, never a mix.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mloop.config import ConfigError, DatasetSchema, load_schema
from mloop.fileio import read_json, write_json
from mloop.models.store import (
    ModelLoadError,
    load_native,
    load_predictor,
    read_meta,
    single_threaded,
)

FORMAT_VERSION = 1
META_FILE = "bundle.json"
MODEL_DIR = "model"
SCHEMA_FILE = "schema.yaml"
REFERENCE_FILE = "reference_stats.json"
REQUIRED_META = (
    "format_version", "registered_model", "version", "task", "target", "features", "metrics",
    "trained_at", "promoted_at", "git_commit", "data_md5",
)  # fmt: skip


class BundleError(RuntimeError):
    """The bundle is missing, incomplete or inconsistent; the service must keep its current model."""


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
        reference = read_json(path / REFERENCE_FILE)
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: unreadable bundle file: {exc}") from None
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise BundleError(f"{path}: {META_FILE} lacks {', '.join(missing)}")
    if meta["format_version"] != FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format {meta['format_version']}, expected {FORMAT_VERSION}"
        )
    try:
        schema = load_schema(path / SCHEMA_FILE)
        model_meta = read_meta(path / MODEL_DIR)
        predictor = load_predictor(path / MODEL_DIR)
    except (ConfigError, ModelLoadError) as exc:
        raise BundleError(f"{path}: {exc}") from None
    if meta["features"] != schema.features or model_meta["features"] != schema.features:
        raise BundleError(f"{path}: feature order differs between bundle.json, model and schema")
    missing_ref = [f for f in schema.features if f not in reference.get("features", {})]
    if missing_ref:
        raise BundleError(f"{path}: reference statistics lack {', '.join(missing_ref)}")
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
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}.new-"))
    try:
        shutil.copytree(model_dir, staging / MODEL_DIR)
        shutil.copyfile(schema_file, staging / SCHEMA_FILE)
        shutil.copyfile(reference_file, staging / REFERENCE_FILE)
        write_json(staging / META_FILE, {"format_version": FORMAT_VERSION, **meta})
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
