"""Batch scoring: a file in, a predictions file out, chunk by chunk.

The model is loaded exactly as the server loads it (checksum-verified bundle, ONNX
when recorded), every chunk is checked against the data contract's rules for the
model's inputs, and the output is written to a temporary file that replaces the
target only when every chunk has been scored, so a failure never leaves a
half-written predictions file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tabpipe.errors import DataValidationError, SourceError

if TYPE_CHECKING:
    import pandas as pd

    from tabpipe.serving_spec import ServingSpec

DEFAULT_CHUNK_ROWS = 10_000


@dataclass(frozen=True)
class ScoreSummary:
    """What a batch-scoring run did."""

    rows: int
    chunks: int
    model_name: str
    version: str | None
    predictor: str
    output: Path


def _chunks(path: Path, chunk_rows: int, na_values: list[str]) -> Iterator[pd.DataFrame]:
    """Read CSV (with the contract's ``na_values``) or Parquet in chunks of at most ``chunk_rows`` rows."""
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix == ".csv":
        yield from pd.read_csv(path, chunksize=chunk_rows, na_values=na_values or None)
    elif suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()
    else:
        raise SourceError(f"{path}: batch scoring reads .csv or .parquet files")


def _count_rows(path: Path) -> int | None:
    """Row count for the progress bar, when it is cheap to know."""
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    with open(path, "rb") as handle:
        return max(sum(1 for _ in handle) - 1, 0)


def check_chunk(chunk: pd.DataFrame, spec: ServingSpec, first_row: int) -> None:
    """Check a chunk against the contract rules of the model's inputs.

    Only the row rules apply (the same table validation and serving evaluate):
    rules that need the whole table, such as ``unique``, mean nothing for a chunk.

    Raises:
        DataValidationError: naming every violated rule, with the chunk's row range.
    """
    from tabpipe.contract import DataContract
    from tabpipe.contract.frame import check_frame, messages
    from tabpipe.contract.rules import RuleScope

    contract = DataContract(
        name=spec.model_name, allow_extra_columns=True, columns={i.name: i.rules for i in spec.inputs}
    )
    violations = messages(check_frame(chunk, contract, scope=RuleScope.ROW))
    if violations:
        rows = f"rows {first_row}-{first_row + len(chunk) - 1}"
        raise DataValidationError(violations, title=f"batch input {rows} broke the contract")


def _write_chunk(scored: pd.DataFrame, tmp: Path, writer: object, first: bool, as_csv: bool) -> object:
    """Append one scored chunk to the temporary output; returns the Parquet writer, if any."""
    if as_csv:
        scored.to_csv(tmp, index=False, mode="w" if first else "a", header=first)
        return None
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(scored, preserve_index=False)
    if writer is None:
        writer = pq.ParquetWriter(tmp, table.schema)
    else:
        # Later chunks follow the first chunk's schema (an all-null column would otherwise differ).
        table = table.cast(writer.schema)
    writer.write_table(table)
    return writer


def score_file(
    model_uri: str,
    input_path: Path,
    output_path: Path,
    tracking_uri: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: bool = True,
    expected_digest: str | None = None,
) -> ScoreSummary:
    """Score ``input_path`` with the model at ``model_uri`` and write ``output_path``.

    The output holds the input's columns plus ``prediction`` and, for classifiers,
    one ``proba_<class>`` column per class. Parquet or CSV by the output's suffix.
    The bundle is verified as the server verifies it (every file against its
    manifest, the manifest against ``expected_digest`` or the registry's digest tag)
    before any output is written.

    Raises:
        ArtifactIntegrityError: a bundle file disagrees with its manifest or digest
            (nothing is written).
        SourceError: unreadable input or unsupported suffix.
        DataValidationError: a chunk broke the contract (nothing is written).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from tabpipe.onnx.predictor import columns_from_frame
    from tabpipe.serving.store import load_uri

    if not input_path.is_file():
        raise SourceError(f"{input_path}: file not found")
    if output_path.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise SourceError(f"{output_path}: write predictions to a .csv or .parquet file")
    loaded = load_uri(model_uri, tracking_uri, expected_digest)
    spec, predictor = loaded.spec, loaded.predictor
    tmp = output_path.with_name(f".{output_path.name}.partial-{os.getpid()}")
    as_csv = output_path.suffix.lower() == ".csv"
    output_path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    rows = chunks = 0
    columns = [TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    try:
        with Progress(*columns, disable=not progress, transient=True) as bar:
            task = bar.add_task("score", total=_count_rows(input_path))
            for chunk in _chunks(input_path, chunk_rows, spec.na_values):
                check_chunk(chunk, spec, rows)
                predictions, proba = predictor.predict(columns_from_frame(chunk, spec))
                scored = chunk.reset_index(drop=True).copy()
                scored["prediction"] = predictions
                if proba is not None:
                    for i, label in enumerate(spec.classes):
                        scored[f"proba_{label}"] = proba[:, i]
                # Stream each chunk out, so memory stays bounded by the chunk size.
                writer = _write_chunk(scored, tmp, writer, first=chunks == 0, as_csv=as_csv)
                rows += len(chunk)
                chunks += 1
                bar.update(task, advance=len(chunk))
        if writer is not None:
            writer.close()
            writer = None
        if chunks == 0:
            raise SourceError(f"{input_path}: no rows to score")
        os.replace(tmp, output_path)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return ScoreSummary(rows, chunks, spec.model_name, loaded.spec.version, predictor.kind, output_path)
