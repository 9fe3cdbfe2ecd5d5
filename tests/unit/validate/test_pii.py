"""PII handling."""

from __future__ import annotations

import hashlib

import pandas as pd
from validate_support import contract

from tabpipe.stages.validate import (
    apply_pii,
)


def test_apply_pii_hashes_and_drops():
    df = pd.DataFrame({"email": ["a@x.org", None, "a@x.org"], "ssn": ["1", "2", "3"], "age": [1, 2, 3]})
    c = contract(
        {
            "email": {"dtype": "string", "nullable": True, "pii": "hash"},
            "ssn": {"dtype": "string", "pii": "drop"},
            "age": {"dtype": "integer"},
            "phone": {"dtype": "string", "pii": "drop"},  # absent from the frame: ignored
        }
    )
    out = apply_pii(df, c)
    assert list(out.columns) == ["email", "age"]
    digest = hashlib.sha256(b"a@x.org").hexdigest()
    assert out["email"].iloc[0] == digest and out["email"].iloc[2] == digest
    assert pd.isna(out["email"].iloc[1])
    assert out["age"].tolist() == [1, 2, 3]
    assert df["email"].iloc[0] == "a@x.org" and "ssn" in df.columns  # input untouched
    assert apply_pii(df, c).equals(out)  # deterministic: no salt
