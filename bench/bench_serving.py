"""Benchmark model serving: single-row latency, throughput at concurrency 16, 1,000-row batches.

Peers, all on the SAME fitted pipeline, in the same run, one server alive at a time, their order
alternated between rounds so drift in machine load hits all of them:
- ``in-process sklearn``: the bundle's ``predict_proba`` on a ready one-row DataFrame (the floor);
- ``in-process onnx``: ``tabpipe.onnx.predictor.OnnxPredictor``, when it exists;
- ``tabpipe``: ``python -m tabpipe.serving --model BUNDLE`` from this venv, on a bundle of
  ``model.skops`` + ``bundle.json`` (the scikit-learn predictor);
- ``tabpipe-onnx``: the same server on the same bundle plus ``model.onnx`` made by
  ``tabpipe.onnx.export.convert_bundle`` (the ONNX predictor), when that module exists;
- ``mlserver``: stock MLServer 1.7.1 scikit-learn runtime (``mlserver start``), its own venv;
- ``kserve``: a custom ``kserve.Model`` under ``kserve.ModelServer`` 0.21.0, its own venv.

Every HTTP peer gets the same Open Inference Protocol (V2) request: one input per column and
``parameters: {content_type: "pd"}``, built from real rows of the test split; its answers are
checked against the in-process predictions before anything is timed.

Measurements per peer and round:
- latency: ``--requests`` sequential single-row requests on one keep-alive connection
  (after ``--warmup``), p50 and p99;
- throughput: requests/s at ``--concurrency`` open connections for ``--duration`` seconds,
  with ``wrk`` when installed (a Python asyncio client otherwise);
- batch: median latency of ``--batch-repeats`` requests of ``--batch-rows`` rows.

Prints a Markdown table of medians over the rounds and the ratios, and writes JSON.
Peer venvs come from ``bench/serving_peers/setup_venvs.sh``; a peer whose venv or module is
missing, or that fails to start or answers wrongly, is reported as not available.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
PEERS_DIR = Path(__file__).resolve().parent / "serving_peers"
HTTP_PEERS = ("tabpipe", "tabpipe-onnx", "mlserver", "kserve")
LATENCY_TARGET_P50_MS = 2.0
LATENCY_TARGET_P99_MS = 5.0

# Every server process started here, so that any exit path can stop them.
_LIVE: list[subprocess.Popen] = []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- model and requests


@dataclass
class Fixture:
    """The fitted model, its files and the requests every peer receives."""

    model: Any
    spec: Any
    model_name: str
    bundle_dir: Path
    onnx_bundle_dir: Path | None
    onnx_bytes: bytes | None
    onnx_note: str
    joblib_file: Path
    columns: list[str]
    row: pd.DataFrame
    batch: pd.DataFrame
    row_body: bytes
    batch_body: bytes
    row_label: Any
    batch_labels: np.ndarray
    estimator: str


def oip_body(frame: pd.DataFrame) -> bytes:
    """An OIP V2 request: one input per column, ``content_type: pd``."""
    inputs = []
    for name in frame.columns:
        values = frame[name]
        if pd.api.types.is_integer_dtype(values):
            datatype, data = "INT64", [int(v) for v in values]
        elif pd.api.types.is_float_dtype(values):
            datatype, data = "FP64", [float(v) for v in values]
        elif pd.api.types.is_bool_dtype(values):
            datatype, data = "BOOL", [bool(v) for v in values]
        else:
            datatype, data = "BYTES", [str(v) for v in values]
        inputs.append({"name": str(name), "shape": [len(frame)], "datatype": datatype, "data": data})
    return json.dumps({"parameters": {"content_type": "pd"}, "inputs": inputs}).encode()


def build_fixture(config_path: Path, workdir: Path, batch_rows: int) -> Fixture:
    """Fit one quick candidate, write the tabpipe bundle and the joblib copy, build the requests."""
    import joblib

    from tabpipe.artifacts import BUNDLE_METADATA_FILENAME
    from tabpipe.config import load_config
    from tabpipe.features import split_xy
    from tabpipe.io import sha256_bytes, write_atomic
    from tabpipe.modelio import MODEL_FILENAME, save_model
    from tabpipe.serving_spec import build_serving_spec
    from tabpipe.stages.ingest import ingest
    from tabpipe.stages.train import train
    from tabpipe.stages.transform import fit_preprocessor

    config = load_config(config_path)
    if not config.task.is_classification:
        raise SystemExit(f"{config_path}: the serving benchmark needs a classification config")
    linear = [m for m in config.models if m.estimator.value == "logistic_regression"]
    config = config.model_copy(
        update={
            "models": linear[:1] or config.models[:1],
            "search": config.search.model_copy(update={"n_iter": 1}),
        }
    )
    splits = ingest(config).splits
    preprocessor, _ = fit_preprocessor(config, splits.train)
    result = train(config, splits.train, splits.validation, preprocessor)
    model = result.best.model

    bundle = workdir / "bundle"
    bundle.mkdir(parents=True)
    sha = save_model(model, bundle / MODEL_FILENAME)
    classes = list(getattr(model, "classes_", []))
    spec = build_serving_spec(config, classes, sha).model_copy(update={"version": "1"})
    write_atomic(bundle / BUNDLE_METADATA_FILENAME, spec.model_dump_json(indent=2).encode())
    joblib_file = workdir / "model.joblib"
    joblib.dump(model, joblib_file)
    onnx_bytes, onnx_note = export_onnx(model, spec)
    onnx_bundle = None
    if onnx_bytes is not None:
        onnx_bundle = workdir / "bundle-onnx"
        shutil.copytree(bundle, onnx_bundle)
        (onnx_bundle / "model.onnx").write_bytes(onnx_bytes)
        # The server serves ONNX only when the spec records the export's checksum (as deploy writes it).
        onnx_spec = spec.model_copy(update={"onnx_sha256": sha256_bytes(onnx_bytes)})
        write_atomic(onnx_bundle / BUNDLE_METADATA_FILENAME, onnx_spec.model_dump_json(indent=2).encode())

    x_test, _ = split_xy(splits.test, config)
    row = x_test.iloc[[0]].reset_index(drop=True)
    batch = x_test.iloc[:batch_rows].reset_index(drop=True)
    if len(batch) < batch_rows:
        batch = pd.concat([batch] * (batch_rows // len(batch) + 1), ignore_index=True).iloc[:batch_rows]
    return Fixture(
        model=model,
        spec=spec,
        model_name=spec.model_name,
        bundle_dir=bundle,
        onnx_bundle_dir=onnx_bundle,
        onnx_bytes=onnx_bytes,
        onnx_note=onnx_note,
        joblib_file=joblib_file,
        columns=list(x_test.columns),
        row=row,
        batch=batch,
        row_body=oip_body(row),
        batch_body=oip_body(batch),
        row_label=model.predict(row)[0],
        batch_labels=np.asarray(model.predict(batch)),
        estimator=result.best.estimator,
    )


def export_onnx(model: Any, spec: Any) -> tuple[bytes | None, str]:
    """ONNX bytes from ``tabpipe.onnx.export`` (another change), or None and the reason."""
    try:
        from tabpipe.onnx.export import convert_bundle
    except ImportError as exc:
        return None, f"tabpipe.onnx.export not importable ({exc})"
    result = convert_bundle(model, spec)
    if result.onnx_bytes is None:
        return None, f"not convertible: {result.reason}"
    return result.onnx_bytes, "converted"


# --------------------------------------------------------------------------- servers


@dataclass
class PeerServer:
    """How to start one HTTP peer."""

    name: str
    cmd: list[str]
    port: int
    env: dict[str, str]
    cwd: Path
    log: Path
    infer_path: str
    ready_path: str
    note: str = ""


def peer_servers(fx: Fixture, workdir: Path, venvs: Path) -> tuple[dict[str, PeerServer], dict[str, str]]:
    """The HTTP peers that can be started here, and why the others cannot."""
    peers: dict[str, PeerServer] = {}
    missing: dict[str, str] = {}
    infer = f"/v2/models/{fx.model_name}/infer"
    # MLServer answers /v2/health/ready with 200 even when its model failed to load: ask the model.
    model_ready = f"/v2/models/{fx.model_name}/ready"
    # The peers' venvs unpickle tabpipe.stages.transform classes: give them the repo on the path.
    peer_env = {**os.environ, "PYTHONPATH": str(ROOT)}
    peer_env.pop("VIRTUAL_ENV", None)

    import importlib.util

    tabpipe_bundles = {
        "tabpipe": (fx.bundle_dir, "model.skops + bundle.json"),
        "tabpipe-onnx": (fx.onnx_bundle_dir, "model.skops + bundle.json + model.onnx"),
    }
    for name, (bundle, note) in tabpipe_bundles.items():
        if importlib.util.find_spec("tabpipe.serving.__main__") is None:
            missing[name] = "tabpipe.serving has no __main__ (server not written yet)"
        elif bundle is None:
            missing[name] = f"no ONNX model: {fx.onnx_note}"
        else:
            port = _free_port()
            peers[name] = PeerServer(
                name,
                [
                    sys.executable,
                    "-m",
                    "tabpipe.serving",
                    "--model",
                    str(bundle),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                port,
                dict(os.environ),
                ROOT,
                workdir / f"{name}.log",
                infer,
                "/v2/health/ready",
                note,
            )

    mlserver = venvs / "mlserver" / "bin" / "mlserver"
    if not mlserver.exists():
        missing["mlserver"] = f"{mlserver} missing (run bench/serving_peers/setup_venvs.sh)"
    else:
        model_dir = workdir / "mlserver"
        (model_dir / "phishing").mkdir(parents=True)
        settings = json.loads((PEERS_DIR / "model-settings.json").read_text())
        settings["name"] = fx.model_name
        (model_dir / "phishing" / "model-settings.json").write_text(json.dumps(settings, indent=2))
        shutil.copyfile(fx.joblib_file, model_dir / "phishing" / "model.joblib")
        port = _free_port()
        # Stock settings except the three ports (parallel_workers keeps its default, 1).
        server_settings = {"http_port": port, "grpc_port": _free_port(), "metrics_port": _free_port()}
        (model_dir / "settings.json").write_text(json.dumps(server_settings, indent=2))
        peers["mlserver"] = PeerServer(
            "mlserver",
            [str(mlserver), "start", str(model_dir)],
            port,
            peer_env,
            model_dir,
            workdir / "mlserver.log",
            infer,
            model_ready,
            "stock settings except ports; parallel_workers=1 (default)",
        )

    kserve_python = venvs / "kserve" / "bin" / "python"
    if not kserve_python.exists():
        missing["kserve"] = f"{kserve_python} missing (run bench/serving_peers/setup_venvs.sh)"
    else:
        port = _free_port()
        peers["kserve"] = PeerServer(
            "kserve",
            [
                str(kserve_python),
                str(PEERS_DIR / "kserve_server.py"),
                "--model-file",
                str(fx.joblib_file),
                "--model-name",
                fx.model_name,
                "--http-port",
                str(port),
                "--grpc-port",
                str(_free_port()),
            ],
            port,
            peer_env,
            workdir,
            workdir / "kserve.log",
            infer,
            model_ready,
            "ModelServer(workers=1), custom Model: DataFrame + predict_proba",
        )
    return peers, missing


def _get_status(port: int, path: str) -> int | None:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", path)
        status = conn.getresponse().status
        conn.close()
        return status
    except OSError:
        return None


def start_server(peer: PeerServer, timeout: float) -> subprocess.Popen:
    """Start a peer in its own process group; return once its readiness path answers 200.

    Raises:
        RuntimeError: the process exited or was not ready in time (the process is stopped).
    """
    with open(peer.log, "ab") as log:
        proc = subprocess.Popen(
            peer.cmd,
            cwd=peer.cwd,
            env=peer.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _LIVE.append(proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stop_server(proc)
            raise RuntimeError(f"exited with {proc.returncode} (log: {peer.log}): {_tail(peer.log)}")
        if _get_status(peer.port, peer.ready_path) == 200:
            return proc
        time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError(f"not ready after {timeout:.0f}s (log: {peer.log}): {_tail(peer.log)}")


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def stop_server(proc: subprocess.Popen) -> None:
    """Stop a server's whole process group: SIGTERM, then SIGKILL after 10 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # workers the parent left behind, if any
    except ProcessLookupError:
        pass
    proc.wait()
    if proc in _LIVE:
        _LIVE.remove(proc)


