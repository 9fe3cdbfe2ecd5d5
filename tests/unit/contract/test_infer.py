"""Drafting a contract from data (infer-schema)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from tabpipe.contract import dump_contract, parse_contract
from tabpipe.contract.infer import infer_contract
from tabpipe.stages.validate import check_contract

PHISHING_CSV = Path(__file__).resolve().parents[3] / "data" / "phishing" / "phishing_websites.csv"


def test_infer_contract_drafts_rules_and_round_trips():
    df = pd.DataFrame(
        {
            "id": [10, 11, 12, 13],
            "count": [1.0, np.nan, 3.0, 3.0],  # int with NaN, as CSV reads it
            "score": [0.1, 0.2, 0.2, 0.9],
            "kind": ["a", "b", "a", None],
            "flag": [True, False, True, True],
            "when": ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04 12:00"],
        }
    )
    c = infer_contract(df, "draft")
    cols = c.columns
    assert {k: v.dtype.value for k, v in cols.items()} == {
        "id": "integer",
        "count": "integer",
        "score": "float",
        "kind": "string",
        "flag": "boolean",
        "when": "datetime",
    }
    # An identifier gets no range (ids grow), only the hard min 0 of a non-negative column.
    assert cols["id"].unique and cols["id"].allowed is None and (cols["id"].min, cols["id"].max) == (0, None)
    assert cols["id"].soft_max is None
    assert cols["count"].nullable and cols["count"].allowed == [1, 3] and not cols["count"].unique
    # Observed 0.1..0.9: soft bounds widened by 10% of the span and rounded outward.
    assert cols["score"].allowed is None and (cols["score"].min, cols["score"].max) == (0, None)
    assert (cols["score"].soft_min, cols["score"].soft_max) == (None, 1.0)
    assert cols["kind"].nullable and cols["kind"].allowed == ["a", "b"]
    assert cols["flag"].allowed == [False, True]
    assert all(type(v) is int for v in cols["count"].allowed)

    text = dump_contract(c)
    assert parse_contract(yaml.safe_load(text)) == c
    assert check_contract(df, c) == []


def test_infer_contract_many_categories_are_not_listed():
    df = pd.DataFrame({"k": [i % 30 for i in range(60)]})
    c = infer_contract(df, "draft", max_categories=20)
    assert c.columns["k"].allowed is None and not c.columns["k"].unique
    assert infer_contract(df, "draft", max_categories=30).columns["k"].allowed == list(range(30))


def test_infer_contract_on_phishing_data_validates_it():
    df = pd.read_csv(PHISHING_CSV)
    c = infer_contract(df, "phishing")
    assert len(c.columns) == 31 and c.columns["Result"].allowed == [-1, 1]
    assert all(col.dtype.value == "integer" for col in c.columns.values())
    assert parse_contract(yaml.safe_load(dump_contract(c))) == c
    assert check_contract(df, c) == []
