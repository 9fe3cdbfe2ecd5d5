"""The contract's row rules, defined once.

Every path that checks rows against a contract evaluates this one table:
validation and batch scoring (a pandas column, via :mod:`tabpipe.contract.frame`)
and serving (decoded request tensors). Each path first turns a column into its
*canonical values* (:class:`ValueKind`): float64 with NaN for missing numbers,
an object array with ``None`` for missing text or dates. From there on the
verdicts and the messages come from here only, so a rule added to
:data:`ROW_RULES` is enforced everywhere, and no path can word it differently.

Two evaluations of the same table:

* :func:`check_values`, vectorised (numpy), finds every violation and builds the
  messages;
* :class:`FastColumn`, compiled per column from the same rules' scalar
  predicates, only *accepts* a few values in plain Python (cheaper than numpy's
  per-call cost for a one-row request). When it does not accept, the caller runs
  :func:`check_values` to name the problem, so both always agree on messages.

Rules are applied in table order. *Shape* rules (finite, integer, boolean, date)
come first; *value* rules (allowed, min, max) then look only at values whose
shape passed, so ``1.5`` in an integer column is reported once, as non-integer.
*Soft* rules (soft_min, soft_max) come last, see only values every hard rule
accepted, and yield :attr:`Severity.WARNING` violations: every path reports them
the same way, none rejects a row for them.

Canonical values already carry the contract's value mapping, defined here once:
boolean tokens (``yes``/``no``, ``true``/``false``, ``y``/``n``, ``t``/``f``, any
case) become 1.0/0.0 (:func:`boolean_token`) and a string column's declared
``normalize`` steps are applied (:func:`normalize_values`).
Rules that need the whole table (``unique``) are not row rules: they live in
:mod:`tabpipe.contract.frame`.
"""

from __future__ import annotations

import enum
import math
import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tabpipe.contract.schema import ColumnContract, ColumnType, normalize_text

#: At most this many distinct offending values are quoted in a message.
MAX_EXAMPLES = 5
#: An allowed set longer than this is shortened in messages.
MAX_LISTED = 20


class ValueKind(enum.StrEnum):
    """How a column's values are represented once decoded."""

    NUMBER = "number"  # float64, NaN for missing (integers, floats, booleans as 0/1)
    TEXT = "text"  # object array of str, None for missing
    DATE = "date"  # object array of str or Timestamp, None for missing


def value_kind(dtype: ColumnType) -> ValueKind:
    """The canonical representation of a contract dtype."""
    if dtype in (ColumnType.INTEGER, ColumnType.FLOAT, ColumnType.BOOLEAN):
        return ValueKind.NUMBER
    if dtype is ColumnType.DATETIME:
        return ValueKind.DATE
    return ValueKind.TEXT


class RuleScope(enum.StrEnum):
    """Whether a rule can be decided on any subset of rows, or needs the whole table."""

    ROW = "row"
    DATASET = "dataset"


class Severity(enum.StrEnum):
    """Whether a broken rule rejects (error) or is only reported (warning, a soft rule)."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Violation:
    """One broken rule on one column (or on the table when ``column`` is None)."""

    column: str | None
    rule: str
    scope: RuleScope
    count: int
    message: str
    severity: Severity = Severity.ERROR

    @property
    def is_warning(self) -> bool:
        """A soft rule's finding: reported and counted, never a rejection."""
        return self.severity is Severity.WARNING


# --------------------------------------------------------------------------- formatting


def plain(value: Any) -> Any:
    """The plain Python value of a numpy or pandas scalar (Timestamps as ISO text)."""
    if isinstance(value, np.generic):
        value = value.item()
    if hasattr(value, "isoformat") and not isinstance(value, str):
        return value.isoformat()
    return value


