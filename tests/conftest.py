"""Shared fixtures: a real MLflow tracking server process for the end-to-end tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start a real `mlflow server` (SQLite + local artifacts) on a free loopback port."""
    from tabpipe.mlflow_server import start_server, stop_server

    state = tmp_path_factory.mktemp("mlflow")
    handle = start_server(f"http://127.0.0.1:{_free_port()}", state)
    try:
        yield handle.url
    finally:
        stop_server(handle)


@pytest.fixture(scope="session")
def minio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Start the real MinIO binary on free loopback ports with a temporary data folder.

    Credentials are generated into the state folder (never the developer's); the server is
    stopped by its PID (process group). Without the binary: a failure in CI, a skip elsewhere.
    """
    import os

    from tabpipe.minio_server import ensure_minio, stop_minio

    binary = Path(os.environ.get("TABPIPE_MINIO_BIN") or REPO / ".tools" / "bin" / "minio")
    if not binary.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail("MinIO is required in CI: make minio")
        pytest.skip("MinIO not installed: run `make minio` (needs Go)")
    state = tmp_path_factory.mktemp("minio")
    saved = {name: os.environ.pop(name, None) for name in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD")}
    try:
        running = ensure_minio(binary, f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}", state)
    finally:
        os.environ.update({name: value for name, value in saved.items() if value is not None})
    try:
        yield running
    finally:
        stop_minio(running.handle)
