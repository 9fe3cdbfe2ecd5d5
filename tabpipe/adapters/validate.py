"""Validate adapter: check the splits against the contract, quality rules and drift; apply PII handling."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tabpipe.adapters.files import PathLike, read_frame, write_frame
from tabpipe.artifacts import Meta
from tabpipe.config import PipelineConfig
from tabpipe.io import write_atomic


@dataclass(frozen=True)
class Splits:
    """Paths of the three splits."""

    train: PathLike
    validation: PathLike
    test: PathLike


@dataclass(frozen=True)
class ValidateOutputs:
    """Where validate writes: the cleaned splits and the two reports."""

    clean: Splits
    report_json: PathLike
    report_markdown: PathLike


@dataclass(frozen=True)
class ValidateResult:
    """The checked table's size, the warnings count and the contract's hash."""

    n_rows: int
    warnings: int
    contract_hash: str

    def metadata(self) -> dict[str, Any]:
        """Artifact metadata, keyed by :class:`tabpipe.artifacts.Meta`."""
        return {
            Meta.N_ROWS: self.n_rows,
            Meta.WARNINGS: self.warnings,
            Meta.CONTRACT_HASH: self.contract_hash,
        }


def run(config: PipelineConfig, splits: Splits, out: ValidateOutputs) -> ValidateResult:
    """Validate the three splits as one table; the reports are written before failing.

    Raises:
        DataValidationError: naming every violated rule.
    """
    import pandas as pd

    from tabpipe.config import SourceConfig
    from tabpipe.io import read_table
    from tabpipe.stages.validate import apply_pii, raise_for_report, validate_frame

    frames = [read_frame(p) for p in (splits.train, splits.validation, splits.test)]
    whole = pd.concat(frames, ignore_index=True)
    reference = None
    if config.drift.reference_uri is not None:
        reference_source = SourceConfig(uri=config.drift.reference_uri)
        reference, _ = read_table(
            reference_source.uri, reference_source.resolved_format, config.contract.na_values
        )
    report = validate_frame(
        whole, config, reference, dataset=config.name, splits=(frames[0], frames[1], frames[2])
    )
    write_atomic(out.report_json, json.dumps(report.to_dict(), indent=2).encode())
    write_atomic(out.report_markdown, report.to_markdown().encode())
    raise_for_report(report)
    clean = (out.clean.train, out.clean.validation, out.clean.test)
    for frame, path in zip(frames, clean, strict=True):
        write_frame(apply_pii(frame, config.contract), path)
    return ValidateResult(
        n_rows=len(whole), warnings=len(report.warnings), contract_hash=config.contract.fingerprint()
    )
