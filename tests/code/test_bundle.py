"""mloop.bundle: the champion bundle round-trips, is refused when inconsistent, swaps atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyRegressor
from sklearn.pipeline import Pipeline

from mloop.bundle import FORMAT_VERSION, BundleError, file_digests, load_bundle, write_bundle
from mloop.config import DatasetSchema
from mloop.fileio import write_json
from mloop.models.store import NATIVE_FILES, save_native
from mloop.reference import compute_reference
from tests.helpers.paths import DIABETES_SCHEMA


def bundle_meta(features: list[str], version: str = "1") -> dict[str, Any]:
    return {
        "registered_model": "mloop-diabetes",
        "version": version,
        "candidate": "elasticnet",
        "task": "regression",
        "target": "target",
        "features": list(features),
        "metrics": {"rmse": 53.1, "mae": 42.0, "r2": 0.48},
        "trained_at": "2024-06-01T10:00:00+00:00",
        "promoted_at": "2024-06-01T10:05:00+00:00",
        "git_commit": "0123456789abcdef",
        "data_md5": "d41d8cd98f00b204e9800998ecf8427e",
    }


@pytest.fixture
def reference_file(
    tmp_path: Path, diabetes_frame: pd.DataFrame, diabetes_schema: DatasetSchema
) -> Path:
    path = tmp_path / "reference_stats.json"
    write_json(path, compute_reference(diabetes_frame, diabetes_schema, 10))
    return path


@pytest.fixture
def model_dir(tmp_path: Path, elasticnet: Pipeline, diabetes_schema: DatasetSchema) -> Path:
    directory = tmp_path / "candidates" / "elasticnet"
    save_native(elasticnet, directory, "regression", diabetes_schema.features)
    return directory


@pytest.fixture
def champion(tmp_path: Path) -> Path:
    return tmp_path / "models" / "champion"


def leftovers(champion: Path) -> list[str]:
    """Entries beside the champion other than the champion itself (staging or retired dirs)."""
    return sorted(p.name for p in champion.parent.iterdir() if p.name != champion.name)


def test_write_then_load_round_trip(
    champion: Path,
    model_dir: Path,
    reference_file: Path,
    elasticnet: Pipeline,
    diabetes_schema: DatasetSchema,
    diabetes_xy: tuple[np.ndarray, np.ndarray],
):
    meta = bundle_meta(diabetes_schema.features)
    written = write_bundle(champion, model_dir, DIABETES_SCHEMA, reference_file, meta)
    loaded = load_bundle(champion)

    for bundle in (written, loaded):
        assert bundle.path == champion
        assert bundle.meta == {
            "format_version": FORMAT_VERSION,
            **meta,
            "files": file_digests(champion),
        }
        assert sorted(bundle.meta["files"]) == [
            "model/model.joblib", "model/model.json", "reference_stats.json", "schema.yaml"
        ]  # fmt: skip
        assert bundle.version == "1"
        assert bundle.features == diabetes_schema.features
        assert bundle.schema == diabetes_schema
        assert bundle.reference == json.loads(reference_file.read_text(encoding="utf-8"))
    X, _ = diabetes_xy
    np.testing.assert_allclose(loaded.predictor.predict(X), elasticnet.predict(X))
    assert sorted(p.name for p in champion.iterdir()) == [
        "bundle.json",
        "model",
        "reference_stats.json",
        "schema.yaml",
    ]
    assert leftovers(champion) == []


def test_a_changed_model_file_in_a_bundle_is_refused(
    champion: Path, model_dir: Path, reference_file: Path, diabetes_schema: DatasetSchema
):
    write_bundle(
        champion, model_dir, DIABETES_SCHEMA, reference_file, bundle_meta(diabetes_schema.features)
    )
    (champion / "model" / NATIVE_FILES["sklearn"]).write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(BundleError, match="model.joblib does not match its recorded sha256"):
        load_bundle(champion)


def test_bundle_whose_model_file_is_missing_is_refused(
    champion: Path, model_dir: Path, reference_file: Path, diabetes_schema: DatasetSchema
):
    write_bundle(
        champion, model_dir, DIABETES_SCHEMA, reference_file, bundle_meta(diabetes_schema.features)
    )
    (champion / "model" / NATIVE_FILES["sklearn"]).unlink()
    with pytest.raises(BundleError, match="model/model.joblib is missing"):
        load_bundle(champion)


def test_a_file_added_after_promotion_is_refused(
    champion: Path, model_dir: Path, reference_file: Path, diabetes_schema: DatasetSchema
):
    """An ONNX file copied in would be served in place of the promoted model: refused."""
    write_bundle(
        champion, model_dir, DIABETES_SCHEMA, reference_file, bundle_meta(diabetes_schema.features)
    )
    (champion / "model" / "model.onnx").write_bytes(b"from another candidate")
    with pytest.raises(BundleError, match="model/model.onnx was not in the bundle"):
        load_bundle(champion)


@pytest.mark.parametrize(
    ("file", "content", "reason"),
    [
        ("bundle.json", "123", "bundle.json is not a JSON object"),
        ("bundle.json", "null", "bundle.json is not a JSON object"),
        ("bundle.json", "[]", "bundle.json is not a JSON object"),
        ("reference_stats.json", "[]", "reference_stats.json is malformed"),
        ("reference_stats.json", '{"features": 3}', "reference_stats.json is malformed"),
    ],
)
def test_json_of_the_wrong_shape_is_refused(
    champion: Path,
    model_dir: Path,
    reference_file: Path,
    diabetes_schema: DatasetSchema,
    file: str,
    content: str,
    reason: str,
):
    write_bundle(
        champion, model_dir, DIABETES_SCHEMA, reference_file, bundle_meta(diabetes_schema.features)
    )
    (champion / file).write_text(content, encoding="utf-8")
    with pytest.raises(BundleError, match=reason):
        load_bundle(champion)


def test_fields_of_the_wrong_type_are_refused(
    champion: Path, model_dir: Path, reference_file: Path, diabetes_schema: DatasetSchema
):
    write_bundle(
        champion, model_dir, DIABETES_SCHEMA, reference_file, bundle_meta(diabetes_schema.features)
    )
    meta = json.loads((champion / "bundle.json").read_text(encoding="utf-8"))
    meta.update(features="age", files=None)
    (champion / "bundle.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(BundleError, match="bundle.json is malformed: features: .*files: "):
        load_bundle(champion)


def test_corrupted_model_is_never_published_and_the_old_bundle_stays(
    champion: Path,
    model_dir: Path,
    reference_file: Path,
    tmp_path: Path,
    diabetes_schema: DatasetSchema,
):
    write_bundle(
        champion, model_dir, DIABETES_SCHEMA, reference_file, bundle_meta(diabetes_schema.features)
    )
    broken = tmp_path / "candidates" / "broken"
    save_native(
        DummyRegressor().fit([[0.0] * 10], [1.0]), broken, "regression", diabetes_schema.features
    )
    (broken / NATIVE_FILES["sklearn"]).write_bytes(b"garbage")

    with pytest.raises(BundleError):
        write_bundle(
            champion,
            broken,
            DIABETES_SCHEMA,
            reference_file,
            bundle_meta(diabetes_schema.features, "2"),
        )

    assert load_bundle(champion).version == "1"
    assert leftovers(champion) == []


def test_model_trained_on_other_features_is_refused(
    champion: Path,
    reference_file: Path,
    tmp_path: Path,
    elasticnet: Pipeline,
    diabetes_schema: DatasetSchema,
):
    reordered = list(reversed(diabetes_schema.features))
    directory = tmp_path / "candidates" / "reordered"
    save_native(elasticnet, directory, "regression", reordered)
    with pytest.raises(BundleError, match="feature order differs"):
        write_bundle(
            champion,
            directory,
            DIABETES_SCHEMA,
            reference_file,
            bundle_meta(diabetes_schema.features),
        )
    assert not champion.exists()
    assert leftovers(champion) == []


def test_bundle_meta_with_other_features_is_refused(
    champion: Path, model_dir: Path, reference_file: Path, diabetes_schema: DatasetSchema
):
    meta = bundle_meta(diabetes_schema.features[:-1])
    with pytest.raises(BundleError, match="feature order differs"):
        write_bundle(champion, model_dir, DIABETES_SCHEMA, reference_file, meta)
    assert not champion.exists()


def test_reference_lacking_a_feature_is_refused(
    champion: Path,
    model_dir: Path,
    tmp_path: Path,
    diabetes_frame: pd.DataFrame,
    diabetes_schema: DatasetSchema,
):
    partial = tmp_path / "partial_reference.json"
    without_s6 = diabetes_schema.model_copy(
        update={"columns": {k: v for k, v in diabetes_schema.columns.items() if k != "s6"}}
    )
    write_json(partial, compute_reference(diabetes_frame, without_s6, 10))
    with pytest.raises(BundleError, match="reference statistics lack s6"):
        write_bundle(
            champion, model_dir, DIABETES_SCHEMA, partial, bundle_meta(diabetes_schema.features)
        )


def test_bundle_json_lacking_required_fields_is_refused(
    champion: Path, model_dir: Path, reference_file: Path, diabetes_schema: DatasetSchema
):
    write_bundle(
        champion, model_dir, DIABETES_SCHEMA, reference_file, bundle_meta(diabetes_schema.features)
    )
    meta = json.loads((champion / "bundle.json").read_text(encoding="utf-8"))
    del meta["git_commit"], meta["data_md5"]
    (champion / "bundle.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(BundleError, match="lacks git_commit, data_md5"):
        load_bundle(champion)


def test_bundle_of_another_format_version_is_refused(
    champion: Path, model_dir: Path, reference_file: Path, diabetes_schema: DatasetSchema
):
    write_bundle(
        champion, model_dir, DIABETES_SCHEMA, reference_file, bundle_meta(diabetes_schema.features)
    )
    meta = json.loads((champion / "bundle.json").read_text(encoding="utf-8"))
    (champion / "bundle.json").write_text(
        json.dumps({**meta, "format_version": FORMAT_VERSION + 1}), encoding="utf-8"
    )
    with pytest.raises(BundleError, match="bundle format"):
        load_bundle(champion)


def test_directory_without_bundle_json_is_not_a_bundle(tmp_path: Path):
    with pytest.raises(BundleError, match="not a champion bundle"):
        load_bundle(tmp_path)


def test_second_bundle_replaces_the_first_and_leaves_no_staging_dirs(
    champion: Path,
    model_dir: Path,
    reference_file: Path,
    tmp_path: Path,
    diabetes_schema: DatasetSchema,
    diabetes_xy: tuple[np.ndarray, np.ndarray],
):
    features = diabetes_schema.features
    first = write_bundle(
        champion, model_dir, DIABETES_SCHEMA, reference_file, bundle_meta(features)
    )
    X, y = diabetes_xy
    assert np.ptp(first.predictor.predict(X)) > 0

    mean_model = tmp_path / "candidates" / "baseline"
    save_native(DummyRegressor(strategy="mean").fit(X, y), mean_model, "regression", features)
    second = write_bundle(
        champion, mean_model, DIABETES_SCHEMA, reference_file, bundle_meta(features, "2")
    )

    assert second.version == "2"
    reloaded = load_bundle(champion)
    assert reloaded.version == "2"
    np.testing.assert_allclose(reloaded.predictor.predict(X), np.full(len(X), y.mean()))
    assert leftovers(champion) == [], "no .champion.new-* or .champion.old left behind"
    assert not list(champion.parent.glob(".champion.new-*"))