def stop_all() -> None:
    """Stop every server still running."""
    for proc in list(_LIVE):
        stop_server(proc)


# --------------------------------------------------------------------------- clients


class KeepAliveClient:
    """One persistent HTTP/1.1 connection (http.client, TCP_NODELAY)."""

    def __init__(self, port: int, path: str) -> None:
        self.path = path
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.headers = {"Content-Type": "application/json"}

    def post(self, body: bytes) -> tuple[int, bytes]:
        """POST ``body``; return status and response body."""
        self.conn.request("POST", self.path, body=body, headers=self.headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def labels_from(response: dict[str, Any]) -> list[Any]:
    """Predicted labels from an OIP response, whichever output name the server uses."""
    outputs = response.get("outputs") or []
    preferred = ("predict", "label", "labels", "prediction", "predictions", "class", "classes")
    for name in preferred:
        for out in outputs:
            if out.get("name") == name:
                return list(out["data"])
    for out in outputs:
        name = str(out.get("name", "")).lower()
        if "pred" in name and "prob" not in name:
            return list(out["data"])
    raise ValueError(f"no label output among {[o.get('name') for o in outputs]}")


def check_answers(client: KeepAliveClient, fx: Fixture) -> None:
    """The peer predicts the same classes as the in-process model, for one row and a batch.

    Raises:
        RuntimeError: an error status or a different prediction.
    """
    for body, expected in ((fx.row_body, [fx.row_label]), (fx.batch_body, list(fx.batch_labels))):
        status, raw = client.post(body)
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {raw[:300]!r}")
        got = labels_from(json.loads(raw))
        expected_str = [str(_plain(v)) for v in expected]
        got_str = [str(_plain(v)) for v in got]
        if got_str != expected_str:
            wrong = sum(a != b for a, b in zip(got_str, expected_str, strict=False))
            raise RuntimeError(
                f"answers differ from in-process: {wrong} of {len(expected)} rows "
                f"(first got {got_str[:3]}, expected {expected_str[:3]})"
            )


def _plain(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _percentile(values_ms: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values_ms), q))


