"""How a dataset's rows become the numeric matrix every model takes, and back.

A model's input is a float64 matrix, one column per feature in schema order. Numbers pass as they
are; a ``category`` feature is its value's position in the schema's ``allowed`` list (a code:
0.0, 1.0 ...), a missing value NaN. The codes are ordinal, and the model pipelines encode them
further where the model needs it (one-hot for linear models and the network, as they are for
trees: see :mod:`mloop.models`). One matrix type from the data files to the served model keeps a
single fast path in the service, ONNX exports with one float input, and a prediction log of
numbers; the text is restored only where people or the schema read rows (:func:`decode_codes`).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from mloop.config import DatasetSchema


def categorical_features(schema: DatasetSchema) -> dict[int, list[str]]:
    """Position (in ``schema.features``) and categories of every category feature."""
    return {
        index: schema.columns[name].categories
        for index, name in enumerate(schema.features)
        if schema.columns[name].dtype == "category"
    }


def codes(values: pd.Series, categories: list[str]) -> npt.NDArray[np.float64]:
    """Each value's position in ``categories`` (NaN for a missing value).

    Raises ValueError naming the first value that is not a category: validated data has none.
    """
    positions = pd.Categorical(values, categories=categories).codes.astype(np.float64)
    unknown = (positions < 0) & values.notna().to_numpy()
    if unknown.any():
        raise ValueError(
            f"column {values.name!r}: {values[unknown].iloc[0]!r} is not one of {categories}"
        )
    positions[positions < 0] = np.nan
    return positions


def encoded_frame(frame: pd.DataFrame, schema: DatasetSchema) -> pd.DataFrame:
    """The features of ``frame`` (schema order) as float64 columns, category features as codes."""
    columns = {}
    for name in schema.features:
        spec = schema.columns[name]
        if spec.dtype == "category":
            columns[name] = codes(frame[name], spec.categories)
        else:
            columns[name] = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.DataFrame(columns, index=frame.index)


def feature_matrix(frame: pd.DataFrame, schema: DatasetSchema) -> npt.NDArray[np.float64]:
    """The model input of ``frame``'s rows: float64, features in schema order."""
    return encoded_frame(frame, schema).to_numpy(dtype=np.float64)


def decode_codes(frame: pd.DataFrame, schema: DatasetSchema) -> pd.DataFrame:
    """A copy of ``frame`` with the codes of its category features replaced by their text (NaN and
    codes outside the list stay missing); the inverse of :func:`encoded_frame`, column by column."""
    decoded = frame.copy()
    for name in schema.features:
        spec = schema.columns[name]
        if spec.dtype != "category" or name not in decoded.columns:
            continue
        position = pd.to_numeric(decoded[name], errors="coerce").to_numpy(dtype=np.float64)
        valid = np.isfinite(position) & (position >= 0) & (position < len(spec.categories))
        valid &= np.floor(np.where(valid, position, 0)) == position
        text = np.full(len(position), None, dtype=object)
        text[valid] = np.asarray(spec.categories, dtype=object)[position[valid].astype(np.int64)]
        decoded[name] = text
    return decoded
