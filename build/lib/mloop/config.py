"""Typed view of ``params.yaml`` and of the dataset schema file it points to.

This is the only module that reads configuration files, so every stage sees the same validated
values and a typo in ``params.yaml`` fails loudly before any work starts, naming the offending key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Task = Literal["regression", "classification"]
CandidateKind = Literal[
    "baseline", "linear", "random_forest", "extra_trees", "hist_gradient_boosting", "keras_mlp"
]
DEFAULT_PARAMS = Path("params.yaml")

# Metrics for which a smaller value is better; every other metric is "higher is better".
LOWER_IS_BETTER = frozenset({"rmse", "mae", "log_loss"})


class ConfigError(ValueError):
    """A configuration file is missing or invalid; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------- dataset


class SourceConfig(_Strict):
    """Where the dataset comes from. Exactly the fields of its ``kind`` are required."""

    kind: Literal["bundled", "path", "url"]
    name: str | None = None
    path: str | None = None
    url: str | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    sep: str = ","

    @model_validator(mode="after")
    def _fields_for_kind(self) -> SourceConfig:
        if self.kind == "bundled" and not self.name:
            raise ValueError("a bundled source needs 'name' (e.g. sklearn.diabetes)")
        if self.kind == "path" and not self.path:
            raise ValueError("a path source needs 'path'")
        if self.kind == "url":
            if not self.url or not self.url.startswith(("http://", "https://")):
                raise ValueError("a url source needs an http(s) 'url'")
            if not self.sha256:
                raise ValueError("a url source needs a pinned 'sha256' of the file")
        return self


class ColumnSpec(_Strict):
    """One column: its type and the values it may take.

    A ``category`` column holds text from ``allowed`` (required, in a fixed order: models see the
    position of a value in that list, see :mod:`mloop.encoding`); the other dtypes are numbers.
    """

    dtype: Literal["float", "int", "bool", "category"]
    min: float | None = None
    max: float | None = None
    allowed: list[float] | list[str] | None = None
    nullable: bool = False
    description: str = ""

    @model_validator(mode="after")
    def _allowed_fits_dtype(self) -> ColumnSpec:
        textual = self.allowed is not None and any(isinstance(v, str) for v in self.allowed)
        if self.dtype == "category":
            if not self.allowed or not textual:
                raise ValueError(
                    "a category column needs 'allowed': its values as text, in a fixed order "
                    "(quote numbers: ['1', '2'])"
                )
            if len(set(self.allowed)) != len(self.allowed):
                raise ValueError("'allowed' lists a category twice")
            if self.min is not None or self.max is not None:
                raise ValueError("a category column has no 'min' or 'max', only 'allowed'")
        elif textual:
            raise ValueError(f"'allowed' of a {self.dtype} column must be numbers")
        return self

    @property
    def categories(self) -> list[str]:
        """The allowed values of a category column, in order (empty for other dtypes)."""
        return [str(v) for v in self.allowed or ()] if self.dtype == "category" else []


