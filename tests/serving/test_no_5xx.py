"""Client input never gets a 5xx: odd text, paths and corrupt bundles answer 4xx (real servers)."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving_support import Bundle, Server, oip_request

HOUSING = "housing-price"
PHISHING = "phishing-e2e"


@pytest.fixture(scope="module")
def onnx_housing(bundles: dict[str, Bundle], tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """The housing model (a string column) served by onnxruntime: its export in the bundle."""
    from tabpipe.bundle import assemble_bundle
    from tabpipe.io import sha256_bytes
    from tabpipe.modelio import save_model
    from tabpipe.onnx.export import convert_bundle

    source = bundles["housing-v1"]
    work = tmp_path_factory.mktemp("onnx-housing")
    converted = convert_bundle(source.model, source.spec)
    assert converted.onnx_bytes is not None, converted
    sha = save_model(source.model, work / "model.skops")
    (work / "model.onnx").write_bytes(converted.onnx_bytes)
    # Free text (no allowed set), so a value reaches onnxruntime instead of stopping at the contract.
    inputs = [
        i.model_copy(update={"rules": i.rules.model_copy(update={"allowed": None})})
        if i.rules.dtype.value == "string"
        else i
        for i in source.spec.inputs
    ]
    spec = source.spec.model_copy(
        update={"sha256": sha, "onnx_sha256": sha256_bytes(converted.onnx_bytes), "inputs": inputs}
    )
    path = work / "bundle"
    return Bundle(
        path,
        assemble_bundle(path, spec, work / "model.skops", work / "model.onnx"),
        source.model,
        source.rows,
    )


@pytest.fixture(scope="module")
def onnx_server(onnx_housing: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(onnx_housing.path, log_path=tmp_path_factory.mktemp("onnx-logs") / "server.log")
    try:
        server.wait_ready()
        assert httpx.get(f"{server.url}/v2/models/{HOUSING}").json()["platform"] == "tabpipe-onnx"
        yield server
    finally:
        server.stop()


def _with_text(spec: Any, rows: Any, text: str) -> bytes:
    body = oip_request(spec, rows)
    column = next(t for t in body["inputs"] if t["datatype"] == "BYTES")
    column["data"][0] = text
    # A JSON escape, as any client can send it: "\ud800" alone is not valid Unicode text.
    return json.dumps(body, ensure_ascii=True).encode()


@pytest.mark.parametrize("text", ["\ud800", "ok\udfff", "\udc80abc"])
def test_lone_surrogates_in_string_inputs_are_400(
    text: str, onnx_server: Server, onnx_housing: Bundle, housing_server: Server
) -> None:
    rows = onnx_housing.rows.dropna().head(2)
    body = _with_text(onnx_housing.spec, rows, text)
    for server in (
        onnx_server,
        housing_server,
    ):  # onnxruntime crashed on it (500); scikit-learn must refuse it alike
        url = f"{server.url}/v2/models/{HOUSING}/infer"
        answer = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=30)
        assert answer.status_code == 400, answer.text
        assert "not valid Unicode" in answer.json()["error"]
        good = httpx.post(url, json=oip_request(onnx_housing.spec, rows), timeout=30)
        assert good.status_code == 200  # still serving


def _copy_bundle(bundle: Bundle, root: Path, name: str) -> Path:
    target = root / name
    shutil.copytree(bundle.path, target)
    return target


@pytest.fixture(scope="module")
def rooted(
    bundles: dict[str, Bundle], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Path]]:
    """A phishing server whose bundle root also holds a corrupt bundle."""
    root = tmp_path_factory.mktemp("root")
    good = _copy_bundle(bundles["phishing-v1"], root, "good")
    _corrupt(_copy_bundle(bundles["phishing-v2"], root, "corrupt"))
    server = Server(good, log_path=root.parent / "rooted.log")
    try:
        server.wait_ready()
        yield server, root
    finally:
        server.stop()


def test_overlong_names_and_paths_are_4xx(rooted: tuple[Server, Path]) -> None:
    server, root = rooted
    long_name = "a" * 256
    with httpx.Client(base_url=server.url, timeout=30, headers=server.admin) as client:
        for uri in (str(root / long_name), str(root / long_name / "b"), str(root / ("x" * 5000))):
            answer = client.post(f"/v2/repository/models/{long_name}/load", json={"parameters": {"uri": uri}})
            assert 400 <= answer.status_code < 500, answer.text  # was 500 "File name too long"
            assert answer.json()["error"]
        assert client.post(f"/v2/models/{long_name}/infer", json={}).status_code == 404
        assert client.get(f"/v2/models/{long_name}/versions/{long_name}/ready").status_code == 404
        assert client.post(f"/v2/repository/models/{long_name}/unload").status_code == 404
        assert client.get("/v2/health/ready").status_code == 200  # the model stayed


def _corrupt(bundle_dir: Path) -> None:
    """Garbage in model.skops, with bundle.json's sha256 rewritten to match it (no manifest to catch it)."""
    garbage = b"PK\x03\x04" + hashlib.sha256(b"not a model").digest() * 64
    (bundle_dir / "model.skops").write_bytes(garbage)
    spec = json.loads((bundle_dir / "bundle.json").read_text())
    spec["sha256"] = hashlib.sha256(garbage).hexdigest()
    (bundle_dir / "bundle.json").write_text(json.dumps(spec))
    assert not (bundle_dir / "manifest.json").exists()


def test_corrupt_skops_with_a_rewritten_checksum_is_a_4xx_load(rooted: tuple[Server, Path]) -> None:
    server, root = rooted
    with httpx.Client(base_url=server.url, timeout=60, headers=server.admin) as client:
        load = {"parameters": {"uri": str(root / "corrupt")}}
        answer = client.post(f"/v2/repository/models/{PHISHING}/load", json=load)
        assert answer.status_code == 400, answer.text  # was 500 (BadZipFile)
        assert "cannot be read as a skops model" in answer.json()["error"]
        assert client.get(f"/v2/models/{PHISHING}").json()["versions"] == ["1"]  # still serving v1


@pytest.mark.slow
def test_a_server_started_on_a_corrupt_bundle_says_why(
    start_server: Any, rooted: tuple[Server, Path]
) -> None:
    _, root = rooted
    broken = start_server(root / "corrupt")
    broken.wait_live()
    with httpx.Client(base_url=broken.url, timeout=30, headers=broken.admin) as client:
        deadline = time.monotonic() + 60
        while (entry := client.get("/v2/repository/index").json()[0])["state"] == "LOADING":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert entry["state"] == "UNAVAILABLE" and "cannot be read as a skops model" in entry["reason"]
        assert client.get("/v2/health/ready").status_code == 503
