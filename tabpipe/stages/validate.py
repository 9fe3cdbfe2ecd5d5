"""Validate: check a table against its data contract, quality rules and a reference.

Pure logic on DataFrames; the KFP component only moves artifacts and calls
:func:`validate_frame`. Bad data never raises here: every violated rule
becomes one human-readable line in a :class:`ValidationReport`, so a user sees
all problems at once, and :func:`raise_for_report` is the one place that stops
the pipeline.

Drift compares the current table with a reference (the data the production
model was trained on): a two-sample Kolmogorov-Smirnov test for numeric
columns, a chi-square test of homogeneity for categorical ones, with
Benjamini-Hochberg correction because many columns are tested at once.
"""

from __future__ import annotations

import hashlib
import math
import re
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from scipy import stats

from tabpipe.config import PipelineConfig, TaskType
from tabpipe.contract import ColumnContract, ColumnType, DataContract, PiiAction, QualityRules
from tabpipe.errors import DataValidationError

_MAX_EXAMPLES = 5
_MAX_LISTED = 20
_BOOL_VALUES = {True, False}  # 0 and 1 hash equal to False and True, so they are members too
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T].*)?$")
NO_REFERENCE_REASON = "no reference data set configured (drift.reference_uri)"


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class DriftColumn:
    """One row of the drift table."""

    column: str
    test: str  # "ks" or "chi2"
    statistic: float
    p_value: float
    p_adjusted: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    """Outcome of comparing the current table with the reference."""

    columns: list[DriftColumn]
    alpha: float
    drifted_share: float
    max_drifted_share: float

    @property
    def failed(self) -> bool:
        """True when more columns drifted than the limit allows."""
        return self.drifted_share > self.max_drifted_share

    @property
    def drifted_columns(self) -> list[str]:
        """Names of the drifted columns, in table order."""
        return [c.column for c in self.columns if c.drifted]


@dataclass
class ValidationReport:
    """Everything the validate stage found about one table."""

    dataset: str
    n_rows: int
    n_columns: int
    violations: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    quality: dict[str, object] = field(default_factory=dict)
    drift: DriftResult | None = None
    drift_skipped_reason: str | None = None

    @property
    def passed(self) -> bool:
        """True when no rule was violated."""
        return not self.violations

    def to_dict(self) -> dict:
        """Return the machine-readable report: JSON-safe (plain types, no NaN)."""
        drift = None
        if self.drift is not None:
            drift = {
                "alpha": self.drift.alpha,
                "drifted_share": self.drift.drifted_share,
                "max_drifted_share": self.drift.max_drifted_share,
                "failed": self.drift.failed,
                "columns": [
                    {
                        "column": c.column,
                        "test": c.test,
                        "statistic": c.statistic,
                        "p_value": c.p_value,
                        "p_adjusted": c.p_adjusted,
                        "drifted": c.drifted,
                    }
                    for c in self.drift.columns
                ],
            }
        return _json_safe(
            {
                "dataset": self.dataset,
                "passed": self.passed,
                "n_rows": self.n_rows,
                "n_columns": self.n_columns,
                "violations": self.violations,
                "warnings": self.warnings,
                "quality": self.quality,
                "drift": drift,
                "drift_skipped_reason": self.drift_skipped_reason,
            }
        )

    def to_markdown(self) -> str:
        """Render the human report (shown by the KFP UI as a Markdown artifact)."""
        status = "PASS" if self.passed else "FAIL"
        out = [
            f"# Data validation: {_md(self.dataset)}",
            "",
            f"**{status}**: {len(self.violations)} violation(s), {len(self.warnings)} warning(s); "
            f"{self.n_rows} row(s) x {self.n_columns} column(s).",
            "",
            "## Violations",
            "",
        ]
        out += [f"- {_md(v)}" for v in self.violations] or ["None."]
        if self.warnings:
            out += ["", "## Warnings", ""] + [f"- {_md(w)}" for w in self.warnings]
        out += ["", "## Quality", ""]
        q = self.quality
        if "duplicate_rows" in q:
            out.append(f"Duplicate rows: {q['duplicate_rows']} (ratio {_num(q.get('duplicate_ratio'))}).")
            out.append("")
        missing = q.get("missing_ratio") or {}
        constant = set(q.get("constant_columns") or [])
        if isinstance(missing, dict) and missing:
            out += ["| column | missing ratio | constant |", "|---|---:|:---:|"]
            out += [
                f"| {_md(col)} | {_num(ratio)} | {'yes' if col in constant else ''} |"
                for col, ratio in missing.items()
            ]
        balance = q.get("class_balance")
        if isinstance(balance, dict) and balance:
            out += ["", f"Class balance of target `{_md(q.get('target'))}`:", ""]
            out += ["| class | share |", "|---|---:|"]
            out += [f"| {_md(label)} | {_num(share)} |" for label, share in balance.items()]
        out += ["", "## Drift", ""]
        if self.drift is None:
            out.append(f"Skipped: {_md(self.drift_skipped_reason or 'no reference data')}.")
        else:
            d = self.drift
            verdict = "FAIL" if d.failed else "ok"
            out.append(
                f"{verdict}: drifted share {_num(d.drifted_share)} (limit {_num(d.max_drifted_share)}), "
                f"alpha {_num(d.alpha)} on Benjamini-Hochberg adjusted p-values; "
                f"{len(d.columns)} column(s) tested."
            )
            if d.columns:
                out += [
                    "",
                    "| column | test | statistic | p | adjusted p | drifted |",
                    "|---|---|---:|---:|---:|:---:|",
                ]
                out += [
                    f"| {_md(c.column)} | {c.test} | {c.statistic:.4g} | {c.p_value:.3g} | "
                    f"{c.p_adjusted:.3g} | {'**yes**' if c.drifted else 'no'} |"
                    for c in d.columns
                ]
        return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- formatting


