"""One checksum over the whole bundle: the manifest, its digest, and every loader refusing a swapped file.

The attack these tests replay: replace ``model.onnx`` (the file that serves) with
another model's export and rewrite the spec's ``onnx_sha256`` to match. Before
manifests that bundle was served as the same version, with no warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serving_support import HOUSING_CONFIG, REPO, Bundle, Server, free_port

from tabpipe.bundle import MANIFEST_FILENAME, assemble_bundle, bundle_digest, verify_bundle, write_manifest
from tabpipe.errors import ArtifactIntegrityError
from tabpipe.serving.store import load_bundle_dir, load_registry

REFUSED_ONNX = r"model\.onnx: sha256 \w+… does not match the manifest"


@dataclass(frozen=True)
class Exports:
    """The housing model's bundle with its ONNX export, and another model's export to swap in."""

    base: Bundle
    spec: Any
    onnx: bytes
    other_onnx: bytes
    digest: str
    path: Path


@pytest.fixture(scope="module")
def exports(bundles: dict[str, Bundle], tmp_path_factory: pytest.TempPathFactory) -> Exports:
    from sklearn.base import clone

    onnx_export = pytest.importorskip("tabpipe.onnx.export")
    base = bundles["housing-v1"]
    ours = onnx_export.convert_bundle(base.model, base.spec)
    assert ours.converted, ours.reason
    # Another housing model (same inputs, other weights): its export loads and answers, wrongly.
    other = clone(base.model).fit(base.rows, base.model.predict(base.rows) * 1.5 + 10_000)
    theirs = onnx_export.convert_bundle(other, base.spec)
    assert theirs.converted and theirs.onnx_bytes != ours.onnx_bytes
    root = tmp_path_factory.mktemp("manifest")
    (root / "model.onnx").write_bytes(ours.onnx_bytes)
    spec = base.spec.model_copy(update={"onnx_sha256": hashlib.sha256(ours.onnx_bytes).hexdigest()})
    path = root / "housing-onnx"
    assemble_bundle(path, spec, base.path / "model.skops", root / "model.onnx")
    return Exports(base, spec, ours.onnx_bytes, theirs.onnx_bytes, bundle_digest(path), path)


def _copy(exports: Exports, tmp_path: Path, name: str = "bundle") -> Path:
    dest = tmp_path / name
    shutil.copytree(exports.path, dest)
    return dest


def _swap_onnx(bundle: Path, onnx: bytes, spec_file: str = "bundle.json") -> None:
    """The attack: another model's export, and the spec's onnx_sha256 rewritten to match it."""
    (bundle / "model.onnx").write_bytes(onnx)
    spec = json.loads((bundle / spec_file).read_text())
    spec["onnx_sha256"] = hashlib.sha256(onnx).hexdigest()
    (bundle / spec_file).write_text(json.dumps(spec, indent=2))


def test_manifest_lists_every_file_canonically(exports: Exports) -> None:
    data = (exports.path / MANIFEST_FILENAME).read_bytes()
    manifest = json.loads(data)
    assert set(manifest["files"]) == {"model.skops", "model.onnx", "bundle.json"}
    for name, sha in manifest["files"].items():
        assert hashlib.sha256((exports.path / name).read_bytes()).hexdigest() == sha
    assert data == json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    assert exports.digest == hashlib.sha256(data).hexdigest()
    # Rewriting the same files gives the same bytes, so the same digest.
    assert write_manifest(exports.path) == exports.digest


def test_untouched_bundle_loads_and_serves_onnx(exports: Exports) -> None:
    verify_bundle(exports.path, exports.digest)
    loaded = load_bundle_dir(exports.path, expected_digest=exports.digest)
    assert loaded.predictor.kind == "onnx" and loaded.spec == exports.spec
    assert load_bundle_dir(exports.path).predictor.kind == "onnx"


def test_swapped_onnx_with_rewritten_spec_is_refused(exports: Exports, tmp_path: Path) -> None:
    bundle = _copy(exports, tmp_path)
    _swap_onnx(bundle, exports.other_onnx)
    with pytest.raises(ArtifactIntegrityError, match=REFUSED_ONNX) as refused:
        load_bundle_dir(bundle)
    # The rewritten spec is named too: both files disagree with the manifest.
    assert "bundle.json: sha256" in str(refused.value)
    # An attacker who also rewrites the manifest is caught by the digest recorded elsewhere.
    write_manifest(bundle)
    with pytest.raises(
        ArtifactIntegrityError, match=r"manifest\.json: sha256 \w+… does not match the expected"
    ):
        load_bundle_dir(bundle, expected_digest=exports.digest)


def test_tampered_spec_is_refused_naming_it(exports: Exports, tmp_path: Path) -> None:
    bundle = _copy(exports, tmp_path)
    spec = json.loads((bundle / "bundle.json").read_text())
    spec["version"] = "99"  # any change, even one that predicts the same
    (bundle / "bundle.json").write_text(json.dumps(spec, indent=2))
    with pytest.raises(
        ArtifactIntegrityError, match=r"bundle\.json: sha256 \w+… does not match the manifest"
    ):
        load_bundle_dir(bundle)


def test_extra_missing_and_malformed_are_refused(exports: Exports, tmp_path: Path) -> None:
    extra = _copy(exports, tmp_path, "extra")
    (extra / "model.onnx.bak").write_bytes(exports.other_onnx)
    with pytest.raises(ArtifactIntegrityError, match=r"model\.onnx\.bak: not listed in the manifest"):
        load_bundle_dir(extra)
    missing = _copy(exports, tmp_path, "missing")
    (missing / "model.onnx").unlink()
    with pytest.raises(ArtifactIntegrityError, match=r"model\.onnx: listed in the manifest but missing"):
        load_bundle_dir(missing)
    reformatted = _copy(exports, tmp_path, "reformatted")
    manifest = json.loads((reformatted / MANIFEST_FILENAME).read_text())
    (reformatted / MANIFEST_FILENAME).write_text(json.dumps(manifest, indent=2))
    with pytest.raises(ArtifactIntegrityError, match="not in canonical form"):
        load_bundle_dir(reformatted)


def test_bundle_without_manifest_falls_back_with_a_warning(
    exports: Exports, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = _copy(exports, tmp_path, "old")
    (old / MANIFEST_FILENAME).unlink()
    with caplog.at_level(logging.WARNING, logger="tabpipe.serving.store"):
        assert load_bundle_dir(old).predictor.kind == "onnx"
    assert any("has no manifest.json" in r.getMessage() for r in caplog.records)
    with pytest.raises(ArtifactIntegrityError, match="has no manifest.json"):
        load_bundle_dir(old, expected_digest=exports.digest)


def _serve_exits(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("tabpipe")), "serve", *args, "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def test_tabpipe_serve_refuses_a_tampered_bundle_at_startup(exports: Exports, tmp_path: Path) -> None:
    bundle = _copy(exports, tmp_path)
    _swap_onnx(bundle, exports.other_onnx)
    result = _serve_exits("--model", str(bundle))
    assert result.returncode != 0
    assert "model.onnx: sha256" in result.stderr and "does not match the manifest" in result.stderr
    # An untouched bundle with a digest it does not have is refused too.
    result = _serve_exits("--model", str(exports.path), "--digest", "0" * 64)
    assert result.returncode != 0 and "does not match the expected bundle digest" in result.stderr


def test_server_serves_the_bundle_its_digest_names(exports: Exports, tmp_path: Path) -> None:
    import httpx
    from serving_support import oip_request

    server = Server(exports.path, "--digest", exports.digest, log_path=tmp_path / "server.log")
    try:
        server.wait_ready()
        name = exports.spec.model_name
        meta = httpx.get(f"{server.url}/v2/models/{name}").json()
        assert meta["parameters"].get("onnx_reason") is None, meta
        rows = exports.base.rows.head(5)
        answer = httpx.post(f"{server.url}/v2/models/{name}/infer", json=oip_request(exports.spec, rows))
        assert answer.status_code == 200, answer.text
        predicted = np.asarray(answer.json()["outputs"][0]["data"], dtype=float)
        np.testing.assert_allclose(predicted, exports.base.model.predict(rows), rtol=1e-5)
    finally:
        server.stop()


def test_batch_scoring_refuses_a_tampered_bundle_and_writes_nothing(exports: Exports, tmp_path: Path) -> None:
    from tabpipe.serving.batch import score_file

    source = tmp_path / "rows.csv"
    exports.base.rows.head(50).to_csv(source, index=False)
    scored = score_file(str(exports.path), source, tmp_path / "good" / "out.parquet", progress=False)
    assert scored.rows == 50 and scored.predictor == "onnx"
    bundle = _copy(exports, tmp_path)
    _swap_onnx(bundle, exports.other_onnx)
    out = tmp_path / "bad"
    with pytest.raises(ArtifactIntegrityError, match=REFUSED_ONNX):
        score_file(str(bundle), source, out / "out.parquet", progress=False)
    assert not out.exists() or not any(out.iterdir())


@dataclass
class _Candidate:
    estimator: str
    best_params: dict[str, Any]
    cv_score: float
    validation_score: float
    search_seconds: float
    model: Any
    trials: list[Any] = field(default_factory=list)


@dataclass
class _Search:
    """Plain data shaped like the train stage's result."""

    metric: Any
    candidates: list[_Candidate]

    @property
    def best(self) -> _Candidate:
        return self.candidates[0]


