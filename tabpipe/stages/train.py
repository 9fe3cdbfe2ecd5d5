"""Train: a seeded hyperparameter search over several candidate estimators.

Each candidate is ``preprocessor + estimator`` searched with
``RandomizedSearchCV`` on the training split; the candidates are then compared
on the held-out validation split, so the choice between estimators is not made
on the same folds that tuned them. The winner, refit on the training split, is
the model bundle.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tabpipe.config import CandidateModel, Metric, ParamRange, PipelineConfig, TaskType
from tabpipe.errors import TabpipeError
from tabpipe.estimators import ESTIMATORS
from tabpipe.features import build_preprocessor, split_xy


@dataclass(frozen=True)
class Trial:
    """One hyperparameter setting tried in cross-validation."""

    params: dict[str, Any]
    cv_mean: float
    cv_std: float
    fit_seconds: float


@dataclass
class CandidateResult:
    """The outcome of searching one estimator."""

    estimator: str
    best_params: dict[str, Any]
    cv_score: float
    validation_score: float
    search_seconds: float
    model: Any = field(repr=False)
    trials: list[Trial] = field(default_factory=list)


@dataclass
class TrainResult:
    """All candidates, best first, and the metric they were ranked by."""

    metric: Metric
    candidates: list[CandidateResult]

    @property
    def best(self) -> CandidateResult:
        """The winning candidate."""
        return self.candidates[0]


def param_distributions(candidate: CandidateModel) -> dict[str, Any]:
    """The search space in ``RandomizedSearchCV`` form, keyed for the ``model`` step."""
    from scipy import stats

    space: dict[str, Any] = {}
    for name, spec in candidate.params.items():
        key = f"model__{name}"
        if isinstance(spec, ParamRange):
            if spec.integer:
                space[key] = stats.randint(int(spec.low), int(spec.high) + 1)
            elif spec.log:
                space[key] = stats.loguniform(spec.low, spec.high)
            else:
                space[key] = stats.uniform(spec.low, spec.high - spec.low)
        else:
            space[key] = list(spec)
    return space


def scorer_for(metric: Metric, task: TaskType, classes: list[Any]) -> Any:
    """A scikit-learn scorer for the primary metric (greater is better)."""
    from sklearn.metrics import f1_score, get_scorer, make_scorer, precision_score, recall_score

    if metric in (Metric.F1, Metric.PRECISION, Metric.RECALL):
        fn = {Metric.F1: f1_score, Metric.PRECISION: precision_score, Metric.RECALL: recall_score}[metric]
        if task is TaskType.BINARY:
            return make_scorer(fn, pos_label=classes[-1], zero_division=0)
        return make_scorer(fn, average="macro", zero_division=0)
    names = {
        Metric.ACCURACY: "accuracy",
        Metric.ROC_AUC: "roc_auc" if task is TaskType.BINARY else "roc_auc_ovr",
        Metric.MAE: "neg_mean_absolute_error",
        Metric.RMSE: "neg_root_mean_squared_error",
        Metric.R2: "r2",
    }
    return get_scorer(names[metric])


def _plain(value: Any) -> Any:
    """Plain Python values for logging and JSON."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _search_candidate(
    candidate: CandidateModel,
    config: PipelineConfig,
    x_train: pd.DataFrame,
    y_train: pd.Series,
    x_val: pd.DataFrame,
    y_val: pd.Series,
    scorer: Any,
    preprocessor: Any,
) -> CandidateResult:
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, KFold, RandomizedSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline

    search_cfg = config.search
    pipeline = Pipeline(
        [
            ("preprocess", clone(preprocessor)),
            ("model", ESTIMATORS[candidate.estimator].build(config.task, search_cfg.seed)),
        ]
    )
    space = param_distributions(candidate)
    splitter_cls = StratifiedKFold if config.task.is_classification else KFold
    cv = splitter_cls(n_splits=search_cfg.cv_folds, shuffle=True, random_state=search_cfg.seed)
    common = dict(scoring=scorer, cv=cv, n_jobs=search_cfg.n_jobs, refit=True, error_score="raise")
    if space:
        search = RandomizedSearchCV(
            pipeline, space, n_iter=search_cfg.n_iter, random_state=search_cfg.seed, **common
        )
    else:  # nothing to tune: cross-validate the defaults once
        search = GridSearchCV(pipeline, [{}], **common)
    started = time.perf_counter()
    try:
        search.fit(x_train, y_train)
    except ValueError as exc:
        raise TabpipeError(f"train: estimator {candidate.estimator.value!r} failed to fit: {exc}") from None
    elapsed = time.perf_counter() - started
    results = search.cv_results_
    trials = [
        Trial(
            params={k.removeprefix("model__"): _plain(v) for k, v in params.items()},
            cv_mean=float(results["mean_test_score"][i]),
            cv_std=float(results["std_test_score"][i]),
            fit_seconds=float(results["mean_fit_time"][i]) * search_cfg.cv_folds,
        )
        for i, params in enumerate(results["params"])
    ]
    return CandidateResult(
        estimator=candidate.estimator.value,
        best_params={k.removeprefix("model__"): _plain(v) for k, v in search.best_params_.items()},
        cv_score=float(search.best_score_),
        validation_score=float(scorer(search.best_estimator_, x_val, y_val)),
        search_seconds=elapsed,
        model=search.best_estimator_,
        trials=trials,
    )


def train(
    config: PipelineConfig,
    train_frame: pd.DataFrame,
    validation_frame: pd.DataFrame,
    preprocessor: Any | None = None,
) -> TrainResult:
    """Search every candidate and rank them by validation score on the primary metric.

    Args:
        config: The pipeline config.
        train_frame: Training split; the search cross-validates on it.
        validation_frame: Validation split; ranks the candidates.
        preprocessor: The transform stage's preprocessing, cloned (unfitted) into
            each candidate so every CV fold refits it; built from the config when None.

    Raises:
        TabpipeError: an estimator cannot fit the data.
    """
    if preprocessor is None:
        preprocessor = build_preprocessor(config)
    x_train, y_train = split_xy(train_frame, config)
    x_val, y_val = split_xy(validation_frame, config)
    classes = sorted(pd.unique(y_train).tolist()) if config.task.is_classification else []
    scorer = scorer_for(config.evaluation.primary_metric, config.task, classes)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=config.search.threads):
        results = [
            _search_candidate(candidate, config, x_train, y_train, x_val, y_val, scorer, preprocessor)
            for candidate in config.models
        ]
    # Scorers are greater-is-better (errors are negated), so sort descending.
    results.sort(key=lambda r: r.validation_score, reverse=True)
    return TrainResult(metric=config.evaluation.primary_metric, candidates=results)
