"""Benchmark model serving per peer and protocol: single-row latency, throughput at saturation, batches.

Peers, all on the SAME fitted pipeline, in the same run, one server alive at a time, their order
alternated between rounds so drift in machine load hits all of them:
- ``in-process sklearn``: the bundle's ``predict_proba`` on a ready one-row DataFrame (the floor);
- ``in-process onnx``: ``tabpipe.onnx.predictor.OnnxPredictor``, when it exists;
- ``tabpipe``: ``python -m tabpipe.serving --model BUNDLE --grpc-port G`` from this venv, on a
  bundle of ``model.skops`` + ``bundle.json`` (the scikit-learn predictor);
- ``tabpipe-onnx``: the same server on the same bundle plus ``model.onnx`` made by
  ``tabpipe.onnx.export.convert_bundle`` (the ONNX predictor), when that module exists;
- ``mlserver``: stock MLServer 1.7.1 scikit-learn runtime (``mlserver start``), its own venv;
- ``kserve``: a custom ``kserve.Model`` under ``kserve.ModelServer`` 0.21.0, its own venv.

Protocols, each server peer measured on each one it supports (one server start per peer and
round serves all three; their order alternates between rounds too):
- ``rest-json``: the Open Inference Protocol (V2) over REST, one input per column and
  ``parameters: {content_type: "pd"}``, built from real rows of the test split;
- ``rest-binary``: the same request with the binary tensor data extension: the JSON header
  (``Inference-Header-Content-Length``) with ``binary_data_size`` per input, then the raw
  little-endian tensors; ``binary_data_output: true`` asks for the outputs the same way;
- ``grpc``: ``inference.GRPCInferenceService/ModelInfer`` with the same inputs in
  ``raw_input_contents`` (tritonclient's default), through tabpipe's generated stubs.

Correctness first: every server's REST JSON answers (one row, the batch) must match the
in-process predictions, and every other protocol's answers must equal that server's REST JSON
answers (labels exactly, probabilities to 1e-7). A mismatch stops the benchmark with exit
status 2: numbers for wrong answers are worthless. A peer that refuses a protocol (an error
status on the first request) is reported ``n/a`` with its answer, except the tabpipe servers,
which must serve all three (a refusal there is a failure too).

Measurements per peer, protocol and round:
- latency: ``--requests`` sequential single-row requests on one keep-alive connection (gRPC:
  one channel), after ``--warmup``, p50 and p99;
- throughput at saturation: requests/s at ``--concurrency`` requests in flight for
  ``--duration`` seconds: REST with ``wrk -t1`` (a Lua script posts the prebuilt body, binary
  or JSON), gRPC with ``ghz --cpus 1`` over one HTTP/2 connection (``--ghz``; both fall back to
  Python asyncio clients when missing). 16 in flight saturate every server here: each runs its
  model on 1-4 threads of a 2-core machine, which the load client shares;
- batch: median latency of ``--batch-repeats`` requests of ``--batch-rows`` rows.

Prints a Markdown table of medians over the rounds, the ratios against MLServer in the same run,
and writes JSON (``--out``), with the servers' logs copied to ``serving-logs/`` beside it.
``--quick`` cuts every count for a smoke test (1 round, about a minute). Peer venvs come from
``bench/serving_peers/setup_venvs.sh``; a peer whose venv or module is missing, or that fails
to start, is reported as not available.
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
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
PEERS_DIR = Path(__file__).resolve().parent / "serving_peers"
HTTP_PEERS = ("tabpipe", "tabpipe-onnx", "mlserver", "kserve")
PROTOCOLS = ("rest-json", "rest-binary", "grpc")
PROTOCOL_LABELS = {
    "in-process": "in-process",
    "rest-json": "REST JSON",
    "rest-binary": "REST binary",
    "grpc": "gRPC",
}
IN_PROCESS = ("in-process-sklearn", "in-process-onnx")
#: The peers that must serve every protocol: a refusal there is a failure, not "n/a".
OWN_PEERS = ("tabpipe", "tabpipe-onnx")
#: Why a peer refuses a protocol, where the reason is known (the refusal itself is still observed).
KNOWN_GAPS = {
    ("mlserver", "rest-binary"): "MLServer 1.7.1 has no binary tensor data extension over REST "
    "(SeldonIO/MLServer#324, open): it parses the whole body as JSON",
}
PROTO_FILE = ROOT / "tabpipe/serving/oip/grpc_predict_v2.proto"
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
GRPC_MESSAGE_BYTES = 64 * 1024 * 1024
LATENCY_TARGET_P50_MS = 2.0
LATENCY_TARGET_P99_MS = 5.0
QUICK = {"rounds": 1, "warmup": 20, "requests": 200, "duration": 3, "batch_repeats": 5}

# Every server process started here, so that any exit path can stop them.
_LIVE: list[subprocess.Popen] = []


class BenchFailure(RuntimeError):
    """Something that makes the whole run worthless: the benchmark stops with exit status 2."""


class WrongAnswer(BenchFailure):
    """A server answered a request differently from the reference."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- model and requests


