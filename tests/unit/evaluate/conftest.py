"""Fixtures of the evaluate tests: fitted pipelines on small synthetic data sets."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

# Lets the test modules import their shared builders.
sys.path.insert(0, str(Path(__file__).parent))

from evaluate_support import binary_target, make_frame, make_pipeline  # noqa: E402


@pytest.fixture(scope="module")
def binary_str():
    frame = make_frame(400, 0)
    y = pd.Series(np.where(binary_target(frame, 1), "yes", "no"), name="target")
    model = make_pipeline(LogisticRegression()).fit(frame, y)
    return model, frame, y


@pytest.fixture(scope="module")
def binary_pm1():
    frame = make_frame(400, 2)
    y = pd.Series(np.where(binary_target(frame, 3), 1, -1), name="target")
    model = make_pipeline(LogisticRegression()).fit(frame, y)
    return model, frame, y


@pytest.fixture(scope="module")
def multiclass():
    frame = make_frame(450, 4)
    score = frame["x1"] + 0.3 * np.random.default_rng(5).normal(size=len(frame))
    y = pd.Series(np.select([score < -0.5, score < 0.5], ["a", "b"], "c"), name="target")
    model = make_pipeline(LogisticRegression()).fit(frame, y)
    return model, frame, y


@pytest.fixture(scope="module")
def regression():
    frame = make_frame(300, 6)
    rng = np.random.default_rng(7)
    y = pd.Series(3.0 * frame["x1"] - 2.0 * frame["x2"] + rng.normal(scale=0.5, size=len(frame)), name="y")
    model = make_pipeline(LinearRegression()).fit(frame, y)
    return model, frame, y
