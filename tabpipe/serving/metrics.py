"""Prometheus metrics of the server, on a registry of its own (never the process-global one).

Besides request counts and latency, the server keeps live statistics of what it
is asked and what it answers, per model version, so monitoring can compare them
with the training reference:

* ``tabpipe_serving_feature_count_total`` / ``_sum`` / ``_sum_squares`` / ``_nulls_total``
  per numeric feature give the mean and standard deviation of each input;
* ``tabpipe_serving_feature_category_total`` counts each categorical value, labelled
  with the contract's allowed values, or the first values seen (up to
  :data:`MAX_CATEGORY_LABELS`), else ``__other__``; so cardinality stays bounded;
* ``tabpipe_serving_prediction_value`` (regression) and
  ``tabpipe_serving_prediction_class_total`` (classification) describe the output;
* ``tabpipe_serving_soft_rule_hits_total{model,version,column,rule}`` counts the values
  a soft contract rule (``soft_min``/``soft_max``) flagged in answered requests.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST as _CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tabpipe.contract import ColumnType
from tabpipe.contract.rules import Violation, check_values, has_soft_rules, warnings_of
from tabpipe.serving_spec import ServingSpec

CONTENT_TYPE_LATEST = _CONTENT_TYPE
MAX_CATEGORY_LABELS = 20
OTHER = "__other__"
MISSING = "__missing__"
MAX_LABEL_CHARS = 64
# Up to this many rows a batch's categories and predicted values are counted value by value
# (cheaper than numpy's per-call cost); larger batches by distinct value or vectorised.
_COUNT_BY_VALUE_ROWS = 64

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Targets have any scale and sign: decades from 1e-2 to 1e9 on both sides of zero.
_DECADES = [10.0**k for k in range(-2, 10)]
_PREDICTION_BUCKETS = tuple([-d for d in reversed(_DECADES)] + [0.0] + _DECADES)


class ServingMetrics:
    """All metrics of one server process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.requests = Counter(
            "tabpipe_serving_requests",
            "Requests by endpoint and status.",
            ["model", "version", "endpoint", "status"],
            registry=r,
        )
        self.errors = Counter(
            "tabpipe_serving_request_errors",
            "Requests answered with an error status (4xx/5xx).",
            ["model", "version", "endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "tabpipe_serving_request_duration_seconds",
            "Time from request to response body.",
            ["model", "version", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.rows = Counter(
            "tabpipe_serving_predicted_rows", "Rows predicted.", ["model", "version"], registry=r
        )
        self.prediction_value = Histogram(
            "tabpipe_serving_prediction_value",
            "Predicted values (regression).",
            ["model", "version"],
            buckets=_PREDICTION_BUCKETS,
            registry=r,
        )
        self.prediction_class = Counter(
            "tabpipe_serving_prediction_class",
            "Predicted labels (classification).",
            ["model", "version", "label"],
            registry=r,
        )
        self.feature_count = Counter(
            "tabpipe_serving_feature_count",
            "Non-null values seen per numeric feature.",
            ["model", "version", "feature"],
            registry=r,
        )
        # Gauges: sums can go down (negative values), which a Counter forbids.
        self.feature_sum = Gauge(
            "tabpipe_serving_feature_sum",
            "Sum of the values seen per numeric feature.",
            ["model", "version", "feature"],
            registry=r,
        )
        self.feature_sum_squares = Gauge(
            "tabpipe_serving_feature_sum_squares",
            "Sum of squared values seen per numeric feature.",
            ["model", "version", "feature"],
            registry=r,
        )
        self.feature_nulls = Counter(
            "tabpipe_serving_feature_nulls",
            "Null/NaN values seen per feature.",
            ["model", "version", "feature"],
            registry=r,
        )
        self.feature_category = Counter(
            "tabpipe_serving_feature_category",
            "Values seen per categorical feature.",
            ["model", "version", "feature", "value"],
            registry=r,
        )
        self.soft_rule_hits = Counter(
            "tabpipe_serving_soft_rule_hits",
            "Values accepted but outside a soft contract rule (soft_min/soft_max), per column and rule.",
            ["model", "version", "column", "rule"],
            registry=r,
        )
        self.model_info = Gauge(
            "tabpipe_serving_model_loaded",
            "1 for the model version being served.",
            ["model", "version", "predictor"],
            registry=r,
        )
        self.loads = Counter(
            "tabpipe_serving_model_loads", "Model load attempts by outcome.", ["outcome"], registry=r
        )

    def exposition(self) -> bytes:
        """The text exposition format of every metric."""
        return generate_latest(self.registry)

    def observe_request(self, model: str, version: str, endpoint: str, status: int, seconds: float) -> None:
        """Count one request and its latency."""
        code = str(status)
        self.requests.labels(model, version, endpoint, code).inc()
        if status >= 400:
            self.errors.labels(model, version, endpoint, code).inc()
        self.latency.labels(model, version, endpoint).observe(seconds)


def _label(value: Any) -> str:
    text = str(value)
    # Only short printable text becomes a label: lone surrogates would break the exposition.
    if len(text) > MAX_LABEL_CHARS or not text.isprintable():
        return OTHER
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return OTHER
    return text


class ModelMetrics:
    """Per-version children of the metrics, bound once at load so a request only increments.

    Args:
        metrics: The server's metrics.
        spec: The model's serving spec.
        version: Its version label.
    """

    def __init__(self, metrics: ServingMetrics, spec: ServingSpec, version: str) -> None:
        name = spec.model_name
        self._metrics = metrics
        self._key = (name, version)
        self._regression = not spec.task.is_classification
        self._numeric: list[str] = []
        self._categorical: list[str] = []
        self._allowed: dict[str, dict[Any, str] | None] = {}
        for inp in spec.inputs:
            rules = inp.rules
            if rules.dtype in (ColumnType.INTEGER, ColumnType.FLOAT):
                self._numeric.append(inp.name)
            elif rules.dtype is not ColumnType.DATETIME:  # timestamps are not categories
                self._categorical.append(inp.name)
            if rules.allowed is not None and rules.dtype is not ColumnType.FLOAT:
                # Integer codes with an allowed set are also counted per value.
                if rules.dtype is ColumnType.INTEGER:
                    self._categorical.append(inp.name)
                self._allowed[inp.name] = {_key(v, rules.dtype): _label(v) for v in rules.allowed}
            elif rules.dtype is ColumnType.BOOLEAN:
                self._allowed[inp.name] = {0.0: "false", 1.0: "true"}
            else:
                self._allowed[inp.name] = None
        self._dtypes = {inp.name: inp.rules.dtype for inp in spec.inputs}
        self._seen: dict[str, dict[Any, str]] = {n: {} for n in self._categorical}
        self._lock = threading.Lock()
        m = metrics
        self._count = [m.feature_count.labels(name, version, f) for f in self._numeric]
        self._sum = [m.feature_sum.labels(name, version, f) for f in self._numeric]
        self._sumsq = [m.feature_sum_squares.labels(name, version, f) for f in self._numeric]
        self._nulls = {f.name: m.feature_nulls.labels(name, version, f.name) for f in spec.inputs}
        self._rows = m.rows.labels(name, version)
        self._value = m.prediction_value.labels(name, version)
        self._class: dict[Any, Any] = {
            c: m.prediction_class.labels(name, version, _label(c)) for c in spec.classes
        }
        self._category_children: dict[tuple[str, str], Any] = {}
        self._soft = {inp.name: inp.rules for inp in spec.inputs if has_soft_rules(inp.rules)}
        self._soft_children: dict[tuple[str, str], Any] = {}

    def observe_warnings(self, warnings: Sequence[Violation]) -> None:
        """Count the soft rules' warnings of an answered request, per column and rule."""
        for warning in warnings:
            key = (warning.column or "", warning.rule)
            child = self._soft_children.get(key)
            if child is None:
                child = self._metrics.soft_rule_hits.labels(*self._key, *key)
                self._soft_children[key] = child
            child.inc(warning.count)

    def soft_warnings(self, columns: dict[str, np.ndarray]) -> list[Violation]:
        """The soft rules' warnings on accepted canonical values, from the contract's one rule table."""
        found: list[Violation] = []
        for feature, rules in self._soft.items():
            found += warnings_of(check_values(feature, rules, columns[feature]))
        return found

    def _category(self, feature: str, label: str) -> Any:
        child = self._category_children.get((feature, label))
        if child is None:
            child = self._metrics.feature_category.labels(*self._key, feature, label)
            self._category_children[(feature, label)] = child
        return child

    def _category_label(self, feature: str, value: Any) -> str:
        allowed = self._allowed[feature]
        key = _key(value, self._dtypes[feature])
        if allowed is not None:
            return allowed.get(key, OTHER)
        seen = self._seen[feature]
        label = seen.get(key)
        if label is None:
            with self._lock:
                if key not in seen and len(seen) < MAX_CATEGORY_LABELS:
                    seen[key] = _label(value)
                label = seen.get(key, OTHER)
        return label

    def observe(
        self,
        columns: dict[str, np.ndarray],
        pred: np.ndarray,
        n_rows: int,
        warnings: Sequence[Violation] | None = None,
    ) -> None:
        """Record a predicted batch: input statistics, soft-rule hits and the prediction distribution.

        Args:
            columns: The request's canonical values (already accepted by the decoder).
            pred: The predictions.
            n_rows: The row count.
            warnings: The decoder's soft-rule warnings (:attr:`DecodedRequest.warnings`); when
                None they are evaluated here, on the columns with soft rules only, from the same
                rule table, so the counter is right whichever the caller passes.
        """
        if self._soft:
            self.observe_warnings(self.soft_warnings(columns) if warnings is None else warnings)
        nulls: dict[str, int] = {}
        if self._numeric:
            block = np.column_stack([columns[f] for f in self._numeric])
            missing = np.isnan(block).sum(axis=0)
            counts = n_rows - missing
            sums = np.nansum(block, axis=0)
            sumsq = np.nansum(block * block, axis=0)
            for i in range(len(self._numeric)):
                if counts[i]:
                    self._count[i].inc(float(counts[i]))
                    self._sum[i].inc(float(sums[i]))
                    self._sumsq[i].inc(float(sumsq[i]))
            nulls = dict(zip(self._numeric, missing.tolist(), strict=True))
        for feature in self._categorical:
            values = columns[feature]
            if len(values) > _COUNT_BY_VALUE_ROWS:
                labels = self._category_counts(feature, values)
            else:
                labels = {}
                for value in values.tolist():
                    if value is None or value != value:  # None or NaN
                        continue
                    label = self._category_label(feature, value)
                    labels[label] = labels.get(label, 0) + 1
            for label, count in labels.items():
                self._category(feature, label).inc(count)
        for feature, child in self._nulls.items():
            found = nulls.get(feature)
            if found is None:  # booleans, text and dates (numeric features were counted above)
                values = columns[feature]
                is_float = values.dtype.kind == "f"
                found = int(np.isnan(values).sum()) if is_float else sum(v is None for v in values)
            if found:
                child.inc(found)
        self._rows.inc(n_rows)
        if self._regression:
            _observe_many(self._value, np.asarray(pred, dtype=np.float64).ravel())
        else:
            # One increment per distinct label, not per row: a 1,000-row batch has a handful.
            for label, count in collections.Counter(pred.tolist()).items():
                child = self._class.get(label)
                if child is not None:
                    child.inc(count)

    def _category_counts(self, feature: str, values: np.ndarray) -> dict[str, int]:
        """How many present values of a large batch's categorical column fall under each label.

        What the value-by-value count gives, with each distinct value looked up once (a
        1,000-row batch of a coded column has two or three), and a numeric column with an
        allowed set counted by one comparison per allowed value.
        """
        labels: dict[str, int] = {}
        allowed = self._allowed[feature]
        if allowed is not None and values.dtype.kind == "f":
            present = values[~np.isnan(values)]
            counted = 0
            for key, label in allowed.items():
                # Float equality, as the dict lookup by float key it stands for (-0.0 is 0.0).
                count = int(np.count_nonzero(present == key))
                if count:
                    labels[label] = labels.get(label, 0) + count
                    counted += count
            if len(present) > counted:
                labels[OTHER] = labels.get(OTHER, 0) + len(present) - counted
            return labels
        # Counter keeps first-seen order, so the first values seen still take the free labels.
        for value, count in collections.Counter(values.tolist()).items():
            if value is None or value != value:  # None or NaN
                continue
            label = self._category_label(feature, value)
            labels[label] = labels.get(label, 0) + count
        return labels


def _observe_many(histogram: Any, values: np.ndarray) -> None:
    """``histogram.observe`` for every value, one increment per bucket instead of per value.

    Uses the child's bucket and sum values (prometheus-client is pinned; the equivalence
    with one ``observe`` per value is tested), and falls back to that loop if they move.
    """
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    bounds = getattr(histogram, "_upper_bounds", None)
    # A few values: numpy's per-call cost would dominate.
    if len(values) <= _COUNT_BY_VALUE_ROWS or None in (buckets, total, bounds) or len(buckets) != len(bounds):
        for value in values.tolist():
            histogram.observe(value)
        return
    # observe() counts a value in the first bucket whose bound it does not exceed (NaN in none).
    index = np.searchsorted(np.asarray(bounds, dtype=np.float64), values, side="left")
    counts = np.bincount(index, minlength=len(bounds) + 1)
    total.inc(float(values.sum()))
    for i in np.flatnonzero(counts[: len(bounds)]).tolist():
        buckets[i].inc(float(counts[i]))


def _key(value: Any, dtype: ColumnType) -> Any:
    """A value's lookup key: numbers compare as floats (a request's 1 and 1.0 are one category)."""
    if dtype in (ColumnType.INTEGER, ColumnType.FLOAT, ColumnType.BOOLEAN):
        return float(value)
    return value