def sequential_latency(client: KeepAliveClient, body: bytes, warmup: int, n: int) -> dict[str, float]:
    """p50/p99/mean of ``n`` sequential requests after ``warmup``, in ms."""
    for _ in range(warmup):
        client.post(body)
    times = []
    failures = 0
    for _ in range(n):
        started = time.perf_counter_ns()
        status, _ = client.post(body)
        times.append((time.perf_counter_ns() - started) / 1e6)
        failures += status != 200
    if failures:
        raise RuntimeError(f"{failures} of {n} sequential requests failed")
    return {
        "p50_ms": _percentile(times, 50),
        "p99_ms": _percentile(times, 99),
        "mean_ms": statistics.fmean(times),
    }


def batch_latency(client: KeepAliveClient, body: bytes, repeats: int) -> float:
    """Median ms of ``repeats`` batch requests after two warm-ups."""
    for _ in range(2):
        client.post(body)
    times = []
    for _ in range(repeats):
        started = time.perf_counter_ns()
        status, _ = client.post(body)
        times.append((time.perf_counter_ns() - started) / 1e6)
        if status != 200:
            raise RuntimeError(f"batch request failed with HTTP {status}")
    return statistics.median(times)


_WRK_DURATION = re.compile(r"([\d.]+)(us|ms|s|m)\b")