@pytest.mark.slow
def test_registry_tag_is_the_digest_and_every_loader_checks_it(
    exports: Exports, mlflow_server: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tabpipe import tracking
    from tabpipe.champion import champion_score
    from tabpipe.config import load_config
    from tabpipe.serving.batch import score_file
    from tabpipe.serving_spec import SERVING_SPEC_FILENAME

    config = load_config(HOUSING_CONFIG)
    config = config.model_copy(update={"name": "bundle-manifest-test"})
    model_name = config.registry.model_name
    spec = exports.spec.model_copy(update={"version": None})
    # The run's bundle folder as the train adapter assembles it (serving.json, then the manifest).
    staged = tmp_path / "staged"
    (tmp_path / "model.onnx").write_bytes(exports.onnx)
    assemble_bundle(
        staged,
        spec,
        exports.path / "model.skops",
        tmp_path / "model.onnx",
        spec_filename=SERVING_SPEC_FILENAME,
    )
    digest = bundle_digest(staged)
    ctx = tracking.RunContext(mlflow_server, "data-v1", "contract-h", "config-h", "code-v", "kfp-manifest")
    search = _Search(
        config.evaluation.primary_metric, [_Candidate("ridge", {}, 0.8, 0.8, 0.1, exports.base.model)]
    )
    rows = exports.base.rows
    run_id, model_uri = tracking.log_training(
        ctx, config, search, exports.path / "model.skops", spec.sha256, rows.head(5), spec, bundle_dir=staged
    )
    version = tracking.register(
        mlflow_server, model_name, model_uri, run_id, spec.sha256, ctx.tags(), bundle_digest=digest
    )
    mlflow_client = tracking.client(mlflow_server)
    tag = mlflow_client.get_model_version(model_name, version).tags[tracking.Tag.BUNDLE_DIGEST]
    downloaded = tracking.download_bundle_dir(mlflow_client, run_id, tmp_path / "downloaded")
    assert tag == digest == bundle_digest(downloaded)
    verify_bundle(downloaded, tag)
    assert sorted(p.name for p in downloaded.iterdir()) == [
        MANIFEST_FILENAME,
        "model.onnx",
        "model.skops",
        SERVING_SPEC_FILENAME,
    ]
    uri = f"models:/{model_name}/{version}"
    loaded = load_registry(mlflow_server, uri)
    assert loaded.predictor.kind == "onnx" and loaded.version == version

    mlflow_client.set_registered_model_alias(model_name, tracking.CHAMPION_ALIAS, version)
    scored: list[Any] = []

    def score(model: Any, mask: Any) -> dict[str, float]:
        scored.append(model)
        return {"rmse": 1.0}

    hashes = np.arange(len(rows), dtype=np.uint64)
    assert champion_score(mlflow_server, model_name, score, hashes).source.startswith("re-scored")

    # The attack on the registry copy: another export, and serving.json rewritten to match it.
    attacked = tmp_path / "attacked"
    shutil.copytree(downloaded, attacked)
    _swap_onnx(attacked, exports.other_onnx, SERVING_SPEC_FILENAME)
    for name in ("model.onnx", SERVING_SPEC_FILENAME):
        mlflow_client.log_artifact(run_id, str(attacked / name), tracking.BUNDLE_ARTIFACT_DIR)
    with pytest.raises(ArtifactIntegrityError, match=REFUSED_ONNX):
        load_registry(mlflow_server, uri)
    source = tmp_path / "rows.csv"
    rows.head(10).to_csv(source, index=False)
    with pytest.raises(ArtifactIntegrityError, match=REFUSED_ONNX):
        score_file(uri, source, tmp_path / "out" / "scored.csv", tracking_uri=mlflow_server, progress=False)
    assert not (tmp_path / "out" / "scored.csv").exists()
    # Evaluate's champion re-scoring refuses it too: it falls back to the recorded metrics and says why.
    with caplog.at_level(logging.WARNING, logger="tabpipe.champion"):
        fallback = champion_score(mlflow_server, model_name, score, hashes)
    assert fallback.source == "recorded on its own test split (bundle unusable)" and len(scored) == 1
    assert any("model.onnx: sha256" in r.getMessage() for r in caplog.records)
