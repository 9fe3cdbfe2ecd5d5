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
