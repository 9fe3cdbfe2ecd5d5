"""Behavioural tests of trained models: invariance, direction and minimum functionality.

Aggregate metrics say how often a model is right; these tests say whether it
behaves sensibly when an input changes in a way whose effect is known. Small
real models are trained with the project's own code (``ingest`` then ``train``
with one candidate, one search iteration and two folds) on the shipped data,
once per module, and every bound is derived from the data or the config:

* invariance: an unseen category never breaks a prediction, and a category the
  price barely depends on moves predictions by a small fraction of the model's
  own test error (a category it does depend on moves them by more);
* direction: more floor area never lowers the predicted price, more distance to
  the centre never raises it (relations the data holds and the generator builds in);
* minimum functionality: phishing beats the majority-class baseline by a clear
  margin, the wine model predicts every cultivar;
* the preprocessing travels inside the model: it selects its inputs by name,
  computes the engineered features itself, and ignores column order and extras.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from tabpipe.config import Metric, PipelineConfig, load_config
from tabpipe.features import feature_columns, split_xy
from tabpipe.stages.ingest import Splits, ingest
from tabpipe.stages.train import train

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Fitted:
    """A model trained on a shipped data set, with the split it was not trained on."""

    config: PipelineConfig
    splits: Splits
    model: Any
    x_test: pd.DataFrame
    y_test: pd.Series


@cache
def _fit(dataset: str, estimator: str) -> Fitted:
    """Train one candidate of a shipped config cheaply (1 search iteration, 2 folds), once per session."""
    config = load_config(REPO / "configs" / f"{dataset}.yaml")
    candidates = [m for m in config.models if m.estimator.value == estimator]
    assert candidates, f"{dataset} has no {estimator} candidate"
    cheap = config.model_copy(
        update={
            "models": candidates,
            "search": config.search.model_copy(update={"n_iter": 1, "cv_folds": 2}),
        }
    )
    splits = ingest(cheap).splits
    result = train(cheap, splits.train, splits.validation)
    assert result.best.estimator == estimator
    x_test, y_test = split_xy(splits.test, cheap)
    return Fitted(cheap, splits, result.best.model, x_test, y_test)


def _rmse(fitted: Fitted) -> float:
    residual = fitted.model.predict(fitted.x_test) - fitted.y_test.to_numpy()
    return float(np.sqrt(np.mean(residual**2)))


HOUSING_MODELS = ["ridge", "hist_gradient_boosting"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    # Predictions run outside train's thread limit; OpenMP spin-waits on shared cores made one
    # gradient-boosting predict take 1.2 s instead of a few ms here (see SearchConfig.threads).
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module", params=HOUSING_MODELS)
def housing(request: pytest.FixtureRequest) -> Fitted:
    return _fit("housing", request.param)


@pytest.fixture(scope="module")
def housing_ridge() -> Fitted:
    return _fit("housing", "ridge")


@pytest.fixture(scope="module")
def phishing() -> Fitted:
    return _fit("phishing", "logistic_regression")


@pytest.fixture(scope="module")
def wine() -> Fitted:
    return _fit("wine", "logistic_regression")


# --------------------------------------------------------------------------- invariance


@pytest.mark.parametrize("column", ["neighbourhood", "energy_label", "heating"])
def test_unseen_category_gives_finite_predictions(housing: Fitted, column: str) -> None:
    assert column in feature_columns(housing.config).categorical
    unseen = f"never_seen_{column}"
    assert unseen not in set(housing.splits.train[column].dropna())
    changed = housing.x_test.assign(**{column: unseen})

    predictions = housing.model.predict(changed)

    assert predictions.shape == (len(changed),)
    assert np.isfinite(predictions).all()


def _shift_from_unseen(fitted: Fitted, column: str) -> np.ndarray:
    """|prediction change| per test row when ``column`` holds a category never seen in training."""
    before = fitted.model.predict(fitted.x_test)
    after = fitted.model.predict(fitted.x_test.assign(**{column: f"never_seen_{column}"}))
    return np.abs(after - before)


def test_unseen_heating_barely_moves_predictions(housing: Fitted) -> None:
    # Heating changes the generated price by at most 6% (data/housing/generate.py), the
    # neighbourhood by a factor up to 1.8; the model's own test error sets the scale.
    rmse = _rmse(housing)
    assert rmse < housing.y_test.std()  # the model has learned something, so the scale means something
    heating = _shift_from_unseen(housing, "heating")
    assert heating.mean() <= 0.25 * rmse
    assert np.quantile(heating, 0.95) <= 0.5 * rmse
    # The bound discriminates: losing a feature the price depends on moves predictions by more.
    neighbourhood = _shift_from_unseen(housing, "neighbourhood")
    assert neighbourhood.mean() > 0.25 * rmse


# --------------------------------------------------------------------------- direction


@pytest.mark.parametrize(
    ("column", "step", "sign"),
    [
        pytest.param("area_sqm", 10.0, +1, id="more-area-not-cheaper"),
        pytest.param("distance_km", 2.0, -1, id="farther-not-dearer"),
    ],
)
def test_direction_of_area_and_distance(housing_ridge: Fitted, column: str, step: float, sign: int) -> None:
    config, x_test = housing_ridge.config, housing_ridge.x_test
    # The relation is in the data: the training split's rank correlation has the expected sign.
    train_frame = housing_ridge.splits.train
    assert sign * train_frame[column].corr(train_frame[config.target], method="spearman") > 0.2
    # The column feeds an engineered feature, which the model computes itself.
    engineered = [f.name for f in config.features.engineered if column in f.inputs]
    assert engineered
    produced = set(housing_ridge.model.named_steps["preprocess"].get_feature_names_out())
    assert {f"numeric__{name}" for name in engineered} <= produced

    moved = x_test.assign(**{column: x_test[column] + step})
    assert moved[column].max() <= config.contract.columns[column].max  # still valid data
    change = housing_ridge.model.predict(moved) - housing_ridge.model.predict(x_test)

    assert sign * change.mean() > 0
    assert np.mean(sign * change > 0) >= 0.9


# --------------------------------------------------------------------------- minimum functionality


def test_phishing_beats_the_majority_baseline(phishing: Fitted) -> None:
    majority = phishing.splits.train[phishing.config.target].mode().iloc[0]
    y_test = phishing.y_test.to_numpy()
    baseline = float(np.mean(y_test == majority))
    accuracy = float(np.mean(phishing.model.predict(phishing.x_test) == y_test))

    assert 0.5 <= baseline < 0.6  # the classes are roughly balanced (56% legitimate)
    assert accuracy >= phishing.config.evaluation.thresholds[Metric.ACCURACY]
    assert accuracy - baseline >= 0.25
    assert 1 - accuracy <= (1 - baseline) / 4  # a quarter of the baseline's errors at most


def test_wine_predicts_every_cultivar(wine: Fitted) -> None:
    predictions = pd.Series(wine.model.predict(wine.x_test))
    counts = predictions.value_counts()
    cultivars = set(wine.config.contract.columns[wine.config.target].allowed or [])

    assert set(wine.y_test) == cultivars  # the test split holds every class
    assert set(counts.index) == cultivars
    assert counts.min() >= 1
    assert (
        float(np.mean(predictions.to_numpy() == wine.y_test.to_numpy()))
        >= (wine.config.evaluation.thresholds[Metric.ACCURACY])
    )


# --------------------------------------------------------------------------- the transform is inside


def _outputs(model: Any, frame: pd.DataFrame) -> np.ndarray:
    """Class probabilities for a classifier, predictions for a regressor."""
    return model.predict_proba(frame) if hasattr(model, "predict_proba") else model.predict(frame)


@pytest.mark.parametrize(
    ("dataset", "estimator"),
    [("housing", "ridge"), ("housing", "hist_gradient_boosting"), ("phishing", "logistic_regression")],
)
def test_model_selects_its_columns_by_name(dataset: str, estimator: str) -> None:
    fitted = _fit(dataset, estimator)
    x_test = fitted.x_test
    expected = _outputs(fitted.model, x_test)
    assert not set(feature_columns(fitted.config).engineered) & set(x_test.columns)  # computed inside

    shuffled = list(np.random.default_rng(0).permutation(x_test.columns))
    assert shuffled != list(x_test.columns)
    np.testing.assert_array_equal(_outputs(fitted.model, x_test[shuffled]), expected)
    np.testing.assert_array_equal(_outputs(fitted.model, x_test[x_test.columns[::-1]]), expected)
    # The whole raw table (identifier and target included) gives the same outputs too.
    np.testing.assert_array_equal(_outputs(fitted.model, fitted.splits.test), expected)
