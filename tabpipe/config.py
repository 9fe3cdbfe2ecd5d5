"""The pipeline config: one YAML per data set, validated once when loaded.

``load_config`` reads the YAML, resolves relative paths against the config's
folder, reads the data contract it names, checks the candidates' search spaces
against scikit-learn and returns a :class:`PipelineConfig`. Estimator names and
the tasks they support come from the registry in :mod:`tabpipe.estimators`.
The resolved config (contract inlined) is what the KFP pipeline receives as
its one structured parameter, so every component sees the same validated
settings and the cache key changes whenever any setting does.
"""

from __future__ import annotations

import enum
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tabpipe.contract import DataContract, parse_contract, read_yaml, validate_document
from tabpipe.errors import ConfigError
from tabpipe.estimators import ESTIMATORS, EstimatorSpec, check_search_spaces
from tabpipe.task_type import TaskType  # re-exported: the config is where callers look for it


class SourceFormat(enum.StrEnum):
    """File formats ingest can read."""

    CSV = "csv"
    PARQUET = "parquet"
    JSON = "json"


class Metric(enum.StrEnum):
    """Metrics evaluate computes; each knows whether higher is better."""

    ACCURACY = "accuracy"
    PRECISION = "precision"
    RECALL = "recall"
    F1 = "f1"
    ROC_AUC = "roc_auc"
    MAE = "mae"
    RMSE = "rmse"
    R2 = "r2"

    @property
    def higher_is_better(self) -> bool:
        """Direction of improvement."""
        return self not in (Metric.MAE, Metric.RMSE)

    @property
    def for_classification(self) -> bool:
        """Whether the metric applies to classification (else regression)."""
        return self not in (Metric.MAE, Metric.RMSE, Metric.R2)


class _EstimatorName(enum.StrEnum):
    """Base of :data:`Estimator`: a registered estimator's name, with its registry entry."""

    @property
    def spec(self) -> EstimatorSpec:
        """The estimator's registry entry."""
        return ESTIMATORS[self.value]

    @property
    def tasks(self) -> frozenset[TaskType]:
        """Tasks the estimator can be used for."""
        return self.spec.tasks