@dataclass(frozen=True)
class Wire:
    """One request in every protocol's form (built once, sent many times)."""

    json_body: bytes
    binary_body: bytes
    binary_header_length: int
    grpc: Any  # a tabpipe.serving.oip.grpc_predict_v2_pb2.ModelInferRequest

    def rest(self, protocol: str) -> tuple[bytes, dict[str, str]]:
        """The body and headers of the REST form of ``protocol``."""
        if protocol == "rest-binary":
            return self.binary_body, {
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": str(self.binary_header_length),
            }
        return self.json_body, {"Content-Type": "application/json"}


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
    row_wire: Wire
    batch_wire: Wire
    row_label: Any
    batch_labels: np.ndarray
    estimator: str


def _columns(frame: pd.DataFrame) -> list[tuple[str, str, list[Any]]]:
    """Each column as (name, OIP datatype, plain Python values)."""
    out = []
    for name in frame.columns:
        values = frame[name]
        if pd.api.types.is_bool_dtype(values):
            datatype, data = "BOOL", [bool(v) for v in values]
        elif pd.api.types.is_integer_dtype(values):
            datatype, data = "INT64", [int(v) for v in values]
        elif pd.api.types.is_float_dtype(values):
            datatype, data = "FP64", [float(v) for v in values]
        else:
            datatype, data = "BYTES", [str(v) for v in values]
        out.append((str(name), datatype, data))
    return out


