"""Fingerprints of data: of the test split (to reuse metrics computed on it) and of each row.

Row hashes let evaluate score the champion only on test rows it was not trained on.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from tabpipe.config import PipelineConfig


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """A sha256 over a frame's column names, dtypes and row values (not its index).

    Two frames with the same fingerprint hold the same rows in the same order, so a
    deterministic model scores them the same. The row values enter through pandas'
    per-row 64-bit hash, which is stable across runs and processes.

    Args:
        frame: The data, e.g. the test split.

    Returns:
        A hex digest prefixed with ``sha256:``.

    """
    digest = hashlib.sha256()
    for name, dtype in frame.dtypes.items():
        digest.update(f"{name}\x1f{dtype}\x1e".encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """One 64-bit hash per row of a frame's values (not its index), independent of column order.

    Columns are taken in name order, and numeric columns as float64, so the same row
    hashes the same in a split where a column happened to be read as integers and in
    one where missing values made it float.

    Args:
        frame: The rows, e.g. the raw features and the target of a split.

    Returns:
        A uint64 array, one entry per row, in the frame's row order.

    """
    from pandas.api import types as ptypes

    columns = sorted(frame.columns, key=str)
    canonical = pd.DataFrame(
        {
            str(c): frame[c].astype("float64")
            if ptypes.is_numeric_dtype(frame[c].dtype) and not ptypes.is_bool_dtype(frame[c].dtype)
            else frame[c]
            for c in columns
        },
        index=frame.index,
    )
    return pd.util.hash_pandas_object(canonical, index=False).to_numpy(dtype=np.uint64)


def model_row_hashes(frame: pd.DataFrame, config: PipelineConfig) -> np.ndarray:
    """:func:`row_hashes` of a split's raw model features and target: what identifies a row to a model.

    Other columns (a timestamp, an id dropped as PII) are left out, so a row the
    model has seen is recognised whatever else changed around it.
    """
    from tabpipe.features import split_xy

    features, target = split_xy(frame, config)
    return row_hashes(features.assign(**{config.target: target}))


def training_row_set(*hashes: np.ndarray) -> np.ndarray:
    """The sorted, distinct union of row hashes, e.g. of the splits a model was fitted and selected on."""
    if not hashes:
        return np.empty(0, dtype=np.uint64)
    return np.unique(np.concatenate(hashes)).astype(np.uint64)
