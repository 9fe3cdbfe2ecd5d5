"""The human-readable evaluation report (markdown) shown in the KFP UI."""

from __future__ import annotations

import math
from typing import Any

from tabpipe.stages.evaluate.formatting import fmt
from tabpipe.stages.evaluate.gate import Blessing


def _cell(value: Any) -> str:
    """Format a markdown table cell: numbers rounded, undefined as n/a, pipes escaped."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return fmt(value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def render_markdown(
    metrics: dict[str, float],
    slices: list[dict],
    blessing: Blessing,
    champion_metrics: dict[str, float] | None,
    champion_rows: str | None = None,
    comparison_metrics: dict[str, float] | None = None,
) -> str:
    """Render the human-readable evaluation report shown in the KFP UI.

    Args:
        metrics: The candidate's metrics.
        slices: Output of :func:`slice_metrics`.
        blessing: Output of :func:`bless`.
        champion_metrics: The champion's metrics, or None (then no champion column).
        champion_rows: Which test rows the champion was compared on (a sentence), shown above
            the metrics.
        comparison_metrics: The candidate's metrics on those rows when they are a subset of the
            test split; shown as their own column next to the champion's.

    Returns:
        Markdown: a BLESSED / NOT BLESSED headline, then metrics, gate checks and slices tables.

    """
    verdict = "BLESSED" if blessing.blessed else "NOT BLESSED"
    lines = [f"# Evaluation: {verdict}", ""]
    if not blessing.blessed:
        lines += ["Failed checks:", ""] + [f"- {_cell(r)}" for r in blessing.reasons] + [""]

    lines += ["## Metrics", ""]
    if champion_rows:
        lines += [f"Champion compared on {champion_rows}.", ""]
    if champion_metrics is None:
        lines += _table(["metric", "candidate"], [[k, v] for k, v in metrics.items()])
    elif comparison_metrics is not None:
        lines += _table(
            ["metric", "candidate", "candidate (champion's rows)", "champion"],
            [[k, v, comparison_metrics.get(k), champion_metrics.get(k)] for k, v in metrics.items()],
        )
    else:
        lines += _table(
            ["metric", "candidate", "champion"],
            [[k, v, champion_metrics.get(k)] for k, v in metrics.items()],
        )

    lines += ["", "## Gate checks", ""]
    lines += _table(
        ["check", "result", "detail"],
        [[c.name, "pass" if c.passed else "FAIL", c.detail] for c in blessing.checks],
    )

    lines += ["", "## Slices", ""]
    if not slices:
        lines.append("No slices.")
    else:
        metric_keys: list[str] = []
        for row in slices:
            for key in row:
                if key not in ("column", "value", "n") and key not in metric_keys:
                    metric_keys.append(key)
        header = ["column", "value", "n", *metric_keys]
        lines += _table(header, [[row.get(k) for k in header] for row in slices])
    return "\n".join(lines) + "\n"
