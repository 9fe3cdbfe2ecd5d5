"""The champion is scored only on test rows it was not trained on (real frames, a real MLflow server)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from tabpipe.champion import comparison_rows, unseen_mask
from tabpipe.config import PipelineConfig, load_config
from tabpipe.features import split_xy
from tabpipe.stages.evaluate import compute_metrics, model_row_hashes, predict, training_row_set

REPO = Path(__file__).resolve().parents[2]
SMALL_CONFIG = REPO / "tests" / "fixtures" / "e2e" / "phishing_small.yaml"
SMALL_DATA = REPO / "tests" / "fixtures" / "e2e" / "phishing_small.csv"


def _row_keys(frame: pd.DataFrame, config: PipelineConfig) -> list[tuple]:
    """Each row's feature and target values as a plain tuple: an oracle independent of hashing."""
    features, target = split_xy(frame, config)
    both = features.assign(**{config.target: target}).astype("float64")
    return [tuple(row) for row in both.itertuples(index=False)]


# ---- the subset logic on real small frames ----


def test_row_hashes_ignore_column_order_integer_vs_float_and_other_columns() -> None:
    config = load_config(SMALL_CONFIG)
    frame = pd.read_csv(SMALL_DATA).head(50)
    as_float = frame.astype({"Page_Rank": "float64"})[list(reversed(frame.columns))]
    assert np.array_equal(model_row_hashes(frame, config), model_row_hashes(as_float, config))
    changed = frame.copy()
    changed.loc[7, "URL_Length"] = -changed.loc[7, "URL_Length"] if changed.loc[7, "URL_Length"] else 1
    differs = model_row_hashes(frame, config) != model_row_hashes(changed, config)
    assert differs.tolist() == [i == 7 for i in range(50)]


def test_unseen_rows_are_exactly_those_not_in_the_training_rows() -> None:
    config = load_config(SMALL_CONFIG)
    data = pd.read_csv(SMALL_DATA)
    train, test = data.iloc[:800], data.iloc[600:1000].reset_index(drop=True)
    seen = training_row_set(model_row_hashes(train, config))
    assert seen.dtype == np.uint64 and np.all(np.diff(seen.astype(np.float64)) >= 0)

    mask, rows = comparison_rows(model_row_hashes(test, config), seen)

    train_keys = set(_row_keys(train, config))
    expected = np.array([key not in train_keys for key in _row_keys(test, config)])
    assert mask is not None
    assert mask.tolist() == expected.tolist()
    assert rows == int(expected.sum())
    assert 0 < rows < 200  # at most the 200 rows past the champion's training rows are new
    # No overlap: every row is usable and no mask is needed; unknown training rows: the same.
    assert comparison_rows(model_row_hashes(test, config), training_row_set())[0] is None
    assert comparison_rows(model_row_hashes(test, config), None) == (None, 400)
    assert unseen_mask(model_row_hashes(train, config), seen).sum() == 0


# ---- evaluate against a real MLflow server and a registered champion ----


def _fit(frame: pd.DataFrame, config: PipelineConfig) -> Pipeline:
    x, y = split_xy(frame, config)
    return Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=500))]).fit(x, y)


@pytest.fixture(scope="module")
def overlapping(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory):
    """A champion trained on rows 0-799, a candidate on rows 0-499, and a test split of rows 600-999."""
    from mlflow import MlflowClient

    from tabpipe.modelio import MODEL_FILENAME, save_model
    from tabpipe.tracking import CHAMPION_ALIAS, TRAINING_ROWS_ARTIFACT, Tag

    base = load_config(SMALL_CONFIG)
    config = PipelineConfig.model_validate(
        base.model_dump() | {"name": "champion-rows", "registry": {"model_name": "champion-rows"}}
    )
    data = pd.read_csv(SMALL_DATA)
    champion_train, candidate_train = data.iloc[:800], data.iloc[:500]
    test = data.iloc[600:1000].reset_index(drop=True)
    tmp = tmp_path_factory.mktemp("champion-rows")

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.create_experiment("champion-rows")
    champion = _fit(champion_train, config)
    run = client.create_run(experiment, run_name="champion")
    bundle = tmp / "bundle"
    bundle.mkdir()
    sha = save_model(champion, bundle / MODEL_FILENAME)
    client.log_artifacts(run.info.run_id, str(bundle), "bundle")
    seen = training_row_set(model_row_hashes(champion_train, config))
    np.save(tmp / TRAINING_ROWS_ARTIFACT, seen)
    client.log_artifact(run.info.run_id, str(tmp / TRAINING_ROWS_ARTIFACT))
    client.set_tag(run.info.run_id, Tag.TRAINING_ROWS, str(len(seen)))
    client.set_terminated(run.info.run_id)
    client.create_registered_model("champion-rows")
    version = client.create_model_version(
        "champion-rows", f"runs:/{run.info.run_id}/bundle", run.info.run_id, tags={Tag.BUNDLE_SHA256: sha}
    )
    client.set_registered_model_alias("champion-rows", CHAMPION_ALIAS, version.version)

    candidate = _fit(candidate_train, config)
    candidate_sha = save_model(candidate, tmp / "candidate.skops")
    test_path = tmp / "test.parquet"
    test.to_parquet(test_path)
    (tmp / "empty.onnx").write_bytes(b"")
    train_keys = set(_row_keys(champion_train, config))
    unseen = np.array([key not in train_keys for key in _row_keys(test, config)])
    return config, tmp, champion, candidate, candidate_sha, test, unseen, experiment


