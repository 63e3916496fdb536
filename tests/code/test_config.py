"""mloop.config: the repo's params load, and a bad value fails with a ConfigError naming its key."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mloop.config import (
    ConfigError,
    SourceConfig,
    load_config,
    load_schema,
    metric_is_lower_better,
)
from tests.helpers.paths import DIABETES_SCHEMA, PARAMS, SHIPPED_SCHEMAS, read_params

SHA = "ab" * 32


@pytest.fixture(scope="module")
def repo_params() -> dict[str, Any]:
    return read_params()


@pytest.fixture(scope="module")
def diabetes_schema_raw() -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(DIABETES_SCHEMA.read_text(encoding="utf-8"))
    return raw


def write_yaml(path: Path, payload: Any) -> Path:
    path.write_text(yaml.safe_dump(payload, sort_keys=False), encoding="utf-8")
    return path


def test_repo_params_load_with_the_diabetes_schema():
    config = load_config(PARAMS)
    assert config.schema.name == "diabetes"
    assert config.schema.task == "regression"
    assert config.schema.target == "target"
    assert config.schema.features == ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    assert config.selection_metric == "rmse"
    assert config.registered_model_name == "mloop-diabetes"


@pytest.mark.parametrize("path", SHIPPED_SCHEMAS, ids=lambda p: p.stem)
def test_every_shipped_dataset_schema_is_valid(path: Path):
    schema = load_schema(path)
    assert schema.target not in schema.features
    assert len(schema.features) == len(schema.columns) - 1


def test_relative_dataset_path_resolves_from_the_params_file(
    tmp_path: Path, repo_params: dict[str, Any], diabetes_schema_raw: dict[str, Any]
):
    (tmp_path / "datasets").mkdir()
    renamed = {**diabetes_schema_raw, "name": "renamed-diabetes"}
    write_yaml(tmp_path / "datasets" / "mine.yaml", renamed)
    params = write_yaml(tmp_path / "params.yaml", {**repo_params, "dataset": "datasets/mine.yaml"})
    assert load_config(params).schema.name == "renamed-diabetes"


def _set(section: str, **values: Any) -> Callable[[dict[str, Any]], None]:
    def edit(raw: dict[str, Any]) -> None:
        raw[section].update(values)

    return edit


def _rename_split(raw: dict[str, Any]) -> None:
    raw["splt"] = raw.pop("split")


def _drop_raw_data_path(raw: dict[str, Any]) -> None:
    del raw["paths"]["raw_data"]


def _unknown_candidate_kind(raw: dict[str, Any]) -> None:
    raw["train"]["candidates"]["baseline"]["kind"] = "svm"


def _unknown_candidate_option(raw: dict[str, Any]) -> None:
    raw["train"]["candidates"]["elasticnet"]["enabeld"] = False


def _disable_all_candidates(raw: dict[str, Any]) -> None:
    for spec in raw["train"]["candidates"].values():
        spec["enabled"] = False


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (_set("split", test_size=1.5), "split.test_size"),
        (_set("split", strategy="stratified"), "split.strategy"),
        (_set("reference", bins="ten"), "reference.bins"),
        (_set("reference", bins=1), "reference.bins"),
        (_set("promote", max_latency_ms=0), "promote.max_latency_ms"),
        (_set("promote", tolerance=-0.1), "promote.tolerance"),
        (_set("evaluate", latency_repeats=0), "evaluate.latency_repeats"),
        (_rename_split, "splt"),
        (_drop_raw_data_path, "paths.raw_data"),
        (_unknown_candidate_kind, "train.candidates.baseline.kind"),
        (_unknown_candidate_option, "train.candidates.elasticnet.enabeld"),
        (_disable_all_candidates, "train"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_bad_params_raise_config_error_naming_the_key(
    tmp_path: Path, repo_params: dict[str, Any], edit: Callable[[dict[str, Any]], None], key: str
):
    raw = copy.deepcopy(repo_params)
    edit(raw)
    params = write_yaml(tmp_path / "params.yaml", raw)
    with pytest.raises(ConfigError) as excinfo:
        load_config(params)
    message = str(excinfo.value)
    assert str(params) in message
    assert f"  - {key}: " in message, message


def test_missing_params_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.yaml")


def test_unparseable_params_file_is_a_config_error(tmp_path: Path):
    params = tmp_path / "params.yaml"
    params.write_text("split: [test_size, \n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(params)


def test_missing_dataset_schema_is_a_config_error(tmp_path: Path, repo_params: dict[str, Any]):
    params = write_yaml(tmp_path / "params.yaml", {**repo_params, "dataset": "nowhere.yaml"})
    with pytest.raises(ConfigError, match=r"nowhere\.yaml: file not found"):
        load_config(params)


def test_url_source_without_sha256_is_rejected(
    tmp_path: Path, repo_params: dict[str, Any], diabetes_schema_raw: dict[str, Any]
):
    schema = {**diabetes_schema_raw, "source": {"kind": "url", "url": "https://example.org/d.csv"}}
    schema_file = write_yaml(tmp_path / "schema.yaml", schema)
    with pytest.raises(ConfigError) as excinfo:
        load_schema(schema_file)
    assert "  - source: " in str(excinfo.value)
    assert "sha256" in str(excinfo.value)
    # the same schema named by params fails params loading too, naming the schema file
    params = write_yaml(tmp_path / "params.yaml", {**repo_params, "dataset": str(schema_file)})
    with pytest.raises(ConfigError, match="schema.yaml: invalid dataset schema"):
        load_config(params)


def test_url_source_with_sha256_is_accepted(tmp_path: Path, diabetes_schema_raw: dict[str, Any]):
    source = {"kind": "url", "url": "https://example.org/d.csv", "sha256": SHA}
    schema = load_schema(write_yaml(tmp_path / "s.yaml", {**diabetes_schema_raw, "source": source}))
    assert schema.source.sha256 == SHA


@pytest.mark.parametrize(
    ("source", "key", "words"),
    [
        ({"kind": "url", "url": "ftp://example.org/d.csv", "sha256": SHA}, "source", "http(s)"),
        ({"kind": "url", "url": "https://x.org/d.csv", "sha256": "ABC"}, "source.sha256", ""),
        ({"kind": "path"}, "source", "'path'"),
        ({"kind": "bundled"}, "source", "'name'"),
        ({"kind": "s3", "path": "bucket/d.csv"}, "source.kind", ""),
    ],
)
def test_bad_sources_are_rejected(
    tmp_path: Path,
    diabetes_schema_raw: dict[str, Any],
    source: dict[str, Any],
    key: str,
    words: str,
):
    schema_file = write_yaml(tmp_path / "s.yaml", {**diabetes_schema_raw, "source": source})
    with pytest.raises(ConfigError) as excinfo:
        load_schema(schema_file)
    assert f"  - {key}: " in str(excinfo.value)
    assert words in str(excinfo.value)


def test_schema_whose_target_is_not_a_column_is_rejected(
    tmp_path: Path, diabetes_schema_raw: dict[str, Any]
):
    schema_file = write_yaml(tmp_path / "s.yaml", {**diabetes_schema_raw, "target": "outcome"})
    with pytest.raises(ConfigError, match="'outcome' is not one of the columns"):
        load_schema(schema_file)


def test_source_config_alone_enforces_the_sha256_pin():
    with pytest.raises(ValueError, match="sha256"):
        SourceConfig(kind="url", url="https://example.org/d.csv")


@pytest.mark.parametrize(
    ("metric", "lower"),
    [("rmse", True), ("mae", True), ("log_loss", True), ("r2", False), ("roc_auc", False)],
)
def test_metric_direction(metric: str, lower: bool):
    assert metric_is_lower_better(metric) is lower
