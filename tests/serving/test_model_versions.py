"""Several versions of one model name on one endpoint (``--versions-per-model``), against real servers.

The default version answers requests that name no version; the others answer under
``/versions/{version}`` until evicted, oldest first. A version loaded with
``default: false`` is tried before it takes traffic, then promoted by a load.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving_support import (
    PHISHING_CONFIG,
    Bundle,
    free_port,
    oip_request,
    tabpipe_predict,
    triton_inputs,
    write_bundle,
)

pytestmark = pytest.mark.slow

NAME = "phishing-e2e"
ROWS = 40


@pytest.fixture(scope="module")
def flipped(bundles: dict[str, Bundle], tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """Version 3 of the phishing model: its logistic regression negated, so every prediction differs."""
    from tabpipe.config import load_config

    original = bundles["phishing-v1"]
    model = copy.deepcopy(original.model)
    regression = model.steps[-1][1]
    regression.coef_, regression.intercept_ = -regression.coef_, -regression.intercept_
    assert (model.predict(original.rows.head(ROWS)) != original.model.predict(original.rows.head(ROWS))).all()
    path = tmp_path_factory.mktemp("versions") / "phishing-v3"
    return Bundle(path, write_bundle(path, load_config(PHISHING_CONFIG), model, "3"), model, original.rows)


def _infer(client: httpx.Client, bundle: Bundle, version: str | None = None) -> httpx.Response:
    path = f"/v2/models/{NAME}" + (f"/versions/{version}" if version else "") + "/infer"
    return client.post(path, json=oip_request(bundle.spec, bundle.rows.head(ROWS)))


def _answered(response: httpx.Response) -> tuple[str, list[Any]]:
    assert response.status_code == 200, response.text
    body = response.json()
    return body["model_version"], next(o["data"] for o in body["outputs"] if o["name"] == "predict")


def _index(client: httpx.Client) -> list[tuple[str, str, bool, str]]:
    answer = client.get("/v2/repository/index")
    assert answer.status_code == 200, answer.text
    return [(e["name"], e["version"], e["default"], e["state"]) for e in answer.json()]


def _load(client: httpx.Client, bundle: Bundle, **parameters: Any) -> httpx.Response:
    return client.post(
        f"/v2/repository/models/{NAME}/load", json={"parameters": {"uri": str(bundle.path), **parameters}}
    )


def _loaded_gauge(client: httpx.Client, version: str) -> float:
    metrics = client.get("/metrics").text
    match = re.search(
        rf'tabpipe_serving_model_loaded{{model="{NAME}",predictor="\w+",version="{version}"}} (\S+)', metrics
    )
    assert match, metrics
    return float(match.group(1))


def test_versions_are_kept_evicted_oldest_first_tried_before_promotion_and_unloaded_one_by_one(
    start_server: Any, bundles: dict[str, Bundle], flipped: Bundle
) -> None:
    v1, v2 = bundles["phishing-v1"], bundles["phishing-v2"]
    original = [c.item() if hasattr(c, "item") else c for c in v1.model.predict(v1.rows.head(ROWS))]
    negated = [c.item() if hasattr(c, "item") else c for c in flipped.model.predict(v1.rows.head(ROWS))]
    server = start_server(
        v1.path,
        "--versions-per-model",
        "2",
        "--bundle-root",
        str(v1.path.parent),
        "--bundle-root",
        str(flipped.path.parent),
    )
    server.wait_ready()
    with httpx.Client(base_url=server.url, timeout=30, headers=server.admin) as client:
        # v2 becomes the default; v1 stays loaded beside it.
        assert _load(client, v2).json() == {"name": NAME, "version": "2"}
        assert _answered(_infer(client, v1)) == ("2", original)
        assert _answered(_infer(client, v1, "1")) == ("1", original)
        assert _index(client) == [(NAME, "2", True, "READY"), (NAME, "1", False, "READY")]
        assert client.get(f"/v2/models/{NAME}").json()["versions"] == ["1", "2"]
        assert client.get(f"/v2/models/{NAME}/versions/1/ready").status_code == 200

        # v3 tried beside the default: v1, the oldest non-default, is evicted; v2 keeps unversioned traffic.
        assert _load(client, flipped, default=False).json() == {"name": NAME, "version": "3"}
        assert _answered(_infer(client, v1)) == ("2", original)
        assert _answered(_infer(client, v1, "3")) == ("3", negated)
        gone = _infer(client, v1, "1")
        assert gone.status_code == 404
        assert gone.json()["error"] == f"model {NAME!r} has no version '1' loaded; loaded: '2', '3'"
        assert _index(client) == [(NAME, "2", True, "READY"), (NAME, "3", False, "READY")]
        entries = {e["version"]: e for e in client.get("/v2/repository/index").json()}
        assert entries["3"]["source"] == str(flipped.path) and entries["2"]["source"] == str(v2.path)
        assert (_loaded_gauge(client, "1"), _loaded_gauge(client, "2"), _loaded_gauge(client, "3")) == (
            0,
            1,
            1,
        )

        # tabpipe predict asks a kept version by its number, the default without one.
        for version, expected in (("3", "3"), (None, "2")):
            done = tabpipe_predict(
                PHISHING_CONFIG, server.url, *(["--model-version", version] if version else [])
            )
            assert done.returncode == 0, done.stderr + done.stdout
            assert json.loads(done.stdout)["model_version"] == expected
        done = tabpipe_predict(PHISHING_CONFIG, server.url, "--model-version", "1")
        assert (
            done.returncode != 0 and f"no model '{NAME} version 1' at {server.url}: HTTP 404" in done.stderr
        )

        # Errors on a kept version are counted under that version, not the default's.
        bad_rows = client.post(f"/v2/models/{NAME}/versions/3/infer", json={"inputs": []})
        assert bad_rows.status_code in (400, 422), bad_rows.text
        metrics = client.get("/metrics").text
        assert re.search(
            rf'tabpipe_serving_request_errors_total{{endpoint="infer",model="{NAME}",status="{bad_rows.status_code}",'
            r'version="3"} 1.0',
            metrics,
        ), metrics

        # default: false for the version that is the default already would replace it: refused.
        same = _load(client, v2, default=False)
        assert same.status_code == 409 and "which is 'phishing-e2e''s default already" in same.json()["error"]
        assert _answered(_infer(client, v1)) == ("2", original)

        # The default cannot go while another version is kept; a kept one can, alone.
        refused = client.post(f"/v2/repository/models/{NAME}/unload", json={"parameters": {"version": "2"}})
        assert refused.status_code == 409 and "version '2' is the default" in refused.json()["error"]
        unknown = client.post(f"/v2/repository/models/{NAME}/unload", json={"parameters": {"version": "9"}})
        assert unknown.status_code == 404 and "no version '9'" in unknown.json()["error"]
        dropped = client.post(f"/v2/repository/models/{NAME}/unload", json={"parameters": {"version": "3"}})
        assert dropped.status_code == 200 and dropped.json() == {
            "name": NAME,
            "unloaded": True,
            "version": "3",
        }
        assert _infer(client, v1, "3").status_code == 404
        assert _index(client) == [(NAME, "2", True, "READY")]
        assert client.get(f"/v2/models/{NAME}").json()["versions"] == ["2"]

        # Promotion: v3 loaded as the default; v2 kept for a rollback.
        assert _load(client, flipped).json() == {"name": NAME, "version": "3"}
        assert _answered(_infer(client, v1)) == ("3", negated)
        assert _answered(_infer(client, v1, "2")) == ("2", original)
        assert _index(client) == [(NAME, "3", True, "READY"), (NAME, "2", False, "READY")]
        assert client.get("/v2/health/ready").status_code == 200

        # Unloading without a version takes every version.
        assert client.post(f"/v2/repository/models/{NAME}/unload").json() == {"name": NAME, "unloaded": True}
        assert _infer(client, v1).status_code in (404, 503)
        assert _infer(client, v1, "2").status_code in (404, 503)
        assert _index(client) == []
        assert (_loaded_gauge(client, "2"), _loaded_gauge(client, "3")) == (0, 0)
        # default: false with no default to keep would make the candidate take all traffic: refused.
        orphan = _load(client, flipped, default=False)
        assert orphan.status_code == 409 and "but none is served" in orphan.json()["error"]
        assert _index(client) == []


def test_a_demoted_default_outlives_a_stale_candidate(
    start_server: Any, bundles: dict[str, Bundle], flipped: Bundle
) -> None:
    v1, v2 = bundles["phishing-v1"], bundles["phishing-v2"]
    roots = ["--bundle-root", str(v1.path.parent), "--bundle-root", str(flipped.path.parent)]
    server = start_server(v1.path, "--versions-per-model", "2", *roots)
    server.wait_ready()
    with httpx.Client(base_url=server.url, timeout=30, headers=server.admin) as client:
        assert _load(client, flipped, default=False).status_code == 200  # candidate 3, never promoted
        assert _load(client, v2).status_code == 200  # 2 is promoted instead: 1 is the rollback target
        assert _index(client) == [(NAME, "2", True, "READY"), (NAME, "1", False, "READY")]
        assert _infer(client, v1, "3").status_code == 404
        assert _answered(_infer(client, v1, "1"))[0] == "1"
        assert _loaded_gauge(client, "3") == 0


def test_a_startup_model_found_late_does_not_replace_the_version_loaded_through_the_api(
    start_server: Any, bundles: dict[str, Bundle], tmp_path: Path
) -> None:
    import shutil
    import time

    late = tmp_path / "late-bundle"  # no name can be read from it at startup: indexed by its URI
    housing, v2 = bundles["housing-v1"], bundles["phishing-v2"]
    server = start_server(housing.path, "--model", str(late))
    server.wait_live()
    with httpx.Client(base_url=server.url, timeout=30, headers=server.admin) as client:
        deadline = time.monotonic() + 30
        while {e["name"]: e["state"] for e in client.get("/v2/repository/index").json()}.get(
            str(late)
        ) != "UNAVAILABLE":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert _load(client, v2).json() == {"name": NAME, "version": "2"}
        shutil.copytree(bundles["phishing-v1"].path, late)  # version 1 of the same name
        deadline = time.monotonic() + 30  # the first retry comes 5 s after the failure
        while client.get("/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline, client.get("/v2/repository/index").json()
            time.sleep(0.2)
        assert [(e["name"], e["version"]) for e in client.get("/v2/repository/index").json()] == [
            ("housing-price", "1"),
            (NAME, "2"),
        ]
        assert _answered(_infer(client, v2))[0] == "2"
    assert f"startup model {late}: {NAME} is served since (through the API); kept" in server.log()


def _start_with_grpc(start_server: Any, first: Bundle, candidate: Bundle, kept: int) -> tuple[Any, int]:
    """A ready server of ``first`` with gRPC, keeping ``kept`` versions, that may load ``candidate``."""
    port = free_port()
    roots = ["--bundle-root", str(candidate.path.parent)]
    server = start_server(first.path, "--versions-per-model", str(kept), "--grpc-port", str(port), *roots)
    server.wait_ready()
    return server, port


def test_a_kept_version_answers_over_grpc_by_its_version(
    start_server: Any, bundles: dict[str, Bundle], flipped: Bundle
) -> None:
    import tritonclient.grpc as triton

    v1 = bundles["phishing-v1"]
    server, port = _start_with_grpc(start_server, v1, flipped, kept=3)
    with httpx.Client(base_url=server.url, timeout=30, headers=server.admin) as client:
        assert _load(client, flipped, default=False).status_code == 200
    rows = v1.rows.head(ROWS)
    expected = {"1": v1.model.predict(rows), "3": flipped.model.predict(rows)}
    grpc_client = triton.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        assert list(grpc_client.get_model_metadata(NAME).versions) == ["1", "3"]
        assert grpc_client.is_model_ready(NAME, "3") and not grpc_client.is_model_ready(NAME, "2")
        inputs = triton_inputs(triton, v1.spec, rows)
        for version in ("", "1", "3"):
            answer = grpc_client.infer(NAME, inputs, model_version=version)
            assert answer.get_response().model_version == (version or "1")
            assert answer.as_numpy("predict").tolist() == expected[version or "1"].tolist()
    finally:
        grpc_client.close()


def test_default_false_needs_room_for_two_versions_and_bad_parameters_are_named(
    start_server: Any, bundles: dict[str, Bundle]
) -> None:
    v1, v2 = bundles["phishing-v1"], bundles["phishing-v2"]
    server = start_server(v1.path)
    server.wait_ready()
    with httpx.Client(base_url=server.url, timeout=30, headers=server.admin) as client:
        refused = _load(client, v2, default=False)
        assert refused.status_code == 400
        assert (
            "parameters.default: false" in refused.json()["error"]
            and "--versions-per-model" in refused.json()["error"]
        )
        assert _answered(_infer(client, v1))[0] == "1"  # nothing changed
        assert _load(client, v2, default="yes").json() == {"error": "parameters.default: must be a boolean"}
        bad = client.post(f"/v2/repository/models/{NAME}/unload", json={"parameters": {"version": 2}})
        assert bad.status_code == 400 and bad.json() == {
            "error": "parameters.version: must be a non-empty string"
        }
        assert _index(client) == [(NAME, "1", True, "READY")]
        # One version kept (the default setting): a load replaces, and the old version is gone.
        assert _load(client, v2).json() == {"name": NAME, "version": "2"}
        assert _infer(client, v1, "1").status_code == 404
        assert _index(client) == [(NAME, "2", True, "READY")]


def test_versions_per_model_below_one_stops_the_server_naming_the_option(bundles: dict[str, Bundle]) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tabpipe.serving",
            "--model",
            str(bundles["phishing-v1"].path),
            "--versions-per-model",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "--versions-per-model: must be positive, not 0" in result.stderr


def test_grpc_repository_loads_beside_the_default_and_unloads_one_version(
    start_server: Any, bundles: dict[str, Bundle], flipped: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    import grpc
    from serving_support import TEST_TOKEN
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    from tabpipe.deploy import served_model

    v1 = bundles["phishing-v1"]
    server, port = _start_with_grpc(start_server, v1, flipped, kept=2)
    admin = (("authorization", f"Bearer {TEST_TOKEN}"),)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        load = service_pb2.RepositoryModelLoadRequest(model_name=NAME)
        load.parameters["uri"].string_param = str(flipped.path)
        load.parameters["default"].bool_param = False
        stub.RepositoryModelLoad(load, metadata=admin)
        index = stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(), metadata=admin)
        assert [(m.name, m.version) for m in index.models] == [(NAME, "1"), (NAME, "3")]
        assert stub.ModelMetadata(service_pb2.ModelMetadataRequest(name=NAME)).versions == ["1", "3"]
        # The deploy client restores the default version on a rollback, not a kept candidate.
        monkeypatch.setenv("TABPIPE_SERVING_ADMIN_TOKEN", TEST_TOKEN)
        served = served_model(server.url, NAME)
        assert served is not None and (served.version, served.source) == ("1", str(v1.path))

        def unload(version: Any) -> service_pb2.RepositoryModelUnloadResponse:
            request = service_pb2.RepositoryModelUnloadRequest(model_name=NAME)
            if isinstance(version, str):
                request.parameters["version"].string_param = version
            else:
                request.parameters["version"].int64_param = version
            return stub.RepositoryModelUnload(request, metadata=admin)

        with pytest.raises(grpc.RpcError) as refused:
            unload("1")
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "version '1' is the default" in refused.value.details()
        with pytest.raises(grpc.RpcError) as bad:
            unload(3)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad.value.details() == "parameters.version: must be a non-empty string"
        unload("3")
        index = stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(), metadata=admin)
        assert [(m.name, m.version) for m in index.models] == [(NAME, "1")]
        ready = stub.ModelReady(service_pb2.ModelReadyRequest(name=NAME, version="3"))
        assert ready.ready is False
