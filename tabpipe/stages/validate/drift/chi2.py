"""Chi-square test of homogeneity for categorical columns."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tabpipe.contract import ColumnContract, ColumnType
from tabpipe.contract.frame import hashable
from tabpipe.stages.validate.drift.base import DriftMeasure

if TYPE_CHECKING:
    import pandas as pd


def _counts(series: pd.Series) -> dict[Any, int]:
    return {k: int(v) for k, v in hashable(series.dropna()).value_counts().items()}


class ChiSquare:
    """Chi-square on a 2 x k table of category counts; the score is the total variation distance.

    The total variation distance (half the sum of the absolute differences between the
    two category shares) is the share of rows whose category would have to change to
    turn one mix into the other: 0 to 1 whatever the sample sizes, like the KS
    statistic, so one effect-size threshold means the same for every column. With a
    single category overall there is nothing to compare: statistic 0, p = 1.
    """

    name = "chi2"

    def applies(self, column: ColumnContract) -> bool:
        """String and boolean columns."""
        return column.dtype in (ColumnType.STRING, ColumnType.BOOLEAN)

    def measure(self, current: pd.Series, reference: pd.Series) -> DriftMeasure | None:
        """Chi-square statistic and p-value (scipy), and the total variation distance."""
        import numpy as np
        from scipy import stats

        cur, ref = _counts(current), _counts(reference)
        if not cur or not ref:
            return None
        categories = list(dict.fromkeys([*cur, *ref]))
        if len(categories) < 2:
            return DriftMeasure(0.0, 1.0, 0.0)
        table = np.array([[cur.get(k, 0) for k in categories], [ref.get(k, 0) for k in categories]])
        result = stats.chi2_contingency(table)
        shares = table / table.sum(axis=1, keepdims=True)
        total_variation = float(np.abs(shares[0] - shares[1]).sum() / 2)
        return DriftMeasure(float(result.statistic), float(result.pvalue), total_variation)
