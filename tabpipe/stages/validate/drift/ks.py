"""Two-sample Kolmogorov-Smirnov test for numeric columns."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tabpipe.contract import ColumnContract, ColumnType
from tabpipe.stages.validate.drift.base import DriftMeasure

if TYPE_CHECKING:
    import pandas as pd


class KolmogorovSmirnov:
    """KS on the non-null values; its statistic D (the largest CDF gap) is also the score."""

    name = "ks"

    def applies(self, column: ColumnContract) -> bool:
        """Integer and float columns."""
        return column.dtype in (ColumnType.INTEGER, ColumnType.FLOAT)

    def measure(self, current: pd.Series, reference: pd.Series) -> DriftMeasure | None:
        """KS statistic and p-value (scipy)."""
        import pandas as pd
        from scipy import stats

        cur = pd.to_numeric(current, errors="coerce").dropna().to_numpy(dtype=float)
        ref = pd.to_numeric(reference, errors="coerce").dropna().to_numpy(dtype=float)
        if cur.size == 0 or ref.size == 0:
            return None
        result = stats.ks_2samp(cur, ref)
        return DriftMeasure(float(result.statistic), float(result.pvalue), float(result.statistic))