def _wrk_ms(text: str) -> float:
    match = _WRK_DURATION.fullmatch(text.strip())
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def throughput_wrk(port: int, path: str, body: bytes, concurrency: int, duration: int, workdir: Path) -> dict:
    """Requests/s with wrk (one thread, ``concurrency`` connections) and its latency percentiles."""
    script = workdir / "post.lua"
    text = body.decode()
    assert "]==]" not in text
    script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [==[{text}]==]\n'
    )
    cmd = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}{path}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, flags=re.MULTILINE))
    failed = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, errors.groups())) if errors else 0)
    return {
        "client": "wrk",
        "rps": rps,
        "requests": total,
        "failed": failed,
        "load_p50_ms": _wrk_ms(latency.get("50", "")),
        "load_p99_ms": _wrk_ms(latency.get("99", "")),
    }


async def _async_load(port: int, path: str, body: bytes, concurrency: int, duration: float) -> dict:
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    times: list[float] = []
    failed = 0
    stop_at = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal failed
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = re.search(rb"(?i)content-length:\s*(\d+)", head)
                if length is None:  # chunked or close-delimited: not expected from these servers
                    raise RuntimeError("response without Content-Length")
                await reader.readexactly(int(length.group(1)))
                times.append((time.perf_counter() - started) * 1e3)
                failed += status != 200
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "client": "python-asyncio",
        "rps": len(times) / elapsed,
        "requests": len(times),
        "failed": failed,
        "load_p50_ms": _percentile(times, 50),
        "load_p99_ms": _percentile(times, 99),
    }