_RAW_DTYPES = {
    "BOOL": "u1",
    "INT8": "i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}


def encode_raw(datatype: str, values: list[Any]) -> bytes:
    """Values as the binary extension and ``raw_input_contents`` carry them (little-endian)."""
    if datatype == "BYTES":
        parts = []
        for value in values:
            data = value.encode() if isinstance(value, str) else bytes(value)
            parts.append(struct.pack("<I", len(data)) + data)
        return b"".join(parts)
    return np.asarray(values).astype(_RAW_DTYPES[datatype]).tobytes()


def decode_raw(datatype: str, data: bytes | memoryview) -> list[Any]:
    """The inverse of :func:`encode_raw`, as plain Python values."""
    if datatype == "BYTES":
        values, position = [], 0
        while position < len(data):
            (length,) = struct.unpack_from("<I", data, position)
            values.append(bytes(data[position + 4 : position + 4 + length]).decode())
            position += 4 + length
        return values
    return np.frombuffer(data, dtype=_RAW_DTYPES[datatype]).tolist()


def oip_body(frame: pd.DataFrame) -> bytes:
    """An OIP V2 JSON request: one input per column, ``content_type: pd``."""
    inputs = [
        {"name": name, "shape": [len(frame)], "datatype": datatype, "data": data}
        for name, datatype, data in _columns(frame)
    ]
    return json.dumps({"parameters": {"content_type": "pd"}, "inputs": inputs}).encode()


def oip_binary_body(frame: pd.DataFrame) -> tuple[bytes, int]:
    """The same request with the binary tensor data extension; the body and its JSON length."""
    inputs, blobs = [], []
    for name, datatype, data in _columns(frame):
        blob = encode_raw(datatype, data)
        inputs.append(
            {
                "name": name,
                "shape": [len(frame)],
                "datatype": datatype,
                "parameters": {"binary_data_size": len(blob)},
            }
        )
        blobs.append(blob)
    header = json.dumps(
        {"parameters": {"content_type": "pd", "binary_data_output": True}, "inputs": inputs}
    ).encode()
    return header + b"".join(blobs), len(header)


def oip_grpc_request(frame: pd.DataFrame, model_name: str) -> Any:
    """The same request as a gRPC ``ModelInferRequest`` with ``raw_input_contents``."""
    from tabpipe.serving.oip import grpc_predict_v2_pb2 as pb

    request = pb.ModelInferRequest(model_name=model_name)
    request.parameters["content_type"].string_param = "pd"
    for name, datatype, data in _columns(frame):
        request.inputs.add(name=name, datatype=datatype, shape=[len(frame)])
        request.raw_input_contents.append(encode_raw(datatype, data))
    return request


def build_wire(frame: pd.DataFrame, model_name: str) -> Wire:
    """Every protocol's form of the request for ``frame``."""
    binary, header_length = oip_binary_body(frame)
    return Wire(oip_body(frame), binary, header_length, oip_grpc_request(frame, model_name))


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
        row_wire=build_wire(row, spec.model_name),
        batch_wire=build_wire(batch, spec.model_name),
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
    """How to start one server peer on a given pair of ports."""

    name: str
    cmd: list[str]
    port: int
    grpc_port: int
    env: dict[str, str]
    cwd: Path
    log: Path
    infer_path: str
    ready_path: str
    note: str = ""


#: Builds a peer's server on (REST port, gRPC port): every round gets fresh ports.
PeerFactory = Callable[[int, int], PeerServer]


def peer_servers(fx: Fixture, workdir: Path, venvs: Path) -> tuple[dict[str, PeerFactory], dict[str, str]]:
    """The server peers that can be started here, and why the others cannot."""
    factories: dict[str, PeerFactory] = {}
    missing: dict[str, str] = {}
    infer = f"/v2/models/{fx.model_name}/infer"
    # MLServer answers /v2/health/ready with 200 even when its model failed to load: ask the model.
    model_ready = f"/v2/models/{fx.model_name}/ready"
    # The peers' venvs unpickle tabpipe.stages.transform classes: give them the repo on the path.
    peer_env = {**os.environ, "PYTHONPATH": str(ROOT)}
    peer_env.pop("VIRTUAL_ENV", None)

    import importlib.util

    from tabpipe.serving.launcher import SERVER_ENV  # the allocator the deployed servers run with

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

            def tabpipe_server(port: int, grpc_port: int, name: str = name, bundle: Path = bundle,
                               note: str = note) -> PeerServer:  # fmt: skip
                cmd = [sys.executable, "-m", "tabpipe.serving", "--model", str(bundle), "--host", "127.0.0.1",
                       "--port", str(port), "--grpc-port", str(grpc_port)]  # fmt: skip
                env = {**os.environ, **SERVER_ENV}
                return PeerServer(name, cmd, port, grpc_port, env, ROOT, workdir / f"{name}.log",
                                  infer, "/v2/health/ready", note)  # fmt: skip

            factories[name] = tabpipe_server

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

        def mlserver_server(port: int, grpc_port: int) -> PeerServer:
            # Stock settings except the three ports (parallel_workers keeps its default, 1).
            ports = {"http_port": port, "grpc_port": grpc_port, "metrics_port": _free_port()}
            (model_dir / "settings.json").write_text(json.dumps(ports, indent=2))
            return PeerServer(
                "mlserver",
                [str(mlserver), "start", str(model_dir)],
                port,
                grpc_port,
                peer_env,
                model_dir,
                workdir / "mlserver.log",
                infer,
                model_ready,
                "stock settings except ports; parallel_workers=1 (default)",
            )

        factories["mlserver"] = mlserver_server

    kserve_python = venvs / "kserve" / "bin" / "python"
    if not kserve_python.exists():
        missing["kserve"] = f"{kserve_python} missing (run bench/serving_peers/setup_venvs.sh)"
    else:

        def kserve_server(port: int, grpc_port: int) -> PeerServer:
            cmd = [str(kserve_python), str(PEERS_DIR / "kserve_server.py"), "--model-file",
                   str(fx.joblib_file), "--model-name", fx.model_name, "--http-port", str(port),
                   "--grpc-port", str(grpc_port)]  # fmt: skip
            return PeerServer(
                "kserve",
                cmd,
                port,
                grpc_port,
                peer_env,
                workdir,
                workdir / "kserve.log",
                infer,
                model_ready,
                "ModelServer(workers=1), custom Model: DataFrame + predict_proba",
            )

        factories["kserve"] = kserve_server
    return factories, missing


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
            raise RuntimeError(
                f"exited with {proc.returncode} (log: serving-logs/{peer.log.name}): {_tail(peer.log)}"
            )
        if _get_status(peer.port, peer.ready_path) == 200:
            return proc
        time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError(
        f"not ready after {timeout:.0f}s (log: serving-logs/{peer.log.name}): {_tail(peer.log)}"
    )


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


# --------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class Answer:
    """What a server predicted: the labels (as text) and the class probabilities, if it sent them."""

    labels: list[str]
    proba: np.ndarray | None


class Refused(RuntimeError):
    """The server answered a request with an error status."""


LABEL_OUTPUTS = ("predict", "label", "labels", "prediction", "predictions", "class", "classes")
PROBA_OUTPUTS = ("probabilities", "predict_proba", "probability", "proba")


def _pick(outputs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The label output and the probability output (or None) among OIP outputs."""
    by_name = {str(o.get("name")): o for o in outputs}
    label = next((by_name[n] for n in LABEL_OUTPUTS if n in by_name), None)
    if label is None:
        label = next((o for n, o in by_name.items() if "pred" in n.lower() and "prob" not in n.lower()), None)
    if label is None:
        raise ValueError(f"no label output among {list(by_name)}")
    proba = next((by_name[n] for n in PROBA_OUTPUTS if n in by_name), None)
    return label, proba


def _answer(label_values: list[Any], proba_values: list[Any] | None, proba_shape: list[int] | None) -> Answer:
    labels = [str(_plain(v)) for v in label_values]
    if proba_values is None:
        return Answer(labels, None)
    proba = np.asarray(proba_values, dtype=np.float64)
    if proba_shape and all(isinstance(d, int) and d >= 0 for d in proba_shape):
        proba = proba.reshape(proba_shape)
    return Answer(labels, proba.reshape(len(labels), -1))


def answer_from_rest(headers: dict[str, str], body: bytes) -> Answer:
    """An OIP REST answer, plain JSON or with binary outputs after the JSON."""
    header_length = headers.get("inference-header-content-length")
    if header_length is None:
        document, binary = json.loads(body), memoryview(b"")
    else:
        size = int(header_length)
        document, binary = json.loads(body[:size]), memoryview(body)[size:]
    outputs = document.get("outputs") or []
    offset, values = 0, {}
    for out in outputs:  # binary outputs follow the JSON in the order the outputs are listed
        size = (out.get("parameters") or {}).get("binary_data_size")
        if size is None:
            values[id(out)] = list(out.get("data") or [])
        else:
            values[id(out)] = decode_raw(out["datatype"], binary[offset : offset + size])
            offset += size
    label, proba = _pick(outputs)
    return _answer(
        values[id(label)],
        values[id(proba)] if proba is not None else None,
        proba.get("shape") if proba is not None else None,
    )


def answer_from_grpc(response: Any) -> Answer:
    """An OIP gRPC ``ModelInferResponse``, raw or typed outputs."""
    raw = list(response.raw_output_contents)
    outputs, values = [], {}
    for i, out in enumerate(response.outputs):
        entry = {"name": out.name, "datatype": out.datatype, "shape": list(out.shape)}
        if raw:
            values[out.name] = decode_raw(out.datatype, raw[i])
        else:
            filled = out.contents.ListFields()
            data = list(filled[0][1]) if filled else []
            values[out.name] = [v.decode() if isinstance(v, bytes) else v for v in data]
        outputs.append(entry)
    label, proba = _pick(outputs)
    return _answer(
        values[label["name"]],
        values[proba["name"]] if proba is not None else None,
        proba["shape"] if proba is not None else None,
    )


def _plain(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def compare(where: str, got: Answer, expected: Answer) -> None:
    """Labels equal, probabilities (when both sent them) equal to 1e-7.

    Raises:
        WrongAnswer: they differ.
    """
    if got.labels != expected.labels:
        wrong = sum(a != b for a, b in zip(got.labels, expected.labels, strict=False))
        raise WrongAnswer(
            f"{where}: labels differ in {wrong} of {len(expected.labels)} rows (lengths {len(got.labels)} "
            f"vs {len(expected.labels)}; first got {got.labels[:3]}, expected {expected.labels[:3]})"
        )
    if got.proba is not None and expected.proba is not None:
        if got.proba.shape != expected.proba.shape or not np.allclose(
            got.proba, expected.proba, rtol=1e-7, atol=1e-12
        ):
            raise WrongAnswer(f"{where}: probabilities differ (first got {got.proba[:1]}, expected "
                              f"{expected.proba[:1]})")  # fmt: skip


# --------------------------------------------------------------------------- clients


class RestClient:
    """One persistent HTTP/1.1 connection (http.client, TCP_NODELAY) posting one protocol's bodies."""

    def __init__(self, port: int, path: str, protocol: str) -> None:
        self.path = path
        self.protocol = protocol
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def call(self, wire: Wire) -> tuple[dict[str, str], bytes]:
        """POST the request; return the response headers (lower-case names) and body.

        Raises:
            Refused: any status but 200.
        """
        body, headers = wire.rest(self.protocol)
        self.conn.request("POST", self.path, body=body, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            lines = data.decode(errors="replace").strip().splitlines()  # a traceback's last line says why
            raise Refused(f"HTTP {response.status}: {lines[-1][:300] if lines else ''}")
        return {k.lower(): v for k, v in response.getheaders()}, data

    def answer(self, wire: Wire) -> Answer:
        """The decoded answer to ``wire``."""
        return answer_from_rest(*self.call(wire))

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


class GrpcClient:
    """One gRPC channel and tabpipe's generated ``GRPCInferenceService`` stub."""

    protocol = "grpc"

    def __init__(self, port: int, ready_timeout: float = 30.0) -> None:
        import grpc

        from tabpipe.serving.oip import grpc_predict_v2_pb2_grpc as pb_grpc

        self._grpc = grpc
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{port}",
            options=[
                ("grpc.max_receive_message_length", GRPC_MESSAGE_BYTES),
                ("grpc.max_send_message_length", GRPC_MESSAGE_BYTES),
            ],
        )
        grpc.channel_ready_future(self.channel).result(timeout=ready_timeout)
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)

    def call(self, wire: Wire) -> Any:
        """ModelInfer; return the response message.

        Raises:
            Refused: any status but OK.
        """
        try:
            return self.stub.ModelInfer(wire.grpc, timeout=30)
        except self._grpc.RpcError as exc:
            raise Refused(f"gRPC {exc.code().name}: {exc.details()}") from None

    def answer(self, wire: Wire) -> Answer:
        """The decoded answer to ``wire``."""
        return answer_from_grpc(self.call(wire))

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()


def _percentile(values_ms: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values_ms), q))


