"""Validate: check a table against its data contract, quality rules and a reference.

Pure logic on DataFrames; the KFP component only moves artifacts and calls
:func:`validate_frame`. Bad data never raises here: every violated rule becomes
one human-readable line in a :class:`ValidationReport`, so a user sees all
problems at once, and :func:`raise_for_report` is the one place that stops the
pipeline.

- the contract's rules: :mod:`tabpipe.contract.frame` (shared with batch scoring and serving);
- quality: :mod:`.quality`; leakage across the splits: :mod:`.leakage`;
  drift: :mod:`.drift` (one module per test); PII: :mod:`.pii`;
- the report: :mod:`.report`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tabpipe.contract import DataContract
from tabpipe.contract.frame import check_frame, messages, warning_messages
from tabpipe.contract.infer import infer_contract
from tabpipe.errors import DataValidationError
from tabpipe.stages.validate.drift import DriftColumn, DriftResult, check_drift
from tabpipe.stages.validate.leakage import check_leakage
from tabpipe.stages.validate.pii import apply_pii
from tabpipe.stages.validate.quality import check_quality
from tabpipe.stages.validate.report import ValidationReport

if TYPE_CHECKING:
    import pandas as pd

    from tabpipe.config import PipelineConfig

NO_REFERENCE_REASON = "no reference data set configured (drift.reference_uri)"


def check_contract(df: pd.DataFrame, contract: DataContract) -> list[str]:
    """Check a whole table against its data contract; one line per violated rule."""
    return messages(check_frame(df, contract))


def validate_frame(
    df: pd.DataFrame,
    config: PipelineConfig,
    reference: pd.DataFrame | None,
    dataset: str,
    splits: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame] | None = None,
) -> ValidationReport:
    """Run every check on a table and gather the results in one report.

    Never raises for bad data: the report carries the violations and
    :func:`raise_for_report` decides whether to stop.

    Args:
        df: The table to validate.
        config: The pipeline config; its contract, target, task and drift settings apply.
        reference: The reference table for the drift check, or None to skip it.
        dataset: Name shown in the report (e.g. the config name).
        splits: The train, validation and test splits ``df`` was made of, for the leakage checks.

    Returns:
        The validation report.
    """
    contract = config.contract
    found = check_frame(df, contract)
    violations = messages(found)
    q_violations, notes, quality = check_quality(df, contract, config.target, config.task)
    report = ValidationReport(
        dataset=dataset,
        n_rows=len(df),
        n_columns=df.shape[1],
        violations=violations + q_violations,
        warnings=warning_messages(found) + notes,  # soft contract rules warn, never fail
        quality=quality,
    )
    from tabpipe.features import feature_columns

    if splits is not None:
        limits = config.leakage
        leakage = check_leakage(
            *splits,
            features=feature_columns(config).raw,
            target=config.target,
            classification=config.task.is_classification,
            max_test_share_in_train=limits.max_test_share_in_train,
            max_conflicting_label_share=limits.max_conflicting_label_share,
            max_single_feature_score=limits.max_single_feature_score,
        )
        report.leakage = leakage.figures()
        report.violations += leakage.violations
    if reference is None:
        report.drift_skipped_reason = NO_REFERENCE_REASON
        return report

    settings = config.drift
    exclude = [config.target, *contract.pii_columns]
    critical = settings.critical_columns
    if critical is None:  # by default every model feature matters
        critical = feature_columns(config).raw
    drift = check_drift(
        df,
        reference,
        contract,
        exclude,
        settings.alpha,
        settings.max_drifted_share,
        min_effect=settings.min_effect,
        min_effect_by_column=settings.min_effect_by_column,
        critical=critical,
    )
    report.drift = drift
    drifted = drift.drifted_columns
    summary = (
        f"drift: {len(drifted)} of {len(drift.columns)} column(s) drifted {drifted} "
        f"(significant and effect size >= min_effect), share {drift.drifted_share:.3f}"
    )
    if not drift.columns:
        report.warnings.append("drift: no column could be tested against the reference")
    elif drift.critical_drifted:
        report.violations.append(f"{summary}; critical column(s) drifted: {drift.critical_drifted}")
    elif drift.failed:
        report.violations.append(f"{summary} exceeds max_drifted_share {drift.max_drifted_share}")
    elif drifted:
        report.warnings.append(f"{summary} within max_drifted_share {drift.max_drifted_share}")
    return report


def raise_for_report(report: ValidationReport) -> None:
    """Stop the pipeline when the report has violations.

    Raises:
        DataValidationError: listing every violation.
    """
    if not report.passed:
        raise DataValidationError(report.violations, title=f"data validation of {report.dataset} failed")


__all__ = [
    "NO_REFERENCE_REASON",
    "DriftColumn",
    "DriftResult",
    "ValidationReport",
    "apply_pii",
    "check_contract",
    "check_drift",
    "check_quality",
    "infer_contract",
    "raise_for_report",
    "validate_frame",
]
