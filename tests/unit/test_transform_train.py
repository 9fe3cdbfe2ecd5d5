"""Unit tests of the transform stage (features, preprocessing) and the train stage (search, ranking)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from tabpipe.config import (
    CandidateModel,
    Estimator,
    Metric,
    ParamRange,
    PipelineConfig,
    TaskType,
    parse_config,
)
from tabpipe.errors import ConfigError
from tabpipe.features import EngineeredFeatures, build_preprocessor, feature_columns, split_xy
from tabpipe.stages.train import param_distributions, scorer_for, train
from tabpipe.stages.transform import describe_features, fit_preprocessor

# --------------------------------------------------------------------------- helpers

COLUMNS: dict[str, Any] = {
    "id": {"dtype": "integer", "unique": True},
    "a": {"dtype": "float", "nullable": True},
    "b": {"dtype": "integer"},
    "c": {"dtype": "string", "nullable": True},
    "flag": {"dtype": "boolean"},
    "when": {"dtype": "datetime"},
    "email": {"dtype": "string", "pii": "hash"},
    "phone": {"dtype": "string", "pii": "drop"},
    "noise": {"dtype": "float"},
    "y": {"dtype": "string", "allowed": ["no", "yes"]},
}


def make_config(
    task: str = "binary_classification",
    *,
    columns: dict[str, Any] | None = None,
    models: list[dict[str, Any]] | None = None,
    metric: str | None = None,
    **extra: Any,
) -> PipelineConfig:
    classification = task != "regression"
    data: dict[str, Any] = {
        "name": "unit",
        "task": task,
        "target": "y",
        "source": {"uri": "/tmp/unit.csv"},
        "contract": {"name": "unit", "columns": columns or COLUMNS},
        "models": models or [{"estimator": "logistic_regression" if classification else "ridge"}],
        "evaluation": {"primary_metric": metric or ("f1" if classification else "rmse")},
        "registry": {"model_name": "unit"},
        **extra,
    }
    return parse_config(data)


def synthetic(n: int, task: str, seed: int = 0) -> pd.DataFrame:
    """A learnable data set with the COLUMNS layout; the target depends on a, b and c."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = rng.integers(1, 5, size=n)
    c = rng.choice(["red", "green", "blue"], size=n)
    signal = 2.0 * a + 0.5 * b + np.where(c == "red", 1.5, 0.0) + rng.normal(scale=0.3, size=n)
    if task == "binary_classification":
        y: Any = np.where(signal > np.median(signal), "yes", "no")
    elif task == "multiclass_classification":
        y = np.asarray(["low", "mid", "high"])[np.digitize(signal, np.quantile(signal, [1 / 3, 2 / 3]))]
    else:
        y = signal
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "a": a,
            "b": b,
            "c": c,
            "flag": rng.random(n) < 0.5,
            "when": pd.date_range("2024-01-01", periods=n, freq="h").strftime("%Y-%m-%d %H:%M"),
            "email": [f"user{i}@example.com" for i in range(n)],
            "phone": [f"+47 {i:08d}" for i in range(n)],
            "noise": rng.normal(size=n),
            "y": y,
        }
    )


def columns_for(task: str) -> dict[str, Any]:
    cols = dict(COLUMNS)
    if task == "regression":
        cols["y"] = {"dtype": "float"}
    elif task == "multiclass_classification":
        cols["y"] = {"dtype": "string", "allowed": ["low", "mid", "high"]}
    return cols


# --------------------------------------------------------------------------- feature_columns


def test_feature_columns_exclude_target_drop_pii_unique_and_datetime() -> None:
    config = make_config(
        features={
            "drop": ["noise"],
            "engineered": [{"name": "a_per_b", "op": "ratio", "inputs": ["a", "b"]}],
        }
    )
    columns = feature_columns(config)
    assert columns.numeric == ["a", "b", "flag"]
    assert columns.categorical == ["c"]
    assert columns.engineered == ["a_per_b"]
    assert columns.raw == ["a", "b", "flag", "c"]
    for excluded in ("y", "noise", "email", "phone", "id", "when"):
        assert excluded not in columns.raw


def test_split_xy_returns_raw_features_in_contract_order_and_target() -> None:
    config = make_config(features={"drop": ["noise"]})
    frame = synthetic(10, "binary_classification")
    features, target = split_xy(frame, config)
    assert list(features.columns) == ["a", "b", "flag", "c"]
    assert target.tolist() == frame["y"].tolist()