def _load_summary(client: str, times_ms: list[float], elapsed: float, failed: int) -> dict[str, Any]:
    """A Python load client's figures, in the same keys as wrk's and ghz's."""
    return {
        "client": client,
        "rps": len(times_ms) / elapsed,
        "requests": len(times_ms),
        "failed": failed,
        "load_p50_ms": _percentile(times_ms, 50),
        "load_p99_ms": _percentile(times_ms, 99),
    }


def sequential_latency(client: RestClient | GrpcClient, wire: Wire, warmup: int, n: int) -> dict[str, float]:
    """p50/p99/mean of ``n`` sequential requests after ``warmup``, in ms (any failure raises)."""
    for _ in range(warmup):
        client.call(wire)
    times = []
    for _ in range(n):
        started = time.perf_counter_ns()
        client.call(wire)
        times.append((time.perf_counter_ns() - started) / 1e6)
    return {
        "p50_ms": _percentile(times, 50),
        "p99_ms": _percentile(times, 99),
        "mean_ms": statistics.fmean(times),
    }


def batch_latency(client: RestClient | GrpcClient, wire: Wire, repeats: int) -> float:
    """Median ms of ``repeats`` batch requests after two warm-ups (any failure raises)."""
    for _ in range(2):
        client.call(wire)
    times = []
    for _ in range(repeats):
        started = time.perf_counter_ns()
        client.call(wire)
        times.append((time.perf_counter_ns() - started) / 1e6)
    return statistics.median(times)


# --------------------------------------------------------------------------- load generators

_WRK_DURATION = re.compile(r"([\d.]+)(us|ms|s|m)\b")


def _wrk_ms(text: str) -> float:
    match = _WRK_DURATION.fullmatch(text.strip())
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def _lua_string(text: str) -> str:
    return '"' + "".join(f"\\{b}" for b in text.encode()) + '"'