def _md(value: object) -> str:
    # A "|" would end a Markdown table cell; a newline would end the row.
    return str(value).replace("|", "\\|").replace("\n", " ")


def _num(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _plain(value: Any) -> Any:
    """Turn a numpy/pandas scalar into the plain Python value (for messages and YAML)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def _fmt(value: Any) -> str:
    """One value for a message: strings quoted, whole floats without '.0'."""
    value = _plain(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _examples(values: Sequence[Any] | pd.Series | np.ndarray) -> str:
    """Up to five distinct example values, sorted when they are comparable."""
    distinct = list(dict.fromkeys(_plain(v) for v in values))
    try:
        distinct.sort()
    except TypeError:  # mixed types: keep the order of first appearance
        pass
    return ", ".join(_fmt(v) for v in distinct[:_MAX_EXAMPLES])


def _label(value: Any) -> str:
    """Format a value as a plain label (a class name): unquoted, whole floats without '.0'."""
    value = _plain(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _fmt_list(values: Sequence[Any]) -> str:
    shown = [_fmt(v) for v in values[:_MAX_LISTED]]
    more = f", ... ({len(values) - _MAX_LISTED} more)" if len(values) > _MAX_LISTED else ""
    return "[" + ", ".join(shown) + more + "]"


def _json_safe(value: Any) -> Any:
    """Recursively turn numpy types, tuples and NaN/inf into JSON-compatible values."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_json_safe(v) for v in value]
    value = _plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)


# --------------------------------------------------------------------------- helpers


def _hashable(series: pd.Series) -> pd.Series:
    """Replace unhashable cells (lists, dicts, arrays from JSON/Parquet) by their repr.

    value_counts, duplicated and set membership need hashable values; nested
    values are rare, so only object columns pay for the check.
    """
    if not ptypes.is_object_dtype(series.dtype):
        return series
    if all(isinstance(v, Hashable) for v in series):
        return series
    return series.map(lambda v: v if isinstance(v, Hashable) else repr(v))


def _not_in(values: pd.Series, members: set[Any]) -> pd.Series:
    """Values (hashable, non-null) that are not members.

    Membership uses Python equality, so 1.0 matches an allowed 1 and True
    matches 1; it is tested once per distinct value, not per row.
    """
    outside = [v for v in values.unique() if v not in members]
    return values[values.isin(outside)] if outside else values.iloc[:0]


def _is_whole(values: pd.Series) -> pd.Series:
    """Element-wise: finite and without a fractional part."""
    arr = values.to_numpy(dtype=float)
    return pd.Series(np.isfinite(arr) & (np.mod(arr, 1) == 0), index=values.index)


