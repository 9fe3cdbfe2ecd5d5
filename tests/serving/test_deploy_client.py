"""The deploy client (tabpipe.deploy) against a real server: index, smoke test, unload for rollback."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from serving_support import TEST_TOKEN

from tabpipe.deploy import DeployError, DeployTarget, parse_target, served_model, smoke_test
from tabpipe.errors import TabpipeError


@pytest.mark.slow
def test_smoke_test_and_unload_against_a_real_server(
    bundles: dict[str, Any], start_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = bundles["phishing-v1"]
    server = start_server(bundle.path)
    server.wait_ready()
    monkeypatch.setenv("TABPIPE_SERVING_ADMIN_TOKEN", TEST_TOKEN)  # what the deploy client sends
    served = served_model(server.url, bundle.spec.model_name)
    assert served is not None and served.name == bundle.spec.model_name and served.version == "1"
    assert served.source  # where it came from, so a deployer can restore it

    smoke_test(server.url, bundle.spec, "1", bundle.rows.head(20))
    with pytest.raises(DeployError, match="answered HTTP 404"):
        smoke_test(server.url, bundle.spec, "9", bundle.rows.head(20))

    # Rolling back a first deploy unloads the model: readiness turns false, nothing is served.
    answer = httpx.post(
        f"{server.url}/v2/repository/models/{bundle.spec.model_name}/unload", timeout=10, headers=server.admin
    )
    assert answer.status_code == 200
    assert httpx.get(f"{server.url}/v2/health/ready", timeout=5).status_code == 503
    assert served_model(server.url, bundle.spec.model_name) is None
    missing = httpx.post(f"{server.url}/v2/repository/models/nope/unload", timeout=10, headers=server.admin)
    assert missing.status_code == 404


def test_deploy_target_is_validated() -> None:
    assert parse_target("local-server") is DeployTarget.LOCAL_SERVER
    with pytest.raises(TabpipeError, match="deploy_target: 'cluster' is not one of"):
        parse_target("cluster")
