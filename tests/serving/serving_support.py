"""Shared helpers of the serving tests: bundles, server processes, request builders."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

REPO = Path(__file__).resolve().parents[2]
#: The admin token test servers get by default (through the environment, as the launcher passes it).
TEST_TOKEN = "test-admin-token-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {TEST_TOKEN}"}
PHISHING_CONFIG = REPO / "tests/fixtures/e2e/phishing_small.yaml"
HOUSING_CONFIG = REPO / "configs/housing.yaml"


@dataclass(frozen=True)
class Bundle:
    """A deploy bundle on disk, with the fitted model and held-out rows to send."""

    path: Path
    spec: Any
    model: Any
    rows: pd.DataFrame


def fit_model(config_path: Path, keep: int) -> tuple[Any, Any, pd.DataFrame]:
    """Fit one cheap candidate of ``config_path``; return config, model and test rows."""
    from tabpipe.config import load_config
    from tabpipe.features import split_xy
    from tabpipe.stages.ingest import ingest
    from tabpipe.stages.train import train
    from tabpipe.stages.transform import fit_preprocessor

    config = load_config(config_path)
    config = config.model_copy(
        update={
            "models": [config.models[keep]],
            "search": config.search.model_copy(update={"n_iter": 1, "cv_folds": 2}),
        }
    )
    splits = ingest(config).splits
    preprocessor, _ = fit_preprocessor(config, splits.train)
    model = train(config, splits.train, splits.validation, preprocessor).best.model
    features, _ = split_xy(splits.test, config)
    return config, model, features.reset_index(drop=True)


def write_bundle(path: Path, config: Any, model: Any, version: str) -> Any:
    from tabpipe.modelio import save_model
    from tabpipe.serving_spec import build_serving_spec

    path.mkdir(parents=True)
    sha = save_model(model, path / "model.skops")
    classes = [c.item() if hasattr(c, "item") else c for c in getattr(model, "classes_", [])]
    spec = build_serving_spec(config, classes, sha).model_copy(update={"version": version})
    (path / "bundle.json").write_text(spec.model_dump_json(indent=2))
    return spec


def _server_env(token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TABPIPE_SERVING_ADMIN_TOKEN")}
    env["PYTHONUNBUFFERED"] = "1"
    if token is not None:
        env["TABPIPE_SERVING_ADMIN_TOKEN"] = token
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A real `python -m tabpipe.serving` process on a free loopback port."""

    def __init__(
        self, model: Path | str, *extra: str, log_path: Path, token: str | None = TEST_TOKEN
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tabpipe.serving",
                "--model",
                str(model),
                "--port",
                str(self.port),
                *extra,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=_server_env(token),
        )
        self.admin = {"Authorization": f"Bearer {token}"} if token else {}

    def wait_live(self, timeout: float = 30.0) -> None:
        self._wait("/v2/health/live", timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        self._wait("/v2/health/ready", timeout)

    def _wait(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + path, timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{path} not 200 after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _json_value(value: Any) -> Any:
    """A cell as JSON: missing values become null, numpy scalars plain Python."""
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA:
        return None
    return value.item() if hasattr(value, "item") else value


def oip_request(spec: Any, rows: pd.DataFrame, request_id: str | None = None) -> dict[str, Any]:
    """A `pd` Open Inference Protocol request with one input per column."""
    from tabpipe.serving.validation import CONTRACT_DATATYPE

    inputs = []
    for inp in spec.inputs:
        values = [_json_value(v) for v in rows[inp.name].astype(object).tolist()]
        datatype = CONTRACT_DATATYPE[inp.rules.dtype]
        inputs.append({"name": inp.name, "datatype": datatype, "shape": [len(values)], "data": values})
    body: dict[str, Any] = {"parameters": {"content_type": "pd"}, "inputs": inputs}
    if request_id is not None:
        body["id"] = request_id
    return body


def silent_tracking_server(monkeypatch: Any, timeout: int) -> tuple[socket.socket, str]:
    """A "tracking server" that accepts and never answers: a registry load hangs ``timeout`` s on it.

    Returns the listening socket (close it after the test) and its URI.
    """
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", str(timeout))
    return silent, f"http://127.0.0.1:{silent.getsockname()[1]}"


def triton_inputs(client_module: Any, spec: Any, rows: pd.DataFrame) -> list[Any]:
    """tritonclient inputs (its grpc or http module) for ``rows``, typed by the bundle's contract."""
    import numpy as np

    inputs = []
    for inp in spec.inputs:
        column = rows[inp.name]
        if inp.rules.dtype.value == "string":
            values, datatype = column.to_numpy(dtype=object), "BYTES"
        elif column.isna().any() or inp.rules.dtype.value == "float":
            values, datatype = column.to_numpy(dtype=np.float64, na_value=np.nan), "FP64"
        else:
            values, datatype = column.to_numpy(dtype=np.int64), "INT64"
        tensor = client_module.InferInput(inp.name, [len(values)], datatype)
        tensor.set_data_from_numpy(values)  # tritonclient's default: binary (raw) contents
        inputs.append(tensor)
    return inputs


def read_http_response(sock: socket.socket) -> bytes:
    """One HTTP response: its head and its Content-Length bytes (or up to EOF or a reset)."""
    received = b""
    try:
        while True:
            head, sep, rest = received.partition(b"\r\n\r\n")
            if sep:
                lengths = [
                    line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")
                ]
                if lengths and len(rest) >= int(lengths[0].split(b":")[1]):
                    return received
            data = sock.recv(65536)
            if not data:
                return received
            received += data
    except ConnectionResetError:
        return received + b"<reset>"


def tabpipe_predict(config: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """``tabpipe predict --config CONFIG --url URL [extra]`` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "tabpipe.cli", "predict", "--config", str(config), "--url", url, *extra],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def fill_grpc_parameter(draw: Any, parameter: Any, texts: Any, allow_unset: bool = False) -> None:
    """Give a gRPC ``InferParameter`` a value of a kind hypothesis draws (or, if allowed, none at all)."""
    from hypothesis import strategies as st

    kind = draw(st.integers(0, 5 if allow_unset else 4))
    if kind == 0:
        parameter.bool_param = draw(st.booleans())
    elif kind == 1:
        parameter.int64_param = draw(st.integers(-(2**63), 2**63 - 1))
    elif kind == 2:
        parameter.double_param = draw(st.floats())
    elif kind == 3:
        parameter.uint64_param = draw(st.integers(0, 2**64 - 1))
    elif kind == 4:
        parameter.string_param = draw(texts)
    else:
        parameter.SetInParent()  # present, with no value chosen


class HangingLoad:
    """A repository load of ``models:/<name>@champion`` from a silent tracking server, run in a thread.

    Entering waits until the server shows the name LOADING (the load holds the server's
    load lock); leaving calls ``release`` (closing the silent server ends the load) and
    waits for the thread. ``statuses`` gets the load's HTTP status once it gives up.
    """

    def __init__(self, server: Server, name: str, timeout: float, release: Callable[[], None]) -> None:
        import threading

        self.statuses: list[int] = []
        self._server, self._name, self._timeout, self._release = server, name, timeout, release
        self._thread = threading.Thread(target=self._load)

    def _load(self) -> None:
        server = self._server
        response = httpx.post(
            f"{server.url}/v2/repository/models/{self._name}/load",
            json={"parameters": {"uri": f"models:/{self._name}@champion"}},
            headers=server.admin,
            timeout=self._timeout,
        )
        self.statuses.append(response.status_code)

    def __enter__(self) -> HangingLoad:
        self._thread.start()
        try:
            server, deadline = self._server, time.monotonic() + 30
            index = f"{server.url}/v2/repository/index"
            while httpx.get(index, headers=server.admin).json()[0]["state"] != "LOADING":
                assert time.monotonic() < deadline and not self.statuses, self.statuses
                time.sleep(0.1)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._release()
        self._thread.join(timeout=self._timeout + 30)