def _parse_one(value: Any) -> Any:
    try:
        return pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        return pd.NaT


def _parse_dates(values: pd.Series) -> pd.Series:
    """Parse strings as datetimes; NaT where a value does not parse.

    The fast path infers one format from the first value; values in another
    format (or a mix of time zones, which the fast path rejects as a whole)
    are retried one by one, so a column mixing formats still passes.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "could not infer format": expected here
        try:
            parsed = pd.to_datetime(values, errors="coerce").astype(object)
        except (ValueError, TypeError, OverflowError):
            parsed = pd.Series(pd.NaT, index=values.index, dtype=object)
        failed = parsed.isna()
        if failed.any():
            parsed[failed] = values[failed].map(_parse_one)
    return parsed


def _dtype_name(series: pd.Series) -> str:
    return str(series.dtype)


def _check_dtype(series: pd.Series, expected: ColumnType) -> tuple[str | None, pd.Series]:
    """Check one column's dtype.

    Returns:
        (problem, values): problem is None when the dtype conforms; values are
        the non-null values to run value checks on (parsed for datetimes).

    """
    dtype = series.dtype
    values = series.dropna()
    found = _dtype_name(series)
    is_bool = ptypes.is_bool_dtype(dtype)
    if expected is ColumnType.INTEGER:
        if ptypes.is_integer_dtype(dtype) and not is_bool:
            return None, values
        if ptypes.is_float_dtype(dtype):
            bad = values[~_is_whole(values)]
            if bad.empty:  # CSV turns an integer column with nulls into float
                return None, values
            return f"found {found} with {len(bad)} non-integer value(s) (e.g. {_examples(bad)})", values
        return f"found {found}", values
    if expected is ColumnType.FLOAT:
        if ptypes.is_numeric_dtype(dtype) and not is_bool:
            return None, values
        return f"found {found}", values
    if expected is ColumnType.STRING:
        if (
            ptypes.is_object_dtype(dtype)
            or ptypes.is_string_dtype(dtype)
            or isinstance(dtype, pd.CategoricalDtype)
        ):
            return None, values
        return f"found {found}", values
    if expected is ColumnType.BOOLEAN:
        if is_bool:
            return None, values
        if ptypes.is_numeric_dtype(dtype) or ptypes.is_object_dtype(dtype):
            hv = _hashable(values)
            bad = _not_in(hv, _BOOL_VALUES)
            if bad.empty:
                return None, values
            return f"found {found} with value(s) other than True/False/0/1 (e.g. {_examples(bad)})", values
        return f"found {found}", values
    # DATETIME
    if ptypes.is_datetime64_any_dtype(dtype):
        return None, values
    if ptypes.is_string_dtype(dtype) or ptypes.is_object_dtype(dtype):
        if not all(isinstance(v, str) for v in values):
            return f"found {found} holding non-string values", values
        parsed = _parse_dates(values)
        bad = values[parsed.isna()]
        if bad.empty:
            return None, parsed
        return (
            f"found {found} with {len(bad)} value(s) that do not parse as dates (e.g. {_examples(bad)})",
            values,
        )
    return f"found {found}", values


def _allowed_values(col: ColumnContract) -> tuple[set[Any], list[Any]]:
    """Return the contract's allowed values as a set to test membership against, and as listed."""
    listed = list(col.allowed or [])
    members: list[Any] = []
    for v in listed:
        if col.dtype is ColumnType.DATETIME:
            try:
                v = pd.Timestamp(v)
            except (ValueError, TypeError):
                pass
        members.append(v if isinstance(v, Hashable) else repr(v))
    return set(members), listed


