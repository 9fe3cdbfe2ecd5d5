"""The inference log on a real MinIO: files land whole under s3://bucket/prefix, and an outage is survived."""

from __future__ import annotations

import io
import logging
import os
import signal
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from storage_support import free_address, minio_binary, start_private, use_store

from tabpipe.minio_server import DATA_BUCKET, RunningMinio, ensure_minio, stop_minio
from tabpipe.mlflow_server import process_gone
from tabpipe.objectstore import PARTIAL_MARKER, client, list_keys
from tabpipe.serving.inference_log import InferenceLog, InferenceLogConfig, read_inference_log

PREFIX = "tabpipe_serving_inference_log_"


def record(log: InferenceLog, first: int, rows: int, version: str = "3") -> None:
    ids = np.arange(first, first + rows)
    log.record(
        "phishing",
        version,
        {
            "id": ids.astype(np.int64),
            "score": ids / 10,
            "kind": np.array(["a", None] * rows, dtype=object)[:rows],
        },
        {"predict": np.array(["spam"] * rows, dtype=object), "probabilities": np.tile([0.1, 0.9], (rows, 1))},
        request_id=f"req-{first}",
    )


def metric(log: InferenceLog, name: str, **labels: str) -> float:
    return log.registry.get_sample_value(PREFIX + name, labels) or 0.0


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_round_trip_through_minio(minio: RunningMinio, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = f"inference-log/{uuid.uuid4().hex[:8]}"
    location = f"s3://{DATA_BUCKET}/{prefix}"
    use_store(monkeypatch, minio)  # settings from the environment, as the server reads them
    log = InferenceLog(InferenceLogConfig(location, max_rows_per_file=50))
    log.start()
    record(log, 0, 30)
    record(log, 30, 30)  # fills the first file (50 rows); 10 wait in memory
    record(log, 60, 5, version="4")
    log.close()

    keys = list_keys(minio.settings, DATA_BUCKET, prefix + "/")
    assert not [k for k in keys if PARTIAL_MARKER in k]  # every temporary object was removed
    relative = [k.removeprefix(prefix + "/").split("/") for k in keys]
    assert sorted(parts[:2] for parts in relative) == [
        ["phishing", "3"],
        ["phishing", "3"],
        ["phishing", "4"],
    ]
    assert all(parts[3].startswith("part-") and parts[3].endswith(".parquet") for parts in relative)
    assert metric(log, "files_total") == 3
    assert metric(log, "rows_written_total", model="phishing") == 65

    # An upload in progress (its temporary key) and a stray object are never read.
    folder = "/".join(keys[0].split("/")[:-1])
    stray = (b"PAR1 half a file", b"junk")
    client(minio.settings).put_object(
        DATA_BUCKET, f"{folder}/part-x.parquet{PARTIAL_MARKER}{uuid.uuid4().hex}", io.BytesIO(stray[0]), 16
    )
    client(minio.settings).put_object(DATA_BUCKET, f"{prefix}/README", io.BytesIO(stray[1]), 4)

    frame = read_inference_log(location, store_settings=minio.settings)
    assert frame["input.id"].tolist() == list(range(65))
    assert frame["input.score"].tolist() == pytest.approx([i / 10 for i in range(65)])
    assert frame["model_version"].tolist() == ["3"] * 60 + ["4"] * 5
    assert frame["request_id"].value_counts().to_dict() == {"req-0": 30, "req-30": 30, "req-60": 5}
    assert frame["input.kind"][0] == "a" and pd.isna(frame["input.kind"][1])
    assert [list(p) for p in frame["output.probabilities"][:2]] == [[0.1, 0.9], [0.1, 0.9]]
    assert str(frame["timestamp"].dtype) == "datetime64[us, UTC]"
    assert len(read_inference_log(location, model="phishing")) == 65
    assert read_inference_log(location, model="housing").empty


def _kill(running: RunningMinio) -> None:
    """SIGKILL the server's process group (a crash, not a shutdown) and wait until it is gone."""
    assert running.handle.pid is not None
    os.killpg(running.handle.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not process_gone(running.handle.pid):
        assert time.monotonic() < deadline, "MinIO survived SIGKILL"
        time.sleep(0.05)


def test_minio_dying_mid_way_is_counted_and_survived(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    private = start_private(tmp_path / "minio", monkeypatch)
    restarted: RunningMinio | None = None
    location = f"s3://{DATA_BUCKET}/outage-log"
    log = InferenceLog(
        InferenceLogConfig(location, max_seconds_per_file=0.2, max_write_attempts=1),
        store_settings=private.settings,
    )
    warnings: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = warnings.append  # type: ignore[method-assign]
    logger = logging.getLogger("tabpipe.serving.inference_log")
    logger.addHandler(handler)
    try:
        log.start()
        record(log, 0, 4)
        wait_for(lambda: metric(log, "files_total") == 1)

        _kill(private)
        started = time.perf_counter()
        for i in range(100):
            record(log, 100 + i, 1)
        assert time.perf_counter() - started < 1.0  # the request path never waits for the store
        wait_for(lambda: metric(log, "rows_dropped_total", reason="write_error") == 100)
        assert metric(log, "write_errors_total") >= 1
        assert log._thread is not None and log._thread.is_alive()

        address = private.settings.endpoint.removeprefix("http://")
        restarted = ensure_minio(minio_binary(), address, free_address(), tmp_path / "minio")
        record(log, 1000, 3)
        wait_for(lambda: metric(log, "files_total") == 2)
        log.close()
        frame = read_inference_log(location, store_settings=restarted.settings)
        assert frame["input.id"].tolist() == [0, 1, 2, 3, 1000, 1001, 1002]
        assert metric(log, "rows_written_total", model="phishing") == 7
        messages = [w.getMessage() for w in warnings]
        assert len(messages) == 1, messages  # one line for the whole outage, naming the endpoint
        assert f"MinIO at {private.settings.endpoint} unreachable" in messages[0]
        assert private.settings.secret_key not in messages[0]
    finally:
        logger.removeHandler(handler)
        log.close(timeout=30)
        if restarted is not None:
            stop_minio(restarted.handle)
        elif not process_gone(private.handle.pid):
            stop_minio(private.handle)
