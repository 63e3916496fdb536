"""Row identities: which inputs a model has seen, so that it is never scored on them.

A row's identity is a 64-bit hash of its feature values (pandas' ``hash_pandas_object``, with its
fixed key, over the model's input, :func:`mloop.encoding.encoded_frame`): rows with the same
inputs share it, whatever their label, because a model that saw an input has, for scoring
purposes, seen every copy of it. The train stage writes the identities of the training rows
beside each candidate (``training_rows.npy``), so they travel with the candidate's MLflow
artifact and into the bundle, and the promotion gate compares models only on rows neither of them trained on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from mloop.config import DatasetSchema
from mloop.encoding import encoded_frame

TRAINING_ROWS_FILE = "training_rows.npy"


def row_ids(frame: pd.DataFrame, schema: DatasetSchema) -> npt.NDArray[np.uint64]:
    """One identity per row of ``frame`` (rows with equal feature values share it)."""
    values = encoded_frame(frame, schema)
    return np.asarray(pd.util.hash_pandas_object(values, index=False), dtype=np.uint64)


def save_training_rows(directory: Path, ids: npt.NDArray[np.uint64]) -> Path:
    """The distinct identities, sorted, as ``directory/training_rows.npy``."""
    path = directory / TRAINING_ROWS_FILE
    np.save(path, np.unique(ids), allow_pickle=False)
    return path


def load_training_rows(directory: Path) -> npt.NDArray[np.uint64] | None:
    """The identities a model directory records, or None if it records none (an older model)."""
    path = directory / TRAINING_ROWS_FILE
    if not path.is_file():
        return None
    ids = np.load(path, allow_pickle=False)
    return np.asarray(ids, dtype=np.uint64)