def _check_values(name: str, values: pd.Series, col: ColumnContract) -> list[str]:
    """Value rules for one column whose dtype conforms: allowed, min/max, unique."""
    problems: list[str] = []
    label = f"column {name!r}"
    hv = _hashable(values)
    if col.allowed is not None:
        members, listed = _allowed_values(col)
        bad = _not_in(hv, members)
        if not bad.empty:
            problems.append(
                f"{label}: {len(bad)} value(s) not in allowed set {_fmt_list(listed)} (e.g. {_examples(bad)})"
            )
    if col.min is not None or col.max is not None:
        numeric = pd.to_numeric(values, errors="coerce")
        if col.min is not None:
            low = values[numeric < col.min]
            if not low.empty:
                problems.append(
                    f"{label}: {len(low)} value(s) below min {_fmt(col.min)} (e.g. {_examples(low)})"
                )
        if col.max is not None:
            high = values[numeric > col.max]
            if not high.empty:
                problems.append(
                    f"{label}: {len(high)} value(s) above max {_fmt(col.max)} (e.g. {_examples(high)})"
                )
    if col.unique:
        dup_mask = hv.duplicated(keep=False)
        if dup_mask.any():
            dups = hv[dup_mask]
            n_values = dups.nunique()
            problems.append(
                f"{label}: {n_values} duplicated value(s) in {len(dups)} row(s) but unique is true "
                f"(e.g. {_examples(dups)})"
            )
    return problems


# --------------------------------------------------------------------------- public checks


def check_contract(df: pd.DataFrame, contract: DataContract) -> list[str]:
    """Check a table against its data contract.

    Every rule is checked and every violation collected. A column whose dtype
    does not conform gets only the dtype violation, since its value checks
    would be noise.

    Args:
        df: The table.
        contract: Its contract.

    Returns:
        One human-readable line per violated rule, naming the column and rule.

    """
    violations: list[str] = []
    if len(df) < contract.min_rows:
        violations.append(f"table has {len(df)} row(s), fewer than min_rows {contract.min_rows}")
    present = [str(c) for c in df.columns]
    duplicated_names = sorted({c for c in present if present.count(c) > 1})
    if duplicated_names:
        violations.append(f"duplicated column name(s): {duplicated_names}")
        df = df.loc[:, ~pd.Index(present).duplicated()]
        present = [str(c) for c in df.columns]
    present_set = set(present)
    missing = [c for c in contract.columns if c not in present_set]
    if missing:
        violations.append(f"missing column(s): {missing}")
    if not contract.allow_extra_columns:
        extra = [c for c in present if c not in contract.columns]
        if extra:
            violations.append(f"unexpected column(s): {extra}")
    by_name = dict(zip(present, df.columns, strict=True))
    for name, col in contract.columns.items():
        if name not in present_set:
            continue
        series = df[by_name[name]]
        n_null = int(series.isna().sum())
        if len(series) > 0 and n_null == len(series):
            violations.append(f"column {name!r} is entirely null")
            continue
        problem, values = _check_dtype(series, col.dtype)
        if problem is not None:
            violations.append(f"column {name!r} expected dtype {col.dtype.value}, {problem}")
            continue
        if n_null and not col.nullable:
            violations.append(f"column {name!r}: {n_null} null value(s) but nullable is false")
        violations += _check_values(name, values, col)
    return violations


