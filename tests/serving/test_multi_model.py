"""Several models on one endpoint, by name: loads, swaps and unloads of one never touch another.

Also the bounds around loads and request bodies (429/503 with Retry-After), and the
clients that must find their own model among several (``tabpipe predict``, the launcher).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving_support import HOUSING_CONFIG, PHISHING_CONFIG, Bundle, oip_request, tabpipe_predict

PHISHING = "phishing-e2e"
HOUSING = "housing-price"

pytestmark = pytest.mark.slow


def _infer(client: httpx.Client, bundle: Bundle, name: str, rows: int = 3) -> httpx.Response:
    return client.post(f"/v2/models/{name}/infer", json=oip_request(bundle.spec, bundle.rows.head(rows)))


def _index(client: httpx.Client, **body: Any) -> dict[str, dict[str, Any]]:
    answer = client.post("/v2/repository/index", json=body) if body else client.get("/v2/repository/index")
    assert answer.status_code == 200, answer.text
    return {entry["name"]: entry for entry in answer.json()}


def test_two_startup_models_each_answer_by_name_and_unloading_one_keeps_the_other(
    start_server: Any, bundles: dict[str, Bundle]
) -> None:
    phishing, housing = bundles["phishing-v1"], bundles["housing-v1"]
    server = start_server(phishing.path, "--model", str(housing.path))
    server.wait_ready()
    with httpx.Client(base_url=server.url, timeout=30, headers=server.admin) as client:
        answer = _infer(client, phishing, PHISHING).json()
        assert answer["model_name"] == PHISHING and len(answer["outputs"][0]["data"]) == 3
        assert set(answer["outputs"][0]["data"]) <= set(phishing.spec.classes)
        answer = _infer(client, housing, HOUSING).json()
        assert answer["model_name"] == HOUSING and answer["outputs"][0]["datatype"] == "FP64"
        assert client.get(f"/v2/models/{HOUSING}").json()["parameters"]["task"] == "regression"
        index = _index(client)
        assert {name: (e["state"], e["version"]) for name, e in index.items()} == {
            PHISHING: ("READY", "1"),
            HOUSING: ("READY", "1"),
        }
        assert index[HOUSING]["source"] == str(housing.path)
        missing = _infer(client, phishing, "nope")
        assert missing.status_code == 404 and "'housing-price', 'phishing-e2e'" in missing.json()["error"]
        metrics = client.get("/metrics").text
        for name in (PHISHING, HOUSING):
            pattern = rf'tabpipe_serving_model_loaded{{model="{name}",predictor="\w+",version="1"}} 1.0'
            assert re.search(pattern, metrics), metrics

        assert client.post(f"/v2/repository/models/{HOUSING}/unload").status_code == 200
        assert _infer(client, housing, HOUSING).status_code == 404
        assert _infer(client, phishing, PHISHING).status_code == 200
        assert client.get("/v2/health/ready").status_code == 200  # nothing it still wants is missing
        assert list(_index(client)) == [PHISHING]
        # A load without a URI brings the unloaded model back from where it came.
        reloaded = client.post(f"/v2/repository/models/{HOUSING}/load")
        assert reloaded.status_code == 200 and reloaded.json() == {"name": HOUSING, "version": "1"}
        assert _infer(client, housing, HOUSING).status_code == 200
        # Unloading the last model leaves nothing to serve: not ready.
        for name in (PHISHING, HOUSING):
            assert client.post(f"/v2/repository/models/{name}/unload").status_code == 200
        assert client.get("/v2/health/ready").status_code == 503


def test_loading_and_swapping_one_model_never_interrupts_another(
    start_server: Any, bundles: dict[str, Bundle]
) -> None:
    phishing, housing = bundles["phishing-v1"], bundles["housing-v1"]
    server = start_server(phishing.path, "--bundle-root", str(housing.path.parent))
    server.wait_ready()
    statuses: list[int] = []
    stop = threading.Event()

    def keep_asking() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as asker:
            while not stop.is_set():
                statuses.append(_infer(asker, phishing, PHISHING, rows=1).status_code)

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        with httpx.Client(base_url=server.url, timeout=60, headers=server.admin) as client:
            added = client.post(
                f"/v2/repository/models/{HOUSING}/load", json={"parameters": {"uri": str(housing.path)}}
            )
            assert added.status_code == 200, added.text
            swapped = client.post(
                f"/v2/repository/models/{HOUSING}/load",
                json={"parameters": {"uri": str(bundles["phishing-v2"].path)}},
            )
            # A bundle of another model is refused under this name; both models serve on.
            assert swapped.status_code == 400 and PHISHING in swapped.json()["error"]
            v2 = client.post(
                f"/v2/repository/models/{PHISHING}/load",
                json={"parameters": {"uri": str(bundles["phishing-v2"].path)}},
            )
            assert v2.status_code == 200 and v2.json()["version"] == "2"
            assert _infer(client, housing, HOUSING).json()["model_version"] == "1"
            assert _infer(client, phishing, PHISHING).json()["model_version"] == "2"
            index = _index(client, ready=True)
            assert {name: e["version"] for name, e in index.items()} == {PHISHING: "2", HOUSING: "1"}
    finally:
        stop.set()
        asker.join()
    assert statuses and set(statuses) == {200}, statuses


def test_readiness_waits_for_every_startup_model_and_a_fix_makes_it_ready(
    start_server: Any, bundles: dict[str, Bundle]
) -> None:
    tampered, good, housing = bundles["phishing-tampered"], bundles["phishing-v1"], bundles["housing-v1"]
    server = start_server(housing.path, "--model", str(tampered.path))
    server.wait_live()
    with httpx.Client(base_url=server.url, timeout=30, headers=server.admin) as client:
        deadline = time.monotonic() + 60
        while any(e["state"] == "LOADING" for e in _index(client).values()):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        index = _index(client)
        assert index[HOUSING]["state"] == "READY"
        assert index[PHISHING]["state"] == "UNAVAILABLE" and "sha256" in index[PHISHING]["reason"]
        assert client.get("/v2/health/ready").status_code == 503
        assert _infer(client, housing, HOUSING).status_code == 200
        refused = _infer(client, good, PHISHING)
        assert refused.status_code == 503 and "sha256" in refused.json()["error"]
        assert list(_index(client, ready=True)) == [HOUSING]

        fixed = client.post(
            f"/v2/repository/models/{PHISHING}/load", json={"parameters": {"uri": str(good.path)}}
        )
        assert fixed.status_code == 200, fixed.text
        assert client.get("/v2/health/ready").status_code == 200


def test_loads_past_the_rate_limit_answer_429_and_inference_goes_on(
    start_server: Any, bundles: dict[str, Bundle]
) -> None:
    phishing = bundles["phishing-v1"]
    server = start_server(phishing.path, "--max-loads-per-minute", "2")
    server.wait_ready()
    with httpx.Client(base_url=server.url, timeout=60, headers=server.admin) as client:
        # The startup load does not count: it is the operator's, not a client's.
        for _ in range(2):
            assert client.post(f"/v2/repository/models/{PHISHING}/load").status_code == 200
        refused = client.post(f"/v2/repository/models/{PHISHING}/load")
        assert refused.status_code == 429, refused.text
        assert "at most 2 loads a minute" in refused.json()["error"]
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert _infer(client, phishing, PHISHING).status_code == 200
        assert 'tabpipe_serving_model_loads_total{outcome="ok"} 3.0' in client.get("/metrics").text


def _open_request(port: int, path: str, length: int, sent: int = 1) -> socket.socket:
    """Send a request's headers and ``sent`` bytes of its body, and keep the connection open."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )
    sock.sendall(head.encode() + b"{" + b" " * (sent - 1))
    return sock