def throughput_wrk(
    port: int, path: str, body: bytes, headers: dict[str, str], concurrency: int, duration: int, workdir: Path
) -> dict:
    """Requests/s with wrk (one thread, ``concurrency`` connections) and its latency percentiles.

    The body is read from a file in binary mode, so binary bodies go out byte for byte.
    """
    body_file = workdir / "wrk-body.bin"
    body_file.write_bytes(body)
    script = workdir / "post.lua"
    lines = ['wrk.method = "POST"']
    lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()]
    lines += [
        f'local f = assert(io.open({_lua_string(str(body_file))}, "rb"))',
        'wrk.body = f:read("*a")',
        "f:close()",
    ]
    script.write_text("\n".join(lines) + "\n")
    cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--timeout", "10s", "--latency",
           "-s", str(script), f"http://127.0.0.1:{port}{path}"]  # fmt: skip
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


async def _async_load(
    port: int, path: str, body: bytes, headers: dict[str, str], concurrency: int, duration: float
) -> dict:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{head}Content-Length: {len(body)}\r\n\r\n"
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
                response_head = await reader.readuntil(b"\r\n\r\n")
                status = int(response_head.split(b" ", 2)[1])
                length = re.search(rb"(?i)content-length:\s*(\d+)", response_head)
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
    return _load_summary("python-asyncio", times, elapsed, failed)


def throughput_ghz(
    ghz: str, port: int, message: bytes, concurrency: int, duration: int, workdir: Path
) -> dict:
    """Requests/s with ghz (one CPU, one HTTP/2 connection, ``concurrency`` calls in flight)."""
    message_file = workdir / "ghz-request.bin"
    message_file.write_bytes(message)
    cmd = [ghz, "--insecure", "--proto", str(PROTO_FILE), "--import-paths", str(PROTO_FILE.parent),
           "--call", MODEL_INFER.strip("/").replace("/", "."), "-B", str(message_file),
           f"--concurrency={concurrency}", "--connections=1", "--cpus=1", f"--duration={duration}s",
           "--duration-stop=wait", "--timeout=10s", "--format=json", f"127.0.0.1:{port}"]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    if run.returncode not in (0, 1) or not run.stdout.strip():
        raise RuntimeError(f"ghz exited with {run.returncode}: {run.stderr[-300:]}")
    report = json.loads(run.stdout)
    codes = report.get("statusCodeDistribution") or {}
    percentiles = {int(p["percentage"]): p["latency"] / 1e6 for p in report.get("latencyDistribution") or []}
    total = int(report.get("count", 0))
    return {
        "client": "ghz",
        "rps": float(report["rps"]),
        "requests": total,
        "failed": total - int(codes.get("OK", 0)),
        "failures": {k: v for k, v in codes.items() if k != "OK"},
        "load_p50_ms": percentiles.get(50, float("nan")),
        "load_p99_ms": percentiles.get(99, float("nan")),
    }