def check_quality(
    df: pd.DataFrame, contract: DataContract, target: str, task: TaskType
) -> tuple[list[str], list[str], dict]:
    """Check table-level quality rules.

    Args:
        df: The table.
        contract: Its contract; ``contract.quality`` holds the rules.
        target: Name of the target column.
        task: Learning task; class balance rules apply to classification only.

    Returns:
        (violations, warnings, quality): quality holds plain-typed statistics:
        ``missing_ratio`` per column, ``duplicate_rows``, ``duplicate_ratio``,
        ``constant_columns``, ``target`` and ``class_balance`` (classification).

    """
    rules: QualityRules = contract.quality
    violations: list[str] = []
    notes: list[str] = []
    n = len(df)
    df = df.loc[:, ~df.columns.duplicated()]

    missing_ratio = {str(c): (float(df[c].isna().mean()) if n else 0.0) for c in df.columns}
    for col, ratio in missing_ratio.items():
        if ratio > rules.max_missing_ratio:
            violations.append(
                f"column {col!r}: missing ratio {ratio:.3f} exceeds "
                f"max_missing_ratio {rules.max_missing_ratio}"
            )

    hashable = pd.DataFrame({c: _hashable(df[c]) for c in df.columns}, index=df.index)
    dup_rows = int(hashable.duplicated().sum()) if n else 0
    dup_ratio = dup_rows / n if n else 0.0
    if dup_ratio > rules.max_duplicate_ratio:
        violations.append(
            f"table: {dup_rows} duplicate row(s), ratio {dup_ratio:.3f} exceeds "
            f"max_duplicate_ratio {rules.max_duplicate_ratio}"
        )

    constant: list[str] = []
    for c in df.columns:
        if str(c) == target:  # the target has its own, more specific rules below
            continue
        distinct = hashable[c].dropna().unique()
        if len(distinct) == 1:
            constant.append(str(c))
            line = f"column {str(c)!r} is constant (only value {_fmt(distinct[0])})"
            if rules.forbid_constant_columns:
                violations.append(f"{line}; forbid_constant_columns is true")
            else:
                notes.append(line)

    quality: dict[str, object] = {
        "n_rows": n,
        "n_columns": df.shape[1],
        "missing_ratio": missing_ratio,
        "duplicate_rows": dup_rows,
        "duplicate_ratio": dup_ratio,
        "constant_columns": constant,
        "target": target,
        "class_balance": None,
    }

    if target in df.columns:
        y = hashable[target]
        n_missing = int(y.isna().sum())
        if n_missing:
            violations.append(f"target {target!r}: {n_missing} missing value(s)")
        present = y.dropna()
        if task.is_classification:
            counts = present.value_counts()
            shares = counts / counts.sum() if len(present) else counts.astype(float)
            quality["class_balance"] = {_label(k): float(v) for k, v in shares.items()}
            if len(counts) == 1:
                violations.append(
                    f"target {target!r} has a single class ({_fmt(counts.index[0])} in {int(counts.iloc[0])} "
                    f"row(s)); a classifier needs at least two"
                )
            elif len(counts) > 1 and shares.min() < rules.min_class_ratio:
                smallest = shares.idxmin()
                violations.append(
                    f"target {target!r}: smallest class {_fmt(smallest)} has share {shares.min():.3f}, "
                    f"below min_class_ratio {rules.min_class_ratio}"
                )
        elif present.nunique() == 1:
            violations.append(f"target {target!r} is constant (only value {_fmt(present.iloc[0])})")
    return violations, notes, quality


def _category_counts(series: pd.Series) -> dict[Any, int]:
    return {k: int(v) for k, v in _hashable(series.dropna()).value_counts().items()}


def check_drift(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    contract: DataContract,
    exclude: Sequence[str],
    alpha: float,
    max_drifted_share: float,
) -> DriftResult:
    """Compare the current table's column distributions with the reference's.

    Integer and float columns get a two-sample Kolmogorov-Smirnov test on their
    non-null values; string and boolean columns a chi-square test of
    homogeneity on a 2 x k table of category counts (p = 1 when there is only
    one category overall). p-values are adjusted with Benjamini-Hochberg across
    all tested columns, since testing many columns at alpha would flag some by
    chance. Columns in ``exclude``, datetime columns, columns absent from
    either frame and columns with no values in either frame are not tested.

    Args:
        current: The new table.
        reference: The table the production model was trained on.
        contract: Declares each column's type, which picks the test.
        exclude: Columns never tested (the target, PII columns).
        alpha: A column drifted when its adjusted p-value is below this.
        max_drifted_share: The result fails above this share of drifted columns.

    Returns:
        The drift table and the drifted share.

    """
    excluded = set(exclude)
    current = current.loc[:, ~current.columns.duplicated()]
    reference = reference.loc[:, ~reference.columns.duplicated()]
    tested: list[tuple[str, str, float, float]] = []
    for name, col in contract.columns.items():
        if name in excluded or name not in current.columns or name not in reference.columns:
            continue
        if col.dtype in (ColumnType.INTEGER, ColumnType.FLOAT):
            cur = pd.to_numeric(current[name], errors="coerce").dropna().to_numpy(dtype=float)
            ref = pd.to_numeric(reference[name], errors="coerce").dropna().to_numpy(dtype=float)
            if cur.size == 0 or ref.size == 0:
                continue
            res = stats.ks_2samp(cur, ref)
            tested.append((name, "ks", float(res.statistic), float(res.pvalue)))
        elif col.dtype in (ColumnType.STRING, ColumnType.BOOLEAN):
            cur_counts = _category_counts(current[name])
            ref_counts = _category_counts(reference[name])
            if not cur_counts or not ref_counts:
                continue
            categories = list(dict.fromkeys([*cur_counts, *ref_counts]))
            if len(categories) < 2:
                tested.append((name, "chi2", 0.0, 1.0))
                continue
            table = np.array(
                [[cur_counts.get(k, 0) for k in categories], [ref_counts.get(k, 0) for k in categories]]
            )
            res = stats.chi2_contingency(table)
            tested.append((name, "chi2", float(res.statistic), float(res.pvalue)))
    if not tested:
        return DriftResult(columns=[], alpha=alpha, drifted_share=0.0, max_drifted_share=max_drifted_share)
    raw = np.array([1.0 if math.isnan(p) else p for _, _, _, p in tested])
    adjusted = stats.false_discovery_control(raw, method="bh")
    columns = [
        DriftColumn(
            column=name,
            test=test,
            statistic=stat,
            p_value=float(p),
            p_adjusted=float(adj),
            drifted=bool(adj < alpha),
        )
        for (name, test, stat, _), p, adj in zip(tested, raw, adjusted, strict=True)
    ]
    share = sum(c.drifted for c in columns) / len(columns)
    return DriftResult(columns=columns, alpha=alpha, drifted_share=share, max_drifted_share=max_drifted_share)