def test_request_bytes_in_flight_are_bounded_with_503_and_retry_after(
    start_server: Any, bundles: dict[str, Bundle]
) -> None:
    phishing = bundles["phishing-v1"]
    server = start_server(
        phishing.path, "--max-body-bytes", "1000000", "--max-inflight-bytes", "1500000", "--max-inflight", "8"
    )
    server.wait_ready()
    path = f"/v2/models/{PHISHING}/infer"
    # 900 kB of the 1.5 MB in flight, arrived, the last byte still awaited.
    held = _open_request(server.port, path, 900_001, sent=900_000)
    try:
        time.sleep(1.0)  # the server has read and counted what arrived
        body = json.dumps(oip_request(phishing.spec, phishing.rows.head(1))).encode()
        padded = body + b" " * (700_000 - len(body))  # whitespace is valid JSON padding
        with httpx.Client(base_url=server.url, timeout=30) as client:
            refused = client.post(path, content=padded, headers={"Content-Type": "application/json"})
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "1" and "limit 1500000" in refused.json()["error"]
            # A small request still fits beside the held one.
            assert (
                client.post(path, content=body, headers={"Content-Type": "application/json"}).status_code
                == 200
            )
    finally:
        held.close()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        deadline = time.monotonic() + 10
        while (
            answer := client.post(path, content=padded, headers={"Content-Type": "application/json"})
        ).status_code == 503:
            assert time.monotonic() < deadline, "the held request's bytes were never released"
            time.sleep(0.1)
        assert answer.status_code == 200, answer.text


