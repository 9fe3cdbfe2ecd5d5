"""Fuzzing the real server: hypothesis-generated bad requests, and schemathesis on openapi.yaml."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_support import TEST_TOKEN, Bundle, Server, oip_request

import tabpipe.serving

# Not marked slow: the fuzzers run in make test, bounded (about 30 s in all).

OPENAPI = Path(tabpipe.serving.__file__).with_name("openapi.yaml")

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from([-1, 0, 1, 2, "centre", "A", "\ud800", "\x00", "名前", 1e308, -1e308, 2**63]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
datatypes = st.sampled_from(["BOOL", "INT8", "INT64", "UINT8", "FP32", "FP64", "BYTES", "FP128", "", None, 3])


def _tensor_mutations(body: dict[str, Any], draw: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    inputs = body["inputs"]
    for _ in range(draw(st.integers(1, 4))):
        choice = draw(st.integers(0, 8))
        i = draw(st.integers(0, len(inputs) - 1)) if inputs else 0
        if choice == 0 and inputs:
            inputs.pop(i)  # missing column
        elif choice == 1:
            inputs.append(
                {"name": draw(st.text(max_size=10)), "datatype": "FP64", "shape": [1], "data": [1.0]}
            )
        elif choice == 2 and inputs:
            inputs[i]["datatype"] = draw(datatypes)
        elif choice == 3 and inputs:
            inputs[i]["data"] = draw(st.lists(scalars, max_size=4))
        elif choice == 4 and inputs:
            inputs[i]["shape"] = draw(st.lists(st.integers(-2, 5), max_size=3) | json_values)
        elif choice == 5 and inputs:
            inputs[i][draw(st.sampled_from(["name", "shape", "datatype", "data"]))] = draw(json_values)
        elif choice == 6 and inputs:
            inputs[i].pop(draw(st.sampled_from(["name", "shape", "datatype", "data"])), None)
        elif choice == 7:
            body[draw(st.sampled_from(["id", "parameters", "outputs", "inputs"]))] = draw(json_values)
        elif choice == 8 and inputs:
            inputs[i]["data"] = [draw(scalars)] * len(inputs[i]["data"])
    return body


@st.composite
def bad_requests(draw: Any, body: dict[str, Any]) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return json.dumps(draw(json_values), allow_nan=True).encode()
    if kind == 1:
        return draw(st.binary(max_size=200))
    mutated = _tensor_mutations(body, draw)
    try:
        return json.dumps(mutated, allow_nan=True).encode("utf-8", errors="surrogatepass")
    except (ValueError, TypeError):
        return b"{}"


def _fuzz(server: Server, bundle: Bundle, name: str) -> None:
    body = oip_request(bundle.spec, bundle.rows.head(2))
    url = f"{server.url}/v2/models/{name}/infer"
    statuses: dict[int, int] = {}
    with httpx.Client(timeout=10) as client:

        @settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        @given(raw=bad_requests(body))
        def check(raw: bytes) -> None:
            response = client.post(url, content=raw, headers={"content-type": "application/json"})
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code < 500, (raw[:300], response.text)
            if response.status_code >= 400:
                assert response.json()["error"]

        check()
        assert client.get(f"{server.url}/v2/health/live").status_code == 200
        assert client.post(url, json=body).status_code == 200  # still serving correctly
        assert client.get(f"{server.url}/metrics").status_code == 200  # exposition survives odd labels
    assert set(statuses) - {200} and all(400 <= s < 500 or s == 200 for s in statuses), statuses


def test_fuzz_phishing(phishing_server: Server, bundles: dict[str, Bundle]) -> None:
    _fuzz(phishing_server, bundles["phishing-v1"], "phishing-e2e")


def test_fuzz_housing(housing_server: Server, bundles: dict[str, Bundle]) -> None:
    _fuzz(housing_server, bundles["housing-v1"], "housing-price")


def _schemathesis(server: Server, tmp_path: Path, *args: str) -> str:
    # Real path parameters, so generated infer bodies reach the model's validation instead of a 404.
    config = tmp_path / "schemathesis.toml"
    config.write_text('[parameters]\n"path.name" = "housing-price"\n"path.version" = "1"\n')
    cmd = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(config),
        "run",
        str(OPENAPI),
        "--url",
        server.url,
        "--checks",
        "not_a_server_error",
        "--workers",
        "1",
        "--generation-deterministic",
        "--phases",
        "examples,coverage,fuzzing",
        *args,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " generated, " in result.stdout, result.stdout[-2000:]
    return result.stdout


def test_schemathesis(start_server: Any, bundles: dict[str, Bundle], tmp_path: Path) -> None:
    # The fuzzer loads far more often than a deploy would: lift the load rate limit for it.
    server = start_server(bundles["housing-v1"].path, "--max-loads-per-minute", "100000")
    server.wait_ready()
    # The open endpoints (no token): health, metadata, infer, metrics.
    out = _schemathesis(server, tmp_path, "--exclude-path-regex", "^/v2/repository", "--max-examples", "25")
    assert "9 selected" in out, out[-2000:]
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
    # The repository extension with the admin token: index, load, unload (fuzzed names and URIs).
    # An unload may leave nothing served (503 is then the right answer to infer, which is why the
    # two runs are separate); every answer must still be below 500.
    out = _schemathesis(
        server,
        tmp_path,
        "--include-path-regex",
        "^/v2/repository",
        "--max-examples",
        "15",
        "--header",
        f"Authorization: Bearer {TEST_TOKEN}",
    )
    assert "4 selected" in out, out[-2000:]
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
    # And without it, every repository operation is refused, never a server error.
    out = _schemathesis(server, tmp_path, "--include-path-regex", "^/v2/repository", "--max-examples", "5")
    assert "4 selected" in out
    reload = httpx.post(
        f"{server.url}/v2/repository/models/housing-price/load", headers=server.admin, timeout=60
    )
    assert reload.status_code == 200, reload.text
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
