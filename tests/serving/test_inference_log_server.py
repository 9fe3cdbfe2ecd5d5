"""The server's inference log: what REST JSON, REST binary and gRPC requests served is on disk as Parquet."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from serving_support import REPO, Bundle, free_port, oip_request

PHISHING = "phishing-e2e"

pytestmark = pytest.mark.slow


def test_served_requests_are_logged_with_inputs_outputs_and_version(
    start_server: Any, bundles: dict[str, Bundle], tmp_path: Path
) -> None:
    import tritonclient.grpc as triton_grpc
    import tritonclient.http as triton_http

    from tabpipe.serving.inference_log import read_inference_log

    bundle = bundles["phishing-v1"]
    rows = bundle.rows.head(9).reset_index(drop=True)
    location = tmp_path / "inference-log"
    grpc_port = free_port()
    server = start_server(
        bundle.path,
        "--inference-log",
        str(location),
        "--grpc-port",
        str(grpc_port),
        "--max-loads-per-minute",
        "5",
    )
    server.wait_ready()
    answers: dict[str, list[Any]] = {}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for start in (0, 3):  # REST JSON, 3 rows each, with ids
            body = oip_request(bundle.spec, rows.iloc[start : start + 3], request_id=f"json-{start}")
            answer = client.post(f"/v2/models/{PHISHING}/infer", json=body)
            assert answer.status_code == 200, answer.text
            answers[f"json-{start}"] = answer.json()["outputs"][0]["data"]
        metrics = client.get("/metrics").text
        assert "tabpipe_serving_inference_log_queue_depth" in metrics
        # A refused request is not logged: nothing was served.
        bad = oip_request(bundle.spec, rows.head(1))
        bad["inputs"][0]["data"] = ["not a number"]
        assert client.post(f"/v2/models/{PHISHING}/infer", json=bad).status_code in (400, 422)

    def inputs(module: Any, frame: pd.DataFrame) -> list[Any]:
        tensors = []
        for column in bundle.spec.inputs:
            values = frame[column.name].to_numpy()
            datatype = "INT64" if values.dtype.kind in "iu" else "FP64"
            tensor = module.InferInput(column.name, [len(values)], datatype)
            tensor.set_data_from_numpy(values.astype(np.int64 if datatype == "INT64" else np.float64))
            tensors.append(tensor)
        return tensors

    # REST binary (tritonclient's default), then gRPC: rows 6 and 7, 8.
    http = triton_http.InferenceServerClient(server.url.removeprefix("http://"))
    result = http.infer(PHISHING, inputs(triton_http, rows.iloc[6:7]), request_id="binary-6")
    answers["binary-6"] = result.as_numpy("predict").tolist()
    channel = triton_grpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    result = channel.infer(PHISHING, inputs(triton_grpc, rows.iloc[7:9]), request_id="grpc-7")
    answers["grpc-7"] = result.as_numpy("predict").tolist()
    channel.close()
    http.close()

    server.stop()  # SIGTERM: the server writes what is queued before it exits
    assert "Application shutdown complete" in server.log(), server.log()[-3000:]
    logged = read_inference_log(str(location))
    assert len(logged) == 9
    assert set(logged["model"]) == {PHISHING} and set(logged["model_version"]) == {"1"}
    assert str(logged["timestamp"].dtype) == "datetime64[us, UTC]"
    assert (
        logged["timestamp"]
        .between(pd.Timestamp.now("UTC") - pd.Timedelta(minutes=5), pd.Timestamp.now("UTC"))
        .all()
    )
    by_id = {request_id: group for request_id, group in logged.groupby("request_id", sort=False)}
    assert sorted(by_id) == ["binary-6", "grpc-7", "json-0", "json-3"]
    offsets = {"json-0": 0, "json-3": 3, "binary-6": 6, "grpc-7": 7}
    for request_id, group in by_id.items():
        start = offsets[request_id]
        sent = rows.iloc[start : start + len(group)]
        for column in bundle.spec.inputs:
            np.testing.assert_allclose(
                group[f"input.{column.name}"].to_numpy(dtype=float), sent[column.name].to_numpy(dtype=float)
            )
        assert [str(v) for v in group["output.predict"]] == [str(v) for v in answers[request_id]]
        probabilities = np.stack(group["output.probabilities"].to_numpy())
        assert probabilities.shape == (len(group), len(bundle.spec.classes))
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)


def test_bad_inference_log_options_stop_the_server_with_the_option_named(
    bundles: dict[str, Bundle], tmp_path: Path
) -> None:
    bundle = bundles["phishing-v1"]
    for option, value, named in (
        ("--inference-log-sample-rate", "0", "sample_rate"),
        ("--inference-log-sample-rate", "1.5", "sample_rate"),
        ("--inference-log-queue", "0", "queue_size"),
    ):
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "tabpipe.serving", "--model", str(bundle.path), "--port", str(free_port()),
             "--inference-log", str(tmp_path / "log"), option, value],
            capture_output=True, text=True, cwd=REPO, timeout=60,
        )  # fmt: skip
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stderr.startswith("error: --inference-log:") and named in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and time.monotonic() - started < 30
    assert not (tmp_path / "log").exists()  # nothing created for a server that never started