def test_grpc_serves_each_model_by_name(start_server: Any, bundles: dict[str, Bundle]) -> None:
    # tritonclient's own stubs: the same proto package as ours, so both cannot load in one process.
    import tritonclient.grpc as triton
    from serving_support import TEST_TOKEN, free_port
    from tritonclient.utils import InferenceServerException

    phishing, housing = bundles["phishing-v1"], bundles["housing-v1"]
    port = free_port()
    server = start_server(phishing.path, "--model", str(housing.path), "--grpc-port", str(port))
    server.wait_ready()
    client = triton.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        for name in (PHISHING, HOUSING):
            assert client.is_model_ready(name)
            assert client.get_model_metadata(name).name == name
        assert not client.is_model_ready("nope")
        index = client.get_model_repository_index(headers={"authorization": f"Bearer {TEST_TOKEN}"})
        assert sorted((m.name, m.version, m.state) for m in index.models) == [
            (HOUSING, "1", "READY"),
            (PHISHING, "1", "READY"),
        ]
        with pytest.raises(InferenceServerException) as error:
            client.get_model_metadata("nope")
        assert error.value.status() == "StatusCode.NOT_FOUND"
    finally:
        client.close()


def test_tabpipe_predict_finds_its_own_model_among_several(
    start_server: Any, bundles: dict[str, Bundle]
) -> None:
    server = start_server(bundles["phishing-v1"].path, "--model", str(bundles["housing-v1"].path))
    server.wait_ready()
    for config, name in ((PHISHING_CONFIG, PHISHING), (HOUSING_CONFIG, HOUSING)):
        done = tabpipe_predict(config, server.url)
        assert done.returncode == 0, done.stderr + done.stdout
        assert json.loads(done.stdout)["model_name"] == name


def test_the_launcher_restarts_the_endpoint_with_every_model_run_against_it(tmp_path: Path) -> None:
    from serving_support import free_port

    from tabpipe.mlflow_server import stop_server
    from tabpipe.serving.launcher import ensure_serving, remember_model

    state = tmp_path / "serving"
    remember_model(state, "first-model")
    url = f"http://127.0.0.1:{free_port()}"
    # No MLflow at port 9: the server comes up live, not ready, which is enough to read its command.
    handle = ensure_serving(url, "second-model", "http://127.0.0.1:9", state)
    try:
        argv = Path(f"/proc/{handle.pid}/cmdline").read_bytes().split(b"\0")
        models = [argv[i + 1].decode() for i, arg in enumerate(argv) if arg == b"--model"]
        assert models == ["models:/first-model@champion", "models:/second-model@champion"]
        environ = Path(f"/proc/{handle.pid}/environ").read_bytes().split(b"\0")
        assert b"PYTHONMALLOC=malloc" in environ  # memory returns to baseline after large requests
        log_dir = argv[argv.index(b"--inference-log") + 1].decode()
        assert log_dir == str((state / "inference-log").resolve())
        # Only a successful deploy records a name: one that never deployed has no champion to wait for.
        assert (state / "models").read_text() == "first-model\n"
        again = ensure_serving(url, "third-model", "http://127.0.0.1:9", state)
        assert again.pid == handle.pid
        remember_model(state, "third-model")  # what tabpipe run does after the deploy succeeded
        remember_model(state, "first-model")
        assert (state / "models").read_text() == "first-model\nthird-model\n"
    finally:
        stop_server(handle)
