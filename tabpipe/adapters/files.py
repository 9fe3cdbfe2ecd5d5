"""Reading and writing the splits that pass between stages (Parquet, written atomically)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tabpipe.io import write_atomic

if TYPE_CHECKING:
    import pandas as pd

PathLike = str | Path


def write_frame(frame: pd.DataFrame, path: PathLike) -> None:
    """Write a split as Parquet, atomically (a reader never sees half a file)."""
    write_atomic(path, frame.to_parquet(index=False))


def read_frame(path: PathLike) -> pd.DataFrame:
    """Read a split written by :func:`write_frame`."""
    import pandas as pd

    return pd.read_parquet(path)