def throughput(port: int, path: str, body: bytes, concurrency: int, duration: int, workdir: Path) -> dict:
    """Requests/s at ``concurrency`` keep-alive connections for ``duration`` seconds."""
    if shutil.which("wrk"):
        result = throughput_wrk(port, path, body, concurrency, duration, workdir)
    else:
        result = asyncio.run(_async_load(port, path, body, concurrency, duration))
    if result["failed"]:
        raise RuntimeError(f"{result['failed']} of {result['requests']} requests failed under load")
    return result


# --------------------------------------------------------------------------- peers


def measure_http(peer: PeerServer, fx: Fixture, args: argparse.Namespace, workdir: Path) -> dict:
    """Start one peer, check its answers, measure it and stop it."""
    started = time.perf_counter()
    proc = start_server(peer, args.start_timeout)
    startup = time.perf_counter() - started
    try:
        platform = _model_platform(peer.port, fx.model_name)
        expected = {"tabpipe": "tabpipe-sklearn", "tabpipe-onnx": "tabpipe-onnx"}.get(peer.name)
        if expected and platform != expected:
            raise RuntimeError(f"server reports platform {platform!r}, not {expected!r} (log: {peer.log})")
        client = KeepAliveClient(peer.port, peer.infer_path)
        try:
            check_answers(client, fx)
            result = sequential_latency(client, fx.row_body, args.warmup, args.requests)
            result["batch_ms"] = batch_latency(client, fx.batch_body, args.batch_repeats)
        finally:
            client.close()
        load = throughput(peer.port, peer.infer_path, fx.row_body, args.concurrency, args.duration, workdir)
        result.update(load)
        result["startup_s"] = startup
        result["platform"] = platform
        return result
    finally:
        stop_server(proc)


def _model_platform(port: int, model_name: str) -> str | None:
    """The ``platform`` field of the model's OIP metadata."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", f"/v2/models/{model_name}")
        response = conn.getresponse()
        body = response.read()
        return json.loads(body).get("platform") if response.status == 200 else None
    finally:
        conn.close()


def _time_calls(fn, warmup: int, n: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        started = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - started) / 1e6)
    return times


def measure_in_process_sklearn(fx: Fixture, args: argparse.Namespace) -> dict:
    """``predict_proba`` on a ready one-row DataFrame, and on the batch."""
    times = _time_calls(lambda: fx.model.predict_proba(fx.row), args.warmup, args.requests)
    batch = _time_calls(lambda: fx.model.predict_proba(fx.batch), 2, args.batch_repeats)
    return {
        "p50_ms": _percentile(times, 50),
        "p99_ms": _percentile(times, 99),
        "mean_ms": statistics.fmean(times),
        "batch_ms": statistics.median(batch),
    }


def load_onnx_predictor(fx: Fixture) -> tuple[Any | None, str]:
    """An ``OnnxPredictor`` on the fixture's ONNX model, or None and the reason."""
    if fx.onnx_bytes is None:
        return None, fx.onnx_note
    try:
        from tabpipe.onnx.predictor import OnnxPredictor  # written by another change
    except ImportError as exc:
        return None, f"tabpipe.onnx.predictor.OnnxPredictor not importable ({exc})"
    try:
        return OnnxPredictor(fx.onnx_bytes, fx.spec), "OnnxPredictor(onnx_bytes, spec)"
    except (TypeError, ValueError, RuntimeError) as exc:
        return None, f"could not construct OnnxPredictor: {type(exc).__name__}: {exc}"


