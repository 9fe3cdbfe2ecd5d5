"""The validation report: what validate found, as JSON for machines and Markdown for people."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tabpipe.contract.rules import plain
from tabpipe.stages.validate.drift import DriftResult


def md(value: object) -> str:
    """Escape a value for a Markdown table cell: a "|" would end the cell, a newline the row."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def num(value: object) -> str:
    """A number with three significant digits; anything else as text."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def json_safe(value: Any) -> Any:
    """Recursively turn numpy types, tuples and NaN/inf into JSON-compatible values."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [json_safe(v) for v in value]
    value = plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if str(value) in ("<NA>", "NaT"):
        return None
    return str(value)


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
    leakage: dict[str, object] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when no rule was violated."""
        return not self.violations

    def _drift_dict(self) -> dict[str, Any] | None:
        if self.drift is None:
            return None
        d = self.drift
        return {
            "alpha": d.alpha,
            "drifted_share": d.drifted_share,
            "max_drifted_share": d.max_drifted_share,
            "failed": d.failed,
            "drifted_columns": d.drifted_columns,
            "critical_drifted": d.critical_drifted,
            "columns": [
                {
                    "column": c.column,
                    "test": c.test,
                    "statistic": c.statistic,
                    "score": c.score,
                    "p_value": c.p_value,
                    "p_adjusted": c.p_adjusted,
                    "significant": c.significant,
                    "min_effect": c.min_effect,
                    "critical": c.critical,
                    "drifted": c.drifted,
                }
                for c in d.columns
            ],
        }

    def to_dict(self) -> dict:
        """Return the machine-readable report: JSON-safe (plain types, no NaN)."""
        return json_safe(
            {
                "dataset": self.dataset,
                "passed": self.passed,
                "n_rows": self.n_rows,
                "n_columns": self.n_columns,
                "violations": self.violations,
                "warnings": self.warnings,
                "quality": self.quality,
                "leakage": self.leakage,
                "drift": self._drift_dict(),
                "drift_skipped_reason": self.drift_skipped_reason,
            }
        )

    def to_markdown(self) -> str:
        """Render the human report (shown by the KFP UI as a Markdown artifact)."""
        status = "PASS" if self.passed else "FAIL"
        out = [
            f"# Data validation: {md(self.dataset)}",
            "",
            f"**{status}**: {len(self.violations)} violation(s), {len(self.warnings)} warning(s); "
            f"{self.n_rows} row(s) x {self.n_columns} column(s).",
            "",
            "## Violations",
            "",
        ]
        out += [f"- {md(v)}" for v in self.violations] or ["None."]
        if self.warnings:
            out += ["", "## Warnings", ""] + [f"- {md(w)}" for w in self.warnings]
        out += ["", "## Quality", "", *_quality_markdown(self.quality)]
        if self.leakage:
            out += ["", "## Leakage across the splits", "", "| figure | value |", "|---|---:|"]
            out += [f"| {md(name)} | {md(value)} |" for name, value in self.leakage.items()]
        out += ["", "## Drift", ""]
        out += _drift_markdown(self.drift, self.drift_skipped_reason)
        return "\n".join(out) + "\n"


def _quality_markdown(q: dict[str, object]) -> list[str]:
    out: list[str] = []
    if "duplicate_rows" in q:
        out += [f"Duplicate rows: {q['duplicate_rows']} (ratio {num(q.get('duplicate_ratio'))}).", ""]
    missing = q.get("missing_ratio") or {}
    constant = set(q.get("constant_columns") or [])  # type: ignore[call-overload]
    if isinstance(missing, dict) and missing:
        out += ["| column | missing ratio | constant |", "|---|---:|:---:|"]
        out += [
            f"| {md(col)} | {num(ratio)} | {'yes' if col in constant else ''} |"
            for col, ratio in missing.items()
        ]
    balance = q.get("class_balance")
    if isinstance(balance, dict) and balance:
        out += ["", f"Class balance of target `{md(q.get('target'))}`:", ""]
        out += ["| class | share |", "|---|---:|"]
        out += [f"| {md(label)} | {num(share)} |" for label, share in balance.items()]
    return out


def _drift_markdown(drift: DriftResult | None, skipped_reason: str | None) -> list[str]:
    if drift is None:
        return [f"Skipped: {md(skipped_reason or 'no reference data')}."]
    verdict = "FAIL" if drift.failed else "ok"
    out = [
        f"{verdict}: {len(drift.drifted_columns)} of {len(drift.columns)} column(s) drifted "
        f"(share {num(drift.drifted_share)}, limit {num(drift.max_drifted_share)}); critical drifted: "
        f"{', '.join(drift.critical_drifted) or 'none'}. A column drifts when its Benjamini-Hochberg "
        f"adjusted p is below {num(drift.alpha)} and its effect size reaches its minimum."
    ]
    if drift.columns:
        out += [
            "",
            "| column | test | statistic | effect size | min effect | p | adjusted p | critical | drifted |",
            "|---|---|---:|---:|---:|---:|---:|:---:|:---:|",
        ]
        out += [
            f"| {md(c.column)} | {c.test} | {c.statistic:.4g} | {c.score:.3g} | {c.min_effect:.3g} | "
            f"{c.p_value:.3g} | {c.p_adjusted:.3g} | {'yes' if c.critical else ''} | "
            f"{'**yes**' if c.drifted else ('significant only' if c.significant else 'no')} |"
            for c in drift.columns
        ]
    return out