def test_describe_features_lists_inputs_and_width() -> None:
    config = make_config(features={"engineered": [{"name": "ab", "op": "product", "inputs": ["a", "b"]}]})
    text = describe_features(config, ["x"] * 9)
    assert "numeric inputs (4): a, b, flag, noise" in text
    assert "categorical inputs (1): c" in text
    assert "engineered (1): ab" in text
    assert "**9**" in text


# --------------------------------------------------------------------------- EngineeredFeatures


def test_engineered_features_exact_values() -> None:
    frame = pd.DataFrame({"p": [6.0, 1.0, -2.0, 0.0, np.nan], "q": [3, 0, 4, 0, 2], "keep": list("vwxyz")})
    transformer = EngineeredFeatures(
        (
            ("ratio", "ratio", ("p", "q")),
            ("product", "product", ("p", "q")),
            ("difference", "difference", ("p", "q")),
            ("sum", "sum", ("p", "q")),
            ("log_q", "log1p", ("q",)),
            ("log_p", "log1p", ("p",)),
        )
    )
    out = transformer.fit_transform(frame)

    nan = np.nan
    expected = {
        "ratio": [2.0, nan, -0.5, nan, nan],  # x/0 and 0/0 are NaN, never inf
        "product": [18.0, 0.0, -8.0, 0.0, nan],
        "difference": [3.0, 1.0, -6.0, 0.0, nan],
        "sum": [9.0, 1.0, 2.0, 0.0, nan],
        "log_q": [math.log1p(3), 0.0, math.log1p(4), 0.0, math.log1p(2)],
        "log_p": [math.log1p(6), math.log1p(1), nan, 0.0, nan],  # log1p(-2) is undefined -> NaN
    }
    for name, values in expected.items():
        np.testing.assert_allclose(out[name].to_numpy(dtype=float), values, rtol=0, atol=1e-12, err_msg=name)
        assert out[name].dtype == np.float64
    assert not np.isinf(out[list(expected)].to_numpy(dtype=float)).any()
    # input columns kept unchanged, input frame not modified
    pd.testing.assert_frame_equal(out[["p", "q", "keep"]], frame)
    assert list(frame.columns) == ["p", "q", "keep"]
    assert list(transformer.get_feature_names_out()) == ["p", "q", "keep", *expected]


def test_engineered_features_coerce_numeric_strings() -> None:
    frame = pd.DataFrame({"p": ["4", "x"], "q": [2, 2]})
    out = EngineeredFeatures((("r", "ratio", ("p", "q")),)).fit_transform(frame)
    np.testing.assert_array_equal(out["r"].to_numpy(dtype=float), [2.0, np.nan])


def test_engineered_features_unknown_op() -> None:
    with pytest.raises(ValueError, match="unknown feature op 'power'"):
        EngineeredFeatures((("r", "power", ("p", "q")),)).fit_transform(
            pd.DataFrame({"p": [1.0], "q": [2.0]})
        )


# --------------------------------------------------------------------------- the preprocessor


def preprocess_config() -> PipelineConfig:
    return make_config(
        features={"engineered": [{"name": "a_times_b", "op": "product", "inputs": ["a", "b"]}]}
    )


def test_preprocessor_handles_unseen_categories_and_missing_values() -> None:
    config = preprocess_config()
    train_frame = synthetic(60, "binary_classification")
    fitted, names = fit_preprocessor(config, train_frame)
    assert len(names) == len(set(names))
    assert any("a_times_b" in n for n in names)
    assert any(n.endswith("c_red") for n in names)

    scoring = synthetic(4, "binary_classification", seed=9)
    scoring["c"] = scoring["c"].astype(object)
    scoring.loc[0, "c"] = "purple"  # never seen in training
    scoring.loc[1, "c"] = None
    scoring.loc[2, "a"] = np.nan  # training had no missing a
    scoring.loc[3, "b"] = 0
    features, _ = split_xy(scoring, config)
    out = fitted.transform(features)

    assert out.shape == (4, len(names))
    assert len(fitted.get_feature_names_out()) == out.shape[1]
    assert np.isfinite(np.asarray(out, dtype=float)).all()
    dense = np.asarray(out, dtype=float)
    onehot = [i for i, n in enumerate(names) if "__c_" in n]
    assert onehot, names
    assert dense[0, onehot].tolist() == [0.0] * len(onehot)  # unseen category: all zeros
    assert dense[1, onehot].tolist() == [0.0] * len(onehot)  # missing category (unseen in training)
    assert dense[2:, onehot].sum(axis=1).tolist() == [1.0, 1.0]  # known categories: one-hot
    # a missing numeric value is imputed with the training median, then scaled
    numeric = fitted.named_steps["columns"].named_transformers_["numeric"]
    scaler = numeric.named_steps["scale"]
    a_index = names.index("numeric__a")
    expected = (train_frame["a"].median() - scaler.mean_[0]) / scaler.scale_[0]
    assert dense[2, a_index] == pytest.approx(expected)