def measure_in_process_onnx(predictor: Any, fx: Fixture, args: argparse.Namespace) -> dict:
    """``OnnxPredictor.predict`` on validated columns (float64 arrays), one row and the batch."""

    def columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
        return {name: frame[name].to_numpy(dtype="float64") for name in fx.columns}

    row, batch = columns(fx.row), columns(fx.batch)
    labels, _ = predictor.predict(batch)
    if [str(_plain(v)) for v in labels] != [str(_plain(v)) for v in fx.batch_labels]:
        raise RuntimeError("onnx predictions differ from scikit-learn's")
    times = _time_calls(lambda: predictor.predict(row), args.warmup, args.requests)
    batch_times = _time_calls(lambda: predictor.predict(batch), 2, args.batch_repeats)
    return {
        "p50_ms": _percentile(times, 50),
        "p99_ms": _percentile(times, 99),
        "mean_ms": statistics.fmean(times),
        "batch_ms": statistics.median(batch_times),
    }


# --------------------------------------------------------------------------- report


@dataclass
class PeerResult:
    """Rounds measured for one peer, or why it is not available."""

    name: str
    label: str
    rounds: list[dict] = field(default_factory=list)
    unavailable: str = ""
    note: str = ""

    def median(self, key: str) -> float | None:
        """Median of one metric over the rounds (None if not measured)."""
        values = [r[key] for r in self.rounds if r.get(key) is not None]
        return statistics.median(values) if values else None


LABELS = {
    "in-process-sklearn": "in-process sklearn `predict_proba` (one-row DataFrame)",
    "in-process-onnx": "in-process `OnnxPredictor`",
    "tabpipe": "tabpipe server, scikit-learn predictor",
    "tabpipe-onnx": "tabpipe server, ONNX predictor",
    "mlserver": "MLServer 1.7.1 sklearn runtime (stock)",
    "kserve": "KServe 0.21 SDK custom Model",
}


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(results: list[PeerResult], args: argparse.Namespace) -> str:
    """The Markdown table and the ratios."""
    lines = [
        f"| peer | p50 (ms) | p99 (ms) | req/s at c={args.concurrency} | p50 / p99 under load (ms) "
        f"| {args.batch_rows}-row batch (ms) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for res in results:
        if res.unavailable:
            lines.append(f"| {res.label} | not available: {res.unavailable} | | | | |")
            continue
        rps = res.median("rps")
        load = (
            f"{_fmt(res.median('load_p50_ms'), 1)} / {_fmt(res.median('load_p99_ms'), 1)}"
            if res.median("load_p50_ms") is not None
            else "-"
        )
        lines.append(
            f"| {res.label} | {_fmt(res.median('p50_ms'), 3)} | {_fmt(res.median('p99_ms'), 3)} "
            f"| {_fmt(rps, 0)} | {load} | {_fmt(res.median('batch_ms'), 1)} |"
        )
    by_name = {r.name: r for r in results if not r.unavailable and r.rounds}
    lines.append("")
    measured = [n for n in ("tabpipe", "tabpipe-onnx") if n in by_name]
    for name in measured:
        tab = by_name[name]
        for peer in ("mlserver", "kserve"):
            other = by_name.get(peer)
            if other:
                lines.append(
                    f"- {name} vs {peer}: throughput {tab.median('rps') / other.median('rps'):.2f}x; "
                    f"p50 {tab.median('p50_ms') / other.median('p50_ms'):.2f}x {peer}'s; "
                    f"batch time {tab.median('batch_ms') / other.median('batch_ms'):.2f}x {peer}'s"
                )
        p50, p99 = tab.median("p50_ms"), tab.median("p99_ms")
        lines.append(
            f"- {name}: p50 {p50:.2f} ms vs target {LATENCY_TARGET_P50_MS} ms "
            f"({'met' if p50 <= LATENCY_TARGET_P50_MS else 'MISSED'}), "
            f"p99 {p99:.2f} ms vs target {LATENCY_TARGET_P99_MS} ms "
            f"({'met' if p99 <= LATENCY_TARGET_P99_MS else 'MISSED'})"
        )
    if not measured:
        lines.append("- tabpipe server not measured: no ratios against it")
    return "\n".join(lines)


def versions(venvs: Path) -> dict[str, dict[str, str]]:
    """Package versions in this venv and in each peer venv."""
    out: dict[str, dict[str, str]] = {}
    wanted = [
        "scikit-learn",
        "numpy",
        "pandas",
        "joblib",
        "onnxruntime",
        "uvicorn",
        "fastapi",
        "mlserver",
        "mlserver-sklearn",
        "kserve",
    ]
    probe = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try: out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: pass\n"
        "out['python'] = sys.version.split()[0]\n"
        "print(json.dumps(out))\n"
    )
    for name, python in (
        ("tabpipe", Path(sys.executable)),
        ("mlserver", venvs / "mlserver/bin/python"),
        ("kserve", venvs / "kserve/bin/python"),
    ):
        if python.exists():
            run = subprocess.run(
                [str(python), "-c", probe, *wanted], capture_output=True, text=True, timeout=60
            )
            out[name] = json.loads(run.stdout) if run.returncode == 0 else {"error": run.stderr[-200:]}
    if shutil.which("wrk"):
        run = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
        out["wrk"] = {"version": (run.stdout or run.stderr).split("[")[0].strip()}
    return out


