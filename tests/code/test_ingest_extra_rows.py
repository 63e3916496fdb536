"""mloop.ingest.read_extra_rows: labelled production rows (CSV, Parquet) appended to the source."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mloop.errors import SourceError
from mloop.ingest import read_extra_rows

COLUMNS = ["x1", "x2", "target"]


def rows(start: int, count: int) -> pd.DataFrame:
    values = range(start, start + count)
    return pd.DataFrame(
        {"x1": [float(v) for v in values], "x2": [v * 10.0 for v in values], "target": list(values)}
    )


def test_csv_and_parquet_files_are_all_appended(tmp_path: Path):
    feedback = tmp_path / "feedback"
    (feedback / "2024" / "06").mkdir(parents=True)
    rows(0, 3).to_csv(feedback / "a.csv", index=False)
    rows(3, 2).to_parquet(feedback / "2024" / "06" / "b.parquet", index=False)
    rows(5, 4).to_csv(feedback / "c.csv", index=False)
    (feedback / "notes.txt").write_text("not rows", encoding="utf-8")  # other files are ignored

    frame, used = read_extra_rows(feedback, COLUMNS)

    assert sorted(Path(p).name for p in used) == ["a.csv", "b.parquet", "c.csv"]
    assert len(frame) == 9
    assert list(frame.columns) == COLUMNS
    assert sorted(frame["target"].tolist()) == list(range(9))
    assert frame.index.tolist() == list(range(9)), "rows are renumbered, not duplicated indices"
    pd.testing.assert_series_equal(frame["x2"], frame["x1"] * 10.0, check_names=False)


def test_columns_are_reordered_and_extra_columns_dropped(tmp_path: Path):
    extra = rows(0, 2)[["target", "x2", "x1"]].assign(prediction_id=["p1", "p2"])
    extra.to_parquet(tmp_path / "log.parquet", index=False)
    frame, used = read_extra_rows(tmp_path / "log.parquet", COLUMNS)  # a single file works too
    assert used == [str(tmp_path / "log.parquet")]
    pd.testing.assert_frame_equal(frame, rows(0, 2))


def test_file_lacking_a_column_is_a_source_error(tmp_path: Path):
    rows(0, 2).to_csv(tmp_path / "good.csv", index=False)
    rows(2, 2).drop(columns=["target"]).to_parquet(tmp_path / "unlabelled.parquet", index=False)
    with pytest.raises(SourceError) as excinfo:
        read_extra_rows(tmp_path, COLUMNS)
    assert "unlabelled.parquet" in str(excinfo.value)
    assert "lack column(s): target" in str(excinfo.value)


def test_missing_or_empty_location_gives_no_rows(tmp_path: Path):
    for location in (tmp_path / "absent", tmp_path):
        frame, used = read_extra_rows(location, COLUMNS)
        assert used == []
        assert frame.empty
        assert list(frame.columns) == COLUMNS