def test_preprocessor_fits_on_given_split_only() -> None:
    config = make_config(
        columns={"a": {"dtype": "float"}, "c": {"dtype": "string"}, "y": {"dtype": "string"}}
    )
    train_frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 6.0], "c": ["u", "v", "u", "v"], "y": ["no", "yes"] * 2})
    other = pd.DataFrame({"a": [100.0, 200.0], "c": ["w", "w"], "y": ["no", "yes"]})
    whole = pd.concat([train_frame, other], ignore_index=True)

    fitted, names = fit_preprocessor(config, train_frame)
    scaler = fitted.named_steps["columns"].named_transformers_["numeric"].named_steps["scale"]
    assert scaler.mean_[0] == pytest.approx(3.0)  # train mean
    assert scaler.mean_[0] != pytest.approx(whole["a"].mean())
    assert scaler.scale_[0] == pytest.approx(train_frame["a"].std(ddof=0))
    assert not any(n.endswith("c_w") for n in names)  # category only outside train is not learned
    out = np.asarray(fitted.transform(split_xy(train_frame, config)[0]), dtype=float)
    a_index = names.index("numeric__a")
    assert out[:, a_index].mean() == pytest.approx(0.0)


def test_build_preprocessor_is_unfitted_and_clonable() -> None:
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    pre = build_preprocessor(preprocess_config())
    copy = clone(pre)
    with pytest.raises(NotFittedError):
        copy.named_steps["columns"].transform(synthetic(3, "binary_classification"))
    assert copy.named_steps["engineer"].features == (("a_times_b", "product", ("a", "b")),)


# --------------------------------------------------------------------------- train


def train_config(task: str, models: list[dict[str, Any]], metric: str | None = None) -> PipelineConfig:
    return make_config(
        task,
        columns=columns_for(task),
        models=models,
        metric=metric,
        features={"engineered": [{"name": "a_plus_b", "op": "sum", "inputs": ["a", "b"]}]},
        search={"n_iter": 2, "cv_folds": 2, "seed": 11},
    )


CASES = {
    "binary_classification": (
        [
            {"estimator": "logistic_regression", "params": {"C": {"low": 0.01, "high": 10.0, "log": True}}},
            {
                "estimator": "random_forest",
                "params": {"n_estimators": [10, 20], "max_depth": [3, None]},
            },
        ],
        "f1",
    ),
    "multiclass_classification": (
        [
            {"estimator": "logistic_regression", "params": {"C": {"low": 0.1, "high": 10.0, "log": True}}},
            {"estimator": "hist_gradient_boosting", "params": {"max_iter": [10, 20]}},
        ],
        "accuracy",
    ),
    "regression": (
        [
            {"estimator": "ridge", "params": {"alpha": {"low": 0.01, "high": 10.0, "log": True}}},
            {"estimator": "linear_regression"},
            {
                "estimator": "random_forest",
                "params": {"n_estimators": [10], "min_samples_leaf": {"low": 1, "high": 4, "integer": True}},
            },
        ],
        "rmse",
    ),
}


@pytest.fixture(scope="module")
def trained() -> dict[str, tuple[PipelineConfig, pd.DataFrame, pd.DataFrame, Any]]:
    out = {}
    for task, (models, metric) in CASES.items():
        config = train_config(task, models, metric)
        frame = synthetic(300, task, seed=1)
        train_frame, validation_frame = frame.iloc[:220], frame.iloc[220:].reset_index(drop=True)
        out[task] = (config, train_frame, validation_frame, train(config, train_frame, validation_frame))
    return out


@pytest.mark.parametrize("task", list(CASES))
def test_train_ranks_candidates_by_validation_score(trained: dict, task: str) -> None:
    config, _, validation_frame, result = trained[task]
    assert result.metric is config.evaluation.primary_metric
    assert sorted(c.estimator for c in result.candidates) == sorted(m.estimator.value for m in config.models)
    scores = [c.validation_score for c in result.candidates]
    assert scores == sorted(scores, reverse=True)
    assert result.best is result.candidates[0]
    for candidate in result.candidates:
        assert math.isfinite(candidate.cv_score)
        assert candidate.trials
        assert candidate.cv_score == pytest.approx(max(t.cv_mean for t in candidate.trials))
        assert candidate.search_seconds > 0
    # the recorded validation score is the metric on the validation split
    x_val, y_val = split_xy(validation_frame, config)
    scorer = scorer_for(config.evaluation.primary_metric, config.task, sorted(pd.unique(y_val).tolist()))
    assert scorer(result.best.model, x_val, y_val) == pytest.approx(result.best.validation_score)


