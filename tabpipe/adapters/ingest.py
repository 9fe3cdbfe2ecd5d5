"""Ingest adapter: read, hash and split the source; write the splits as Parquet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tabpipe.adapters.files import PathLike, write_frame
from tabpipe.artifacts import Meta
from tabpipe.config import PipelineConfig


@dataclass(frozen=True)
class IngestOutputs:
    """Where the three splits go."""

    train: PathLike
    validation: PathLike
    test: PathLike


@dataclass(frozen=True)
class IngestResult:
    """What ingest found: the source's size and content hash, and the split sizes."""

    n_rows: int
    data_version: str
    n_train: int
    n_validation: int
    n_test: int
    duplicates_removed: int = 0

    def metadata(self) -> dict[str, Any]:
        """Artifact metadata, keyed by :class:`tabpipe.artifacts.Meta`."""
        return {
            Meta.N_ROWS: self.n_rows,
            Meta.DATA_VERSION: self.data_version,
            Meta.N_TRAIN: self.n_train,
            Meta.N_VALIDATION: self.n_validation,
            Meta.N_TEST: self.n_test,
            Meta.DUPLICATES_REMOVED: self.duplicates_removed,
        }


def run(config: PipelineConfig, out: IngestOutputs) -> IngestResult:
    """Read and split the source named by the config."""
    from tabpipe.stages.ingest import ingest

    result = ingest(config)
    splits = result.splits
    for frame, path in (
        (splits.train, out.train),
        (splits.validation, out.validation),
        (splits.test, out.test),
    ):
        write_frame(frame, path)
    return IngestResult(
        n_rows=result.n_rows,
        data_version=result.data_version,
        n_train=len(splits.train),
        n_validation=len(splits.validation),
        n_test=len(splits.test),
        duplicates_removed=result.duplicates_removed,
    )