#: The estimators a config may name, generated from the registry (:mod:`tabpipe.estimators`)
#: so the YAML, its error messages and the JSON schema list exactly the registered ones.
Estimator = _EstimatorName(
    "Estimator",
    [(name.upper(), name) for name in ESTIMATORS],
    module=__name__,
    qualname="Estimator",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    """Where the raw data comes from."""

    uri: str = Field(description="Local path (relative to the config file) or, later, s3:// URI.")
    format: SourceFormat | None = Field(
        default=None, description="File format; inferred from the suffix when omitted."
    )

    @property
    def resolved_format(self) -> SourceFormat:
        """The declared format, or the one the URI's suffix implies."""
        if self.format is not None:
            return self.format
        suffix = Path(self.uri.split("?")[0]).suffix.lower().lstrip(".")
        aliases = {
            "csv": SourceFormat.CSV,
            "parquet": SourceFormat.PARQUET,
            "pq": SourceFormat.PARQUET,
            "json": SourceFormat.JSON,
            "jsonl": SourceFormat.JSON,
        }
        if suffix not in aliases:
            raise ConfigError(
                f"source.format: cannot infer the format of {self.uri!r}; set source.format "
                f"to one of {[f.value for f in SourceFormat]}"
            )
        return aliases[suffix]


class DuplicatePolicy(enum.StrEnum):
    """What ingest does with exact duplicate rows, so copies never sit on both sides of a split."""

    #: Keep one copy of each row (the count removed is reported).
    DROP = "drop"
    #: Keep every copy, all in the same split.
    GROUP = "group"
    #: Keep them and split them independently (copies leak from train into test: not advised).
    KEEP = "keep"


class SplitConfig(_Strict):
    """Train/validation/test split."""

    test_size: float = Field(default=0.2, gt=0.0, lt=1.0)
    validation_size: float = Field(default=0.1, gt=0.0, lt=1.0)
    seed: int = 42
    timestamp_column: str | None = Field(
        default=None, description="When set, split by time (oldest rows train) instead of stratified."
    )
    duplicates: DuplicatePolicy = Field(
        default=DuplicatePolicy.DROP, description="Exact duplicate rows: drop, group (one split) or keep."
    )
    group_column: str | None = Field(
        default=None, description="Rows sharing this column's value (an entity) stay in one split."
    )

    @model_validator(mode="after")
    def _room_for_training(self) -> SplitConfig:
        if self.test_size + self.validation_size >= 0.9:
            raise ValueError("test_size + validation_size must leave at least 10% for training")
        if self.group_column is not None and self.timestamp_column is not None:
            raise ValueError("group_column and timestamp_column cannot be combined; choose one way to split")
        return self


class FeatureOp(enum.StrEnum):
    """Operations an engineered feature can apply to numeric inputs."""

    RATIO = "ratio"
    PRODUCT = "product"
    DIFFERENCE = "difference"
    SUM = "sum"
    LOG1P = "log1p"


class EngineeredFeature(_Strict):
    """One derived numeric column, computed inside the model pipeline."""

    name: str
    op: FeatureOp
    inputs: list[str] = Field(min_length=1, max_length=2)

    @model_validator(mode="after")
    def _arity(self) -> EngineeredFeature:
        expected = 1 if self.op is FeatureOp.LOG1P else 2
        if len(self.inputs) != expected:
            raise ValueError(f"op {self.op.value!r} takes {expected} input(s), got {len(self.inputs)}")
        return self


class DatePart(enum.StrEnum):
    """A numeric part of a timestamp a datetime column can feed to the model."""

    YEAR = "year"
    QUARTER = "quarter"
    MONTH = "month"
    DAY = "day"
    DAYOFWEEK = "dayofweek"  # Monday = 0
    DAYOFYEAR = "dayofyear"
    HOUR = "hour"
    MINUTE = "minute"


class DatePartsFeature(_Strict):
    """Numeric features taken from one datetime column, computed inside the model pipeline."""

    column: str
    parts: list[DatePart] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> DatePartsFeature:
        if len(set(self.parts)) != len(self.parts):
            raise ValueError("parts lists a part twice")
        return self

    @property
    def output_names(self) -> list[str]:
        """The derived columns, ``<column>_<part>`` (e.g. ``listed_on_month``)."""
        return [f"{self.column}_{part.value}" for part in self.parts]


class FeaturesConfig(_Strict):
    """Feature handling declared per data set."""

    engineered: list[EngineeredFeature] = []
    date_parts: list[DatePartsFeature] = Field(
        default=[], description="Datetime columns fed to the model as numeric parts (year, month, ...)."
    )
    drop: list[str] = Field(default=[], description="Columns never used as features.")
    max_categories: int = Field(default=30, ge=2, description="Rarer categories are grouped.")


class ParamRange(_Strict):
    """A hyperparameter drawn from a numeric range."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> ParamRange:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        if self.integer and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise ValueError("an integer range needs whole-number low and high")
        if self.integer and self.log:
            raise ValueError("integer and log cannot be combined; list the values instead")
        return self


ParamSpace = ParamRange | list[Any]


class CandidateModel(_Strict):
    """One estimator to search, with its hyperparameter space."""

    estimator: Estimator
    params: dict[str, ParamSpace] = {}


class SearchConfig(_Strict):
    """Hyperparameter search settings."""

    n_iter: int = Field(default=6, ge=1, le=500)
    cv_folds: int = Field(default=3, ge=2, le=20)
    seed: int = 42
    n_jobs: int = Field(default=1, ge=-1, description="Parallel CV fits (joblib); -1 for all cores, never 0.")
    threads: int = Field(
        default=1,
        ge=1,
        description="OpenMP/BLAS threads per fit. OpenMP spin-waits collapse when cores are shared "
        "(a 15.6 s fit instead of 0.4 s measured here), so one thread is the safe default.",
    )

    @field_validator("n_jobs")
    @classmethod
    def _jobs_nonzero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be a positive number of jobs, or -1 for all cores")
        return value


class EvaluationConfig(_Strict):
    """Metrics, slices and the blessing gate."""

    primary_metric: Metric
    thresholds: dict[Metric, float] = Field(
        default={}, description="Lower bounds (or upper bounds for error metrics) the model must meet."
    )
    champion_tolerance: float = Field(
        default=0.0, ge=0.0, description="How much worse than the champion on the primary metric is allowed."
    )
    champion_min_rows: int = Field(
        default=30,
        ge=1,
        description=(
            "Fewest test rows the champion has not trained on for the champion comparison; "
            "with fewer, the comparison is skipped (and says so) rather than made on biased rows."
        ),
    )
    slices: list[str] = Field(default=[], description="Columns to compute per-value metrics on.")
    onnx_parity_tolerance: float = Field(
        default=1e-4, gt=0.0, description="Largest allowed ONNX vs scikit-learn difference on the test split."
    )
    require_onnx: bool = Field(default=False, description="Fail the gate when the model cannot be exported.")
    max_slice_values: int = Field(default=20, ge=1)


class DriftConfig(_Strict):
    """Drift check against a reference data set.

    A column drifts when its shift is both significant (Benjamini-Hochberg adjusted
    p-value below ``alpha``) and material (effect size at least ``min_effect``: the KS
    statistic for numbers, the total variation distance for categories; both are the
    share of probability mass that moved, 0 to 1). The run stops when a critical column
    drifts, or when more than ``max_drifted_share`` of the tested columns do.
    """

    reference_uri: str | None = Field(default=None, description="Reference data; no drift check when unset.")
    alpha: float = Field(
        default=0.05, gt=0.0, lt=1.0, description="False discovery rate (Benjamini-Hochberg)."
    )
    min_effect: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Smallest effect size (0-1) that counts as drift."
    )
    min_effect_by_column: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(
        default={}, description="Per-column overrides of min_effect."
    )
    critical_columns: list[str] | None = Field(
        default=None,
        description="Columns whose drift stops the run; unset means every model feature.",
    )
    max_drifted_share: float = Field(
        default=0.3, ge=0.0, le=1.0, description="The run also stops above this share of drifted columns."
    )


class LeakageConfig(_Strict):
    """Limits on leakage across the splits (see :mod:`tabpipe.stages.validate.leakage`)."""

    max_test_share_in_train: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Largest share of test rows that may be copies of training rows.",
    )
    max_conflicting_label_share: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="Largest share of rows whose features also appear with another label.",
    )
    max_single_feature_score: float = Field(
        default=0.99,
        gt=0.0,
        le=1.0,
        description="One feature alone scoring this on test (balanced accuracy or R²) is a target proxy.",
    )


class RegistryConfig(_Strict):
    """Where blessed models go in the MLflow Model Registry."""

    model_name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    experiment: str | None = Field(
        default=None, description="MLflow experiment; defaults to the config name."
    )
    bundle_store: str | None = Field(
        default=None,
        pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$",
        description="Deploy also pushes the bundle to <bundle_store>/<model>/<version> (e.g. s3://tabpipe-models).",
    )


class ClusterDeployConfig(_Strict):
    """How the deploy stage's cluster targets (``seldon``, ``kserve``, ``plain``) serve a bundle."""

    namespace: str = Field(
        default="tabpipe-serving", pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        description="Namespace of the serving objects (the deploy ServiceAccount may manage only these).",
    )
    image: str = Field(
        default="tabpipe:0.1.0",
        # A tag or a digest is required: ':latest' or no tag would make rollouts unreproducible.
        pattern=r"^[a-z0-9][a-z0-9./_:-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[a-f0-9]{64})$",
        description="Serving image (pinned by tag or digest; never :latest).",
    )
    replicas: int = Field(default=1, ge=1, le=50)
    canary_percent: int = Field(
        default=0, ge=0, le=99,
        description="0 replaces the served version; 1-99 adds the new one as a canary with that share.",
    )
    rollout_timeout_seconds: float = Field(default=300.0, gt=0, le=3600)
    object_store_endpoint: str = Field(
        default="http://minio.tabpipe.svc.cluster.local:9000", pattern=r"^https?://[^\s/]+$",
        description="MinIO endpoint the serving pods read bundles from.",
    )
    object_store_secret: str = Field(
        default="tabpipe-serving-store", pattern=r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$",
        description="Secret (in the serving namespace) with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.",
    )
    smoke_url: str | None = Field(
        default=None, pattern=r"^https?://[^\s]+$",
        description="Smoke-test the new version here instead of at its in-cluster Service address.",
    )
    inference_log_uri: str | None = Field(
        default="s3://tabpipe-data/inference-log",
        pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?$",
        description="Where the serving pods log what they serve (rolling Parquet on MinIO), for "
        "monitoring; null turns the log off.",
    )
    inference_log_sample_rate: float = Field(
        default=1.0, gt=0, le=1, description="The share of served requests the pods log."
    )

    @field_validator("image")
    @classmethod
    def _not_latest(cls, image: str) -> str:
        if image.endswith(":latest"):
            raise ValueError("':latest' is not a pinned image; name a version tag or a digest")
        return image


class PipelineConfig(_Strict):
    """A whole data set's config, with its contract inlined."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    task: TaskType
    target: str
    source: SourceConfig
    contract: DataContract
    split: SplitConfig = SplitConfig()
    features: FeaturesConfig = FeaturesConfig()
    models: Annotated[list[CandidateModel], Field(min_length=1)]
    search: SearchConfig = SearchConfig()
    evaluation: EvaluationConfig
    drift: DriftConfig = DriftConfig()
    leakage: LeakageConfig = LeakageConfig()
    registry: RegistryConfig
    cluster: ClusterDeployConfig = ClusterDeployConfig()

    @model_validator(mode="after")
    def _consistent(self) -> PipelineConfig:
        # Cross-field rules; every problem is collected so one run of the loader names them all.
        problems: list[str] = []
        columns = self.contract.columns
        if self.target not in columns:
            problems.append(f"target {self.target!r} is not a column of the contract")
        if self.target in self.features.drop:
            problems.append("features.drop must not name the target")
        for i, model in enumerate(self.models):
            if self.task not in ESTIMATORS[model.estimator].tasks:
                problems.append(f"models.{i}.estimator {model.estimator.value!r} cannot do {self.task.value}")
        wanted = {self.evaluation.primary_metric, *self.evaluation.thresholds}
        for metric in wanted:
            if metric.for_classification != self.task.is_classification:
                problems.append(f"evaluation: metric {metric.value!r} does not apply to {self.task.value}")
        not_features = {self.target, *self.features.drop, *self.contract.pii_columns}
        seen_names: set[str] = set()
        for feature in self.features.engineered:
            where = f"features.engineered {feature.name!r}"
            if feature.name in columns or feature.name in seen_names:
                problems.append(f"{where}: the name clashes with a column or another engineered feature")
            seen_names.add(feature.name)
            for col in feature.inputs:
                if col not in columns:
                    problems.append(f"{where}: input {col!r} is not a contract column")
                    continue
                if columns[col].dtype.value not in ("integer", "float", "boolean"):
                    problems.append(f"{where}: input {col!r} is not numeric")
                if col in not_features or columns[col].unique:
                    # The target would leak; dropped, PII and identifier columns never reach the model.
                    problems.append(f"{where}: input {col!r} is the target or not a model feature")
        date_columns: set[str] = set()
        for i, feature in enumerate(self.features.date_parts):
            where = f"features.date_parts.{i}.column"
            col = feature.column
            if col not in columns:
                problems.append(f"{where}: {col!r} is not a contract column")
                continue
            if columns[col].dtype.value != "datetime":
                problems.append(f"{where}: {col!r} is {columns[col].dtype.value}, not a datetime column")
            if col in not_features or columns[col].unique:
                problems.append(f"{where}: {col!r} is the target or not a model feature")
            if col in date_columns:
                problems.append(f"{where}: {col!r} is declared twice")
            date_columns.add(col)
            for name in feature.output_names:
                if name in columns or name in seen_names:
                    problems.append(f"{where}: the derived name {name!r} clashes with a column or feature")
                seen_names.add(name)
        for col in self.evaluation.slices:
            if col not in columns:
                problems.append(f"evaluation.slices: {col!r} is not a contract column")
        try:
            self.source.resolved_format  # noqa: B018 (inferring the format validates it)
        except ConfigError as exc:
            problems.append(str(exc))
        for where, names in (
            ("drift.min_effect_by_column", list(self.drift.min_effect_by_column)),
            ("drift.critical_columns", self.drift.critical_columns or []),
        ):
            unknown = [name for name in names if name not in columns]
            if unknown:
                problems.append(f"{where}: {unknown} not contract column(s)")
        group = self.split.group_column
        if group is not None and group not in columns:
            problems.append(f"split.group_column {group!r} is not a contract column")
        ts = self.split.timestamp_column
        if ts is not None and ts not in columns:
            problems.append(f"split.timestamp_column {ts!r} is not a contract column")
        if problems:
            raise ValueError("\n  - ".join(problems))
        return self

    @property
    def experiment_name(self) -> str:
        """MLflow experiment for this data set."""
        return self.registry.experiment or self.name

    def to_parameter(self) -> str:
        """The JSON passed to the KFP pipeline.

        Keys keep their declared order: the contract's column order is the
        model's input order, so sorting would reorder the features.
        """
        return json.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_parameter(cls, config_json: str) -> PipelineConfig:
        """Parse the pipeline's config parameter (the JSON :meth:`to_parameter` wrote), validating it again.

        KFP struct parameters cannot hold nulls (a search space such as
        ``max_depth: [8, null]`` needs them), so the config travels as JSON.
        """
        return parse_config(json.loads(config_json))

    def fingerprint(self) -> str:
        """A stable sha256 of the whole resolved config."""
        return hashlib.sha256(self.to_parameter().encode()).hexdigest()


def parse_config(data: Any, source: str = "pipeline config") -> PipelineConfig:
    """Validate an already-resolved config mapping (as the components receive it)."""
    return validate_document(PipelineConfig, data, source)


def _resolve_path(value: str, base: Path) -> str:
    if "://" in value:
        return value
    path = Path(value)
    return str(path if path.is_absolute() else (base / path).resolve())


def load_config(path: str | Path) -> PipelineConfig:
    """Read a config YAML, resolve its relative paths, inline its contract and check its search spaces.

    This is where a user's YAML enters (the CLI and local runs), so it also checks
    every candidate's hyperparameter names and values against scikit-learn
    (:func:`~tabpipe.estimators.check_search_spaces`), which ``parse_config`` skips
    to keep scikit-learn out of every pipeline task's start-up.

    Raises:
        ConfigError: the file is unreadable, not YAML, or a field is invalid (named).
    """
    path = Path(path)
    data = read_yaml(path, "config")
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {path}: expected a mapping at the top level")
    base = path.resolve().parent
    source = data.get("source")
    if isinstance(source, dict) and isinstance(source.get("uri"), str):
        data["source"] = {**source, "uri": _resolve_path(source["uri"], base)}
    drift = data.get("drift")
    if isinstance(drift, dict) and isinstance(drift.get("reference_uri"), str):
        data["drift"] = {**drift, "reference_uri": _resolve_path(drift["reference_uri"], base)}
    contract_ref = data.get("contract")
    if isinstance(contract_ref, str):
        contract_path = Path(_resolve_path(contract_ref, base))
        contract_data = read_yaml(contract_path, "contract")
        data["contract"] = parse_contract(contract_data, source=f"data contract {contract_path}")
    config = parse_config(data, source=f"config {path}")
    problems = check_search_spaces(config)
    if problems:
        raise ConfigError(f"invalid config {path}:\n" + "\n".join(f"  - {p}" for p in problems))
    return config
