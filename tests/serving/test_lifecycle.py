"""Hot swap under load, readiness while loading, and refusal of tampered bundles (real server)."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from serving_support import Bundle, oip_request

pytestmark = pytest.mark.slow

NAME = "phishing-e2e"


def test_hot_swap_under_concurrent_load(start_server: Any, bundles: dict[str, Bundle]) -> None:
    v1, v2 = bundles["phishing-v1"], bundles["phishing-v2"]
    server = start_server(v1.path)
    server.wait_ready()
    body = oip_request(v1.spec, v1.rows.head(3))
    url = f"{server.url}/v2/models/{NAME}/infer"
    results: list[tuple[float, float, int, str | None]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client_loop() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    response = client.post(url, json=body)
                    status, version = response.status_code, response.json().get("model_version")
                except httpx.HTTPError:
                    status, version = -1, None
                with lock:
                    results.append((sent, time.monotonic(), status, version))

    threads = [threading.Thread(target=client_loop) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    load_started = time.monotonic()
    response = httpx.post(
        f"{server.url}/v2/repository/models/{NAME}/load",
        json={"parameters": {"uri": str(v2.path)}},
        timeout=30,
        headers=server.admin,
    )
    load_returned = time.monotonic()
    time.sleep(1.5)
    stop.set()
    for thread in threads:
        thread.join()

    assert response.status_code == 200 and response.json() == {"name": NAME, "version": "2"}
    assert results and all(status == 200 for _, _, status, _ in results), {r[2] for r in results}
    assert {version for *_, version in results} == {"1", "2"}
    assert all(received >= load_started for _, received, _, version in results if version == "2")
    after = [version for sent, _, _, version in results if sent >= load_returned]
    assert after and set(after) == {"2"}
    assert httpx.get(f"{server.url}/v2/models/{NAME}/versions/2/ready").status_code == 200
    assert httpx.get(f"{server.url}/v2/models/{NAME}/versions/1/ready").status_code == 404


def test_live_answers_before_ready(start_server: Any, bundles: dict[str, Bundle]) -> None:
    server = start_server(bundles["phishing-v1"].path)
    server.wait_live()
    # The load runs in a thread after startup (importing scikit-learn alone takes about a second).
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 503
    assert httpx.get(f"{server.url}/v2/models/{NAME}").status_code == 503
    server.wait_ready()
    assert httpx.get(f"{server.url}/v2/models/{NAME}").status_code == 200


def test_tampered_bundle_is_never_served(start_server: Any, bundles: dict[str, Bundle]) -> None:
    tampered, good = bundles["phishing-tampered"], bundles["phishing-v1"]
    server = start_server(tampered.path)
    server.wait_live()
    with httpx.Client(base_url=server.url, timeout=30, headers=server.admin) as client:
        deadline = time.monotonic() + 30
        while client.get("/v2/repository/index").json()[0]["state"] == "LOADING":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        index = client.get("/v2/repository/index").json()[0]
        assert index["state"] == "UNAVAILABLE" and "sha256" in index["reason"]
        assert client.get("/v2/health/ready").status_code == 503
        response = client.post(f"/v2/models/{NAME}/infer", json=oip_request(good.spec, good.rows.head(1)))
        assert response.status_code == 503

        # The operator fixes it with a good bundle; a tampered one is refused while serving.
        assert (
            client.post(
                f"/v2/repository/models/{NAME}/load", json={"parameters": {"uri": str(good.path)}}
            ).status_code
            == 200
        )
        assert client.get("/v2/health/ready").status_code == 200
        response = client.post(
            f"/v2/repository/models/{NAME}/load", json={"parameters": {"uri": str(tampered.path)}}
        )
        assert response.status_code == 400 and "sha256" in response.json()["error"]
        assert client.get(f"/v2/models/{NAME}").json()["versions"] == ["1"]

        # The load endpoint only reads bundles under the bundle root, and only of this model.
        response = client.post(f"/v2/repository/models/{NAME}/load", json={"parameters": {"uri": "/etc"}})
        assert response.status_code == 400 and "bundle root" in response.json()["error"]
        housing = str(bundles["housing-v1"].path)
        response = client.post(f"/v2/repository/models/{NAME}/load", json={"parameters": {"uri": housing}})
        assert response.status_code == 400 and "housing-price" in response.json()["error"]
        assert client.get(f"/v2/models/{NAME}").json()["versions"] == ["1"]
        assert 'tabpipe_serving_model_loads_total{outcome="failed"}' in client.get("/metrics").text
