"""Fixtures for the serving tests: real bundles fitted here, and real server processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serving_support import (
    HOUSING_CONFIG,
    PHISHING_CONFIG,
    TEST_TOKEN,
    Bundle,
    Server,
    fit_model,
    write_bundle,
)


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Bundle]:
    """Phishing (classification) v1 and v2, housing (regression) v1, and a tampered phishing bundle."""
    root = tmp_path_factory.mktemp("bundles")
    out: dict[str, Bundle] = {}
    # logistic_regression for phishing, ridge for housing: both fit in well under a second.
    config, model, rows = fit_model(PHISHING_CONFIG, keep=0)
    for version in ("1", "2"):
        path = root / f"phishing-v{version}"
        out[f"phishing-v{version}"] = Bundle(path, write_bundle(path, config, model, version), model, rows)
    tampered = root / "phishing-tampered"
    spec = write_bundle(tampered, config, model, "3")
    data = bytearray((tampered / "model.skops").read_bytes())
    data[-10] ^= 0xFF  # one flipped byte: the checksum no longer matches
    (tampered / "model.skops").write_bytes(bytes(data))
    out["phishing-tampered"] = Bundle(tampered, spec, model, rows)
    config, model, rows = fit_model(HOUSING_CONFIG, keep=1)
    path = root / "housing-v1"
    out["housing-v1"] = Bundle(path, write_bundle(path, config, model, "1"), model, rows)
    return out


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Any]:
    """Start servers for one test; all are stopped after it."""
    started: list[Server] = []

    def start(model: Path | str, *extra: str, token: str | None = TEST_TOKEN) -> Server:
        server = Server(model, *extra, log_path=tmp_path / f"server-{len(started)}.log", token=token)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def phishing_server(bundles: dict[str, Bundle], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server for the phishing v1 bundle, shared by the read-only HTTP tests."""
    server = Server(bundles["phishing-v1"].path, log_path=tmp_path_factory.mktemp("logs") / "phishing.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def housing_server(bundles: dict[str, Bundle], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server for the housing regression bundle."""
    server = Server(bundles["housing-v1"].path, log_path=tmp_path_factory.mktemp("logs") / "housing.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def housing_grpc_endpoint(
    bundles: dict[str, Bundle], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, str]]:
    """A housing server (numeric and string columns, nullable) with gRPC, and its gRPC address."""
    from serving_support import free_port

    port = free_port()
    log = tmp_path_factory.mktemp("grpc-housing") / "server.log"
    server = Server(bundles["housing-v1"].path, "--grpc-port", str(port), log_path=log)
    try:
        server.wait_ready()
        yield server, f"127.0.0.1:{port}"
    finally:
        server.stop()
