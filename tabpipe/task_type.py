"""The learning task of a data set, below both the config and the estimator registry.

It lives in its own module so :mod:`tabpipe.estimators` can say which tasks
each estimator supports while :mod:`tabpipe.config` imports the registry,
without an import cycle. :mod:`tabpipe.config` re-exports it.
"""

from __future__ import annotations

import enum


class TaskType(enum.StrEnum):
    """Learning task of a data set."""

    BINARY = "binary_classification"
    MULTICLASS = "multiclass_classification"
    REGRESSION = "regression"

    @property
    def is_classification(self) -> bool:
        """True for the two classification tasks."""
        return self is not TaskType.REGRESSION
