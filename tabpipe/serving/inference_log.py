"""The inference log: a sample of served requests, written off the request path to rolling Parquet files.

The server calls :meth:`InferenceLog.record` for each answered request. That call
only decides whether the request is sampled (``random() < sample_rate``), stamps
the UTC time and puts a reference to the request's arrays on a bounded queue; it
never blocks, never raises, and a full queue drops the request and counts it. One
daemon thread takes the records, converts them to Arrow, buffers them per model
version and writes a Parquet file when a buffer reaches ``max_rows_per_file`` rows,
when it is ``max_seconds_per_file`` old, at UTC midnight, and on :meth:`close`. The
monitoring stage reads the files back with :func:`read_inference_log`.

Layout, under ``location`` (a local folder or ``s3://bucket/prefix``)::

    <model>/<version>/<YYYY-MM-DD>/part-<YYYYmmddTHHMMSSffffff>Z-<12 hex>.parquet

* one folder per model and version, because each has its own input columns (the
  schema of a file is that of one model version);
* ``<model>`` and ``<version>`` are path-safe forms of the names: characters other
  than ``A-Z a-z 0-9 . _ -`` become ``_``, a leading ``.`` gets a ``_`` before it
  (no ``..``, no hidden names), and a name that had to change gets ``-<8 hex of its
  sha256>`` appended so two names never share a folder. The exact names are in the
  ``model`` and ``model_version`` columns;
* the date folder is the UTC date of every row of the file (files roll at midnight),
  so a reader asking for rows since a date skips older folders without opening them;
* plain folder names rather than Hive-style ``model=<m>/``: a dataset reader would
  add partition columns that collide with the ``model`` and ``model_version`` columns
  already in the files;
* the file name starts with the UTC time of its first row, so names sort by time.

A file appears whole or not at all: locally it is written under a hidden temporary
name (``.part-...partial-<id>``) in the same folder, synced and renamed into place;
on MinIO it goes through :func:`tabpipe.objectstore.upload_atomic` (a verified
temporary object copied into place). Readers list only ``part-*.parquet`` names, so
they never see a half-written file.

Columns, one row per request row:

* ``timestamp`` (``timestamp[us, tz=UTC]``, when :meth:`InferenceLog.record` was
  called), ``model``, ``model_version`` (strings), ``request_id`` (string, null when
  the request had none);
* ``input.<name>`` per input column, keeping its type: float64 (NaN stored as null),
  int64, bool, and string for object columns of text (None and NaN stored as null;
  an object column of bools or numbers keeps that type; a column mixing text with
  other values is stored as text);
* ``output.predict``, typed the same way (float64 for regression, the label's type
  for classifiers);
* ``output.probabilities``: ``list<double>``, one list per row in the order of the
  serving spec's ``classes`` of that model version. A list rather than one column per
  class: :meth:`InferenceLog.record` is not given the class names, and the file's
  columns then stay the same whatever the classes are called; the monitoring stage
  has the spec of each version to name them (``frame["output.probabilities"]
  .apply(pd.Series)`` gives one column per class).

Any other output is stored the same way (1-D as a column, 2-D as lists). Within a
model version, a column whose type changes (all-null in one request, strings in the
next) is widened when Arrow can (null to anything, int to float); otherwise the open
file is written and a new one begins with the new schema.

Failures never reach the request or stop the thread. Each is counted
(``tabpipe_serving_inference_log_rows_dropped_total{reason}``, in rows) and logged as
at most one warning per kind per minute:

* ``queue_full``: the writer is behind: the queue holds ``queue_size`` requests or
  ``max_queued_rows`` rows;
* ``write_error``: a file could not be written ``max_write_attempts`` times (retried
  after 1 s, 2 s, 4 s ..., at most 30 s; each failure also counts in
  ``tabpipe_serving_inference_log_write_errors_total``);
* ``buffer_full``: rows held in memory (open files and files waiting for a retry)
  passed ``max_buffered_rows``; the oldest file waiting for a retry goes first;
* ``invalid``: a record could not be converted (arrays of different lengths, a 3-D output);
* ``closed``: recorded after :meth:`InferenceLog.close`.

The arrays given to :meth:`InferenceLog.record` are kept by reference until the
writer converts them: the caller must not change them afterwards (the server builds
new arrays for every request).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import queue
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from tabpipe.errors import ConfigError, SourceError, first_line
from tabpipe.io import write_atomic
from tabpipe.objectstore import (
    PARTIAL_MARKER,
    S3Location,
    StoreSettings,
    list_keys,
    parse_s3_uri,
    read_bytes,
    upload_atomic,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

#: The columns every file starts with, before the ``input.*`` and ``output.*`` columns.
BASE_COLUMNS = ("timestamp", "model", "model_version", "request_id")
INPUT_PREFIX = "input."
OUTPUT_PREFIX = "output."
FILE_PREFIX = "part-"
FILE_SUFFIX = ".parquet"
#: Schema metadata key of every file; its value is the layout's version.
FORMAT_KEY = "tabpipe.inference_log"
FORMAT_VERSION = "1"
#: The ``reason`` label values of the dropped-rows counter.
DROP_REASONS = ("queue_full", "buffer_full", "write_error", "invalid", "closed")
COMPRESSIONS = ("zstd", "snappy", "gzip", "none")

_WARN_INTERVAL_SECONDS = 60.0
_MAX_BACKOFF_SECONDS = 30.0
# The writer wakes at least this often even when idle (close() also wakes it at once).
_MAX_WAIT_SECONDS = 1.0
# Records taken from the queue in one go before the writer checks its deadlines again.
_DRAIN_BATCH = 256
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_DATE_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MAX_SEGMENT_CHARS = 100
_NS_PER_DAY = 86_400 * 1_000_000_000


@dataclass(frozen=True)
class InferenceLogConfig:
    """Where and how much of the served traffic to log; validated on creation.

    Attributes:
        location: A local folder, or ``s3://bucket/prefix`` on the object store.
        sample_rate: The fraction of requests logged, in (0, 1]. To log nothing,
            create no log at all.
        queue_size: Requests waiting for the writer; past it new ones are dropped (counted).
        max_queued_rows: Rows of the requests waiting for the writer; past it new ones
            are dropped (counted) too, so large requests cannot hold much memory. A request
            with more rows than this is never logged: keep it above the server's ``--max-rows``.
        max_rows_per_file: A file is written when its rows reach this many.
        max_seconds_per_file: ... or when its first row is this old, so files appear
            under light traffic too.
        max_buffered_rows: Rows held in memory at most: open files plus files waiting
            for a retry after a write error. Past it rows are dropped (counted).
        max_write_attempts: Attempts to write a file before its rows are dropped (counted).
        compression: The Parquet compression: ``zstd``, ``snappy``, ``gzip`` or ``none``.
    """

    location: str
    sample_rate: float = 1.0
    queue_size: int = 1024
    max_queued_rows: int = 200_000
    max_rows_per_file: int = 100_000
    max_seconds_per_file: float = 60.0
    max_buffered_rows: int = 500_000
    max_write_attempts: int = 3
    compression: str = "zstd"

    def __post_init__(self) -> None:
        if not isinstance(self.location, str) or not self.location.strip():
            raise ConfigError(
                f"inference log: location must be a folder or s3://bucket/prefix, not {self.location!r}"
            )
        if "://" in self.location:
            if not self.location.startswith("s3://"):
                raise ConfigError(
                    f"inference log: location {self.location!r}: only local folders and s3:// are supported"
                )
            try:
                parse_s3_uri(self.location)
            except SourceError as exc:
                raise ConfigError(f"inference log: location: {exc}") from None
        rate = self.sample_rate
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate):
            raise ConfigError(f"inference log: sample_rate must be a number in (0, 1], not {rate!r}")
        if rate <= 0:
            raise ConfigError(
                f"inference log: sample_rate must be in (0, 1], got {rate!r}; "
                "to log nothing, create no inference log"
            )
        if rate > 1:
            raise ConfigError(
                f"inference log: sample_rate must be in (0, 1] (a fraction of requests), got {rate!r}"
            )
        for name in (
            "queue_size",
            "max_queued_rows",
            "max_rows_per_file",
            "max_buffered_rows",
            "max_write_attempts",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"inference log: {name} must be a whole number >= 1, not {value!r}")
        seconds = self.max_seconds_per_file
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not (0 < seconds < math.inf):
            raise ConfigError(f"inference log: max_seconds_per_file must be a number > 0, not {seconds!r}")
        if self.max_buffered_rows < self.max_rows_per_file:
            raise ConfigError(
                f"inference log: max_buffered_rows ({self.max_buffered_rows}) must be at least "
                f"max_rows_per_file ({self.max_rows_per_file}), or no file could ever fill"
            )
        if self.compression not in COMPRESSIONS:
            raise ConfigError(
                f"inference log: compression must be one of {', '.join(COMPRESSIONS)}, "
                f"not {self.compression!r}"
            )


class _Record(NamedTuple):
    """One sampled request, as record() queues it (references only: no copy on the request path)."""

    model: str
    version: str
    columns: Mapping[str, Any]
    outputs: Mapping[str, Any]
    request_id: str | None
    time_ns: int
    n_rows: int


@dataclass
class _Stream:
    """The open file of one model version: Arrow tables of one UTC date, not yet written."""

    day: str
    schema: pa.Schema
    opened: float
    tables: list[pa.Table] = field(default_factory=list)
    rows: int = 0


@dataclass
class _PendingFile:
    """A file ready to write (its name fixed, so a retry writes the same one) and its failed attempts."""

    model: str
    relative: str
    table: pa.Table
    attempts: int = 0
    next_try: float = 0.0


class InferenceLog:
    """Writes a sample of served requests to rolling Parquet files from a thread of its own.

    Use: ``log = InferenceLog(config, registry); log.start()``; ``log.record(...)`` per
    request; ``log.close()`` at shutdown (or ``with InferenceLog(...) as log:``).
    The module docstring describes the files, the columns and what is counted.
    """

    def __init__(
        self,
        config: InferenceLogConfig,
        registry: CollectorRegistry | None = None,
        store_settings: StoreSettings | None = None,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        """Set up the log; nothing is written and no thread runs until :meth:`start`.

        Args:
            config: The validated settings.
            registry: Where the metrics are registered; a registry of the log's own
                (``self.registry``) when omitted, never the process-global one.
            store_settings: The object store, for an ``s3://`` location; read from the
                environment when omitted (:meth:`StoreSettings.from_env`).
            rng: The sampling's source of randomness; a generator seeded from the
                operating system when omitted (tests pass a seeded one).
            clock: Nanoseconds since the Unix epoch for the rows' ``timestamp``;
                :func:`time.time_ns` when omitted (tests pass a fixed one).

        Raises:
            ConfigError: an ``s3://`` location without store settings in the environment.
            ValueError: ``registry`` already holds these metrics (one log per registry).
        """
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.config = config
        self._s3: S3Location | None = None
        self._root: Path | None = None
        if config.location.startswith("s3://"):
            self._s3 = parse_s3_uri(config.location)
            self._settings = store_settings or StoreSettings.from_env()
        else:
            self._root = Path(config.location).expanduser().absolute()
            self._settings = store_settings
        self._rate = float(config.sample_rate)
        self._random = (rng or random.Random()).random
        self._clock = clock or time.time_ns
        self._queue: queue.Queue[_Record | None] = queue.Queue(maxsize=config.queue_size)
        self._closed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # Both guarded by _lock: rows on the queue; rows dropped since the writer last warned.
        self._queued_rows = 0
        self._queue_full_rows = 0
        # The writer thread's own state.
        self._streams: dict[tuple[str, str], _Stream] = {}
        self._pending: list[_PendingFile] = []
        self._warned_at: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
        r = self.registry
        self._rows_written = Counter(
            "tabpipe_serving_inference_log_rows_written",
            "Request rows written to inference log files.",
            ["model"],
            registry=r,
        )
        dropped = Counter(
            "tabpipe_serving_inference_log_rows_dropped",
            "Sampled request rows not logged, by reason: " + ", ".join(DROP_REASONS) + ".",
            ["reason"],
            registry=r,
        )
        # Every reason shows from the start (at 0), so an alert on a rate needs no "absent" case.
        self._dropped = {reason: dropped.labels(reason) for reason in DROP_REASONS}
        self._files = Counter(
            "tabpipe_serving_inference_log_files", "Inference log files written.", registry=r
        )
        self._write_errors = Counter(
            "tabpipe_serving_inference_log_write_errors",
            "Failed attempts to write an inference log file (each may be retried).",
            registry=r,
        )
        depth = Gauge(
            "tabpipe_serving_inference_log_queue_depth",
            "Sampled requests waiting for the inference log's writer.",
            registry=r,
        )
        depth.set_function(self._queue.qsize)

    def __enter__(self) -> InferenceLog:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the writer thread (a daemon); a second call does nothing.

        Raises:
            RuntimeError: the log was closed.
        """
        if self._closed:
            raise RuntimeError("inference log: start() after close()")
        if self._thread is not None:
            return
        # Imported here, on the caller's thread, so the first request does not wait for it.
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401

        if self._root is not None:
            try:
                self._root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                # Not fatal: every write will say so (counted) until the folder can be created.
                self._warn("write", f"inference log: cannot create {self._root}: {first_line(exc)}")
        self._thread = threading.Thread(target=self._run, name="tabpipe-inference-log", daemon=True)
        self._thread.start()

    def record(
        self,
        model: str,
        version: str,
        columns: dict[str, np.ndarray],
        outputs: dict[str, np.ndarray],
        request_id: str | None = None,
    ) -> None:
        """Queue one answered request for the log, if sampled; never blocks, never raises.

        Args:
            model: The model's name.
            version: The model version that answered.
            columns: The decoded input columns (1-D arrays of one length), by name.
            outputs: ``predict`` (1-D) and possibly ``probabilities`` (rows × classes).
            request_id: The request's id, if it had one.
        """
        try:
            if self._closed:
                self._dropped["closed"].inc(_row_count(columns, outputs))
                return
            if self._rate < 1.0 and self._random() >= self._rate:
                return
            item = _Record(
                model, version, columns, outputs, request_id, self._clock(), _row_count(columns, outputs)
            )
            with self._lock:  # the writer never holds it while it waits on the queue: no deadlock
                queued = self._queued_rows + item.n_rows <= self.config.max_queued_rows
                if queued:
                    try:
                        self._queue.put_nowait(item)
                        self._queued_rows += item.n_rows
                    except queue.Full:
                        queued = False
                if not queued:
                    self._queue_full_rows += item.n_rows
            if not queued:
                self._dropped["queue_full"].inc(item.n_rows)
        except Exception:  # noqa: BLE001 - a request never fails because of its log
            with contextlib.suppress(Exception):
                self._dropped["invalid"].inc()

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued and buffered, then stop the thread; a second call does nothing.

        Records arriving afterwards are dropped (counted as ``closed``). When the
        writer is still busy after ``timeout`` seconds (an object store that hangs),
        a warning says so and the daemon thread is left to finish or die with the process.
        A log that was never started writes its queue on the caller's thread.
        """
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)  # wakes the writer at once
        thread = self._thread
        if thread is None:
            self._run()
        else:
            thread.join(timeout)
            if thread.is_alive():
                log.warning(
                    "inference log: the writer is still busy after %.0fs at shutdown; rows not yet written "
                    "may be lost",
                    timeout,
                )
                return
        # A record() that raced with close() may have queued after the writer's last look.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self._dropped["closed"].inc(item.n_rows)

    # ---- the writer thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            try:
                self._step()
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any one bad record or write
                self._warn("unexpected", f"inference log: writer error, carrying on: {first_line(exc)}")
                time.sleep(0.1)  # a repeating failure must not spin a core
        try:
            for key in list(self._streams):
                self._seal(key, write=False)
            for pending in list(self._pending):  # one last attempt each, no waiting for a retry
                self._write(pending, time.monotonic(), final=True)
            self._report_queue_drops()
        except Exception as exc:  # noqa: BLE001
            self._warn("unexpected", f"inference log: writer error at shutdown: {first_line(exc)}")

    def _step(self) -> None:
        stopping = self._stop.is_set()
        batch: list[_Record] = []
        try:
            item = self._queue.get_nowait() if stopping else self._queue.get(timeout=self._wait_seconds())
        except queue.Empty:
            item = None
        if item is not None:
            batch.append(item)
        while len(batch) < _DRAIN_BATCH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:  # None only wakes the writer (close)
                batch.append(item)
        if batch:
            with self._lock:
                self._queued_rows -= sum(item.n_rows for item in batch)
        # One conversion per model version and column layout rather than per request: at one
        # row per request, converting each alone costs several times more.
        for group in _groups(batch):
            self._add(group)
        now = time.monotonic()
        for key in [
            k for k, s in self._streams.items() if now - s.opened >= self.config.max_seconds_per_file
        ]:
            self._seal(key)
        for pending in list(self._pending):
            if pending.next_try <= now:
                self._write(pending, now)
        self._report_queue_drops()

    def _wait_seconds(self) -> float:
        now = time.monotonic()
        deadlines = [s.opened + self.config.max_seconds_per_file for s in self._streams.values()]
        deadlines += [p.next_try for p in self._pending]
        if not deadlines:
            return _MAX_WAIT_SECONDS
        return min(max(min(deadlines) - now, 0.001), _MAX_WAIT_SECONDS)

    def _add(self, items: list[_Record]) -> None:
        """Convert records of one model version, date and layout, and append them to its open file."""
        import pyarrow as pa

        try:
            table = _records_table(items)
        except Exception as exc:  # noqa: BLE001 - any malformed record is dropped, never fatal
            if len(items) > 1:
                for item in items:  # find the bad one: the others are kept
                    self._add([item])
                return
            self._dropped["invalid"].inc(items[0].n_rows)
            self._warn(
                "invalid",
                f"inference log: a record of model {items[0].model!r} version {items[0].version!r} "
                f"could not be stored and was dropped: {first_line(exc)}",
            )
            return
        if table.num_rows == 0:
            return
        key = (items[0].model, items[0].version)
        # Integer days, as in _layout: a float near midnight could round into the next day.
        day = (date(1970, 1, 1) + timedelta(days=items[0].time_ns // _NS_PER_DAY)).isoformat()
        stream = self._streams.get(key)
        if stream is not None and stream.day != day:
            self._seal(key)  # one UTC date per file
            stream = None
        if stream is not None and not table.schema.equals(stream.schema):
            try:
                stream.schema = pa.unify_schemas([stream.schema, table.schema], promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                self._seal(key)  # types that do not widen into one another: a new file, a new schema
                stream = None
        if stream is None:
            stream = self._streams[key] = _Stream(day, table.schema, time.monotonic())
        stream.tables.append(table)
        stream.rows += table.num_rows
        if stream.rows >= self.config.max_rows_per_file:
            self._seal(key, full_only=True)
        self._enforce_bound()

    def _seal(self, key: tuple[str, str], full_only: bool = False, write: bool = True) -> None:
        """Turn an open file into files to write (and write them): all of it, or its full files only."""
        import pyarrow as pa

        stream = self._streams.pop(key)
        table = pa.concat_tables(stream.tables, promote_options="permissive")
        limit = self.config.max_rows_per_file
        sealed = []
        offset = 0
        while table.num_rows - offset >= limit or (not full_only and offset < table.num_rows):
            chunk = table.slice(offset, limit)
            offset += chunk.num_rows
            sealed.append(self._new_file(key, stream.day, chunk))
        if offset < table.num_rows:
            # The rest of the request that filled the file: it opens the next one.
            rest = table.slice(offset)
            self._streams[key] = _Stream(stream.day, table.schema, time.monotonic(), [rest], rest.num_rows)
        for pending in sealed if write else ():
            self._write(pending, time.monotonic())

    def _new_file(self, key: tuple[str, str], day: str, table: pa.Table) -> _PendingFile:
        model, version = key
        first = table.column("timestamp")[0].as_py()
        name = f"{FILE_PREFIX}{first:%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex[:12]}{FILE_SUFFIX}"
        relative = f"{path_segment(model)}/{path_segment(version)}/{day}/{name}"
        metadata = {**(table.schema.metadata or {}), FORMAT_KEY.encode(): FORMAT_VERSION.encode()}
        pending = _PendingFile(model, relative, table.replace_schema_metadata(metadata))
        self._pending.append(pending)
        return pending

    def _write(self, pending: _PendingFile, now: float, final: bool = False) -> None:
        """One attempt to write a file; a failure is counted, retried later or given up."""
        if pending not in self._pending:
            return
        try:
            data = _parquet_bytes(pending.table, self.config.compression)
            if self._s3 is not None:
                upload_atomic(self._settings, self._s3.bucket, self._s3_key(pending.relative), data)
            else:
                assert self._root is not None
                write_atomic(self._root / pending.relative, data)
        except Exception as exc:  # noqa: BLE001 - disk full, store down, ...: counted, never fatal
            self._write_errors.inc()
            pending.attempts += 1
            where = self._where(pending)
            if final or pending.attempts >= self.config.max_write_attempts:
                self._pending.remove(pending)
                self._dropped["write_error"].inc(pending.table.num_rows)
                self._warn(
                    "write",
                    f"inference log: cannot write {where} ({first_line(exc)}); "
                    f"{pending.table.num_rows} rows dropped after {pending.attempts} attempt(s)",
                )
            else:
                delay = min(2.0 ** (pending.attempts - 1), _MAX_BACKOFF_SECONDS)
                pending.next_try = now + delay
                self._warn(
                    "write",
                    f"inference log: cannot write {where} ({first_line(exc)}); retrying in {delay:.0f}s",
                )
            return
        self._pending.remove(pending)
        self._files.inc()
        self._rows_written.labels(pending.model).inc(pending.table.num_rows)

    def _enforce_bound(self) -> None:
        """Keep the rows held in memory within ``max_buffered_rows``: oldest retries go first."""
        limit = self.config.max_buffered_rows
        while True:
            held = sum(s.rows for s in self._streams.values()) + sum(p.table.num_rows for p in self._pending)
            if held <= limit:
                return
            if self._pending:
                dropped = self._pending.pop(0)
                self._dropped["buffer_full"].inc(dropped.table.num_rows)
                self._warn(
                    "buffer_full",
                    f"inference log: more than {limit} rows held in memory while writes fail; "
                    f"{dropped.table.num_rows} rows of {self._where(dropped)} dropped",
                )
            else:
                # Many model versions, each with an open file: write the largest one early.
                self._seal(max(self._streams, key=lambda k: self._streams[k].rows))

    def _s3_key(self, relative: str) -> str:
        assert self._s3 is not None
        prefix = self._s3.key.rstrip("/")
        return f"{prefix}/{relative}" if prefix else relative

    def _where(self, pending: _PendingFile) -> str:
        if self._s3 is not None:
            return f"s3://{self._s3.bucket}/{self._s3_key(pending.relative)}"
        assert self._root is not None
        return str(self._root / pending.relative)

    def _report_queue_drops(self) -> None:
        with self._lock:
            rows, self._queue_full_rows = self._queue_full_rows, 0
        if rows:
            self._warn(
                "queue_full",
                f"inference log: queue full ({self.config.queue_size} requests or "
                f"{self.config.max_queued_rows} rows waiting), {rows} rows dropped: the writer is behind "
                "or a request is larger than max_queued_rows",
            )

    def _warn(self, kind: str, message: str) -> None:
        """Log at most one warning per kind per minute, saying how many were held back."""
        now = time.monotonic()
        last = self._warned_at.get(kind)
        if last is not None and now - last < _WARN_INTERVAL_SECONDS:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._warned_at[kind] = now
        held_back = self._suppressed.pop(kind, 0)
        if held_back:
            message += (
                f" ({held_back} similar warning(s) in the last {_WARN_INTERVAL_SECONDS:.0f}s not shown)"
            )
        log.warning("%s", message)


def path_segment(name: str) -> str:
    """A folder name for a model or version name: path-safe, never ``..`` or hidden, one per name.

    Names made of ``A-Z a-z 0-9 . _ -`` not starting with ``.`` are kept as they are;
    any other name has its other characters replaced by ``_`` and ``-`` plus 8 hex
    digits of its sha256 appended, so two different names never share a folder.
    """
    name = str(name)
    safe = _UNSAFE_CHARS.sub("_", name)
    if not safe or safe.startswith("."):
        safe = "_" + safe
    if safe != name or len(safe) > _MAX_SEGMENT_CHARS:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        safe = f"{safe[:_MAX_SEGMENT_CHARS]}-{digest}"
    return safe


def _row_count(columns: Mapping[str, Any], outputs: Mapping[str, Any]) -> int:
    """The request's rows, from the prediction (or the first input); O(1)."""
    values = outputs.get("predict")
    if values is None:
        values = next(iter(columns.values()), None)
    return len(values) if values is not None else 0


