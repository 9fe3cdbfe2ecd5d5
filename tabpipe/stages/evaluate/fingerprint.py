"""A fingerprint of the evaluation data, so that metrics computed on it can be reused."""

from __future__ import annotations

import hashlib

import pandas as pd


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