async def _grpc_async_load(port: int, message: bytes, concurrency: int, duration: float) -> dict:
    import grpc

    times: list[float] = []
    failed = 0
    stop_at = time.perf_counter() + duration
    options = [("grpc.max_receive_message_length", GRPC_MESSAGE_BYTES)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        # No (de)serializers: the prebuilt request's bytes go out as they are, the answer stays bytes.
        infer = channel.unary_unary(MODEL_INFER)

        async def worker() -> None:
            nonlocal failed
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                try:
                    await infer(message, timeout=10)
                except grpc.aio.AioRpcError:
                    failed += 1
                times.append((time.perf_counter() - started) * 1e3)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return _load_summary("python-grpc-aio", times, elapsed, failed)


def throughput(peer: PeerServer, protocol: str, wire: Wire, args: argparse.Namespace, workdir: Path) -> dict:
    """Requests/s at ``args.concurrency`` requests in flight for ``args.duration`` seconds.

    Raises:
        RuntimeError: any request failed under load.
    """
    if protocol == "grpc":
        message = wire.grpc.SerializeToString()
        if args.ghz:
            result = throughput_ghz(
                args.ghz, peer.grpc_port, message, args.concurrency, args.duration, workdir
            )
        else:
            result = asyncio.run(_grpc_async_load(peer.grpc_port, message, args.concurrency, args.duration))
    else:
        body, headers = wire.rest(protocol)
        if shutil.which("wrk"):
            result = throughput_wrk(
                peer.port, peer.infer_path, body, headers, args.concurrency, args.duration, workdir
            )
        else:
            result = asyncio.run(
                _async_load(peer.port, peer.infer_path, body, headers, args.concurrency, args.duration)
            )
    if result["failed"]:
        raise RuntimeError(
            f"{result['failed']} of {result['requests']} requests failed under load "
            f"{result.get('failures', '')}"
        )
    return result


# --------------------------------------------------------------------------- peers


def _client(peer: PeerServer, protocol: str) -> RestClient | GrpcClient:
    """A connected client for ``protocol``.

    Raises:
        Refused: the gRPC port did not answer.
    """
    if protocol != "grpc":
        return RestClient(peer.port, peer.infer_path, protocol)
    import grpc

    try:
        return GrpcClient(peer.grpc_port)
    except grpc.FutureTimeoutError:
        raise Refused(f"gRPC port {peer.grpc_port} did not answer in 30 s") from None


def measure_server(
    peer: PeerServer, fx: Fixture, protocols: list[str], args: argparse.Namespace, workdir: Path
) -> dict[str, dict | str]:
    """Start one peer, check its answers in every protocol, measure each, stop it.

    Returns:
        Per protocol, the measurements, or the reason the peer refused it.

    Raises:
        WrongAnswer: a protocol's answers differ from REST JSON's, or REST JSON's from in-process.
        BenchFailure: a tabpipe server refused a protocol or failed under load.
        RuntimeError: the peer did not start, or failed its REST JSON requests.
    """
    started = time.perf_counter()
    proc = start_server(peer, args.start_timeout)
    startup = time.perf_counter() - started
    try:
        platform = _model_platform(peer.port, fx.model_name)
        expected_platform = {"tabpipe": "tabpipe-sklearn", "tabpipe-onnx": "tabpipe-onnx"}.get(peer.name)
        if expected_platform and platform != expected_platform:
            raise RuntimeError(
                f"server reports platform {platform!r}, not {expected_platform!r} "
                f"(log: serving-logs/{peer.log.name})"
            )
        rest = RestClient(peer.port, peer.infer_path, "rest-json")
        try:
            reference = {"row": rest.answer(fx.row_wire), "batch": rest.answer(fx.batch_wire)}
        finally:
            rest.close()
        in_process = {
            "row": Answer([str(_plain(fx.row_label))], None),
            "batch": Answer([str(_plain(v)) for v in fx.batch_labels], None),
        }
        for size in ("row", "batch"):
            compare(f"{peer.name} REST JSON {size} vs in-process", reference[size], in_process[size])

        out: dict[str, dict | str] = {}
        for protocol in protocols:
            try:
                out[protocol] = _measure_protocol(peer, protocol, fx, reference, args, workdir)
            except BenchFailure:
                raise
            except Refused as exc:
                if peer.name in OWN_PEERS:
                    raise BenchFailure(
                        f"{peer.name} refused {protocol}: {exc} (log: serving-logs/{peer.log.name})"
                    ) from None
                known = KNOWN_GAPS.get((peer.name, protocol))
                out[protocol] = f"{known}; answered {exc}" if known else f"refused: {exc}"
                continue
            except (RuntimeError, OSError) as exc:
                if peer.name in OWN_PEERS:
                    raise BenchFailure(
                        f"{peer.name} {protocol}: {exc} (log: serving-logs/{peer.log.name})"
                    ) from exc
                out[protocol] = f"failed: {type(exc).__name__}: {exc}"
                continue
            out[protocol].update(startup_s=startup, platform=platform)
        return out
    finally:
        stop_server(proc)


def _measure_protocol(
    peer: PeerServer,
    protocol: str,
    fx: Fixture,
    reference: dict[str, Answer],
    args: argparse.Namespace,
    workdir: Path,
) -> dict:
    """Check one protocol's answers against REST JSON's, then time it."""
    client = _client(peer, protocol)
    try:
        label = f"{peer.name} {PROTOCOL_LABELS[protocol]}"
        compare(f"{label} row vs REST JSON", client.answer(fx.row_wire), reference["row"])
        compare(f"{label} batch vs REST JSON", client.answer(fx.batch_wire), reference["batch"])
        result = sequential_latency(client, fx.row_wire, args.warmup, args.requests)
        result["batch_ms"] = batch_latency(client, fx.batch_wire, args.batch_repeats)
    finally:
        client.close()
    result.update(throughput(peer, protocol, fx.row_wire, args, workdir))
    return result


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


def _time_calls(fn: Callable[[], Any], warmup: int, n: int) -> list[float]:
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
        raise WrongAnswer("in-process onnx predictions differ from scikit-learn's")
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
    """Rounds measured for one peer and protocol, or why it is not available."""

    peer: str
    protocol: str
    label: str
    rounds: list[dict] = field(default_factory=list)
    unavailable: str = ""
    note: str = ""

    @property
    def key(self) -> str:
        """``peer/protocol``, the JSON report's key."""
        return f"{self.peer}/{self.protocol}"

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
METRICS = ("p50_ms", "p99_ms", "mean_ms", "rps", "load_p50_ms", "load_p99_ms", "batch_ms", "startup_s")


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _short(reason: str, limit: int = 90) -> str:
    reason = reason.replace("|", "/").replace("\n", " ")
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


def render(results: list[PeerResult], args: argparse.Namespace) -> str:
    """The Markdown table, the ratios against MLServer and the targets."""
    lines = [
        f"| peer | protocol | p50 (ms) | p99 (ms) | req/s at c={args.concurrency} "
        f"| p50 / p99 under load (ms) | {args.batch_rows:,}-row batch (ms) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for res in results:
        protocol = PROTOCOL_LABELS[res.protocol]
        if res.unavailable:
            lines.append(f"| {res.label} | {protocol} | n/a: {_short(res.unavailable)} | | | | |")
            continue
        load = (
            f"{_fmt(res.median('load_p50_ms'), 1)} / {_fmt(res.median('load_p99_ms'), 1)}"
            if res.median("load_p50_ms") is not None
            else "-"
        )
        lines.append(
            f"| {res.label} | {protocol} | {_fmt(res.median('p50_ms'), 3)} | {_fmt(res.median('p99_ms'), 3)} "
            f"| {_fmt(res.median('rps'), 0)} | {load} | {_fmt(res.median('batch_ms'), 1)} |"
        )
    lines += ["", *render_ratios(results, args)]
    by_key = {(r.peer, r.protocol): r for r in results if not r.unavailable and r.rounds}
    lines.append("")
    for (peer, protocol), res in by_key.items():
        if peer not in OWN_PEERS:
            continue
        p50, p99 = res.median("p50_ms"), res.median("p99_ms")
        lines.append(
            f"- {peer} {PROTOCOL_LABELS[protocol]}: p50 {p50:.2f} ms vs target {LATENCY_TARGET_P50_MS} ms "
            f"({'met' if p50 <= LATENCY_TARGET_P50_MS else 'MISSED'}), "
            f"p99 {p99:.2f} ms vs target {LATENCY_TARGET_P99_MS} ms "
            f"({'met' if p99 <= LATENCY_TARGET_P99_MS else 'MISSED'})"
        )
    return "\n".join(lines)


def render_ratios(results: list[PeerResult], args: argparse.Namespace) -> list[str]:
    """Each server row against MLServer measured in the same run, same protocol where it has it."""
    by_key = {(r.peer, r.protocol): r for r in results if not r.unavailable and r.rounds}
    if not any(peer == "mlserver" for peer, _ in by_key):
        return ["(MLServer not measured: no ratios)"]
    lines = [
        "Against MLServer in the same run (p50 and batch time: lower is better; "
        f"req/s at c={args.concurrency}: higher is better):",
        "",
        "| peer | protocol | against MLServer's | p50 | req/s | batch time |",
        "|---|---|---|---:|---:|---:|",
    ]
    for res in results:
        if res.peer in IN_PROCESS or res.peer == "mlserver" or (res.peer, res.protocol) not in by_key:
            continue
        base = by_key.get(("mlserver", res.protocol)) or by_key.get(("mlserver", "rest-json"))
        if base is None:
            continue

        def ratio(metric: str, res: PeerResult = res, base: PeerResult = base) -> str:
            mine, theirs = res.median(metric), base.median(metric)
            return "-" if not mine or not theirs else f"{mine / theirs:.2f}×"

        lines.append(
            f"| {res.label} | {PROTOCOL_LABELS[res.protocol]} | {PROTOCOL_LABELS[base.protocol]} "
            f"| {ratio('p50_ms')} | {ratio('rps')} | {ratio('batch_ms')} |"
        )
    return lines


def versions(venvs: Path, ghz: str | None) -> dict[str, dict[str, str]]:
    """Package versions in this venv and in each peer venv, and the load clients'."""
    out: dict[str, dict[str, str]] = {}
    wanted = ["scikit-learn", "numpy", "pandas", "joblib", "onnxruntime", "uvicorn", "grpcio", "protobuf",
              "fastapi", "mlserver", "mlserver-sklearn", "kserve"]  # fmt: skip
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
    if ghz:
        run = subprocess.run([ghz, "--version"], capture_output=True, text=True)
        out["ghz"] = {"version": (run.stdout or run.stderr).strip()}
    return out


# --------------------------------------------------------------------------- main


def _default_ghz() -> str | None:
    found = shutil.which("ghz")
    if found:
        return found
    built = ROOT / ".tools/bin/ghz"  # where make bench-serving builds it
    return str(built) if built.exists() else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; ``--quick`` replaces the counts with small ones."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs/phishing.yaml")
    parser.add_argument("--venvs", type=Path, default=ROOT / ".state/bench-venvs")
    parser.add_argument("--out", type=Path, default=ROOT / ".state/bench/serving.json")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--requests", type=int, default=1000, help="sequential single-row requests")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight for throughput")
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per throughput test")
    parser.add_argument("--batch-rows", type=int, default=1000)
    parser.add_argument("--batch-repeats", type=int, default=20)
    parser.add_argument("--start-timeout", type=float, default=60.0)
    parser.add_argument("--peers", default=",".join(HTTP_PEERS), help="comma-separated server peers")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS), help="comma-separated protocols")
    parser.add_argument("--ghz", default=_default_ghz(), help="ghz binary for gRPC load (default: found)")
    parser.add_argument("--quick", action="store_true", help=f"smoke test: {QUICK}")
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if args.ghz and not (Path(args.ghz).is_file() and os.access(args.ghz, os.X_OK)):
        print(f"note: --ghz {args.ghz} is not an executable file", flush=True)
        args.ghz = None
    args.venvs = args.venvs.resolve()  # servers start from other working directories
    args.peer_list = [p for p in args.peers.split(",") if p]
    args.protocol_list = [p for p in args.protocols.split(",") if p]
    unknown = set(args.peer_list) - set(HTTP_PEERS) | set(args.protocol_list) - set(PROTOCOLS)
    if unknown:
        parser.error(f"unknown peers or protocols: {sorted(unknown)}")
    return args