def apply_pii(df: pd.DataFrame, contract: DataContract) -> pd.DataFrame:
    """Remove personal data before any later stage sees the table.

    ``drop`` columns are removed. ``hash`` columns are replaced by the hex
    sha256 of each value's string form; nulls stay null. The hash is
    deterministic and unsalted on purpose, so the same value hashes the same
    in every run and data set and joins on the column still work. That also
    means a hashed column with few possible values (or guessable ones such as
    e-mail addresses) can be reversed by hashing candidates: use ``drop`` when
    the column is not needed.

    Args:
        df: The table; it is not modified.
        contract: Declares each column's PII action.

    Returns:
        A new table with the PII actions applied. Columns the contract names
        but the table lacks are ignored (the contract check reports them).

    """
    out = df.copy()
    pii = contract.pii_columns
    drop = [c for c, action in pii.items() if action is PiiAction.DROP and c in out.columns]
    out = out.drop(columns=drop)
    for name, action in pii.items():
        if action is PiiAction.HASH and name in out.columns:
            hashed = out[name].map(
                lambda v: v if pd.isna(v) else hashlib.sha256(str(_plain(v)).encode()).hexdigest()
            )
            out[name] = hashed.astype("str")
    return out


def validate_frame(
    df: pd.DataFrame, config: PipelineConfig, reference: pd.DataFrame | None, dataset: str
) -> ValidationReport:
    """Run every check on a table and gather the results in one report.

    Never raises for bad data: the report carries the violations and
    :func:`raise_for_report` decides whether to stop.

    Args:
        df: The table to validate.
        config: The pipeline config; its contract, target, task and drift settings apply.
        reference: The reference table for the drift check, or None to skip it.
        dataset: Name shown in the report (e.g. the config name).

    Returns:
        The validation report.

    """
    contract = config.contract
    violations = check_contract(df, contract)
    q_violations, notes, quality = check_quality(df, contract, config.target, config.task)
    violations += q_violations
    report = ValidationReport(
        dataset=dataset,
        n_rows=len(df),
        n_columns=df.shape[1],
        violations=violations,
        warnings=notes,
        quality=quality,
    )
    if reference is None:
        report.drift_skipped_reason = NO_REFERENCE_REASON
        return report
    exclude = [config.target, *contract.pii_columns]
    drift = check_drift(df, reference, contract, exclude, config.drift.alpha, config.drift.max_drifted_share)
    report.drift = drift
    drifted = drift.drifted_columns
    if not drift.columns:
        report.warnings.append("drift: no column could be tested against the reference")
    elif drift.failed:
        report.violations.append(
            f"drift: {len(drifted)} of {len(drift.columns)} column(s) drifted {drifted}, share "
            f"{drift.drifted_share:.3f} exceeds max_drifted_share {drift.max_drifted_share}"
        )
    elif drifted:
        report.warnings.append(
            f"drift: {len(drifted)} of {len(drift.columns)} column(s) drifted {drifted}, share "
            f"{drift.drifted_share:.3f} within max_drifted_share {drift.max_drifted_share}"
        )
    return report


