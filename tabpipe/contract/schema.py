"""The data contract: a declarative description of one data set.

A contract is a YAML file with one entry per column (dtype, nullability,
allowed values or range, uniqueness, PII handling) plus table-level quality
rules. It is parsed once into :class:`DataContract`; errors name the field.
"""

from __future__ import annotations

import enum
import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tabpipe.errors import ConfigError

DocumentT = TypeVar("DocumentT", bound=BaseModel)
_LATER_COLUMN_FIELDS = ("soft_min", "soft_max", "normalize")


class ColumnType(enum.StrEnum):
    """Logical column types a contract can declare."""

    INTEGER = "integer"
    FLOAT = "float"
    STRING = "string"
    BOOLEAN = "boolean"
    DATETIME = "datetime"


class Normalization(enum.StrEnum):
    """A text normalisation step a string column can declare (applied in order)."""

    STRIP = "strip"  # remove leading and trailing whitespace
    CASEFOLD = "casefold"  # case-insensitive form ("Red" and "RED" become "red")


def normalize_text(value: str, steps: tuple[Normalization, ...] | list[Normalization]) -> str:
    """Apply a column's normalisation steps to one string.

    The one definition every path uses (validation, batch scoring, serving and
    the model pipeline), so a value is one category everywhere.
    """
    for step in steps:
        value = value.strip() if step is Normalization.STRIP else value.casefold()
    return value


class PiiAction(enum.StrEnum):
    """What to do with a column holding personal data before anything else sees it."""

    DROP = "drop"
    HASH = "hash"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnContract(_Strict):
    """Rules for one column.

    ``min``/``max`` are *hard* bounds: a value outside is a violation (validation
    fails, batch scoring stops, serving answers 422). ``soft_min``/``soft_max``
    are *soft* bounds, the range the data is expected in: a value outside is
    accepted everywhere but reported as a warning (validation report, serving's
    ``tabpipe_serving_soft_rule_hits_total`` counter), so monitoring sees it
    without the model refusing a plausible row. Both may be set, e.g.
    ``{min: 0, soft_max: 95}``: negative ages are errors, 96 is flagged.

    ``normalize`` (string columns only) declares steps applied to every value
    before any rule and inside the model pipeline, e.g. ``[strip, casefold]``
    makes ``"Red "`` and ``"red"`` one category; ``allowed`` must then list the
    normalised values.
    """

    dtype: ColumnType
    nullable: bool = False
    unique: bool = False
    allowed: list[Any] | None = Field(default=None, description="Closed set of allowed values.")
    min: float | None = Field(default=None, description="Hard lower bound: smaller values are rejected.")
    max: float | None = Field(default=None, description="Hard upper bound: larger values are rejected.")
    soft_min: float | None = Field(
        default=None, description="Soft lower bound: smaller values are accepted but flagged."
    )
    soft_max: float | None = Field(
        default=None, description="Soft upper bound: larger values are accepted but flagged."
    )
    normalize: list[Normalization] | None = Field(
        default=None, description="Text normalisation applied before the rules and the model."
    )
    pii: PiiAction | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _check_bounds(self) -> ColumnContract:
        numeric = self.dtype in (ColumnType.INTEGER, ColumnType.FLOAT)
        for low_name, high_name in (
            ("min", "max"),
            ("soft_min", "soft_max"),
            ("min", "soft_min"),
            ("soft_max", "max"),
            ("min", "soft_max"),
            ("soft_min", "max"),
        ):
            low, high = getattr(self, low_name), getattr(self, high_name)
            if low is not None and high is not None and low > high:
                raise ValueError(f"{low_name} ({low}) is greater than {high_name} ({high})")
        for field in ("min", "max", "soft_min", "soft_max"):
            if getattr(self, field) is not None and not numeric:
                raise ValueError(f"{field} applies only to integer or float columns")
        if self.allowed is not None and len(self.allowed) == 0:
            raise ValueError("allowed must list at least one value")
        if self.normalize is not None:
            if self.dtype is not ColumnType.STRING:
                raise ValueError("normalize applies only to string columns")
            if len(set(self.normalize)) != len(self.normalize):
                raise ValueError("normalize lists a step twice")
            for value in self.allowed or []:
                if isinstance(value, str) and normalize_text(value, self.normalize) != value:
                    shown = normalize_text(value, self.normalize)
                    raise ValueError(
                        f"allowed value {value!r} is not normalised: normalize would make it {shown!r}"
                    )
        return self


class QualityRules(_Strict):
    """Table-level quality rules."""

    max_missing_ratio: float = Field(default=0.5, ge=0.0, le=1.0)
    max_duplicate_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    forbid_constant_columns: bool = True
    min_class_ratio: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Smallest share of rows any target class may have (classification only).",
    )


class DataContract(_Strict):
    """A data set's contract."""

    name: str
    min_rows: int = Field(default=1, ge=1)
    allow_extra_columns: bool = False
    #: Text tokens that mean "missing" in CSV sources (e.g. ``["?", "n/a"]``), on top of
    #: pandas' defaults (empty, ``NA``, ``NaN``, ``null``, ...): reading turns them into nulls.
    na_values: list[str] = Field(
        default=[], description="Extra CSV tokens read as missing values, e.g. ['?', '-']."
    )
    columns: dict[str, ColumnContract]
    quality: QualityRules = QualityRules()

    @model_validator(mode="after")
    def _non_empty(self) -> DataContract:
        if not self.columns:
            raise ValueError("columns must declare at least one column")
        return self

    @property
    def pii_columns(self) -> dict[str, PiiAction]:
        """Columns with a PII action, by name."""
        return {name: col.pii for name, col in self.columns.items() if col.pii is not None}

    def fingerprint(self) -> str:
        """A stable sha256 of the contract's content (the contract hash)."""
        data = self.model_dump(mode="json")
        # Fields added later are left out while unset, so existing contracts keep their hash.
        if not data["na_values"]:
            del data["na_values"]
        for column in data["columns"].values():
            for key in _LATER_COLUMN_FIELDS:
                if column[key] is None:
                    del column[key]
        canonical = json.dumps(data, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


def format_validation_error(exc: ValidationError, source: str) -> str:
    """Render a pydantic error as one line per bad field, naming the field path."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"  - {loc}: {message}" if loc else f"  - {message}")
    return f"invalid {source}:\n" + "\n".join(lines)


def validate_document(model: type[DocumentT], data: Any, source: str) -> DocumentT:
    """Validate a parsed YAML/JSON document as ``model``.

    Raises:
        ConfigError: the document is not a mapping, or naming every bad field.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"invalid {source}: expected a mapping at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def parse_contract(data: Any, source: str = "data contract") -> DataContract:
    """Validate a parsed YAML document as a contract.

    Raises:
        ConfigError: naming every bad field.
    """
    return validate_document(DataContract, data, source)


def read_yaml(path: Path, what: str) -> Any:
    """Read a YAML file, naming ``what`` it is in any error.

    Raises:
        ConfigError: the file is unreadable or not valid YAML.
    """
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what}: {path} is not valid YAML: {exc}") from None


def load_contract(path: str | Path) -> DataContract:
    """Load and validate a contract YAML file."""
    path = Path(path)
    return parse_contract(read_yaml(path, "data contract"), source=f"data contract {path}")


def dump_contract(contract: DataContract) -> str:
    """Serialize a contract to YAML, omitting defaults for readability."""
    data = contract.model_dump(mode="json", exclude_defaults=True)
    data.setdefault("columns", {})
    return yaml.safe_dump(data, sort_keys=False)
