"""What tracking logs, read back from a real MLflow server (no mocks)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from tabpipe.config import Metric, load_config
from tabpipe.modelio import save_model
from tabpipe.serving_spec import build_serving_spec
from tabpipe.tracking import (
    RunContext,
    Tag,
    client,
    log_evaluation,
    log_training,
    model_requirements,
    recorded_test_metrics,
)

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class _Trial:
    params: dict[str, Any]
    cv_mean: float
    cv_std: float
    fit_seconds: float


@dataclass
class _Candidate:
    estimator: str
    best_params: dict[str, Any]
    cv_score: float
    validation_score: float
    search_seconds: float
    model: Any
    trials: list[_Trial] = field(default_factory=list)


@dataclass
class _Search:
    """Plain data shaped like the train stage's result: tracking needs no stage module."""

    metric: Metric
    candidates: list[_Candidate]

    @property
    def best(self) -> _Candidate:
        return self.candidates[0]


@pytest.fixture(scope="module")
def logged(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory):
    config = load_config(REPO / "configs" / "phishing.yaml")
    rng = np.random.default_rng(0)
    features = pd.DataFrame({"a": rng.normal(size=60), "b": rng.integers(-1, 2, size=60)})
    y = (features["a"] > 0).astype(int)
    model = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())]).fit(features, y)
    tmp = tmp_path_factory.mktemp("tracking")
    bundle = tmp / "model"
    sha = save_model(model, bundle)
    trials = [_Trial({"C": c}, 0.9 + i / 100, 0.01, 0.1 * (i + 1)) for i, c in enumerate([0.1, 1.0, 10.0])]
    search = _Search(
        Metric.ROC_AUC,
        [
            _Candidate("logistic_regression", {"C": 1.0}, 0.91, 0.92, 1.5, model, trials),
            _Candidate("random_forest", {"max_depth": None}, 0.88, 0.87, 2.5, model, trials[:2]),
        ],
    )
    ctx = RunContext(mlflow_server, "data-v1", "contract-h", "config-h", "code-v", "kfp-tracking-test")
    spec = build_serving_spec(config, [0, 1], sha)
    config = config.model_copy(update={"name": "tracking-test"})
    run_id, model_uri = log_training(ctx, config, search, bundle, sha, features.head(5), spec, None)
    return mlflow_server, ctx, sha, search, run_id, model_uri, tmp


def test_parent_run_params_metrics_tags_and_artifacts(logged):
    url, ctx, sha, search, run_id, _, tmp = logged
    mlflow_client = client(url)
    run = mlflow_client.get_run(run_id)
    assert run.data.params == {"best.C": "1.0", "best.estimator": "logistic_regression"}
    assert run.data.metrics == {"cv_roc_auc": 0.91, "validation_roc_auc": 0.92}
    assert {k: run.data.tags[k] for k in ctx.tags()} == ctx.tags()
    assert run.data.tags[Tag.STAGE] == "train" and run.data.tags[Tag.BUNDLE_SHA256] == sha
    assert run.info.status == "FINISHED"
    root = {a.path for a in mlflow_client.list_artifacts(run_id)}
    assert {"leaderboard.json", "contract.json", "bundle"} <= root
    bundle = {a.path for a in mlflow_client.list_artifacts(run_id, "bundle")}
    assert bundle == {"bundle/model.skops", "bundle/serving.json"}
    board = json.loads(
        Path(mlflow_client.download_artifacts(run_id, "leaderboard.json", str(tmp))).read_text()
    )
    assert board["metric"] == "roc_auc"
    assert [c["estimator"] for c in board["candidates"]] == ["logistic_regression", "random_forest"]
    skops = Path(mlflow_client.download_artifacts(run_id, "bundle/model.skops", str(tmp / "dl")))
    assert skops.read_bytes() == (tmp / "model").read_bytes()


def test_one_finished_nested_run_per_trial(logged):
    url, ctx, _, search, run_id, _, _ = logged
    mlflow_client = client(url)
    experiment = mlflow_client.get_run(run_id).info.experiment_id
    children = mlflow_client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{run_id}'")
    expected = {(c.estimator, i): t for c in search.candidates for i, t in enumerate(c.trials)}
    assert len(children) == len(expected) == 5
    for child in children:
        estimator, i = child.data.tags["estimator"], int(child.data.tags["tabpipe.trial"])
        trial = expected.pop((estimator, i))
        assert child.info.status == "FINISHED" and child.info.run_name == f"{estimator}-trial-{i}"
        assert child.data.params == {"estimator": estimator, "C": str(trial.params["C"])}
        assert child.data.metrics == {
            "cv_roc_auc_mean": trial.cv_mean,
            "cv_roc_auc_std": trial.cv_std,
            "fit_seconds": trial.fit_seconds,
        }
        assert child.data.tags[Tag.KFP_RUN_ID] == ctx.kfp_run_id
    assert not expected


def test_logged_model_has_signature_example_skops_and_pinned_requirements(logged):
    import mlflow

    url, _, _, _, _, model_uri, tmp = logged
    mlflow.set_tracking_uri(url)
    local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(tmp / "model_dl")))
    requirements = (local / "requirements.txt").read_text().split()
    assert requirements == model_requirements()
    assert any(r.startswith("scikit-learn==") for r in requirements) and not any(
        "pytest" in r for r in requirements
    )
    info = mlflow.models.get_model_info(model_uri)
    assert [c["name"] for c in info.signature.inputs.to_dict()] == ["a", "b"]
    assert info.flavors["sklearn"]["serialization_format"] == "skops"
    assert (local / "input_example.json").exists()


def test_log_evaluation_and_recorded_test_metrics(logged):
    url, _, _, _, run_id, _, tmp = logged
    png = tmp / "roc_curve.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n fake image bytes")
    metrics = {"accuracy": 0.9, "roc_auc": 0.95, "f1": float("nan")}
    blessing = {"blessed": True, "checks": [], "reasons": []}
    log_evaluation(
        url, run_id, metrics, blessing, [{"column": "a", "n": 3}], {"roc_curve": png}, "sha256:abc"
    )
    mlflow_client = client(url)
    run = mlflow_client.get_run(run_id)
    assert run.data.metrics["test_accuracy"] == 0.9 and "test_f1" not in run.data.metrics
    assert run.data.tags[Tag.BLESSED] == "true" and run.data.tags[Tag.TEST_FINGERPRINT] == "sha256:abc"
    files = {a.path for a in mlflow_client.list_artifacts(run_id, "evaluation")}
    assert files == {"evaluation/blessing.json", "evaluation/slices.json", "evaluation/plots"}
    plots = {a.path for a in mlflow_client.list_artifacts(run_id, "evaluation/plots")}
    assert plots == {"evaluation/plots/roc_curve.png"}

    assert recorded_test_metrics(mlflow_client, run_id, "sha256:abc", ["accuracy", "roc_auc"]) == {
        "accuracy": 0.9,
        "roc_auc": 0.95,
    }
    # Another test split, or a metric that was not recorded (NaN): score the champion again.
    assert recorded_test_metrics(mlflow_client, run_id, "sha256:other", ["accuracy"]) is None
    assert recorded_test_metrics(mlflow_client, run_id, "sha256:abc", ["accuracy", "f1"]) is None
