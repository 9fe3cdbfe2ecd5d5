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


class ColumnType(enum.StrEnum):
    """Logical column types a contract can declare."""

    INTEGER = "integer"
    FLOAT = "float"
    STRING = "string"
    BOOLEAN = "boolean"
    DATETIME = "datetime"


class PiiAction(enum.StrEnum):
    """What to do with a column holding personal data before anything else sees it."""

    DROP = "drop"
    HASH = "hash"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnContract(_Strict):
    """Rules for one column."""

    dtype: ColumnType
    nullable: bool = False
    unique: bool = False
    allowed: list[Any] | None = Field(default=None, description="Closed set of allowed values.")
    min: float | None = None
    max: float | None = None
    pii: PiiAction | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _check_bounds(self) -> ColumnContract:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if (self.min is not None or self.max is not None) and self.dtype not in (
            ColumnType.INTEGER,
            ColumnType.FLOAT,
        ):
            raise ValueError("min/max apply only to integer or float columns")
        if self.allowed is not None and len(self.allowed) == 0:
            raise ValueError("allowed must list at least one value")
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
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
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