def fmt(value: Any) -> str:
    """One value for a message: strings quoted, whole floats without '.0'."""
    value = plain(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return repr(value)
    return str(value)


def examples(values: Sequence[Any] | np.ndarray) -> str:
    """Up to :data:`MAX_EXAMPLES` distinct values, sorted when they are comparable."""
    distinct = list(dict.fromkeys(plain(v) if isinstance(v, Hashable) else repr(v) for v in values))
    try:
        distinct.sort()
    except TypeError:  # mixed types: keep the order of first appearance
        pass
    return ", ".join(fmt(v) for v in distinct[:MAX_EXAMPLES])


def fmt_list(values: Sequence[Any]) -> str:
    """A listed set of values, shortened past :data:`MAX_LISTED`."""
    shown = [fmt(v) for v in values[:MAX_LISTED]]
    more = f", ... ({len(values) - MAX_LISTED} more)" if len(values) > MAX_LISTED else ""
    return "[" + ", ".join(shown) + more + "]"


# --------------------------------------------------------------------------- value helpers


def missing_mask(values: np.ndarray) -> np.ndarray:
    """Element-wise: the value is missing (NaN for numbers; None, NaN or NaT in object arrays)."""
    if values.dtype.kind == "f":
        return np.isnan(values)
    return np.fromiter((v is None or v != v for v in values), dtype=bool, count=len(values))


#: Text accepted as a boolean (compared after strip and casefold), with its canonical value.
BOOLEAN_TOKENS: dict[str, float] = {
    "true": 1.0,
    "false": 0.0,
    "yes": 1.0,
    "no": 0.0,
    "y": 1.0,
    "n": 0.0,
    "t": 1.0,
    "f": 0.0,
}


def boolean_token(value: str) -> float | None:
    """The canonical value (1.0/0.0) of a boolean token, or None when ``value`` is not one."""
    return BOOLEAN_TOKENS.get(value.strip().casefold())


def normalize_values(col: ColumnContract, values: np.ndarray) -> np.ndarray:
    """A string column's values with its declared ``normalize`` steps applied (None and non-text kept)."""
    steps = col.normalize
    if not steps:
        return values
    out = np.empty(len(values), dtype=object)
    out[:] = [normalize_text(v, steps) if isinstance(v, str) else v for v in values]
    return out


def _parse_date(value: Any) -> Any:
    """A Timestamp, or None when ``value`` does not parse as a date."""
    import pandas as pd

    if isinstance(value, pd.Timestamp):
        return value
    if not isinstance(value, str):
        return None
    try:
        parsed = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        return None
    return None if parsed is pd.NaT else parsed


def parse_dates(values: np.ndarray) -> np.ndarray:
    """Parse values as dates; None where one does not parse.

    The fast path lets pandas infer one format for the whole column; values in
    another format (or a mix of time zones) are retried one by one, so a column
    mixing formats still passes.
    """
    import pandas as pd

    out = np.empty(len(values), dtype=object)
    if not len(values):
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "could not infer format": expected here
        try:
            parsed = pd.to_datetime(pd.Series(values, dtype=object), errors="coerce")
            out[:] = [None if p is pd.NaT else p for p in parsed]
        except (ValueError, TypeError, OverflowError):
            out[:] = None
    for i in np.flatnonzero([p is None for p in out]):
        out[i] = _parse_date(values[i])
    return out


def _date_members(col: ColumnContract) -> set[Any]:
    return {d for d in (_parse_date(str(v)) for v in col.allowed or []) if d is not None}


def _members(col: ColumnContract) -> set[Any]:
    """The allowed values as a set; membership uses Python equality (1.0 matches 1, True matches 1)."""
    return {v if isinstance(v, Hashable) else repr(v) for v in col.allowed or []}


# --------------------------------------------------------------------------- the rules

Finder = Callable[[ColumnContract, np.ndarray], np.ndarray]
#: Allowed sets of numbers up to this size are tested by comparisons rather than np.isin.
_SMALL_SET = 8
Predicate = Callable[[Any], bool]


@dataclass(frozen=True)
class RowRule:
    """One rule on a column's values.

    Attributes:
        name: The rule's name (the contract field it enforces).
        applies: Whether the rule applies to a column contract.
        shape: A shape rule (values that break it are not tested by later value rules).
        find: Vectorised: the offending positions among the present values given.
        accepts: Compiles the scalar predicate of the fast path for one column.
        describe: The rule's part of the message, after the count (e.g. ``"below min 0"``).
        quote: Whether the message quotes example offending values.
        soft: A soft rule: its findings are warnings, checked on values every hard rule accepted.
    """

    name: str
    applies: Callable[[ColumnContract], bool]
    shape: bool
    find: Finder
    accepts: Callable[[ColumnContract], Predicate]
    describe: Callable[[ColumnContract], str]
    quote: bool = True
    soft: bool = False


def _is_numeric(col: ColumnContract) -> bool:
    return value_kind(col.dtype) is ValueKind.NUMBER


def _find_allowed(col: ColumnContract, values: np.ndarray) -> np.ndarray:
    if col.dtype is ColumnType.DATETIME:
        members = _date_members(col)
        return np.fromiter((_parse_date(v) not in members for v in values), dtype=bool, count=len(values))
    if values.dtype.kind == "f":
        allowed = [float(v) for v in col.allowed or []]
        if len(allowed) > _SMALL_SET:
            return ~np.isin(values, np.asarray(allowed, dtype=np.float64))
        # A few codes (the usual -1/0/1): one comparison each beats np.isin's sort. Same
        # equality (NaN matches nothing, -0.0 matches 0.0).
        inside = np.zeros(len(values), dtype=bool)
        for member in allowed:
            inside |= values == member
        return ~inside
    members = _members(col)
    # One membership test per distinct value, not per row.
    outside = {v for v in set(values.tolist()) if v not in members}
    if not outside:
        return np.zeros(len(values), dtype=bool)
    return np.fromiter((v in outside for v in values), dtype=bool, count=len(values))


def _accepts_allowed(col: ColumnContract) -> Predicate:
    if col.dtype is ColumnType.DATETIME:
        members = _date_members(col)
        return lambda v: _parse_date(v) in members
    if _is_numeric(col):
        floats = frozenset(float(v) for v in col.allowed or [])
        return lambda v: v in floats
    members = frozenset(_members(col))
    return lambda v: v in members


def _whole(values: np.ndarray) -> np.ndarray:
    return values == np.floor(values)


def _bound_rule(field: str, lower: bool, soft: bool = False) -> RowRule:
    """A numeric bound (``min``, ``max``, ``soft_min``, ``soft_max``): one shape, four rules."""

    def bound(col: ColumnContract) -> Any:
        return getattr(col, field)

    def find(col: ColumnContract, values: np.ndarray) -> np.ndarray:
        return values < bound(col) if lower else values > bound(col)

    def accepts(col: ColumnContract) -> Predicate:
        limit = bound(col)
        return (lambda v: v >= limit) if lower else (lambda v: v <= limit)

    side = "below" if lower else "above"
    return RowRule(
        name=field,
        applies=lambda col: bound(col) is not None and _is_numeric(col),
        shape=False,
        find=find,
        accepts=accepts,
        describe=lambda col: (
            f"value(s) {side} {field} {fmt(bound(col))}" + (" (accepted, flagged)" if soft else "")
        ),
        soft=soft,
    )


ROW_RULES: tuple[RowRule, ...] = (
    RowRule(
        name="finite",
        applies=_is_numeric,
        shape=True,
        find=lambda col, v: np.isinf(v),
        accepts=lambda col: math.isfinite,
        describe=lambda col: "infinite value(s)",
    ),
    RowRule(
        name="integer",
        applies=lambda col: col.dtype is ColumnType.INTEGER,
        shape=True,
        find=lambda col, v: ~_whole(v),
        accepts=lambda col: float.is_integer,
        describe=lambda col: "non-integer value(s)",
    ),
    RowRule(
        name="boolean",
        applies=lambda col: col.dtype is ColumnType.BOOLEAN,
        shape=True,
        find=lambda col, v: ~np.isin(v, (0.0, 1.0)),
        accepts=lambda col: lambda v: v in (0.0, 1.0),
        describe=lambda col: "value(s) other than true/false/0/1",
    ),
    RowRule(
        name="date",
        applies=lambda col: col.dtype is ColumnType.DATETIME,
        shape=True,
        find=lambda col, v: np.fromiter((p is None for p in parse_dates(v)), dtype=bool, count=len(v)),
        accepts=lambda col: lambda v: _parse_date(v) is not None,
        describe=lambda col: "value(s) that do not parse as dates",
    ),
    RowRule(
        name="allowed",
        applies=lambda col: col.allowed is not None,
        shape=False,
        find=_find_allowed,
        accepts=_accepts_allowed,
        describe=lambda col: f"value(s) not in allowed set {fmt_list(list(col.allowed or []))}",
    ),
    _bound_rule("min", lower=True),
    _bound_rule("max", lower=False),
    _bound_rule("soft_min", lower=True, soft=True),
    _bound_rule("soft_max", lower=False, soft=True),
)

#: Name of the null rule, which every path checks first (``nullable: false``).
NULLABLE_RULE = "nullable"


def column_label(name: str) -> str:
    """How messages name a column."""
    return f"column {name!r}"


def _violation(
    name: str,
    rule: str,
    count: int,
    what: str,
    offending: np.ndarray | None,
    severity: Severity = Severity.ERROR,
) -> Violation:
    message = f"{column_label(name)}: {count} {what}"
    if offending is not None:
        message += f" (e.g. {examples(offending)})"
    return Violation(
        column=name, rule=rule, scope=RuleScope.ROW, count=count, message=message, severity=severity
    )


def applicable_rules(col: ColumnContract) -> tuple[RowRule, ...]:
    """The row rules that apply to a column, in table order."""
    return tuple(rule for rule in ROW_RULES if rule.applies(col))


def check_values(
    name: str, col: ColumnContract, values: np.ndarray, rules: Sequence[RowRule] | None = None
) -> list[Violation]:
    """Every row rule on a column's canonical values (see :class:`ValueKind`).

    Args:
        name: The column's name, for the messages.
        col: Its contract.
        values: Its canonical values.
        rules: ``applicable_rules(col)``, when the caller compiled it once (serving, per column).

    Returns:
        One violation per broken rule, in table order (soft rules' as warnings, last);
        empty when every value passes.
    """
    violations: list[Violation] = []
    missing = missing_mask(values)
    any_missing = bool(missing.any())
    if not col.nullable and any_missing:
        n_null = int(missing.sum())
        violations.append(
            _violation(name, NULLABLE_RULE, n_null, "null value(s) but nullable is false", None)
        )
    ok = ~missing
    if not ok.any():
        return violations
    # Values a hard value rule rejected are not also flagged by a soft rule.
    hard_ok = ok.copy()
    # While a mask is all true, rules see ``values`` itself: no index or copy per rule (most batches).
    ok_all = hard_ok_all = not any_missing
    with np.errstate(invalid="ignore"):
        for rule in applicable_rules(col) if rules is None else rules:
            mask, whole = (hard_ok, hard_ok_all) if rule.soft else (ok, ok_all)
            positions = None if whole else np.flatnonzero(mask)
            if rule.soft and positions is not None and not len(positions):
                continue
            subset = values if positions is None else values[positions]
            bad = np.asarray(rule.find(col, subset), dtype=bool)
            if not bad.any():
                continue
            offending = subset[bad] if rule.quote else None
            severity = Severity.WARNING if rule.soft else Severity.ERROR
            violations.append(
                _violation(name, rule.name, int(bad.sum()), rule.describe(col), offending, severity)
            )
            flagged = np.flatnonzero(bad) if positions is None else positions[bad]
            if rule.shape:
                ok[flagged] = False
                ok_all = False
            if not rule.soft:
                hard_ok[flagged] = False
                hard_ok_all = False
    return violations


def has_soft_rules(col: ColumnContract) -> bool:
    """Whether any soft rule applies to a column."""
    return any(rule.soft for rule in applicable_rules(col))


def errors(violations: Sequence[Violation]) -> list[Violation]:
    """The violations that reject (hard rules)."""
    return [v for v in violations if not v.is_warning]


def warnings_of(violations: Sequence[Violation]) -> list[Violation]:
    """The soft rules' warnings."""
    return [v for v in violations if v.is_warning]


class FastColumn:
    """The fast path for one column: plain-Python acceptance of a few canonical values.

    Compiled once per column from :data:`ROW_RULES`, soft rules included: :meth:`accepts`
    answers only "every value passes, without even a warning"; anything else is left
    to :func:`check_values`, which names the problem (or the warning).
    """

    __slots__ = ("nullable", "number", "predicates")

    def __init__(self, col: ColumnContract) -> None:
        self.nullable = col.nullable
        self.number = _is_numeric(col)
        self.predicates = tuple(rule.accepts(col) for rule in applicable_rules(col))

    def accepts(self, values: Sequence[Any]) -> bool:
        """Whether every value passes every row rule (numbers as float, text as str, None for missing)."""
        predicates = self.predicates
        for value in values:
            if value is None or (self.number and value != value):
                if not self.nullable:
                    return False
                continue
            for accept in predicates:
                if not accept(value):
                    return False
        return True
