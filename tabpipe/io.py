"""Reading source tables and hashing files.

Sources are addressed by URI. Local paths are read here; ``s3://`` URIs are
fetched through :mod:`tabpipe.objectstore` (settings from the environment), in
:func:`open_source` only.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tabpipe.config import SourceFormat
from tabpipe.errors import SourceError, StorageError, first_line

if TYPE_CHECKING:
    import pandas as pd

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of a byte string."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def open_source(uri: str) -> bytes:
    """Return the raw bytes behind a source URI.

    Raises:
        SourceError: the URI's scheme is unsupported, or the file (or object) is
            missing, unreadable or empty.
        ServiceError: an ``s3://`` object store is unreachable or refused the read.
        ConfigError: an ``s3://`` URI but no store settings in the environment.
    """
    if uri.startswith("s3://"):
        # The one path to S3 (bounded waits, one message on failure); the caller hashes these bytes.
        from tabpipe.objectstore import read_bytes

        data = read_bytes(uri)
        if not data.strip():
            raise SourceError(f"source {uri}: file is empty")
        return data
    if "://" in uri and not uri.startswith("file://"):
        scheme = uri.split("://", 1)[0]
        raise SourceError(f"source {uri!r}: the {scheme}:// scheme is not supported yet; use a local path")
    path = Path(uri.removeprefix("file://"))
    if not path.exists():
        raise SourceError(f"source {path}: file not found")
    if path.is_dir():
        raise SourceError(f"source {path}: is a directory, expected a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"source {path}: cannot read ({exc.strerror or exc})") from None
    if not data.strip():
        raise SourceError(f"source {path}: file is empty")
    return data


def parse_table(data: bytes, fmt: SourceFormat, name: str, na_values: Sequence[str] = ()) -> pd.DataFrame:
    """Parse bytes of a CSV, Parquet or JSON table into a DataFrame.

    Args:
        data: The file's bytes.
        fmt: Its format.
        name: How errors name the source.
        na_values: The contract's ``na_values``: extra CSV tokens (e.g. ``"?"``) read as
            missing, on top of pandas' defaults, so a numeric column holding them reads as
            numbers. Parquet and JSON carry typed nulls, so only CSV uses them.

    Raises:
        SourceError: the bytes are not a valid table of that format, or it has no rows.
    """
    import pandas as pd

    buffer = io.BytesIO(data)
    try:
        if fmt is SourceFormat.CSV:
            frame = pd.read_csv(buffer, na_values=list(na_values) or None)
        elif fmt is SourceFormat.PARQUET:
            frame = pd.read_parquet(buffer)
        else:
            # An array is a records file; anything else is JSON Lines (one object per line).
            lines = not data.lstrip().startswith(b"[")
            frame = pd.read_json(buffer, lines=lines, orient=None if lines else "records")
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        detail = first_line(exc)
        raise SourceError(f"source {name}: not a valid {fmt.value} file ({detail})") from None
    except Exception as exc:  # pyarrow raises its own error types for corrupt Parquet
        detail = first_line(exc)
        raise SourceError(f"source {name}: not a valid {fmt.value} file ({detail})") from None
    if frame.empty:
        raise SourceError(f"source {name}: the table has no rows")
    if fmt is SourceFormat.CSV:
        _refuse_duplicate_header(data, name)
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _refuse_duplicate_header(data: bytes, name: str) -> None:
    """A CSV header naming a column twice is an error, not a column silently renamed.

    pandas renames the second ``x`` to ``x.1``, which a contract allowing extra
    columns would then accept without a word.

    Raises:
        SourceError: naming the repeated column(s).
    """
    import csv

    first_line = data.split(b"\n", 1)[0].decode("utf-8", errors="replace").lstrip("\ufeff")
    header = next(csv.reader([first_line]), [])
    repeated = sorted({column for column in header if header.count(column) > 1})
    if repeated:
        raise SourceError(f"source {name}: the header names column(s) {repeated} more than once")


def read_table(uri: str, fmt: SourceFormat, na_values: Sequence[str] = ()) -> tuple[pd.DataFrame, str]:
    """Read a source table and return it with the sha256 of its bytes (the data version).

    ``na_values`` are the contract's missing-value tokens (see :func:`parse_table`).
    """
    data = open_source(uri)
    return parse_table(data, fmt, uri, na_values), sha256_bytes(data)


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write a file so readers never see a half-written one.

    The bytes go to a temporary file next to ``path``, renamed over it once complete;
    when the write fails (a full disk, a read-only or foreign folder), the temporary
    file is removed, so neither a half-written file nor litter is left behind.

    Raises:
        StorageError: the folder could not be created or the file not written; the
            message names the path, the operation and the reason.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    operation = f"create folder {path.parent}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        operation = f"write {path}"
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())  # the rename must not outlive the data across a crash
        os.replace(tmp, path)
    except OSError as exc:
        # A write cut short by ENOSPC/EFBIG leaves part of the temporary file.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        reason = exc.strerror or type(exc).__name__
        raise StorageError(f"could not {operation} ({reason.lower()}, errno {exc.errno})") from None
