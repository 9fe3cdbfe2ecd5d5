"""Hostile bodies hold nothing, and a server recovers from failed loads without a restart."""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving_support import Bundle, HangingLoad, oip_request, read_http_response, silent_tracking_server

PHISHING = "phishing-e2e"
HOUSING = "housing-price"

pytestmark = pytest.mark.slow


def _declare(port: int, path: str, length: int) -> socket.socket:
    """Send headers declaring ``length`` body bytes, and none of them."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n"
    sock.sendall(head.encode())
    return sock


def test_bodies_declared_but_never_sent_hold_nothing_and_time_out(
    start_server: Any, bundles: dict[str, Bundle]
) -> None:
    phishing = bundles["phishing-v1"]
    server = start_server(phishing.path, "--body-read-seconds", "3")
    server.wait_ready()
    path = f"/v2/models/{PHISHING}/infer"
    # Before: four of these filled the 40 MiB in-flight bound, and every other request got 503.
    silent = [_declare(server.port, path, 10 * 1024 * 1024) for _ in range(6)]
    try:
        time.sleep(0.5)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            answer = client.post(path, json=oip_request(phishing.spec, phishing.rows.head(2)))
            assert answer.status_code == 200, answer.text
        silent[0].settimeout(15)
        reply = read_http_response(silent[0]).decode()  # head and body may come in separate segments
        assert reply.startswith("HTTP/1.1 408"), reply
        assert "did not arrive within 3 s" in reply
    finally:
        for sock in silent:
            sock.close()


def test_a_body_nested_deeper_than_python_walks_is_400(start_server: Any, bundles: dict[str, Bundle]) -> None:
    phishing = bundles["phishing-v1"]
    server = start_server(phishing.path)
    server.wait_ready()
    body = json.dumps(oip_request(phishing.spec, phishing.rows.head(1)))
    nested = "[" * 995 + "]" * 995
    body = body.replace('"content_type": "pd"', f'"content_type": {nested}')
    with httpx.Client(base_url=server.url, timeout=30) as client:
        answer = client.post(f"/v2/models/{PHISHING}/infer", content=body)
        assert answer.status_code == 400, answer.text
        assert (
            client.post(f"/v2/models/{PHISHING}/infer", content=body.replace(nested, '"pd"')).status_code
            == 200
        )


def test_a_failed_startup_load_is_retried_until_the_bundle_is_there(
    start_server: Any, bundles: dict[str, Bundle], tmp_path: Path
) -> None:
    late = tmp_path / "late-bundle"  # not there yet: a store that is down at startup
    server = start_server(bundles["housing-v1"].path, "--model", str(late))
    server.wait_live()
    with httpx.Client(base_url=server.url, timeout=30, headers=server.admin) as client:
        deadline = time.monotonic() + 30
        while (index := {e["name"]: e for e in client.get("/v2/repository/index").json()}).get(
            str(late), {}
        ).get("state") != "UNAVAILABLE":
            assert time.monotonic() < deadline, index
            time.sleep(0.1)
        assert client.get("/v2/health/ready").status_code == 503
        shutil.copytree(bundles["phishing-v1"].path, late)
        deadline = time.monotonic() + 30  # the first retry comes 5 s after the failure
        while client.get("/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline, client.get("/v2/repository/index").json()
            time.sleep(0.2)
        names = {e["name"]: e["state"] for e in client.get("/v2/repository/index").json()}
        assert names == {HOUSING: "READY", PHISHING: "READY"}


def test_a_wanted_model_that_failed_to_load_can_be_unloaded(
    start_server: Any, bundles: dict[str, Bundle]
) -> None:
    server = start_server(bundles["housing-v1"].path, "--model", str(bundles["phishing-tampered"].path))
    server.wait_live()
    with httpx.Client(base_url=server.url, timeout=30, headers=server.admin) as client:
        deadline = time.monotonic() + 30
        while client.get("/v2/repository/index").json()[-1]["state"] != "UNAVAILABLE":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert client.get("/v2/health/ready").status_code == 503
        # Before: 404 "not loaded", and the server stayed unready until restarted.
        assert client.post(f"/v2/repository/models/{PHISHING}/unload").status_code == 200
        assert client.get("/v2/health/ready").status_code == 200
        assert [e["name"] for e in client.get("/v2/repository/index").json()] == [HOUSING]
        assert client.post(f"/v2/repository/models/{PHISHING}/unload").status_code == 404


def test_the_deploy_client_waits_out_a_load_in_progress(
    start_server: Any, bundles: dict[str, Bundle], monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving_support import TEST_TOKEN

    from tabpipe.deploy import load

    silent, tracking = silent_tracking_server(monkeypatch, timeout=8)  # a registry load hangs 8 s
    housing = bundles["housing-v1"]
    server = start_server(housing.path, "--tracking-uri", tracking)
    server.wait_ready()
    monkeypatch.setenv("TABPIPE_SERVING_ADMIN_TOKEN", TEST_TOKEN)

    with HangingLoad(server, HOUSING, timeout=60, release=silent.close):
        started = time.monotonic()
        # Refused with 429 while the hanging load holds the lock; retried after Retry-After.
        assert load(server.url, HOUSING, str(housing.path)) == "1"
        assert time.monotonic() - started >= 1
