"""Loading verified models: bundle directories and the MLflow registry (sqlite backend, no server)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serving_support import Bundle

from tabpipe.errors import ArtifactIntegrityError, ConfigError
from tabpipe.serving.store import load_bundle_dir, load_registry, load_uri


def test_bundle_dir_predicts_like_the_model(bundles: dict[str, Bundle]) -> None:
    from tabpipe.serving.validation import Limits, RequestDecoder

    for key in ("phishing-v1", "housing-v1"):
        bundle = bundles[key]
        loaded = load_bundle_dir(bundle.path)
        assert loaded.version == "1" and loaded.spec == bundle.spec and loaded.predictor.kind == "sklearn"
        rows = bundle.rows.head(50)
        columns = {
            name: (
                values.to_numpy(dtype=object)
                if values.dtype == object or str(values.dtype) == "str"
                else values.to_numpy(dtype=np.float64, na_value=np.nan)
            )
            for name, values in rows.items()
        }
        columns = {n: np.where(v == v, v, None) if v.dtype == object else v for n, v in columns.items()}
        pred, proba = loaded.predictor.predict(columns)
        np.testing.assert_array_equal(pred, bundle.model.predict(rows))
        if bundle.spec.task.is_classification:
            np.testing.assert_allclose(proba, bundle.model.predict_proba(rows))
        else:
            assert proba is None
        assert RequestDecoder(loaded.spec, Limits(), ["predict"]).order == list(rows.columns)


def test_refuses_tampered_and_incomplete_bundles(bundles: dict[str, Bundle], tmp_path: Path) -> None:
    with pytest.raises(ArtifactIntegrityError, match="sha256"):
        load_bundle_dir(bundles["phishing-tampered"].path)
    with pytest.raises(ConfigError, match="not a directory"):
        load_uri(str(tmp_path / "nope"))
    partial = tmp_path / "partial"
    shutil.copytree(bundles["phishing-v1"].path, partial)
    (partial / "bundle.json").write_text("{}")
    with pytest.raises(ConfigError, match="serving spec"):
        load_bundle_dir(partial)
    with pytest.raises(ConfigError, match="tracking URI"):
        load_uri("models:/x@champion")


@pytest.mark.slow
def test_registry_alias_and_version(bundles: dict[str, Bundle], tmp_path: Path) -> None:
    from tabpipe.tracking import BUNDLE_ARTIFACT_DIR, Tag, client

    bundle = bundles["phishing-v1"]
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow_client = client(tracking_uri)
    experiment = mlflow_client.create_experiment("serve", artifact_location=(tmp_path / "artifacts").as_uri())
    run = mlflow_client.create_run(experiment)
    run_id = run.info.run_id
    mlflow_client.log_artifact(run_id, str(bundle.path / "model.skops"), BUNDLE_ARTIFACT_DIR)
    spec_file = tmp_path / "serving.json"
    spec_file.write_text(bundle.spec.model_copy(update={"version": None}).model_dump_json())
    mlflow_client.log_artifact(run_id, str(spec_file), BUNDLE_ARTIFACT_DIR)
    name = bundle.spec.model_name
    mlflow_client.create_registered_model(name)

    def version(tags: dict[str, str]) -> Any:
        return mlflow_client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id, tags=tags)

    good = version({Tag.BUNDLE_SHA256: bundle.spec.sha256})
    untagged = version({})
    wrong = version({Tag.BUNDLE_SHA256: "0" * 64})
    mlflow_client.set_registered_model_alias(name, "champion", good.version)

    loaded = load_registry(tracking_uri, f"models:/{name}@champion")
    assert loaded.version == str(good.version) and loaded.spec.version == str(good.version)
    np.testing.assert_array_equal(
        loaded.predictor.predict({c: bundle.rows[c].to_numpy(np.float64) for c in bundle.rows})[0],
        bundle.model.predict(bundle.rows),
    )
    assert load_uri(f"models:/{name}/{good.version}", tracking_uri).version == str(good.version)
    with pytest.raises(ArtifactIntegrityError, match="no tabpipe.bundle_sha256"):
        load_registry(tracking_uri, f"models:/{name}/{untagged.version}")
    with pytest.raises(ArtifactIntegrityError, match="does not match"):
        load_registry(tracking_uri, f"models:/{name}/{wrong.version}")
    with pytest.raises(ConfigError):
        load_registry(tracking_uri, f"models:/{name}@nobody")
    with pytest.raises(ConfigError, match="expected models"):
        load_registry(tracking_uri, "models:/a/b/c")


def test_onnx_preferred_when_the_bundle_has_it(bundles: dict[str, Bundle], tmp_path: Path) -> None:
    onnx_export = pytest.importorskip("tabpipe.onnx.export")
    bundle = bundles["housing-v1"]
    result = onnx_export.convert_bundle(bundle.model, bundle.spec)
    assert result.converted, result.reason
    with_onnx = tmp_path / "with-onnx"
    shutil.copytree(bundle.path, with_onnx)
    (with_onnx / "model.onnx").write_bytes(result.onnx_bytes)
    assert load_bundle_dir(with_onnx).predictor.kind == "sklearn"  # no recorded checksum: not trusted
    spec = bundle.spec.model_copy(update={"onnx_sha256": hashlib.sha256(result.onnx_bytes).hexdigest()})
    (with_onnx / "bundle.json").write_text(spec.model_dump_json())
    loaded = load_bundle_dir(with_onnx)
    assert loaded.predictor.kind == "onnx"
    rows = bundle.rows.head(20)
    columns = {
        inp.name: (
            np.array([None if v != v else v for v in rows[inp.name].astype(object)], dtype=object)
            if inp.rules.dtype.value == "string"
            else rows[inp.name].to_numpy(np.float64, na_value=np.nan)
        )
        for inp in bundle.spec.inputs
    }
    np.testing.assert_allclose(loaded.predictor.predict(columns)[0], bundle.model.predict(rows), rtol=1e-6)
    # A swapped ONNX file is refused, like a swapped skops file.
    (with_onnx / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(ArtifactIntegrityError, match="onnx_sha256"):
        load_bundle_dir(with_onnx)