def test_binary_model_learns_and_predicts_string_labels_from_raw_rows(trained: dict) -> None:
    config, _, validation_frame, result = trained["binary_classification"]
    raw_rows = validation_frame.head(7)  # the whole raw frame, extra columns included
    predictions = result.best.model.predict(raw_rows)
    assert len(predictions) == 7
    assert set(predictions) <= {"yes", "no"}
    x_val, y_val = split_xy(validation_frame, config)
    f1 = f1_score(y_val, result.best.model.predict(x_val), pos_label="yes")
    assert f1 == pytest.approx(result.best.validation_score)
    assert f1 > 0.75  # the signal is learnable
    proba = result.best.model.predict_proba(raw_rows)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_multiclass_model_predicts_all_labels(trained: dict) -> None:
    config, _, validation_frame, result = trained["multiclass_classification"]
    predictions = result.best.model.predict(validation_frame)
    assert set(predictions) <= {"low", "mid", "high"}
    assert result.best.validation_score > 0.5  # well above chance (1/3)
    assert list(result.best.model.classes_) == ["high", "low", "mid"]


def test_regression_scores_are_negated_errors(trained: dict) -> None:
    config, _, validation_frame, result = trained["regression"]
    x_val, y_val = split_xy(validation_frame, config)
    predictions = result.best.model.predict(validation_frame)
    assert predictions.dtype == np.float64
    rmse = float(np.sqrt(np.mean((y_val.to_numpy() - result.best.model.predict(x_val)) ** 2)))
    assert result.best.validation_score == pytest.approx(-rmse)
    assert rmse < y_val.std()  # better than predicting the mean
    rf = next(c for c in result.candidates if c.estimator == "random_forest")
    assert isinstance(rf.best_params["min_samples_leaf"], int)
    assert 1 <= rf.best_params["min_samples_leaf"] <= 4


def test_seeded_training_is_reproducible(trained: dict) -> None:
    config, train_frame, validation_frame, first = trained["binary_classification"]
    again = train(config, train_frame, validation_frame)
    assert [c.estimator for c in again.candidates] == [c.estimator for c in first.candidates]
    assert [c.best_params for c in again.candidates] == [c.best_params for c in first.candidates]
    assert [c.cv_score for c in again.candidates] == [c.cv_score for c in first.candidates]
    assert [c.validation_score for c in again.candidates] == [c.validation_score for c in first.candidates]
    assert [[t.params for t in c.trials] for c in again.candidates] == [
        [t.params for t in c.trials] for c in first.candidates
    ]


def test_train_uses_given_preprocessor_unfitted(trained: dict) -> None:
    config, train_frame, validation_frame, _ = trained["binary_classification"]
    fitted, _ = fit_preprocessor(config, train_frame)
    single = make_config(
        columns=COLUMNS,
        models=[{"estimator": "logistic_regression"}],
        features={"engineered": [{"name": "a_plus_b", "op": "sum", "inputs": ["a", "b"]}]},
        search={"n_iter": 1, "cv_folds": 2, "seed": 11},
    )
    result = train(single, train_frame, validation_frame, fitted)
    assert result.best.best_params == {}  # no space: defaults cross-validated once
    assert len(result.best.trials) == 1
    assert result.best.model.named_steps["preprocess"] is not fitted  # cloned, refit per fold


# --------------------------------------------------------------------------- search space and scorers


