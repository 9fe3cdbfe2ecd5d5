"""Batch scoring (tabpipe score): chunked, verified model, contract-checked, never half-written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tabpipe.errors import DataValidationError, SourceError
from tabpipe.serving.batch import score_file


def test_scores_a_csv_in_chunks_with_the_same_answers_as_the_model(
    bundles: dict[str, Any], tmp_path: Path
) -> None:
    bundle = bundles["phishing-v1"]
    rows = bundle.rows.head(250)
    source = tmp_path / "in.csv"
    rows.to_csv(source, index=False)
    out = tmp_path / "out" / "pred.parquet"
    summary = score_file(str(bundle.path), source, out, chunk_rows=100, progress=False)
    assert (summary.rows, summary.chunks) == (250, 3)
    scored = pd.read_parquet(out)
    assert len(scored) == 250
    names = [i.name for i in bundle.spec.inputs]
    expected = bundle.model.predict_proba(rows[names])
    np.testing.assert_allclose(
        scored[[f"proba_{c}" for c in bundle.spec.classes]].to_numpy(), expected, atol=1e-6
    )
    assert scored["prediction"].tolist() == bundle.model.predict(rows[names]).tolist()


def test_regression_csv_output_keeps_nulls(bundles: dict[str, Any], tmp_path: Path) -> None:
    bundle = bundles["housing-v1"]
    source = tmp_path / "in.parquet"
    bundle.rows.head(60).to_parquet(source, index=False)
    out = tmp_path / "pred.csv"
    score_file(str(bundle.path), source, out, chunk_rows=25, progress=False)
    scored = pd.read_csv(out)
    assert len(scored) == 60 and "prediction" in scored.columns
    assert scored["prediction"].notna().all()


def test_a_bad_chunk_fails_naming_the_rows_and_writes_nothing(
    bundles: dict[str, Any], tmp_path: Path
) -> None:
    bundle = bundles["phishing-v1"]
    rows = bundle.rows.head(250).copy()
    column = bundle.spec.inputs[0].name
    rows.loc[180, column] = 7  # outside the allowed set, in the second chunk
    source = tmp_path / "in.csv"
    rows.to_csv(source, index=False)
    out = tmp_path / "pred.parquet"
    with pytest.raises(DataValidationError, match=r"rows 100-199") as excinfo:
        score_file(str(bundle.path), source, out, chunk_rows=100, progress=False)
    assert column in str(excinfo.value)
    assert not out.exists()
    assert list(tmp_path.glob(".pred.parquet.partial-*")) == []


def test_missing_input_and_bad_suffix_are_clear_errors(bundles: dict[str, Any], tmp_path: Path) -> None:
    bundle = bundles["phishing-v1"]
    with pytest.raises(SourceError, match="file not found"):
        score_file(str(bundle.path), tmp_path / "nope.csv", tmp_path / "o.csv", progress=False)
    (tmp_path / "in.csv").write_text("a\n1\n")
    with pytest.raises(SourceError, match=r"\.csv or \.parquet"):
        score_file(str(bundle.path), tmp_path / "in.csv", tmp_path / "o.json", progress=False)


def test_command_line(bundles: dict[str, Any], tmp_path: Path) -> None:
    bundle = bundles["phishing-v1"]
    source = tmp_path / "in.csv"
    bundle.rows.head(30).to_csv(source, index=False)
    out = tmp_path / "pred.csv"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tabpipe.cli",
            "score",
            "--model",
            str(bundle.path),
            "--input",
            str(source),
            "--output",
            str(out),
            "--chunk-rows",
            "10",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "scored 30 row(s) in 3 chunk(s)" in result.stdout
    assert len(pd.read_csv(out)) == 30
