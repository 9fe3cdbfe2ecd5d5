"""Ingest: read the source table, version it by content hash, split it.

The split is seeded and stratified on the target for classification, or
time-based (oldest rows train, newest test) when the config names a
timestamp column, so evaluation mimics scoring the future.

Leakage guard: exact duplicate rows are dropped before the split by default (or
kept together in one split), and with ``split.group_column`` all rows of one
entity stay in one split, so the test split never holds copies of training rows.
A classification split that ends up with a single class fails with a clear
message instead of crashing later in train or evaluate.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from tabpipe.config import DuplicatePolicy, PipelineConfig, SplitConfig
from tabpipe.errors import DataValidationError, SourceError
from tabpipe.io import read_table


@dataclass(frozen=True)
class Splits:
    """The three splits of one data set."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame


@dataclass(frozen=True)
class IngestResult:
    """What ingest produced: the splits, the data version and the duplicates removed."""

    splits: Splits
    n_rows: int
    data_version: str
    duplicates_removed: int = 0


def row_keys(frame: pd.DataFrame) -> pd.Series:
    """A 64-bit hash per row (all columns, not the index): equal rows get equal keys."""
    from tabpipe.contract.frame import hashable

    table = pd.DataFrame({c: hashable(frame[c]) for c in frame.columns}, index=frame.index)
    return pd.util.hash_pandas_object(table, index=False)


def _stratify_labels(target: pd.Series) -> pd.Series | None:
    """Labels to stratify on, or None when some class is too rare to stratify."""
    counts = target.value_counts(dropna=False)
    if len(counts) < 2 or counts.min() < 3:
        return None
    return target


def split_frame(
    frame: pd.DataFrame, target: str, split: SplitConfig, stratify: bool, groups: pd.Series | None = None
) -> Splits:
    """Split a frame into train, validation and test.

    Args:
        frame: The whole data set.
        target: Target column, used to stratify.
        split: Sizes, seed and optional timestamp column.
        stratify: Stratify on the target (classification) when True.
        groups: Group key per row; rows of one group land in one split (no stratification then).

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

    if groups is not None:
        return _group_split(frame, groups, n_test, n_val, split.seed)
    labels = _stratify_labels(frame[target]) if stratify else None
    rest, test = train_test_split(frame, test_size=n_test, random_state=split.seed, stratify=labels)
    rest_labels = _stratify_labels(rest[target]) if labels is not None else None
    train, validation = train_test_split(rest, test_size=n_val, random_state=split.seed, stratify=rest_labels)
    return Splits(
        train=train.reset_index(drop=True),
        validation=validation.reset_index(drop=True),
        test=test.reset_index(drop=True),
    )


def _group_split(frame: pd.DataFrame, groups: pd.Series, n_test: int, n_val: int, seed: int) -> Splits:
    """Whole groups to each split, sized by rows as near the requested sizes as groups allow."""
    import numpy as np

    sizes = groups.value_counts(sort=False)
    order = np.random.default_rng(seed).permutation(len(sizes))
    shuffled = sizes.iloc[order]
    cumulative = shuffled.cumsum().to_numpy()
    # The first groups (in a seeded order) fill the test split, the next ones validation.
    test_groups = shuffled.index[: int(np.searchsorted(cumulative, n_test)) + 1]
    rest = shuffled.drop(test_groups)
    val_cumulative = rest.cumsum().to_numpy()
    val_groups = rest.index[: int(np.searchsorted(val_cumulative, n_val)) + 1]
    in_test = groups.isin(test_groups)
    in_val = groups.isin(val_groups)
    splits = Splits(
        train=frame[~in_test & ~in_val].reset_index(drop=True),
        validation=frame[in_val].reset_index(drop=True),
        test=frame[in_test].reset_index(drop=True),
    )
    if min(len(splits.train), len(splits.validation), len(splits.test)) < 1:
        raise SourceError(
            f"split: {len(sizes)} group(s) are too few to give train, validation and test at least one each"
        )
    return splits


def check_classes(splits: Splits, target: str) -> None:
    """Every split of a classification data set must hold at least two classes.

    Raises:
        DataValidationError: naming each split that holds one class.
    """
    problems = []
    for name, part in (("train", splits.train), ("validation", splits.validation), ("test", splits.test)):
        classes = part[target].dropna().unique()
        if len(classes) < 2:
            only = classes[0] if len(classes) else "none"
            problems.append(
                f"{name} split holds a single class ({only!s}) in {len(part)} row(s); a classifier needs at "
                "least two to train and to be evaluated (more data, another seed, or larger split sizes)"
            )
    if problems:
        raise DataValidationError(problems, title="the split cannot train or evaluate a classifier")


def ingest(config: PipelineConfig) -> IngestResult:
    """Read the configured source, hash it, guard against leakage and split it.

    Raises:
        SourceError: the file is missing, empty, unreadable or corrupt, lacks the
            target column, or is too small to split.
        DataValidationError: rows without a target, or a classification split with one class.
    """
    frame, data_version = read_table(
        config.source.uri, config.source.resolved_format, config.contract.na_values
    )
    target = config.target
    if target not in frame.columns:
        shown = ", ".join(list(frame.columns)[:20])
        raise SourceError(f"target column {target!r} is missing from the source (columns: {shown})")
    n_rows = len(frame)
    missing_target = int(frame[target].isna().sum())
    if missing_target:
        raise DataValidationError(
            [f"target {target!r}: {missing_target} row(s) have no value; every row needs a target to train"],
            title="ingest cannot split rows without a target",
        )
    split = config.split
    keys = row_keys(frame)
    removed = 0
    groups: pd.Series | None = None
    if split.duplicates is DuplicatePolicy.DROP:
        duplicated = keys.duplicated()
        removed = int(duplicated.sum())
        frame = frame[~duplicated].reset_index(drop=True)
    elif split.duplicates is DuplicatePolicy.GROUP:
        groups = keys
    if split.group_column is not None:
        groups = frame[split.group_column].astype("string").fillna("<null>")
    stratify = config.task.is_classification
    splits = split_frame(frame, target, split, stratify=stratify, groups=groups)
    if stratify:
        check_classes(splits, target)
    return IngestResult(splits=splits, n_rows=n_rows, data_version=data_version, duplicates_removed=removed)
