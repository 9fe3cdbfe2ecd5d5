"""Unit tests of model bundle saving and verified loading."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from tabpipe.errors import ArtifactIntegrityError
from tabpipe.features import EngineeredFeatures
from tabpipe.modelio import load_model, save_model, trusted_types


class NotASklearnThing:
    """A type from outside the trusted modules."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


def fitted_pipeline() -> tuple[Pipeline, pd.DataFrame]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"p": rng.normal(size=80) + 3, "q": rng.integers(0, 3, size=80).astype(float)})
    y = np.where(x["p"] * (x["q"] + 1) > 5, "yes", "no")
    pipeline = Pipeline(
        [
            (
                "engineer",
                EngineeredFeatures((("p_per_q", "ratio", ("p", "q")), ("pq", "product", ("p", "q")))),
            ),
            (
                "columns",
                ColumnTransformer([("num", SimpleImputer(strategy="median"), ["p", "q", "p_per_q", "pq"])]),
            ),
            ("model", LogisticRegression(max_iter=500)),
        ]
    ).fit(x, y)
    return pipeline, x


def test_round_trip_predicts_identically(tmp_path: Path) -> None:
    pipeline, x = fitted_pipeline()
    path = tmp_path / "bundle" / "model.skops"
    sha = save_model(pipeline, path)

    assert path.is_file()
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [p.name for p in path.parent.iterdir()] == ["model.skops"]  # no temp file left behind
    loaded = load_model(path, sha)
    assert isinstance(loaded, Pipeline)
    assert isinstance(loaded.named_steps["engineer"], EngineeredFeatures)
    assert loaded.named_steps["engineer"].features == pipeline.named_steps["engineer"].features
    np.testing.assert_array_equal(loaded.predict(x), pipeline.predict(x))
    np.testing.assert_array_equal(loaded.predict_proba(x), pipeline.predict_proba(x))
    assert set(loaded.predict(x)) == {"yes", "no"}


def test_saving_over_an_existing_bundle_returns_the_new_checksum(tmp_path: Path) -> None:
    pipeline, x = fitted_pipeline()
    path = tmp_path / "a.skops"
    path.write_bytes(b"old bundle")
    sha = save_model(pipeline, path)
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    np.testing.assert_array_equal(load_model(path, sha).predict(x), pipeline.predict(x))


def test_trusted_types_lists_project_types(tmp_path: Path) -> None:
    pipeline, _ = fitted_pipeline()
    untrusted = trusted_types(sio.dumps(pipeline), "mem")
    assert "tabpipe.features.transformers.EngineeredFeatures" in untrusted


def test_tampered_file_is_refused_before_deserializing(tmp_path: Path) -> None:
    pipeline, _ = fitted_pipeline()
    path = tmp_path / "model.skops"
    sha = save_model(pipeline, path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    with pytest.raises(ArtifactIntegrityError) as info:
        load_model(path, sha)
    message = str(info.value)
    assert str(path) in message
    assert "does not match the recorded" in message
    assert sha[:12] in message


def test_truncated_file_is_refused_by_checksum_not_by_zip_error(tmp_path: Path) -> None:
    pipeline, _ = fitted_pipeline()
    path = tmp_path / "model.skops"
    sha = save_model(pipeline, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(zipfile.BadZipFile):  # what deserializing it would have raised
        sio.loads(path.read_bytes())
    with pytest.raises(ArtifactIntegrityError, match="does not match the recorded"):
        load_model(path, sha)


def test_wrong_expected_sha(tmp_path: Path) -> None:
    pipeline, _ = fitted_pipeline()
    path = tmp_path / "model.skops"
    sha = save_model(pipeline, path)
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(ArtifactIntegrityError) as info:
        load_model(path, wrong)
    assert wrong[:12] in str(info.value)
    assert sha[:12] in str(info.value)
    with pytest.raises(ArtifactIntegrityError):
        load_model(path, "")


def test_untrusted_type_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    sha = save_model({"model": LogisticRegression(), "extra": NotASklearnThing()}, path)
    untrusted = sio.get_untrusted_types(file=path)
    assert len(untrusted) == 1 and untrusted[0].endswith("NotASklearnThing")

    with pytest.raises(ArtifactIntegrityError) as info:
        load_model(path, sha)  # checksum is right: the type check is what refuses it
    message = str(info.value)
    assert "untrusted types" in message
    assert untrusted[0] in message
    assert str(path) in message


def test_untrusted_type_message_from_payload() -> None:
    with pytest.raises(ArtifactIntegrityError, match="NotASklearnThing"):
        trusted_types(sio.dumps(NotASklearnThing()), "payload.skops")
