"""What a drift test is: a statistic, a p-value and an effect-size score for one column.

A test is a small object registered in :data:`tabpipe.stages.validate.drift.DRIFT_TESTS`;
the first registered test that ``applies`` to a column's contract measures it. The
decision (which columns drifted) is made by :func:`tabpipe.stages.validate.drift.check_drift`
from the measurements, never inside a test, so a new test needs no report or
decision changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import pandas as pd

    from tabpipe.contract import ColumnContract


@dataclass(frozen=True)
class DriftMeasure:
    """One test's result on one column.

    Attributes:
        statistic: The test's own statistic (KS D, chi-square, ...).
        p_value: Probability of a shift at least this large under "same distribution".
        score: Effect size on a 0..1 scale, comparable across tests (0: identical).
    """

    statistic: float
    p_value: float
    score: float


class DriftTest(Protocol):
    """A two-sample test of one column, current against reference."""

    #: Short name shown in the reports (e.g. ``"ks"``).
    name: str

    def applies(self, column: ColumnContract) -> bool:
        """Whether this test measures columns with this contract."""
        ...

    def measure(self, current: pd.Series, reference: pd.Series) -> DriftMeasure | None:
        """Compare the two samples; None when either has nothing to compare."""
        ...