def _evaluate(mlflow_server: str, overlapping, config: PipelineConfig, name: str) -> tuple[dict, str]:
    from mlflow import MlflowClient

    from tabpipe.adapters import evaluate as stage

    _, tmp, _, _, candidate_sha, _, _, experiment = overlapping
    run = MlflowClient(tracking_uri=mlflow_server).create_run(experiment, run_name=name)
    inputs = stage.EvaluateInputs(
        model=tmp / "candidate.skops",
        model_sha256=candidate_sha,
        mlflow_run_id=run.info.run_id,
        test=tmp / "test.parquet",
        onnx_model=tmp / "empty.onnx",
        onnx_sha256=None,
    )
    out = stage.EvaluateOutputs(tmp / f"{name}.md", tmp / f"{name}.json")
    stage.run(config, mlflow_server, inputs, out)
    return json.loads(Path(out.blessing_json).read_text()), Path(out.report_markdown).read_text()


def test_champion_is_scored_only_on_test_rows_it_did_not_train_on(mlflow_server: str, overlapping) -> None:
    config, _, champion, candidate, _, test, unseen, _ = overlapping
    n_unseen = int(unseen.sum())
    assert 0 < n_unseen < 400

    record, report = _evaluate(mlflow_server, overlapping, config, "fair")

    x, y = split_xy(test, config)
    task = config.task

    def on(model: Pipeline, rows: np.ndarray | None) -> dict[str, float]:
        xs, ys = (x, y) if rows is None else (x[rows], y[rows])
        return compute_metrics(predict(model, xs, ys, task), task)

    assert record["champion_version"] == "1"
    assert record["champion_rows"] == n_unseen
    assert record["champion_test_rows"] == 400
    assert record["champion_source"] == f"re-scored on {n_unseen} of 400 test rows it was not trained on"
    assert record["champion_metrics"] == pytest.approx(on(champion, unseen), nan_ok=True)
    # Scored on all 400 rows, including the 200-odd it trained on, it would look different.
    assert record["champion_metrics"] != pytest.approx(on(champion, None), nan_ok=True)
    # The candidate: full-split metrics for the thresholds, the same subset for the comparison.
    assert record["metrics"] == pytest.approx(on(candidate, None), nan_ok=True)
    assert record["candidate_metrics_on_champion_rows"] == pytest.approx(on(candidate, unseen), nan_ok=True)
    (check,) = [c for c in record["checks"] if c["name"] == "champion roc_auc"]
    assert f"on {n_unseen} of 400 test rows it was not trained on" in check["detail"]
    assert f"Champion compared on {n_unseen} of 400 test rows it was not trained on." in report
    assert "candidate (champion's rows)" in report


def test_too_few_unseen_rows_skip_the_comparison_and_say_why(mlflow_server: str, overlapping) -> None:
    config, *_, unseen, _ = overlapping
    n_unseen = int(unseen.sum())
    strict = config.model_copy(
        update={"evaluation": config.evaluation.model_copy(update={"champion_min_rows": n_unseen + 1})}
    )

    record, report = _evaluate(mlflow_server, overlapping, strict, "skipped")

    (check,) = [c for c in record["checks"] if c["name"] == "champion roc_auc"]
    assert check["passed"]
    assert check["detail"] == (
        f"skipped: only {n_unseen} of 400 test rows are not in champion v1's training data "
        f"(champion_min_rows {n_unseen + 1}); comparison skipped"
    )
    assert record["champion_rows"] == n_unseen
    assert record["champion_metrics"] == {}
    assert record["candidate_metrics_on_champion_rows"] is None
    assert "comparison skipped" in report