def run_rounds(
    fx: Fixture, factories: dict[str, PeerFactory], results: dict[tuple[str, str], PeerResult],
    args: argparse.Namespace, workdir: Path,
) -> None:  # fmt: skip
    """Every round: the in-process floors, then each server peer, orders alternated."""
    onnx, onnx_note = load_onnx_predictor(fx)
    if onnx is None:
        results[("in-process-onnx", "in-process")].unavailable = onnx_note
        print(f"note: in-process onnx skipped: {onnx_note}", flush=True)
    for rnd in range(args.rounds):
        order = [p for p in args.peer_list if p in factories]
        protocols = list(args.protocol_list)
        if rnd % 2:
            order.reverse()
            protocols.reverse()
        results[("in-process-sklearn", "in-process")].rounds.append(measure_in_process_sklearn(fx, args))
        if onnx is not None:
            results[("in-process-onnx", "in-process")].rounds.append(measure_in_process_onnx(onnx, fx, args))
        for name in order:
            wanted = [p for p in protocols if not results[(name, p)].unavailable]
            if not wanted:
                continue
            peer = factories[name](_free_port(), _free_port())  # new ports every round
            try:
                measured = measure_server(peer, fx, wanted, args, workdir)
            except BenchFailure:
                raise
            except (RuntimeError, OSError, ValueError) as exc:  # a peer failing must not stop the others
                reason = f"{type(exc).__name__}: {exc}"
                for protocol in wanted:
                    results[(name, protocol)].unavailable = reason
                print(f"round {rnd + 1}/{args.rounds} {name}: not available: {reason}", flush=True)
                continue
            for protocol, r in measured.items():
                tag = f"round {rnd + 1}/{args.rounds} {name} {PROTOCOL_LABELS[protocol]}"
                if isinstance(r, str):
                    results[(name, protocol)].unavailable = r
                    print(f"{tag}: n/a: {r}", flush=True)
                    continue
                results[(name, protocol)].rounds.append(r)
                print(
                    f"{tag}: p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, {r['rps']:.0f} req/s "
                    f"({r['client']}), batch {r['batch_ms']:.1f} ms (started in {r['startup_s']:.1f}s)",
                    flush=True,
                )