# --------------------------------------------------------------------------- main


def main() -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs/phishing.yaml")
    parser.add_argument("--venvs", type=Path, default=ROOT / ".state/bench-venvs")
    parser.add_argument("--out", type=Path, default=ROOT / ".state/bench/serving.json")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--requests", type=int, default=1000, help="sequential single-row requests")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per throughput test")
    parser.add_argument("--batch-rows", type=int, default=1000)
    parser.add_argument("--batch-repeats", type=int, default=20)
    parser.add_argument("--start-timeout", type=float, default=60.0)
    parser.add_argument("--peers", default=",".join(HTTP_PEERS), help="comma-separated HTTP peers")
    args = parser.parse_args()
    args.venvs = args.venvs.resolve()  # servers start from other working directories
    wanted = [p for p in args.peers.split(",") if p]

    def on_signal(signum: int, _frame: object) -> None:
        stop_all()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    began = time.perf_counter()
    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        print(
            f"warning: load average {load_before[0]:.2f} before starting: other work shares the CPUs, "
            "expect noisy numbers",
            flush=True,
        )
    with tempfile.TemporaryDirectory(prefix="tabpipe-bench-serving-") as tmp:
        workdir = Path(tmp)
        try:
            print("fitting the model and writing the bundle ...", flush=True)
            fx = build_fixture(args.config, workdir, args.batch_rows)
            print(
                f"model: {fx.estimator} pipeline, {len(fx.columns)} input columns; "
                f"request bodies {len(fx.row_body)} B (1 row), {len(fx.batch_body)} B "
                f"({args.batch_rows} rows)",
                flush=True,
            )
            peers, missing = peer_servers(fx, workdir, args.venvs)
            results: dict[str, PeerResult] = {
                name: PeerResult(name, LABELS[name])
                for name in ("in-process-sklearn", "in-process-onnx", *wanted)
            }
            for name in wanted:
                if name in missing:
                    results[name].unavailable = missing[name]
                elif name in peers:
                    results[name].note = peers[name].note
            onnx, onnx_note = load_onnx_predictor(fx)
            if onnx is None:
                results["in-process-onnx"].unavailable = onnx_note
                print(f"note: in-process onnx skipped: {onnx_note}", flush=True)

            for rnd in range(args.rounds):
                order = [p for p in wanted if p in peers]
                if rnd % 2:
                    order.reverse()
                results["in-process-sklearn"].rounds.append(measure_in_process_sklearn(fx, args))
                if onnx is not None and not results["in-process-onnx"].unavailable:
                    try:
                        results["in-process-onnx"].rounds.append(measure_in_process_onnx(onnx, fx, args))
                    except Exception as exc:  # noqa: BLE001 (another change's code: report, don't crash)
                        results["in-process-onnx"].unavailable = f"{type(exc).__name__}: {exc}"
                for name in order:
                    res = results[name]
                    if res.unavailable:
                        continue
                    # New ports each round, so a server slow to release its port cannot collide.
                    peer = peers[name]
                    if rnd:
                        peer = _with_new_ports(peer, workdir)
                    try:
                        res.rounds.append(measure_http(peer, fx, args, workdir))
                        r = res.rounds[-1]
                        print(
                            f"round {rnd + 1}/{args.rounds} {name}: p50 {r['p50_ms']:.2f} ms, "
                            f"p99 {r['p99_ms']:.2f} ms, {r['rps']:.0f} req/s, batch {r['batch_ms']:.1f} ms "
                            f"(started in {r['startup_s']:.1f}s)",
                            flush=True,
                        )
                    except Exception as exc:  # noqa: BLE001 (a peer failing must not stop the others)
                        res.unavailable = f"{type(exc).__name__}: {exc}"
                        print(
                            f"round {rnd + 1}/{args.rounds} {name}: not available: {res.unavailable}",
                            flush=True,
                        )
        finally:
            stop_all()

    ordered = [results[n] for n in ("in-process-sklearn", "in-process-onnx", *HTTP_PEERS) if n in results]
    table = render(ordered, args)
    env = versions(args.venvs)
    report = {
        "config": str(args.config),
        "model": fx.estimator,
        "rounds": args.rounds,
        "settings": {
            k: getattr(args, k)
            for k in ("warmup", "requests", "concurrency", "duration", "batch_rows", "batch_repeats")
        },
        "load_client": "wrk -t1" if shutil.which("wrk") else "python-asyncio",
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "peers": {
            r.name: {
                "label": r.label,
                "available": not r.unavailable,
                "reason": r.unavailable,
                "note": r.note,
                "median": {
                    k: r.median(k)
                    for k in (
                        "p50_ms",
                        "p99_ms",
                        "mean_ms",
                        "rps",
                        "load_p50_ms",
                        "load_p99_ms",
                        "batch_ms",
                        "startup_s",
                    )
                },
                "rounds": r.rounds,
            }
            for r in ordered
        },
        "versions": env,
        "seconds": round(time.perf_counter() - began, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))

    print(
        f"\nmedians over {args.rounds} rounds ({args.config}, {fx.estimator}, "
        f"{os.cpu_count()} CPUs, load client {report['load_client']}):"
    )
    print(table)
    print(f"\nversions: {json.dumps(env)}")
    print(f"JSON: {args.out} ({report['seconds']:.0f}s)")
    return 0


def _with_new_ports(peer: PeerServer, workdir: Path) -> PeerServer:
    """The same peer on fresh free ports."""
    port = _free_port()
    cmd = list(peer.cmd)
    if peer.name == "mlserver":
        settings_file = Path(peer.cmd[-1]) / "settings.json"
        settings_file.write_text(
            json.dumps({"http_port": port, "grpc_port": _free_port(), "metrics_port": _free_port()}, indent=2)
        )
    elif peer.name.startswith("tabpipe"):
        cmd[cmd.index("--port") + 1] = str(port)
    elif peer.name == "kserve":
        cmd[cmd.index("--http-port") + 1] = str(port)
        cmd[cmd.index("--grpc-port") + 1] = str(_free_port())
    return PeerServer(
        peer.name, cmd, port, peer.env, peer.cwd, peer.log, peer.infer_path, peer.ready_path, peer.note
    )


if __name__ == "__main__":
    sys.exit(main())
