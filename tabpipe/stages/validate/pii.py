"""PII handling: drop or hash personal data before any later stage sees it."""

from __future__ import annotations

import hashlib

import pandas as pd

from tabpipe.contract import DataContract, PiiAction
from tabpipe.contract.rules import plain


def apply_pii(df: pd.DataFrame, contract: DataContract) -> pd.DataFrame:
    """Remove personal data before any later stage sees the table.

    ``drop`` columns are removed. ``hash`` columns are replaced by the hex
    sha256 of each value's string form; nulls stay null. The hash is
    deterministic and unsalted on purpose, so the same value hashes the same
    in every run and data set and joins on the column still work. That also
    means a hashed column with few possible values (or guessable ones such as
    e-mail addresses) can be reversed by hashing candidates: use ``drop`` when
    the column is not needed.

    Args:
        df: The table; it is not modified.
        contract: Declares each column's PII action.

    Returns:
        A new table with the PII actions applied. Columns the contract names
        but the table lacks are ignored (the contract check reports them).

    """
    out = df.copy()
    pii = contract.pii_columns
    drop = [c for c, action in pii.items() if action is PiiAction.DROP and c in out.columns]
    out = out.drop(columns=drop)
    for name, action in pii.items():
        if action is PiiAction.HASH and name in out.columns:
            hashed = out[name].map(
                lambda v: v if pd.isna(v) else hashlib.sha256(str(plain(v)).encode()).hexdigest()
            )
            out[name] = hashed.astype("str")
    return out