def keep_logs(workdir: Path, into: Path) -> None:
    """Copy the servers' logs out of the temporary directory (messages name them there)."""
    into.mkdir(parents=True, exist_ok=True)
    for log in workdir.rglob("*.log"):
        shutil.copyfile(log, into / log.name)
    print(f"server logs (serving-logs/): {into}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; exit status 2 when a server answered wrongly."""
    args = parse_args(argv)

    def on_signal(signum: int, _frame: object) -> None:
        stop_all()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    began = time.perf_counter()
    load_before = os.getloadavg()
    print(f"load average at the start: {' '.join(f'{v:.2f}' for v in load_before)} ({os.cpu_count()} CPUs)")
    if load_before[0] > 0.5:
        print("warning: other work shares the CPUs, expect noisy numbers", flush=True)
    if not args.ghz:
        print("note: ghz not found: gRPC load from a Python grpc.aio client (make bench-serving builds ghz)")
    results: dict[tuple[str, str], PeerResult] = {}
    for name in IN_PROCESS:
        results[(name, "in-process")] = PeerResult(name, "in-process", LABELS[name])
    for name in args.peer_list:
        for protocol in args.protocol_list:
            results[(name, protocol)] = PeerResult(name, protocol, LABELS[name])
    with tempfile.TemporaryDirectory(prefix="tabpipe-bench-serving-") as tmp:
        workdir = Path(tmp)
        try:
            print("fitting the model and writing the bundle ...", flush=True)
            fx = build_fixture(args.config, workdir, args.batch_rows)
            print(
                f"model: {fx.estimator} pipeline, {len(fx.columns)} input columns; request bodies "
                f"{len(fx.row_wire.json_body)} B JSON, {len(fx.row_wire.binary_body)} B binary, "
                f"{fx.row_wire.grpc.ByteSize()} B gRPC (1 row); {len(fx.batch_wire.json_body):,} B, "
                f"{len(fx.batch_wire.binary_body):,} B, {fx.batch_wire.grpc.ByteSize():,} B "
                f"({args.batch_rows} rows)",
                flush=True,
            )
            factories, missing = peer_servers(fx, workdir, args.venvs)
            for (name, _), res in results.items():
                if name in missing:
                    res.unavailable = missing[name]
            run_rounds(fx, factories, results, args, workdir)
        except BenchFailure as exc:
            print(f"\nFAILED, no figures: {exc}", file=sys.stderr, flush=True)
            return 2
        finally:
            stop_all()
            keep_logs(workdir, args.out.parent / "serving-logs")

    ordered = [results[k] for k in results if k[0] in IN_PROCESS]
    ordered += [results[(n, p)] for n in HTTP_PEERS for p in PROTOCOLS if (n, p) in results]
    table = render(ordered, args)
    env = versions(args.venvs, args.ghz)
    report = {
        "config": str(args.config),
        "model": fx.estimator,
        "rounds": args.rounds,
        "quick": args.quick,
        "settings": {
            k: getattr(args, k)
            for k in ("warmup", "requests", "concurrency", "duration", "batch_rows", "batch_repeats")
        },
        "load_clients": {
            "rest": "wrk -t1" if shutil.which("wrk") else "python-asyncio",
            "grpc": "ghz --cpus=1 --connections=1" if args.ghz else "python-grpc-aio",
        },
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "peers": {
            r.key: {
                "label": r.label,
                "protocol": r.protocol,
                "available": not r.unavailable,
                "reason": r.unavailable,
                "note": r.note,
                "median": {k: r.median(k) for k in METRICS},
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
        f"\nmedians over {args.rounds} round(s) ({args.config}, {fx.estimator}, {os.cpu_count()} CPUs, "
        f"load average {load_before[0]:.2f} at the start; load clients: REST "
        f"{report['load_clients']['rest']}, gRPC {report['load_clients']['grpc']}):\n"
    )
    print(table)
    print(f"\nversions: {json.dumps(env)}")
    print(f"JSON: {args.out} ({report['seconds']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
