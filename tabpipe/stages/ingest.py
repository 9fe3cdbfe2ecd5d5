"""Ingest: read the source table, version it by content hash, split it.

The split is seeded and stratified on the target for classification, or
time-based (oldest rows train, newest test) when the config names a
timestamp column, so evaluation mimics scoring the future.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from tabpipe.config import PipelineConfig, SplitConfig
from tabpipe.errors import SourceError
from tabpipe.io import read_table


@dataclass(frozen=True)
class Splits:
    """The three splits of one data set."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame


@dataclass(frozen=True)
class IngestResult:
    """What ingest produced: the splits and the data version."""

    splits: Splits
    n_rows: int
    data_version: str


def _stratify_labels(target: pd.Series) -> pd.Series | None:
    """Labels to stratify on, or None when some class is too rare to stratify."""
    counts = target.value_counts(dropna=False)
    if len(counts) < 2 or counts.min() < 3:
        return None
    return target


def split_frame(frame: pd.DataFrame, target: str, split: SplitConfig, stratify: bool) -> Splits:
    """Split a frame into train, validation and test.

    Args:
        frame: The whole data set.
        target: Target column, used to stratify.
        split: Sizes, seed and optional timestamp column.
        stratify: Stratify on the target (classification) when True.

    Raises:
        SourceError: the table is too small to split, or the timestamp column does not parse.
    """
    from sklearn.model_selection import train_test_split

    n = len(frame)
    n_test = round(n * split.test_size)
    n_val = round(n * split.validation_size)
    if min(n_test, n_val, n - n_test - n_val) < 1:
        raise SourceError(f"source has {n} row(s): too few to split into train, validation and test")

    if split.timestamp_column is not None:
        ts_col = split.timestamp_column
        try:
            order = pd.to_datetime(frame[ts_col], errors="raise")
        except (ValueError, TypeError) as exc:
            raise SourceError(
                f"split.timestamp_column {ts_col!r}: values do not parse as dates ({exc})"
            ) from None
        if order.isna().any():
            raise SourceError(
                f"split.timestamp_column {ts_col!r}: {int(order.isna().sum())} row(s) have no timestamp"
            )
        ordered = frame.iloc[order.argsort(kind="stable")].reset_index(drop=True)
        train_end = n - n_test - n_val
        return Splits(
            train=ordered.iloc[:train_end].reset_index(drop=True),
            validation=ordered.iloc[train_end : train_end + n_val].reset_index(drop=True),
            test=ordered.iloc[train_end + n_val :].reset_index(drop=True),
        )

    labels = _stratify_labels(frame[target]) if stratify else None
    rest, test = train_test_split(frame, test_size=n_test, random_state=split.seed, stratify=labels)
    rest_labels = _stratify_labels(rest[target]) if labels is not None else None
    train, validation = train_test_split(rest, test_size=n_val, random_state=split.seed, stratify=rest_labels)
    return Splits(
        train=train.reset_index(drop=True),
        validation=validation.reset_index(drop=True),
        test=test.reset_index(drop=True),
    )


def ingest(config: PipelineConfig) -> IngestResult:
    """Read the configured source, hash it and split it.

    Raises:
        SourceError: the file is missing, empty, unreadable or corrupt, lacks the
            target column, or is too small to split.
    """
    frame, data_version = read_table(config.source.uri, config.source.resolved_format)
    if config.target not in frame.columns:
        shown = ", ".join(list(frame.columns)[:20])
        raise SourceError(f"target column {config.target!r} is missing from the source (columns: {shown})")
    splits = split_frame(frame, config.target, config.split, stratify=config.task.is_classification)
    return IngestResult(splits=splits, n_rows=len(frame), data_version=data_version)
