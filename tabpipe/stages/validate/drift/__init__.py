"""Drift: the current table's column distributions against a reference's.

Each column is measured by the first test in :data:`DRIFT_TESTS` that applies to
its contract (one module per test, each returning a :class:`DriftMeasure`).

A column drifted when the shift is both *significant* and *material*:

- significant: its p-value, adjusted with Benjamini-Hochberg across all tested
  columns (testing many columns at alpha would flag some by chance), is below alpha;
- material: its effect size (the test's score, 0 to 1) is at least the column's
  minimum. On a large table a p-value alone flags negligible shifts (a 0.02
  standard-deviation shift on a million rows is "significant"); on a small one a
  large effect may not be significant yet. Both must hold.

The result fails when a *critical* column drifted, or when more than the allowed
share of tested columns did.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tabpipe.stages.validate.drift.base import DriftMeasure, DriftTest
from tabpipe.stages.validate.drift.chi2 import ChiSquare
from tabpipe.stages.validate.drift.ks import KolmogorovSmirnov

if TYPE_CHECKING:
    import pandas as pd

    from tabpipe.contract import ColumnContract, DataContract

#: The registered tests, tried in order; the first that applies to a column measures it.
DRIFT_TESTS: tuple[DriftTest, ...] = (KolmogorovSmirnov(), ChiSquare())


#: Default smallest effect size that counts as drift (10% of the probability mass moved).
DEFAULT_MIN_EFFECT = 0.1


@dataclass(frozen=True)
class DriftColumn:
    """One row of the drift table.

    Attributes:
        drifted: Significant and material (see the module docstring).
        significant: The adjusted p-value is below alpha (whatever the effect size).
        min_effect: The effect size this column needed to count as drifted.
        critical: Whether this column's drift alone stops the run.
    """

    column: str
    test: str
    statistic: float
    score: float
    p_value: float
    p_adjusted: float
    drifted: bool
    significant: bool = False
    min_effect: float = DEFAULT_MIN_EFFECT
    critical: bool = False


@dataclass(frozen=True)
class DriftResult:
    """Outcome of comparing the current table with the reference."""

    columns: list[DriftColumn]
    alpha: float
    drifted_share: float
    max_drifted_share: float

    @property
    def failed(self) -> bool:
        """True when a critical column drifted, or more columns than the limit allows."""
        return bool(self.critical_drifted) or self.drifted_share > self.max_drifted_share

    @property
    def drifted_columns(self) -> list[str]:
        """Names of the drifted columns, in table order."""
        return [c.column for c in self.columns if c.drifted]

    @property
    def critical_drifted(self) -> list[str]:
        """Names of the drifted critical columns, in table order."""
        return [c.column for c in self.columns if c.drifted and c.critical]


def drift_test_for(column: ColumnContract, tests: Sequence[DriftTest] = DRIFT_TESTS) -> DriftTest | None:
    """The first registered test that applies to a column, if any."""
    return next((test for test in tests if test.applies(column)), None)


def check_drift(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    contract: DataContract,
    exclude: Sequence[str],
    alpha: float,
    max_drifted_share: float,
    min_effect: float = DEFAULT_MIN_EFFECT,
    min_effect_by_column: Mapping[str, float] | None = None,
    critical: Collection[str] = (),
    tests: Sequence[DriftTest] = DRIFT_TESTS,
) -> DriftResult:
    """Compare the current table's column distributions with the reference's.

    Columns in ``exclude``, columns no test applies to (datetimes), columns absent
    from either frame and columns with no values in either frame are not tested.

    Args:
        current: The new table.
        reference: The table the production model was trained on.
        contract: Declares each column's type, which picks the test.
        exclude: Columns never tested (the target, PII columns).
        alpha: Significant when the Benjamini-Hochberg adjusted p-value is below this.
        max_drifted_share: The result fails above this share of drifted columns.
        min_effect: Material when the test's effect size is at least this.
        min_effect_by_column: Per-column overrides of ``min_effect``.
        critical: Columns whose drift alone fails the result.
        tests: The drift tests to choose from.

    Returns:
        The drift table and the drifted share.
    """
    import numpy as np
    from scipy import stats

    overrides = dict(min_effect_by_column or {})
    critical_set = set(critical)
    excluded = set(exclude)
    current = current.loc[:, ~current.columns.duplicated()]
    reference = reference.loc[:, ~reference.columns.duplicated()]
    measured: list[tuple[str, str, DriftMeasure]] = []
    for name, col in contract.columns.items():
        if name in excluded or name not in current.columns or name not in reference.columns:
            continue
        test = drift_test_for(col, tests)
        if test is None:
            continue
        measure = test.measure(current[name], reference[name])
        if measure is not None:
            measured.append((name, test.name, measure))
    if not measured:
        return DriftResult(columns=[], alpha=alpha, drifted_share=0.0, max_drifted_share=max_drifted_share)
    raw = np.array([1.0 if math.isnan(m.p_value) else m.p_value for _, _, m in measured])
    adjusted = stats.false_discovery_control(raw, method="bh")
    columns = []
    for (name, test, m), p, adj in zip(measured, raw, adjusted, strict=True):
        needed = overrides.get(name, min_effect)
        significant = bool(adj < alpha)
        columns.append(
            DriftColumn(
                column=name,
                test=test,
                statistic=m.statistic,
                score=m.score,
                p_value=float(p),
                p_adjusted=float(adj),
                drifted=significant and m.score >= needed,
                significant=significant,
                min_effect=needed,
                critical=name in critical_set,
            )
        )
    share = sum(c.drifted for c in columns) / len(columns)
    return DriftResult(columns=columns, alpha=alpha, drifted_share=share, max_drifted_share=max_drifted_share)


__all__ = [
    "DRIFT_TESTS",
    "DriftColumn",
    "DriftMeasure",
    "DriftResult",
    "DriftTest",
    "check_drift",
    "drift_test_for",
]