def test_param_distributions_maps_ranges_and_lists() -> None:
    candidate = CandidateModel(
        estimator=Estimator.RANDOM_FOREST,
        params={
            "min_samples_leaf": ParamRange(low=2, high=5, integer=True),
            "max_features": ParamRange(low=0.001, high=10.0, log=True),
            "ccp_alpha": ParamRange(low=0.25, high=0.75),
            "max_depth": [8, 16, None],
        },
    )
    space = param_distributions(candidate)
    assert set(space) == {
        "model__min_samples_leaf",
        "model__max_features",
        "model__ccp_alpha",
        "model__max_depth",
    }
    assert space["model__max_depth"] == [8, 16, None]

    ints = space["model__min_samples_leaf"].rvs(size=2000, random_state=0)
    assert np.issubdtype(ints.dtype, np.integer)
    assert set(ints.tolist()) == {2, 3, 4, 5}  # both bounds included

    logs = space["model__max_features"].rvs(size=4000, random_state=0)
    assert logs.min() >= 0.001 and logs.max() <= 10.0
    # log-uniform: about a quarter of the draws in each decade below 1 of the 4 decades
    assert 0.2 < np.mean(logs < 0.01) < 0.3
    assert 0.2 < np.mean(logs > 1.0) < 0.3

    uniform = space["model__ccp_alpha"].rvs(size=4000, random_state=0)
    assert uniform.min() >= 0.25 and uniform.max() <= 0.75
    assert uniform.mean() == pytest.approx(0.5, abs=0.02)


def test_param_distributions_empty_space() -> None:
    assert param_distributions(CandidateModel(estimator=Estimator.LINEAR_REGRESSION)) == {}


def test_scorer_f1_binary_with_string_labels() -> None:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"v": rng.normal(size=80)})
    y = pd.Series(np.where(x["v"] + rng.normal(scale=0.8, size=80) > 0.3, "yes", "no"))
    model = LogisticRegression().fit(x, y)
    scorer = scorer_for(Metric.F1, TaskType.BINARY, ["no", "yes"])
    predicted = model.predict(x)
    assert scorer(model, x, y) == pytest.approx(f1_score(y, predicted, pos_label="yes"))
    assert scorer(model, x, y) != pytest.approx(f1_score(y, predicted, pos_label="no"))


def test_scorer_roc_auc_binary_with_string_labels() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    x = pd.DataFrame({"v": rng.normal(size=60)})
    y = pd.Series(np.where(x["v"] + rng.normal(scale=1.0, size=60) > 0, "yes", "no"))
    model = LogisticRegression().fit(x, y)
    scorer = scorer_for(Metric.ROC_AUC, TaskType.BINARY, ["no", "yes"])
    expected = roc_auc_score(y == "yes", model.predict_proba(x)[:, 1])
    assert scorer(model, x, y) == pytest.approx(expected)


def test_scorer_rmse_is_negated() -> None:
    from sklearn.linear_model import LinearRegression

    x = pd.DataFrame({"v": [0.0, 1.0, 2.0, 3.0]})
    y = pd.Series([0.0, 1.0, 2.0, 5.0])
    model = LinearRegression().fit(x, y)
    rmse = float(np.sqrt(np.mean((model.predict(x) - y) ** 2)))
    assert scorer_for(Metric.RMSE, TaskType.REGRESSION, [])(model, x, y) == pytest.approx(-rmse)


# --------------------------------------------------------------------------- config misuse caught at load


@pytest.mark.parametrize(
    ("features", "input_column"),
    [
        (
            {"drop": ["noise"], "engineered": [{"name": "r", "op": "ratio", "inputs": ["a", "noise"]}]},
            "noise",
        ),
        ({"engineered": [{"name": "r", "op": "ratio", "inputs": ["a", "id"]}]}, "id"),
    ],
    ids=["dropped-input", "unique-input"],
)
def test_engineered_feature_on_a_non_feature_column(features: dict[str, Any], input_column: str) -> None:
    # Either the config refuses it, naming the field, or the preprocessor copes: never a raw KeyError.
    try:
        config = make_config(features=features)
    except ConfigError as exc:
        assert "features.engineered" in str(exc) and input_column in str(exc)
        return
    _, names = fit_preprocessor(config, synthetic(30, "binary_classification"))
    assert any(name.endswith("__r") for name in names)


@pytest.mark.parametrize(
    "features",
    [
        {"engineered": [{"name": "r", "op": "log1p", "inputs": ["y"]}]},
        {"engineered": [{"name": "b", "op": "log1p", "inputs": ["a"]}]},
        {
            "engineered": [
                {"name": "z", "op": "log1p", "inputs": ["a"]},
                {"name": "z", "op": "log1p", "inputs": ["b"]},
            ]
        },
    ],
    ids=["target-input", "name-of-existing-column", "duplicate-names"],
)
def test_engineered_feature_misuse_is_a_config_error(features: dict[str, Any]) -> None:
    columns = {**COLUMNS, "y": {"dtype": "float"}}
    with pytest.raises(ConfigError, match="features.engineered"):
        make_config("regression", columns=columns, features=features)


def test_search_n_jobs_zero_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="search.n_jobs"):
        make_config(search={"n_jobs": 0})
