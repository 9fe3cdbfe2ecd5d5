"""The inference log writes real Parquet files on disk; these tests read them back and check what is in them.

A log that is never started writes its queue on the caller's thread at close(): the
tests that need a deterministic order (drops, bounds, retries given up) use that; the
others run the writer thread as the server does.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tabpipe.errors import ConfigError, SourceError
from tabpipe.serving.inference_log import (
    DROP_REASONS,
    InferenceLog,
    InferenceLogConfig,
    path_segment,
    read_inference_log,
)

PREFIX = "tabpipe_serving_inference_log_"
T0 = datetime(2026, 3, 14, 12, 0, 0, 123456, tzinfo=UTC)


def ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def fixed_clock(moment: datetime) -> Callable[[], int]:
    return lambda: ns(moment)


def sample(
    log: InferenceLog,
    rows: int = 3,
    model: str = "phishing",
    version: str = "1",
    request_id: str | None = None,
) -> None:
    """One request of ``rows`` rows with every input type the server decodes."""
    strings = np.array(["a", None, np.nan, "b"] * rows, dtype=object)[:rows]
    log.record(
        model,
        version,
        {
            "amount": np.arange(rows, dtype=np.float64) / 2,
            "count": np.arange(rows, dtype=np.int64),
            "flag": np.arange(rows) % 2 == 0,
            "kind": strings,
        },
        {
            "predict": np.array(["spam", "ham"] * rows, dtype=object)[:rows],
            "probabilities": np.tile([0.25, 0.75], (rows, 1)),
        },
        request_id=request_id,
    )


def metric(log: InferenceLog, name: str, **labels: str) -> float:
    value = log.registry.get_sample_value(PREFIX + name, labels)
    return 0.0 if value is None else value


def files(root: Path) -> list[Path]:
    return sorted(root.rglob("part-*.parquet"))


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def logs() -> Iterator[Callable[..., InferenceLog]]:
    """Closes every log a test opened, even when it fails."""
    opened: list[InferenceLog] = []

    def make(config: InferenceLogConfig, **kwargs: object) -> InferenceLog:
        log = InferenceLog(config, **kwargs)  # type: ignore[arg-type]
        opened.append(log)
        return log

    yield make
    for log in opened:
        log.close(timeout=5)


def test_rows_keep_their_values_and_types(tmp_path: Path, logs) -> None:
    log = logs(InferenceLogConfig(str(tmp_path)), clock=fixed_clock(T0))
    log.start()
    sample(log, rows=4, request_id="req-1")
    log.record("phishing", "1", {"amount": np.array([np.nan])}, {"predict": np.array(["ham"], dtype=object)})
    log.close()

    [path] = files(tmp_path)
    assert path.relative_to(tmp_path).parts[:3] == ("phishing", "1", "2026-03-14")
    assert path.name.startswith("part-20260314T120000123456Z-")
    table = pq.read_table(path)
    assert table.schema.metadata[b"tabpipe.inference_log"] == b"1"
    types = dict(zip(table.schema.names, table.schema.types, strict=True))
    assert types == {
        "timestamp": pa.timestamp("us", tz="UTC"),
        "model": pa.string(),
        "model_version": pa.string(),
        "request_id": pa.string(),
        "input.amount": pa.float64(),
        "input.count": pa.int64(),
        "input.flag": pa.bool_(),
        "input.kind": pa.string(),
        "output.predict": pa.string(),
        "output.probabilities": pa.list_(pa.float64()),
    }
    frame = read_inference_log(str(tmp_path))
    assert len(frame) == 5
    assert (frame["timestamp"] == pd.Timestamp(T0)).all()
    assert str(frame["timestamp"].dtype) == "datetime64[us, UTC]"
    assert frame["model"].tolist() == ["phishing"] * 5
    assert frame["model_version"].tolist() == ["1"] * 5
    assert frame["request_id"].tolist()[:4] == ["req-1"] * 4 and pd.isna(frame["request_id"][4])
    assert frame["input.amount"].tolist()[:4] == [0.0, 0.5, 1.0, 1.5] and np.isnan(frame["input.amount"][4])
    assert frame["input.count"].tolist()[:4] == [0, 1, 2, 3]
    assert frame["input.flag"].tolist()[:4] == [True, False, True, False]
    # None and NaN in a text column are both missing; the text stays text.
    assert frame["input.kind"][0] == "a" and frame["input.kind"][3] == "b"
    assert frame["input.kind"][1:3].isna().all()
    assert frame["output.predict"].tolist() == ["spam", "ham", "spam", "ham", "ham"]
    assert [list(p) for p in frame["output.probabilities"][:4]] == [[0.25, 0.75]] * 4
    assert metric(log, "rows_written_total", model="phishing") == 5
    assert metric(log, "files_total") == 1


def test_object_columns_of_bools_numbers_and_mixed_values(tmp_path: Path) -> None:
    log = InferenceLog(InferenceLogConfig(str(tmp_path)))
    log.record(
        "m",
        "1",
        {
            "yes": np.array([True, None, False], dtype=object),
            "num": np.array([1.5, None, 2], dtype=object),
            "mixed": np.array(["x", 7, None], dtype=object),
            "empty": np.array([None, None, None], dtype=object),
            "small": np.array([1, 2, 3], dtype=np.int8),
        },
        {"predict": np.array([1.0, 2.0, 3.0])},
    )
    log.close()
    table = pq.read_table(files(tmp_path)[0])
    assert table.schema.field("input.yes").type == pa.bool_()
    assert table.schema.field("input.num").type == pa.float64()
    assert table.schema.field("input.mixed").type == pa.string()
    assert table.schema.field("input.small").type == pa.int64()
    assert table.column("input.yes").to_pylist() == [True, None, False]
    assert table.column("input.num").to_pylist() == [1.5, None, 2.0]
    assert table.column("input.mixed").to_pylist() == ["x", "7", None]
    assert table.column("input.empty").null_count == 3
    assert table.column("output.predict").to_pylist() == [1.0, 2.0, 3.0]


def test_a_null_column_widens_in_the_file_and_a_type_change_starts_a_new_one(tmp_path: Path) -> None:
    log = InferenceLog(InferenceLogConfig(str(tmp_path)))
    predict = {"predict": np.array([0.0])}
    log.record("m", "1", {"c": np.array([None], dtype=object)}, predict)
    log.record("m", "1", {"c": np.array(["text"], dtype=object)}, predict)
    log.record("m", "1", {"c": np.array([5], dtype=np.int64)}, predict)  # int after text: cannot widen
    log.close()
    tables = [pq.read_table(p) for p in files(tmp_path)]
    by_type = {t.schema.field("input.c").type: t.column("input.c").to_pylist() for t in tables}
    assert by_type == {pa.string(): [None, "text"], pa.int64(): [5]}
    frame = read_inference_log(str(tmp_path))
    assert sorted(map(str, frame["input.c"].dropna())) == ["5", "text"]


def test_each_model_version_has_its_own_folder_and_the_reader_filters(tmp_path: Path) -> None:
    clock = {"now": T0}
    log = InferenceLog(InferenceLogConfig(str(tmp_path)), clock=lambda: ns(clock["now"]))
    sample(log, rows=2, model="phishing", version="1")
    log.record("housing", "7", {"rooms": np.array([3.0])}, {"predict": np.array([210_000.0])})
    clock["now"] = T0 + timedelta(hours=1)
    sample(log, rows=3, model="phishing", version="2")
    log.close()

    folders = {p.relative_to(tmp_path).parts[:3] for p in files(tmp_path)}
    assert folders == {
        ("phishing", "1", "2026-03-14"),
        ("phishing", "2", "2026-03-14"),
        ("housing", "7", "2026-03-14"),
    }
    everything = read_inference_log(str(tmp_path))
    assert len(everything) == 6
    assert everything["timestamp"].is_monotonic_increasing
    # Columns of another model are null for these rows.
    assert everything.loc[everything["model"] == "housing", "input.amount"].isna().all()
    phishing = read_inference_log(str(tmp_path), model="phishing")
    assert sorted(set(phishing["model_version"])) == ["1", "2"] and len(phishing) == 5
    assert "input.rooms" not in phishing.columns
    paris = timezone(timedelta(hours=2))  # any aware time works: 14:30 here is 12:30 UTC
    later = read_inference_log(str(tmp_path), since=(T0 + timedelta(minutes=30)).astimezone(paris))
    assert later["model_version"].tolist() == ["2"] * 3
    assert read_inference_log(str(tmp_path), model="nobody").empty


def test_the_reader_skips_unfinished_files_and_older_date_folders(tmp_path: Path) -> None:
    log = InferenceLog(InferenceLogConfig(str(tmp_path)), clock=fixed_clock(T0))
    sample(log, rows=2)
    log.close()
    [done] = files(tmp_path)
    data = done.read_bytes()
    # What a writer leaves while it writes (a hidden temporary name) or after a crash: never read.
    (done.parent / f".part-20260314T130000000000Z-aaaa.parquet.partial-{'0' * 32}").write_bytes(data[:40])
    (done.parent / "part-20260314T130000000000Z-bbbb.parquet.partial-1234").write_bytes(data[:40])
    (done.parent / "notes.txt").write_text("not a log file")
    old = tmp_path / "phishing" / "1" / "2020-01-01"
    old.mkdir()
    (old / "part-20200101T000000000000Z-cccc.parquet").write_bytes(b"not parquet")

    recent = read_inference_log(str(tmp_path), since=T0 - timedelta(seconds=1))
    assert len(recent) == 2  # the 2020 folder is older than `since`: never opened
    with pytest.raises(SourceError, match=r"2020-01-01/part-.*cannot be read as Parquet"):
        read_inference_log(str(tmp_path))


def test_a_reader_polling_while_the_writer_writes_sees_only_whole_files(tmp_path: Path, logs) -> None:
    rows = 2_000
    log = logs(InferenceLogConfig(str(tmp_path), max_rows_per_file=rows, compression="gzip"))
    log.start()
    counts: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            try:
                counts.append(len(read_inference_log(str(tmp_path))))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    reader = threading.Thread(target=poll)
    reader.start()
    for _ in range(15):
        sample(log, rows=rows)
        time.sleep(0.01)
    log.close()
    done.set()
    reader.join()
    assert not errors
    assert counts and all(count % rows == 0 for count in counts)
    assert len(read_inference_log(str(tmp_path))) == 15 * rows
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and not p.name.startswith("part-")]


def test_files_roll_by_rows(tmp_path: Path) -> None:
    log = InferenceLog(InferenceLogConfig(str(tmp_path), max_rows_per_file=100))
    for i in range(7):
        sample(log, rows=30, request_id=f"r{i}")
    log.close()
    sizes = [pq.read_metadata(p).num_rows for p in files(tmp_path)]
    assert sizes == [100, 100, 10]
    frame = read_inference_log(str(tmp_path))
    assert frame["request_id"].value_counts().to_dict() == {f"r{i}": 30 for i in range(7)}
    assert metric(log, "files_total") == 3


def test_files_roll_by_time_while_the_server_runs(tmp_path: Path, logs) -> None:
    log = logs(InferenceLogConfig(str(tmp_path), max_seconds_per_file=0.3))
    log.start()
    sample(log, rows=2)
    wait_for(lambda: len(files(tmp_path)) == 1)  # written without close(): the file aged out
    sample(log, rows=1)
    wait_for(lambda: len(files(tmp_path)) == 2)
    assert metric(log, "rows_written_total", model="phishing") == 3
    log.close()
    assert len(files(tmp_path)) == 2  # nothing left to write


def test_files_roll_at_utc_midnight(tmp_path: Path) -> None:
    moments = iter(
        [datetime(2026, 3, 14, 23, 59, 59, tzinfo=UTC), datetime(2026, 3, 15, 0, 0, 1, tzinfo=UTC)]
    )
    log = InferenceLog(InferenceLogConfig(str(tmp_path)), clock=lambda: ns(next(moments)))
    sample(log, rows=1)
    sample(log, rows=1)
    log.close()
    assert [p.parent.name for p in files(tmp_path)] == ["2026-03-14", "2026-03-15"]
    since_midnight = read_inference_log(str(tmp_path), since=datetime(2026, 3, 15, tzinfo=UTC))
    assert since_midnight["timestamp"].tolist() == [pd.Timestamp("2026-03-15T00:00:01Z")]


def test_close_writes_the_open_file(tmp_path: Path) -> None:
    log = InferenceLog(InferenceLogConfig(str(tmp_path), max_seconds_per_file=3600))
    log.start()
    sample(log, rows=3)
    time.sleep(0.2)
    assert files(tmp_path) == []  # not full, not old: still in memory
    started = time.monotonic()
    log.close()
    assert time.monotonic() - started < 5
    assert len(read_inference_log(str(tmp_path))) == 3
    sample(log, rows=2)  # after close: counted, not written, no error
    assert metric(log, "rows_dropped_total", reason="closed") == 2
    log.close()  # a second close does nothing


def test_sampling_logs_the_configured_fraction(tmp_path: Path) -> None:
    requests, rate, seed = 4_000, 0.5, 20260314
    log = InferenceLog(
        InferenceLogConfig(str(tmp_path), sample_rate=rate, queue_size=requests), rng=random.Random(seed)
    )
    for i in range(requests):
        log.record("m", "1", {"i": np.array([i])}, {"predict": np.array([0.0])})
    log.close()
    logged = read_inference_log(str(tmp_path))
    draws = random.Random(seed)
    expected = sum(draws.random() < rate for _ in range(requests))
    assert len(logged) == expected  # the same draws, so exactly these requests
    assert abs(len(logged) - requests * rate) < 5 * (requests * rate * (1 - rate)) ** 0.5
    assert logged["input.i"].is_unique


def test_a_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    # Not started: the writer is paused, so the queue fills at exactly queue_size requests.
    log = InferenceLog(InferenceLogConfig(str(tmp_path), queue_size=5))
    started = time.perf_counter()
    for _ in range(2_000):
        sample(log, rows=3)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, f"record() took {elapsed / 2000 * 1e6:.0f} µs per call with a full queue"
    assert metric(log, "rows_dropped_total", reason="queue_full") == (2_000 - 5) * 3
    assert metric(log, "queue_depth") == 5
    log.close()
    assert len(read_inference_log(str(tmp_path))) == 5 * 3
    assert metric(log, "queue_depth") == 0


def test_queued_rows_are_bounded_too(tmp_path: Path) -> None:
    log = InferenceLog(InferenceLogConfig(str(tmp_path), max_queued_rows=10))
    sample(log, rows=4, request_id="kept-1")
    sample(log, rows=4, request_id="kept-2")
    sample(log, rows=4, request_id="dropped")  # 12 rows would wait: dropped
    sample(log, rows=2, request_id="kept-3")  # 10 rows: fits
    sample(log, rows=11, request_id="too-big")  # larger than the bound: never logged
    assert metric(log, "rows_dropped_total", reason="queue_full") == 4 + 11
    log.close()
    frame = read_inference_log(str(tmp_path))
    assert frame["request_id"].value_counts().to_dict() == {"kept-1": 4, "kept-2": 4, "kept-3": 2}


def test_a_write_error_is_counted_the_thread_survives_and_later_rows_are_written(
    tmp_path: Path, logs, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file: nothing can be created under it, not even by root")
    location = blocker / "log"
    log = logs(InferenceLogConfig(str(location), max_seconds_per_file=0.2, max_write_attempts=1))
    log.start()
    sample(log, rows=4)
    wait_for(lambda: metric(log, "rows_dropped_total", reason="write_error") == 4)
    assert metric(log, "write_errors_total") >= 1
    assert log._thread is not None and log._thread.is_alive()

    blocker.unlink()  # fixed: the folder can be created now
    sample(log, rows=2)
    wait_for(lambda: metric(log, "files_total") == 1)
    log.close()
    assert len(read_inference_log(str(location))) == 2
    assert metric(log, "rows_written_total", model="phishing") == 2


def test_a_failed_write_is_retried(tmp_path: Path, logs) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    location = blocker / "log"
    log = logs(InferenceLogConfig(str(location), max_seconds_per_file=0.1, max_write_attempts=3))
    log.start()
    sample(log, rows=3)
    wait_for(lambda: metric(log, "write_errors_total") >= 1)
    blocker.unlink()  # the retry (1 s later) finds the folder writable
    wait_for(lambda: metric(log, "files_total") == 1)
    log.close()
    assert len(read_inference_log(str(location))) == 3
    assert metric(log, "rows_dropped_total", reason="write_error") == 0


def test_write_errors_warn_once_and_memory_stays_bounded(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    log = InferenceLog(
        InferenceLogConfig(
            str(blocker / "log"), max_rows_per_file=10, max_buffered_rows=25, max_write_attempts=10
        )
    )
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("tabpipe.serving.inference_log")
    logger.addHandler(handler)
    try:
        for _ in range(6):
            sample(log, rows=10)  # each one fills a file, whose write fails and waits for a retry
        log.close()
    finally:
        logger.removeHandler(handler)
    # Files waiting for a retry are held at most 25 rows: the oldest ones went first.
    assert metric(log, "rows_dropped_total", reason="buffer_full") == 40
    # The two still held were tried once more at close and given up.
    assert metric(log, "rows_dropped_total", reason="write_error") == 20
    assert metric(log, "write_errors_total") == 8
    messages = [r.getMessage() for r in records]
    assert sum("cannot write" in m for m in messages) == 1, messages  # one per kind per minute
    assert sum("more than 25 rows" in m for m in messages) == 1, messages


def test_a_malformed_record_is_dropped_and_counted_and_never_raises(tmp_path: Path) -> None:
    log = InferenceLog(InferenceLogConfig(str(tmp_path)))
    log.record("m", "1", {"a": np.array([1.0, 2.0])}, {"predict": np.array([1.0, 2.0, 3.0])})
    log.record("m", "1", {"a": np.zeros((1, 1, 1))}, {"predict": np.array([1.0])})
    log.record("m", "1", None, None)  # type: ignore[arg-type]
    log.record("m", "1", {"a": np.array([5.0])}, {"predict": np.array([1.0])})
    log.close()
    assert metric(log, "rows_dropped_total", reason="invalid") == 3 + 1 + 1
    assert read_inference_log(str(tmp_path))["input.a"].tolist() == [5.0]


def test_concurrent_record_calls_lose_nothing(tmp_path: Path, logs) -> None:
    log = logs(InferenceLogConfig(str(tmp_path), queue_size=10_000, max_rows_per_file=500))
    log.start()

    def send(thread: int) -> None:
        for i in range(300):
            sample(log, rows=2, request_id=f"{thread}-{i}")

    threads = [threading.Thread(target=send, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    frame = read_inference_log(str(tmp_path))
    assert len(frame) == 4 * 300 * 2
    assert frame["request_id"].nunique() == 4 * 300
    assert metric(log, "rows_written_total", model="phishing") == 2400
    assert all(metric(log, "rows_dropped_total", reason=r) == 0 for r in DROP_REASONS)


def test_model_names_cannot_escape_the_log_folder(tmp_path: Path) -> None:
    root = tmp_path / "log"
    log = InferenceLog(InferenceLogConfig(str(root)))
    log.record("../../escape", "../1", {"a": np.array([1.0])}, {"predict": np.array([0.0])})
    log.record("a/b", "1", {"a": np.array([2.0])}, {"predict": np.array([0.0])})
    log.record("a_b", "1", {"a": np.array([3.0])}, {"predict": np.array([0.0])})
    log.close()
    written = files(root)
    assert len(written) == 3 and [p for p in tmp_path.rglob("*.parquet") if root not in p.parents] == []
    assert all(not part.startswith(".") for p in written for part in p.relative_to(root).parts)
    assert read_inference_log(str(root), model="a/b")["input.a"].tolist() == [2.0]
    assert read_inference_log(str(root), model="a_b")["input.a"].tolist() == [3.0]
    assert read_inference_log(str(root), model="../../escape")["model_version"].tolist() == ["../1"]


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "a\\b", ".hidden", "x" * 300, "ümlaut"])
def test_path_segment_is_safe_and_distinct(name: str) -> None:
    segment = path_segment(name)
    assert segment and not segment.startswith(".") and "/" not in segment and "\\" not in segment
    assert len(segment) <= 110
    assert segment != path_segment(name + "_")
    assert path_segment("phishing-classifier_2.1") == "phishing-classifier_2.1"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"sample_rate": 0}, "sample_rate"),
        ({"sample_rate": -0.5}, "sample_rate"),
        ({"sample_rate": 1.5}, "sample_rate"),
        ({"sample_rate": float("nan")}, "sample_rate"),
        ({"sample_rate": True}, "sample_rate"),
        ({"queue_size": 0}, "queue_size"),
        ({"max_queued_rows": 0}, "max_queued_rows"),
        ({"max_rows_per_file": 0}, "max_rows_per_file"),
        ({"max_seconds_per_file": 0}, "max_seconds_per_file"),
        ({"max_seconds_per_file": float("inf")}, "max_seconds_per_file"),
        ({"max_write_attempts": 0}, "max_write_attempts"),
        ({"max_rows_per_file": 10, "max_buffered_rows": 5}, "max_buffered_rows"),
        ({"compression": "lz5"}, "compression"),
        ({"location": ""}, "location"),
        ({"location": "gs://bucket/log"}, "location"),
        ({"location": "s3://"}, "location"),
    ],
)
def test_bad_config_names_the_field(tmp_path: Path, kwargs: dict[str, object], field: str) -> None:
    settings = {"location": str(tmp_path), **kwargs}
    with pytest.raises(ConfigError, match=field):
        InferenceLogConfig(**settings)  # type: ignore[arg-type]


def test_the_reader_refuses_a_missing_folder_and_a_naive_since(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such folder"):
        read_inference_log(str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match="no timezone"):
        read_inference_log(str(tmp_path), since=datetime(2026, 1, 1))
    empty = read_inference_log(str(tmp_path))
    assert empty.empty and list(empty.columns) == ["timestamp", "model", "model_version", "request_id"]


def test_an_s3_location_without_settings_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MINIO_ENDPOINT", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="MINIO_ENDPOINT"):
        InferenceLog(InferenceLogConfig("s3://bucket/log"))