class DatasetSchema(_Strict):
    """A dataset is a source plus this schema; nothing else in the code knows about a dataset."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    task: Task
    description: str = ""
    source: SourceConfig
    target: str
    columns: dict[str, ColumnSpec]
    extra_columns: Literal["drop", "fail"] = Field(
        default="drop",
        description="columns of the file that are not listed: dropped (and reported), or refused",
    )

    @model_validator(mode="after")
    def _target_is_a_column(self) -> DatasetSchema:
        if self.target not in self.columns:
            raise ValueError(f"target {self.target!r} is not one of the columns")
        if self.columns[self.target].dtype == "category":
            raise ValueError(
                f"target {self.target!r}: a category target is not supported yet; encode its "
                "classes as integers (0, 1, ...) and describe them in 'description'"
            )
        if len(self.columns) < 2:
            raise ValueError("a dataset needs the target and at least one feature")
        return self

    @property
    def features(self) -> list[str]:
        """Feature names in schema order: the order every model is trained and served with."""
        return [name for name in self.columns if name != self.target]


# --------------------------------------------------------------------------------------- params


class PathsParams(_Strict):
    source_fingerprint: Path
    raw_data: Path
    raw_manifest: Path
    validation_report: Path
    train_data: Path
    test_data: Path
    reference_stats: Path
    candidates_dir: Path
    training_plots_dir: Path
    metrics: Path
    latency: Path
    plots_dir: Path
    promotion_report: Path
    champion_dir: Path


class IngestParams(_Strict):
    extra_rows: Path = Field(description="folder (or file) of labelled production rows to append")


class SplitParams(_Strict):
    strategy: Literal["random", "group_duplicates"]
    test_size: float = Field(gt=0, lt=1)
    seed: int
    stratify: bool = False


class ReferenceParams(_Strict):
    bins: int = Field(ge=2, le=100)


class CandidateSpec(_Strict):
    """A candidate model; hyperparameters are given per task so one list serves every dataset."""

    kind: CandidateKind
    enabled: bool = True
    regression: dict[str, Any] = Field(default_factory=dict)
    classification: dict[str, Any] = Field(default_factory=dict)

    def hyperparameters(self, task: Task) -> dict[str, Any]:
        return dict(self.regression if task == "regression" else self.classification)


class ServingParams(_Strict):
    """ONNX export of scikit-learn candidates, kept only within these parity bounds."""

    onnx: bool = True
    parity_atol: float = Field(ge=0)
    parity_rtol: float = Field(ge=0)


class TrainParams(_Strict):
    seed: int
    serving: ServingParams
    candidates: dict[str, CandidateSpec]

    @model_validator(mode="after")
    def _at_least_one_enabled(self) -> TrainParams:
        if not any(spec.enabled for spec in self.candidates.values()):
            raise ValueError("no candidate is enabled")
        return self

    @property
    def enabled(self) -> dict[str, CandidateSpec]:
        return {name: spec for name, spec in self.candidates.items() if spec.enabled}


class EvaluateParams(_Strict):
    latency_warmup: int = Field(ge=0)
    latency_repeats: int = Field(ge=1)
    batch_latency_rows: int = Field(default=10_000, ge=1)
    native_batch_speedup: float = Field(
        default=1.25, ge=1.0, description="native serves large batches only if this much faster"
    )
    importance_repeats: int = Field(ge=1)
    importance_seed: int


class PromoteParams(_Strict):
    metric: dict[Task, str]
    tolerance: float = Field(ge=0, description="relative: 0.01 lets a challenger be 1% worse")
    max_latency_ms: float = Field(gt=0)
    registered_model_prefix: str
    fail_if_not_promoted: bool = False
    min_compared_rows: int = Field(
        default=30, ge=1, description="unseen test rows the gate needs to compare on"
    )
    too_few_rows: Literal["keep", "promote", "fail"] = Field(
        default="keep", description="what the gate does with fewer unseen rows than that"
    )

    def metric_for(self, task: Task) -> str:
        return self.metric[task]


class TrackingParams(_Strict):
    tracking_uri: str
    artifact_location: Path
    experiment_prefix: str


class Params(_Strict):
    dataset: Path
    paths: PathsParams
    ingest: IngestParams
    split: SplitParams
    reference: ReferenceParams
    train: TrainParams
    evaluate: EvaluateParams
    promote: PromoteParams
    tracking: TrackingParams


@dataclass(frozen=True)
class Config:
    """Everything a stage needs: the params and the schema of the dataset they select."""

    params: Params
    schema: DatasetSchema
    params_file: Path

    @property
    def registered_model_name(self) -> str:
        return f"{self.params.promote.registered_model_prefix}{self.schema.name}"

    @property
    def experiment_name(self) -> str:
        return f"{self.params.tracking.experiment_prefix}{self.schema.name}"

    @property
    def selection_metric(self) -> str:
        return self.params.promote.metric_for(self.schema.task)


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"  - {where}: {error['msg']}")
    return "\n".join(lines)


def load_schema(path: Path) -> DatasetSchema:
    raw = _read_yaml(path)
    try:
        return DatasetSchema.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid dataset schema\n{_describe(exc)}") from None


def load_config(params_file: Path = DEFAULT_PARAMS) -> Config:
    """Load params and the dataset schema they name; relative paths resolve from the params file."""
    raw = _read_yaml(params_file)
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{params_file}: invalid params\n{_describe(exc)}") from None
    schema_path = params.dataset
    if not schema_path.is_absolute():
        schema_path = params_file.parent / schema_path
    return Config(params=params, schema=load_schema(schema_path), params_file=params_file)


def metric_is_lower_better(metric: str) -> bool:
    return metric in LOWER_IS_BETTER
