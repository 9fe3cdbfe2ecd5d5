"""Bounded resources on a real server: in-flight infer requests, and one load at a time."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from serving_support import Bundle, HangingLoad, oip_request, silent_tracking_server

HOUSING = "housing-price"


def test_inflight_limit_answers_503_with_retry_after(start_server: Any, bundles: dict[str, Bundle]) -> None:
    bundle = bundles["housing-v1"]
    server = start_server(bundle.path, "--max-inflight", "1")
    server.wait_ready()
    rows = bundle.rows.sample(3000, replace=True, random_state=0)
    body = oip_request(bundle.spec, rows)  # large enough to be decoded and predicted off the event loop
    url = f"{server.url}/v2/models/{HOUSING}/infer"
    answers: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(timeout=60) as http:
            for _ in range(6):
                response = http.post(url, json=body)
                with lock:
                    answers.append((response.status_code, response.headers.get("retry-after")))

    threads = [threading.Thread(target=client) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = {status for status, _ in answers}
    assert statuses == {200, 503}, answers
    assert all(retry == "1" for status, retry in answers if status == 503)
    assert httpx.post(url, json=oip_request(bundle.spec, rows.head(2)), timeout=30).status_code == 200
    assert 'status="503"' in httpx.get(f"{server.url}/metrics").text


def test_a_second_load_while_one_runs_is_429(
    start_server: Any, bundles: dict[str, Bundle], monkeypatch: pytest.MonkeyPatch
) -> None:
    silent, tracking = silent_tracking_server(monkeypatch, timeout=20)
    server = start_server(bundles["housing-v1"].path, "--tracking-uri", tracking)
    server.wait_ready()
    with HangingLoad(server, HOUSING, timeout=90, release=silent.close) as hanging:
        second = httpx.post(
            f"{server.url}/v2/repository/models/{HOUSING}/load", headers=server.admin, timeout=30
        )
        assert second.status_code == 429, second.text
        assert second.headers["retry-after"] == "5" and "in progress" in second.json()["error"]
        # Inference goes on meanwhile, on the model already served.
        infer = httpx.post(
            f"{server.url}/v2/models/{HOUSING}/infer",
            json=oip_request(bundles["housing-v1"].spec, bundles["housing-v1"].rows.head(2)),
            timeout=30,
        )
        assert infer.status_code == 200
    statuses = hanging.statuses
    assert statuses and 400 <= statuses[0] < 500, statuses  # the hung load failed cleanly, a client error
