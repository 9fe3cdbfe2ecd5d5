"""The blessing gate: thresholds, the champion comparison and extra checks.

The candidate is *blessed* when it meets every configured threshold, is not
worse than the current champion on the primary metric by more than the
configured tolerance, and passes any extra checks (for example ONNX parity).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tabpipe.config import EvaluationConfig, Metric
from tabpipe.stages.evaluate.formatting import fmt, fmt_pair

#: Absolute slack in gate comparisons, so that e.g. 0.92 - 0.02 is "within 0.02" despite float rounding.
_GATE_EPSILON = 1e-12


@dataclass(frozen=True)
class GateCheck:
    """One check of the blessing gate.

    Attributes:
        name: What was checked, e.g. ``"threshold roc_auc"``.
        passed: Whether it passed.
        detail: A readable sentence with the numbers, e.g. ``"roc_auc 0.953 >= 0.900"``.

    """

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Blessing:
    """The gate's verdict: blessed only when every check passed.

    Attributes:
        blessed: Whether the candidate may be registered and deployed.
        checks: Every check made, in order.

    """

    blessed: bool
    checks: list[GateCheck]

    def to_dict(self) -> dict:
        """JSON-safe form: ``blessed``, ``checks`` (name, passed, detail) and ``reasons``."""
        return {
            "blessed": self.blessed,
            "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in self.checks],
            "reasons": self.reasons,
        }

    @property
    def reasons(self) -> list[str]:
        """Details of the failed checks (empty when blessed)."""
        return [c.detail for c in self.checks if not c.passed]


def _threshold_check(metric: Metric, value: float | None, bound: float) -> GateCheck:
    name = f"threshold {metric.value}"
    if value is None:
        return GateCheck(name, False, f"{metric.value} was not computed (threshold {fmt(bound)})")
    if math.isnan(value):
        return GateCheck(name, False, f"{metric.value} is undefined (NaN); threshold {fmt(bound)}")
    v, b = fmt_pair(value, bound)
    if metric.higher_is_better:
        passed = value >= bound - _GATE_EPSILON
        detail = f"{metric.value} {v} >= {b}" if passed else f"{metric.value} {v} is below the threshold {b}"
    else:
        passed = value <= bound + _GATE_EPSILON
        detail = f"{metric.value} {v} <= {b}" if passed else f"{metric.value} {v} is above the threshold {b}"
    return GateCheck(name, passed, detail)


def _champion_check(
    metric: Metric,
    value: float | None,
    champion_metrics: dict[str, float] | None,
    tolerance: float,
    rows: str | None = None,
    skipped: str | None = None,
) -> GateCheck:
    name = f"champion {metric.value}"
    if champion_metrics is None:
        return GateCheck(name, True, "no champion yet")
    if skipped is not None:
        # Not a failure: the candidate still met every threshold; there is just no fair comparison.
        return GateCheck(name, True, f"skipped: {skipped}")
    if value is None or math.isnan(value):
        detail = f"candidate {metric.value} is undefined; cannot compare with the champion"
        return GateCheck(name, False, detail)
    champion = champion_metrics.get(metric.value)
    if champion is None or math.isnan(champion):
        # An older champion may predate this metric; there is nothing to be worse than.
        return GateCheck(name, True, f"champion has no {metric.value}; nothing to compare")
    # How much worse the candidate is, in the metric's own direction (negative = better).
    worse_by = champion - value if metric.higher_is_better else value - champion
    v, c = fmt_pair(value, champion)
    head = f"{metric.value} {v} vs champion {c}" + (f" on {rows}" if rows else "")
    if worse_by <= 0:
        return GateCheck(name, True, f"{head}: not worse")
    passed = worse_by <= tolerance + _GATE_EPSILON
    verdict = "within" if passed else "beyond"
    return GateCheck(name, passed, f"{head}: {fmt(worse_by)} worse, {verdict} tolerance {fmt(tolerance)}")


def bless(
    metrics: dict[str, float],
    evaluation: EvaluationConfig,
    champion_metrics: dict[str, float] | None,
    extra_checks: Sequence[GateCheck] = (),
    *,
    comparison_metrics: dict[str, float] | None = None,
    champion_rows: str | None = None,
    champion_skipped: str | None = None,
) -> Blessing:
    """Decide whether the candidate is blessed.

    Checks, in order: one per configured threshold (``>=`` for metrics where higher is better,
    ``<=`` for error metrics; a NaN or missing metric fails), then the champion check on the
    primary metric (the candidate may be worse than the champion by at most
    ``champion_tolerance``, an absolute difference in the metric's own direction; it passes
    with "no champion yet" when there is none, and with "skipped: ..." when too few test rows
    are new to the champion to compare fairly), then ``extra_checks`` as given. Thresholds
    use ``metrics`` (the whole test split); the champion check uses ``comparison_metrics``.

    Args:
        metrics: The candidate's metrics (:func:`compute_metrics`).
        evaluation: Thresholds, primary metric and tolerance.
        champion_metrics: The current champion's metrics, or None when there is no champion.
        extra_checks: Further checks to include, e.g. ONNX parity.
        comparison_metrics: The candidate's metrics on the rows the champion was scored on
            (those it did not train on); None when that is the whole test split (``metrics``).
        champion_rows: Which rows the comparison used, for the detail, e.g.
            ``"1240 of 4000 test rows it was not trained on"``.
        champion_skipped: Why the champion comparison is skipped (it passes, saying so).

    Returns:
        The blessing, with every check and its detail.

    """
    checks = [
        _threshold_check(metric, metrics.get(metric.value), bound)
        for metric, bound in evaluation.thresholds.items()
    ]
    primary = evaluation.primary_metric
    compared = metrics if comparison_metrics is None else comparison_metrics
    checks.append(
        _champion_check(
            primary,
            compared.get(primary.value),
            champion_metrics,
            evaluation.champion_tolerance,
            champion_rows,
            champion_skipped,
        )
    )
    checks.extend(extra_checks)
    return Blessing(blessed=all(c.passed for c in checks), checks=checks)
