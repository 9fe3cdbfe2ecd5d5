"""The repository extension needs the operator's bearer token; inference and health stay open by default.

Real server processes over real HTTP; the token reaches them as the launcher hands it over
(the environment, or a 0600 file), never on the command line.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving_support import TEST_TOKEN, Bundle, oip_request

from tabpipe.errors import ConfigError, ServiceError

NAME = "phishing-e2e"
REPOSITORY_CALLS = [
    ("GET", "/v2/repository/index"),
    ("POST", "/v2/repository/index"),
    ("POST", f"/v2/repository/models/{NAME}/load"),
    ("POST", f"/v2/repository/models/{NAME}/unload"),
]


def test_without_a_token_the_repository_extension_is_disabled(
    start_server: Any, bundles: dict[str, Bundle]
) -> None:
    bundle = bundles["phishing-v1"]
    server = start_server(bundle.path, token=None)
    server.wait_ready()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for method, path in REPOSITORY_CALLS:
            # Before: unload answered 200 and the next infer 503; load took any URI under the root.
            answer = client.request(method, path, headers={"Authorization": "Bearer anything-at-all-here"})
            assert answer.status_code == 403, (path, answer.text)
            error = answer.json()["error"]
            assert "disabled" in error and "TABPIPE_SERVING_ADMIN_TOKEN" in error
        # Still serving, open to anyone.
        assert client.get("/v2/health/ready").status_code == 200
        body = oip_request(bundle.spec, bundle.rows.head(2))
        assert client.post(f"/v2/models/{NAME}/infer", json=body).status_code == 200
    assert "repository endpoints are disabled" in server.log()


def test_the_token_guards_load_unload_and_index(start_server: Any, bundles: dict[str, Bundle]) -> None:
    v1, v2 = bundles["phishing-v1"], bundles["phishing-v2"]
    server = start_server(v1.path)
    server.wait_ready()
    body = oip_request(v1.spec, v1.rows.head(3))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token-of-some-length"},
            {"Authorization": f"Basic {TEST_TOKEN}"},
            {"Authorization": "Bearer"},
            {"Authorization": f"Bearer {TEST_TOKEN}x"},
            {"Authorization": f"Bearer {TEST_TOKEN[:-1]}"},
        ):
            for method, path in REPOSITORY_CALLS:
                load = {"parameters": {"uri": str(v2.path)}}
                answer = client.request(method, path, headers=headers, json=load)
                assert answer.status_code == 401, (headers, path, answer.text)
                assert answer.headers["www-authenticate"].startswith("Bearer")
                assert TEST_TOKEN not in answer.text
        # Nothing changed: still version 1, ready, inference and health open without a token.
        assert client.get(f"/v2/models/{NAME}").json()["versions"] == ["1"]
        assert client.post(f"/v2/models/{NAME}/infer", json=body).json()["model_version"] == "1"
        assert client.get("/v2/health/live").status_code == 200

        admin = {"Authorization": f"bearer  {TEST_TOKEN}"}  # the scheme is case-insensitive
        assert client.get("/v2/repository/index", headers=admin).json()[0]["version"] == "1"
        loaded = client.post(
            f"/v2/repository/models/{NAME}/load", headers=admin, json={"parameters": {"uri": str(v2.path)}}
        )
        assert loaded.status_code == 200 and loaded.json()["version"] == "2"
        assert client.post(f"/v2/models/{NAME}/infer", json=body).json()["model_version"] == "2"
        assert client.post(f"/v2/repository/models/{NAME}/unload", headers=admin).status_code == 200
        assert client.get("/v2/health/ready").status_code == 503
        assert 'status="401"' in client.get("/metrics").text
    assert TEST_TOKEN not in server.log()


def test_token_required_for_inference_when_asked(start_server: Any, bundles: dict[str, Bundle]) -> None:
    bundle = bundles["housing-v1"]
    server = start_server(bundle.path, "--require-token-for-inference")
    server.wait_ready()
    body = oip_request(bundle.spec, bundle.rows.head(2))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.post("/v2/models/housing-price/infer", json=body).status_code == 401
        assert client.get("/v2/models/housing-price").status_code == 401
        assert client.get("/v2/models/housing-price/ready").status_code == 401
        ok = client.post("/v2/models/housing-price/infer", json=body, headers=server.admin)
        assert ok.status_code == 200 and len(ok.json()["outputs"][0]["data"]) == 2
        # Probes and scraping stay open: kubelet and Prometheus hold no token.
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/health/ready").status_code == 200
        assert client.get("/metrics").status_code == 200


def test_require_for_inference_without_a_token_refuses_to_start(
    start_server: Any, bundles: dict[str, Bundle]
) -> None:
    server = start_server(bundles["housing-v1"].path, "--require-token-for-inference", token=None)
    assert server.proc.wait(timeout=60) != 0
    assert "--require-token-for-inference needs a token" in server.log()


def test_token_file_is_read_and_rotated_without_restart(
    start_server: Any, bundles: dict[str, Bundle], tmp_path: Path
) -> None:
    secret = tmp_path / "secret" / "token"  # as a Kubernetes Secret volume mounts it
    secret.parent.mkdir()
    first, second = "first-token-0123456789abcdef", "second-token-0123456789abcdef"
    secret.write_text(first + "\n")
    server = start_server(bundles["housing-v1"].path, "--admin-token-file", str(secret), token=None)
    server.wait_ready()

    def index(client: httpx.Client, token: str) -> int:
        return client.get("/v2/repository/index", headers={"Authorization": f"Bearer {token}"}).status_code

    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert index(client, first) == 200
        secret.write_text(second + "\n")
        os.utime(secret, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))  # a visibly new version
        deadline = time.monotonic() + 10
        while index(client, second) != 200:
            assert time.monotonic() < deadline, "the rotated token was never picked up"
            time.sleep(0.2)
        assert index(client, first) == 401
    assert first not in server.log() and second not in server.log()


def test_weak_or_missing_tokens_are_refused_at_configuration(tmp_path: Path) -> None:
    from tabpipe.serving.auth import AdminToken, AuthError

    with pytest.raises(ConfigError, match="at least 16"):
        AdminToken(env={"TABPIPE_SERVING_ADMIN_TOKEN": "short"})
    with pytest.raises(ConfigError, match="cannot read"):
        AdminToken(tmp_path / "absent")
    token = AdminToken(env={"TABPIPE_SERVING_ADMIN_TOKEN": TEST_TOKEN})
    assert TEST_TOKEN not in repr(token)
    token.check(f"Bearer {TEST_TOKEN}")
    with pytest.raises(AuthError) as err:
        token.check("Bearer \udcff" + TEST_TOKEN)  # undecodable bytes in a header: 401, not a crash
    assert err.value.status == 401
    with pytest.raises(AuthError) as err:
        AdminToken(env={}).check(f"Bearer {TEST_TOKEN}")
    assert err.value.status == 403


def test_launcher_hands_the_token_over_by_file_and_environment_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving_support import free_port

    from tabpipe.deploy import served_model
    from tabpipe.mlflow_server import stop_server
    from tabpipe.serving.launcher import TOKEN_FILE_ENV, ensure_serving, token_file

    monkeypatch.delenv("TABPIPE_SERVING_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv(TOKEN_FILE_ENV, raising=False)
    url = f"http://127.0.0.1:{free_port()}"
    state = tmp_path / "serving"
    # No MLflow at port 9: the server comes up live, not ready (as on a first run), which is enough here.
    handle = ensure_serving(url, "m", "http://127.0.0.1:9", state)
    try:
        path = token_file(state)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        token = path.read_text().strip()
        assert len(token) >= 32
        cmdline = Path(f"/proc/{handle.pid}/cmdline").read_bytes()
        assert token.encode() not in cmdline and b"python" in cmdline
        with pytest.raises(ServiceError, match="need the server's admin token; no token was sent"):
            served_model(url, "m")
        monkeypatch.setenv(TOKEN_FILE_ENV, str(path))  # what tabpipe run hands the deploy task
        assert served_model(url, "m") is None  # answered: nothing is READY yet
        # A second run finds our server and its token (no new token, no second server).
        again = ensure_serving(url, "m", "http://127.0.0.1:9", state)
        assert again.pid == handle.pid and path.read_text().strip() == token
    finally:
        stop_server(handle)
    assert token not in (state / "server.log").read_text()
    assert sys.executable  # the server ran under this interpreter