def _layout(item: _Record) -> tuple[Any, ...]:
    """What records must share to be converted together: model version, UTC date, columns and dtypes."""
    try:
        return (
            item.model,
            item.version,
            item.time_ns // _NS_PER_DAY,
            tuple((k, getattr(v, "dtype", None), getattr(v, "ndim", None)) for k, v in item.columns.items()),
            tuple(
                (k, getattr(v, "dtype", None), getattr(v, "shape", ())[1:]) for k, v in item.outputs.items()
            ),
        )
    except Exception:  # noqa: BLE001 - an odd record goes alone; its conversion says what is wrong
        return (object(),)


def _groups(items: list[_Record]) -> list[list[_Record]]:
    """Records grouped by :func:`_layout`, each group in arrival order."""
    groups: dict[tuple[Any, ...], list[_Record]] = {}
    for item in items:
        groups.setdefault(_layout(item), []).append(item)
    return list(groups.values())


def _records_table(items: list[_Record]) -> pa.Table:
    """The Arrow rows of records of one model version and layout (the module docstring lists the columns)."""
    import numpy as np
    import pyarrow as pa

    first = items[0]
    counts = np.array([item.n_rows for item in items], dtype=np.int64)
    n = int(counts.sum())
    micros = np.array([item.time_ns // 1000 for item in items], dtype=np.int64)
    request_ids = np.array([None if i.request_id is None else str(i.request_id) for i in items], dtype=object)
    names = list(BASE_COLUMNS)
    arrays = [
        pa.array(np.repeat(micros, counts), type=pa.timestamp("us", tz="UTC")),
        pa.repeat(pa.scalar(str(first.model), pa.string()), n),
        pa.repeat(pa.scalar(str(first.version), pa.string()), n),
        pa.array(np.repeat(request_ids, counts), type=pa.string()),
    ]
    for name in first.columns:
        names.append(f"{INPUT_PREFIX}{name}")
        arrays.append(_to_arrow(_joined(items, "columns", name), n, f"input {name!r}"))
    for name in sorted(first.outputs, key=lambda k: (k != "predict", k != "probabilities")):
        names.append(f"{OUTPUT_PREFIX}{name}")
        arrays.append(_to_arrow(_joined(items, "outputs", name), n, f"output {name!r}"))
    if len(set(names)) != len(names):
        raise ValueError(f"two columns share a name among {names}")
    return pa.Table.from_arrays(arrays, names=names)


def _joined(items: list[_Record], part: str, name: str) -> np.ndarray:
    """One column of several records, each checked to have its record's rows."""
    import numpy as np

    pieces = []
    for item in items:
        values = np.asarray(getattr(item, part)[name])
        if values.ndim == 0 or values.shape[0] != item.n_rows:
            what = "input" if part == "columns" else "output"
            raise ValueError(f"{what} {name!r} has shape {values.shape}, expected {item.n_rows} rows")
        pieces.append(values)
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def _to_arrow(values: Any, n_rows: int, label: str) -> pa.Array:
    """A 1-D array as an Arrow column of its type; a 2-D one as a list column (one list per row)."""
    import numpy as np
    import pyarrow as pa

    array = np.asarray(values)
    if array.ndim == 0 or array.ndim > 2:
        raise ValueError(f"{label} has shape {array.shape}, expected 1-D or (rows, n) 2-D")
    if array.shape[0] != n_rows:
        raise ValueError(f"{label} has {array.shape[0]} rows, expected {n_rows}")
    if array.ndim == 2:
        width = array.shape[1]
        flat = _to_arrow(array.reshape(-1), n_rows * width, label)
        offsets = pa.array(np.arange(n_rows + 1, dtype=np.int64) * width, type=pa.int32())
        return pa.ListArray.from_arrays(offsets, flat)
    kind = array.dtype.kind
    if kind == "f":
        return pa.array(array.astype(np.float64, copy=False), from_pandas=True)  # NaN stored as null
    if kind == "i":
        return pa.array(array.astype(np.int64, copy=False))
    if kind == "u":
        unsigned = pa.array(array)
        return (
            unsigned.cast(pa.int64())
            if len(array) == 0 or array.max() <= np.iinfo(np.int64).max
            else unsigned
        )
    if kind == "O":
        return _object_to_arrow(array)
    return pa.array(array)  # bool, fixed-width text, datetimes: Arrow's own type for them


def _object_to_arrow(array: np.ndarray) -> pa.Array:
    import pyarrow as pa

    try:
        # Arrow infers one type (string, bool, int64, double) with None and NaN as null.
        return pa.array(array, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Mixed values (text and numbers): kept as text rather than losing the record.
        return pa.array([None if _is_missing(v) else str(v) for v in array], type=pa.string())


def _is_missing(value: object) -> bool:
    return (
        value is None or (isinstance(value, float) and math.isnan(value)) or type(value).__name__ == "NAType"
    )


def _parquet_bytes(table: pa.Table, compression: str) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=compression)  # pyarrow takes "none" for uncompressed
    return sink.getvalue().to_pybytes()


# ---- reading, for the monitoring stage ------------------------------------------------------------


def _is_complete(relative: str) -> tuple[bool, str]:
    """Whether ``<model>/<version>/<date>/<name>`` names a finished file, and its date folder."""
    parts = relative.split("/")
    if len(parts) != 4:
        return False, ""
    day, name = parts[2], parts[3]
    complete = (
        _DATE_FOLDER.match(day) is not None
        and name.startswith(FILE_PREFIX)
        and name.endswith(FILE_SUFFIX)
        and PARTIAL_MARKER not in name
    )
    return complete, day


def read_inference_log(
    location: str,
    model: str | None = None,
    since: datetime | None = None,
    store_settings: StoreSettings | None = None,
) -> pd.DataFrame:
    """Read every finished inference log file at ``location`` into one frame, sorted by time.

    Temporary files (a write in progress) are never read. Files of different model
    versions may have different columns; a column absent from a file is null for its
    rows. An empty log gives an empty frame with the base columns.

    Args:
        location: The log's folder or ``s3://bucket/prefix``, as given to the writer.
        model: Only this model's rows.
        since: Only rows logged at or after this time (timezone-aware).
        store_settings: The object store, for an ``s3://`` location; from the environment when omitted.

    Raises:
        ConfigError: ``since`` has no timezone.
        SourceError: the local folder does not exist, a file is not valid Parquet,
            or the bucket does not exist.
        ServiceError: the object store is unreachable.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if since is not None and since.utcoffset() is None:
        raise ConfigError(
            f"inference log: since={since!r} has no timezone; pass an aware time, e.g. datetime.now(UTC)"
        )
    first_day = since.astimezone(UTC).date().isoformat() if since is not None else ""
    folder = path_segment(model) if model is not None else None

    sources: list[tuple[str, Any]] = []  # (where, what pq.read_table reads)
    if location.startswith("s3://"):
        s3 = parse_s3_uri(location)
        settings = store_settings or StoreSettings.from_env()
        prefix = s3.key.rstrip("/")
        listed = f"{prefix}/" if prefix else ""
        for key in list_keys(settings, s3.bucket, listed + (f"{folder}/" if folder else "")):
            complete, day = _is_complete(key[len(listed) :])
            if complete and day >= first_day:
                sources.append((f"s3://{s3.bucket}/{key}", None))
    else:
        root = Path(location).expanduser()
        if not root.is_dir():
            raise SourceError(
                f"inference log {location}: no such folder (a server logging there creates it on start)"
            )
        base = root / folder if folder else root
        for path in sorted(base.rglob(f"{FILE_PREFIX}*{FILE_SUFFIX}")) if base.is_dir() else []:
            complete, day = _is_complete(path.relative_to(root).as_posix())
            if complete and day >= first_day:
                sources.append((str(path), path))

    tables = []
    for where, path in sources:
        try:
            if path is None:
                table = pq.read_table(pa.BufferReader(read_bytes(where, settings)))
            else:
                table = pq.read_table(path)
        except FileNotFoundError:
            continue  # removed (retention) between listing and reading
        except SourceError:
            continue  # the same on the object store (the bucket itself was listed a moment ago)
        except (pa.ArrowException, OSError) as exc:
            raise SourceError(
                f"inference log file {where} cannot be read as Parquet: {first_line(exc)}"
            ) from None
        if model is not None:
            table = table.filter(pc.equal(table["model"], model))
        if since is not None:
            table = table.filter(
                pc.greater_equal(table["timestamp"], pa.scalar(since, pa.timestamp("us", "UTC")))
            )
        tables.append(table.replace_schema_metadata(None))

    if not tables:
        empty = pa.schema(
            [
                ("timestamp", pa.timestamp("us", tz="UTC")),
                ("model", pa.string()),
                ("model_version", pa.string()),
                ("request_id", pa.string()),
            ]
        )
        return empty.empty_table().to_pandas()
    try:
        frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Versions whose columns share a name but not a type: pandas holds both in an object column.
        frame = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
    return frame.sort_values("timestamp", kind="stable", ignore_index=True)