def raise_for_report(report: ValidationReport) -> None:
    """Stop the pipeline when the report has violations.

    Raises:
        DataValidationError: listing every violation.

    """
    if not report.passed:
        raise DataValidationError(report.violations, title=f"data validation of {report.dataset} failed")


# --------------------------------------------------------------------------- contract drafting


def _infer_type(series: pd.Series) -> ColumnType:
    dtype = series.dtype
    values = series.dropna()
    if ptypes.is_bool_dtype(dtype):
        return ColumnType.BOOLEAN
    if ptypes.is_datetime64_any_dtype(dtype):
        return ColumnType.DATETIME
    if ptypes.is_integer_dtype(dtype):
        return ColumnType.INTEGER
    if ptypes.is_float_dtype(dtype):
        if not values.empty and bool(_is_whole(values).all()):
            return ColumnType.INTEGER
        return ColumnType.FLOAT
    if ptypes.is_numeric_dtype(dtype):
        return ColumnType.FLOAT
    if not values.empty and ptypes.is_object_dtype(dtype) and all(isinstance(v, bool) for v in values):
        return ColumnType.BOOLEAN  # CSV reads a bool column with nulls as object
    # Only ISO dates become datetime: free-form strings such as "1" or "3/4" parse too, wrongly.
    if (
        not values.empty
        and not isinstance(dtype, pd.CategoricalDtype)
        and all(isinstance(v, str) and _ISO_DATE.match(v) for v in values)
        and not _parse_dates(values).isna().any()
    ):
        return ColumnType.DATETIME
    return ColumnType.STRING


def _sorted_plain(values: Sequence[Any]) -> list[Any]:
    plain = [_plain(v) for v in values]
    try:
        return sorted(plain)
    except TypeError:
        return sorted(plain, key=lambda v: (type(v).__name__, str(v)))


def infer_contract(df: pd.DataFrame, name: str, max_categories: int = 20) -> DataContract:
    """Draft a contract from a table, for a new user to review and edit.

    Per column: the dtype; nullable when the column has nulls; allowed values
    (sorted) when an integer, string or boolean column has at most
    ``max_categories`` distinct values, unless every value is distinct (then
    the column looks like an identifier, not a category); the observed min and
    max of numeric columns; unique when an integer or string column of more
    than one value has no repeats. Quality rules keep their defaults and no
    PII action is guessed. All values are plain Python types, so
    :func:`tabpipe.contract.dump_contract` can write the draft as YAML.

    Args:
        df: An example of the data.
        name: The contract's name.
        max_categories: Largest number of distinct values listed as allowed.

    Returns:
        The drafted contract.

    """
    columns: dict[str, ColumnContract] = {}
    for col in df.columns:
        series = df[col]
        if isinstance(series, pd.DataFrame):  # duplicated column name: the first one wins
            series = series.iloc[:, 0]
        dtype = _infer_type(series)
        values = series.dropna()
        hv = _hashable(values)
        spec: dict[str, Any] = {"dtype": dtype, "nullable": bool(series.isna().any())}
        all_distinct = bool(hv.is_unique) and len(hv) > 1
        if dtype in (ColumnType.INTEGER, ColumnType.STRING) and all_distinct:
            spec["unique"] = True
        if dtype in (ColumnType.INTEGER, ColumnType.STRING, ColumnType.BOOLEAN) and not values.empty:
            distinct = hv.unique()
            if len(distinct) <= max_categories and not spec.get("unique"):
                if dtype is ColumnType.INTEGER:
                    spec["allowed"] = sorted(int(v) for v in distinct)
                elif dtype is ColumnType.BOOLEAN:
                    spec["allowed"] = sorted({bool(v) for v in distinct})
                else:
                    spec["allowed"] = _sorted_plain(list(distinct))
        if dtype in (ColumnType.INTEGER, ColumnType.FLOAT) and not values.empty:
            numeric = pd.to_numeric(values)
            low, high = _plain(numeric.min()), _plain(numeric.max())
            spec["min"], spec["max"] = float(low), float(high)
        columns[str(col)] = ColumnContract(**spec)
    return DataContract(name=name, columns=columns)
