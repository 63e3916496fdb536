"""Stage 3 - prepare: split train/test per params and record the training reference statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import typer
from sklearn.model_selection import train_test_split

from mloop.config import DEFAULT_PARAMS, Config, DatasetSchema, SplitParams, load_config
from mloop.console import console, stage
from mloop.fileio import write_json
from mloop.reference import compute_reference
from mloop.rows import row_ids
from mloop.schema_checks import read_typed


def split_indices(
    frame: pd.DataFrame, schema: DatasetSchema, split: SplitParams
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Row indices of train and test.

    ``group_duplicates`` starts from the same seeded random split and then moves every test row whose
    feature vector also occurs in train over to train. Identical inputs thus never sit on both sides
    (a model that memorises them would look better than it is), while the split otherwise stays the
    familiar random one, so figures remain comparable with published random-split results.
    """
    rows = np.arange(len(frame))
    stratify = frame[schema.target] if split.stratify and schema.task == "classification" else None
    train, test = train_test_split(
        rows, test_size=split.test_size, random_state=split.seed, stratify=stratify
    )
    if split.strategy == "group_duplicates":
        groups = row_ids(frame, schema)  # rows sharing an id are copies of one input
        in_train = np.isin(groups[test], groups[train])
        train = np.concatenate([train, test[in_train]])
        test = test[~in_train]
    return np.asarray(train, dtype=np.int64), np.asarray(test, dtype=np.int64)


def run(config: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    schema, params, paths = config.schema, config.params, config.params.paths
    frame = read_typed(paths.raw_data, schema)
    train_idx, test_idx = split_indices(frame, schema, params.split)
    # Shuffle train once, seeded: validation_split in Keras takes the tail, which must be random.
    rng = np.random.default_rng(params.split.seed)
    train = frame.iloc[rng.permutation(train_idx)].reset_index(drop=True)
    test = frame.iloc[np.sort(test_idx)].reset_index(drop=True)

    paths.train_data.parent.mkdir(parents=True, exist_ok=True)
    train.to_parquet(paths.train_data, index=False)
    test.to_parquet(paths.test_data, index=False)
    reference = compute_reference(train, schema, params.reference.bins)
    reference["split"] = {
        "strategy": params.split.strategy,
        "requested_test_size": params.split.test_size,
        "test_fraction": round(len(test) / len(frame), 4),
        "train_rows": len(train),
        "test_rows": len(test),
    }
    write_json(paths.reference_stats, reference)
    console.print(
        f"split ({params.split.strategy}): {len(train)} train / {len(test)} test rows; "
        f"reference statistics for {len(schema.features)} features"
    )
    return train, test


def main(params: Path = typer.Option(DEFAULT_PARAMS, "--params", "-p", help="params file")) -> None:
    """Split the validated data and write the reference statistics used for drift."""
    with stage("prepare"):
        run(load_config(params))


if __name__ == "__main__":
    typer.run(main)
