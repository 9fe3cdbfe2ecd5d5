"""The estimator registry: everything tabpipe knows about a candidate estimator, in one table.

A config names an estimator (``estimator: random_forest``); :data:`ESTIMATORS`
maps that name to an :class:`EstimatorSpec` saying which tasks it supports,
which scikit-learn class builds it for each task (with tabpipe's defaults and
the search seed), and how it exports to ONNX. The config validates names and
tasks against this table, the train stage builds estimators from it, and the
ONNX export takes its converters from it, so adding an estimator is one entry
here (plus a converter module when skl2onnx's own is not faithful).

The ONNX decision is a required field: an entry names its converter or says,
with :class:`NotExportable`, why the estimator has none. An estimator can
therefore never fall back to scikit-learn serving without a recorded reason.

Classes and converters are referenced by ``"module:attribute"`` paths and
imported only when used: every pipeline task parses the config, and importing
scikit-learn costs more than a second.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from tabpipe.task_type import TaskType

if TYPE_CHECKING:
    from tabpipe.config import PipelineConfig

_CLASSIFICATION = frozenset({TaskType.BINARY, TaskType.MULTICLASS})


def import_object(path: str) -> Any:
    """Import the attribute a ``"package.module:attribute"`` path names.

    Raises:
        ImportError: the module cannot be imported.
        AttributeError: the module has no such attribute.
    """
    module, sep, attr = path.partition(":")
    if not sep or not attr:
        raise ImportError(f"{path!r} is not a 'module:attribute' path")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class EstimatorClass:
    """A scikit-learn estimator class, referenced lazily, with the defaults tabpipe builds it with.

    Attributes:
        path: ``"module:Class"``; imported only when the estimator is built.
        defaults: Constructor arguments; the search's parameters are set on top of them.
        seed_param: The argument that takes the search seed; None for deterministic estimators.
    """

    path: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    seed_param: str | None = "random_state"

    def __post_init__(self) -> None:
        # A read-only copy, so the registry cannot be changed through an entry's defaults.
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))

    @property
    def class_name(self) -> str:
        """The class's name, e.g. ``RandomForestClassifier`` (without importing it)."""
        return self.path.rpartition(":")[2]

    def load(self) -> type:
        """Import the class."""
        return import_object(self.path)

    def build(self, seed: int) -> Any:
        """A fresh, unfitted estimator with the defaults and the seed."""
        kwargs = dict(self.defaults)
        if self.seed_param is not None:
            kwargs[self.seed_param] = seed
        return self.load()(**kwargs)


@dataclass(frozen=True)
class OnnxConverter:
    """How an estimator converts to ONNX.

    Attributes:
        path: ``"module:function"`` of a custom skl2onnx converter (signature
            ``(scope, operator, container)``), registered for this estimator's
            classes during one conversion; None for skl2onnx's stock converter.
    """

    path: str | None = None


@dataclass(frozen=True)
class NotExportable:
    """The estimator has no faithful ONNX conversion; scikit-learn serves it.

    Attributes:
        reason: Why, recorded in the model's metadata as the reason it has no ONNX model.
    """

    reason: str


#: skl2onnx's own converter, verified faithful by the parity tests.
STOCK_CONVERTER = OnnxConverter()
#: The stock forest/boosting converter with float64 thresholds (see :mod:`tabpipe.onnx.converters.trees`).
FLOAT64_TREES = OnnxConverter("tabpipe.onnx.converters.trees:convert_tree")


@dataclass(frozen=True)
class EstimatorSpec:
    """One registered estimator.

    Attributes:
        name: The config's name for it (``models[].estimator``).
        classifier: The class built for classification tasks; None when it cannot classify.
        regressor: The class built for regression; None when it cannot regress.
        onnx: Its ONNX conversion, or why it has none. Required: a new estimator
            cannot be registered without deciding how it is served.
    """

    name: str
    classifier: EstimatorClass | None
    regressor: EstimatorClass | None
    onnx: OnnxConverter | NotExportable

    def __post_init__(self) -> None:
        # Checked once when the table is defined, so a bad entry fails every import, not one export.
        if self.classifier is None and self.regressor is None:
            raise ValueError(f"estimator {self.name!r}: needs a classifier or a regressor class")
        if not isinstance(self.onnx, OnnxConverter | NotExportable):
            raise TypeError(f"estimator {self.name!r}: onnx must be an OnnxConverter or NotExportable")
        if isinstance(self.onnx, NotExportable) and not self.onnx.reason.strip():
            raise ValueError(f"estimator {self.name!r}: NotExportable needs a reason")

    @property
    def tasks(self) -> frozenset[TaskType]:
        """Tasks the estimator can be used for."""
        tasks: frozenset[TaskType] = frozenset()
        if self.classifier is not None:
            tasks |= _CLASSIFICATION
        if self.regressor is not None:
            tasks |= {TaskType.REGRESSION}
        return tasks

    @property
    def classes(self) -> tuple[EstimatorClass, ...]:
        """Every class the entry can build."""
        return tuple(c for c in (self.classifier, self.regressor) if c is not None)

    def estimator_class(self, task: TaskType) -> EstimatorClass:
        """The class built for ``task``.

        Raises:
            ValueError: the estimator does not support the task.
        """
        chosen = self.classifier if task.is_classification else self.regressor
        if chosen is None:
            raise ValueError(f"estimator {self.name!r} cannot do {task.value}")
        return chosen

    def build(self, task: TaskType, seed: int) -> Any:
        """A fresh, unfitted scikit-learn estimator for ``task`` with tabpipe's defaults and ``seed``."""
        return self.estimator_class(task).build(seed)


def _registry(*specs: EstimatorSpec) -> Mapping[str, EstimatorSpec]:
    return MappingProxyType({spec.name: spec for spec in specs})


#: The registry, keyed by the config's estimator name; read-only.
ESTIMATORS: Mapping[str, EstimatorSpec] = _registry(
    EstimatorSpec(
        name="logistic_regression",
        classifier=EstimatorClass("sklearn.linear_model:LogisticRegression", {"max_iter": 2000}),
        regressor=None,
        onnx=STOCK_CONVERTER,
    ),
    EstimatorSpec(
        name="random_forest",
        classifier=EstimatorClass(
            "sklearn.ensemble:RandomForestClassifier", {"n_estimators": 100, "n_jobs": 1}
        ),
        regressor=EstimatorClass(
            "sklearn.ensemble:RandomForestRegressor", {"n_estimators": 100, "n_jobs": 1}
        ),
        onnx=FLOAT64_TREES,
    ),
    EstimatorSpec(
        name="hist_gradient_boosting",
        classifier=EstimatorClass("sklearn.ensemble:HistGradientBoostingClassifier"),
        regressor=EstimatorClass("sklearn.ensemble:HistGradientBoostingRegressor"),
        onnx=FLOAT64_TREES,
    ),
    EstimatorSpec(
        name="ridge",
        classifier=None,
        regressor=EstimatorClass("sklearn.linear_model:Ridge"),
        onnx=STOCK_CONVERTER,
    ),
    EstimatorSpec(
        name="linear_regression",
        classifier=None,
        regressor=EstimatorClass("sklearn.linear_model:LinearRegression", seed_param=None),
        onnx=STOCK_CONVERTER,
    ),
)


def spec_for_class(cls: type) -> EstimatorSpec | None:
    """The registry entry that builds exactly ``cls`` (not a subclass), or None; imports the classes."""
    for spec in ESTIMATORS.values():
        if any(candidate.load() is cls for candidate in spec.classes):
            return spec
    return None


# --------------------------------------------------------------------------- search spaces


def _parameter_error(estimator: Any) -> str | None:
    """scikit-learn's own check of an estimator's parameter values; None when they are valid.

    This is the one place that uses a private API: ``BaseEstimator._validate_params``
    (scikit-learn >= 1.2) checks each value against the class's declared constraints
    (types and ranges) without fitting. Without it (a future scikit-learn), values are
    not checked here and a bad one fails in the train stage instead.
    """
    validate = getattr(estimator, "_validate_params", None)
    if validate is None:
        return None
    try:
        validate()
    except (ValueError, TypeError) as exc:  # InvalidParameterError subclasses both
        return str(exc)
    return None


def _space_values(space: Any) -> list[tuple[str, Any]]:
    """The values of a search space worth checking, each with its label in an error (``low ``, ``high ``)."""
    if isinstance(space, list | tuple):
        return [("", value) for value in space]
    # A range (tabpipe.config.ParamRange, duck-typed: the config sits above the registry).
    # The search draws from [low, high]; constraints are ranges, so the ends decide.
    cast = int if space.integer else float
    return [("low ", cast(space.low)), ("high ", cast(space.high))]


def check_search_space(
    spec: EstimatorSpec, task: TaskType, params: Mapping[str, Any], where: str
) -> list[str]:
    """Check hyperparameter names and values against the estimator scikit-learn would build.

    Names must be the estimator's own parameters (``get_params()``); each listed value
    and each range end must pass scikit-learn's parameter validation. Imports scikit-learn.

    Args:
        spec: The registry entry.
        task: The config's task (it picks the class).
        params: The candidate's search space, by parameter name.
        where: The config path of the candidate, e.g. ``models.1``.

    Returns:
        One message per problem, each naming the field; empty when the space is valid.
    """
    from sklearn.base import clone

    estimator = spec.build(task, seed=0)
    cls_name = type(estimator).__name__
    known = sorted(estimator.get_params(deep=False))
    problems: list[str] = []
    for name, space in params.items():
        field_path = f"{where}.params.{name}"
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"{field_path}: not a parameter of {cls_name}{hint}")
            continue
        for label, value in _space_values(space):
            error = _parameter_error(clone(estimator).set_params(**{name: value}))
            if error is not None:
                problems.append(f"{field_path}: {label}{value!r} is invalid: {error}")
    return problems


def check_search_spaces(config: PipelineConfig) -> list[str]:
    """Check every candidate's search space (see :func:`check_search_space`); imports scikit-learn.

    Runs where a user's YAML enters (:func:`tabpipe.config.load_config`), not in
    ``parse_config``, which every pipeline task calls on an already-checked config.

    Returns:
        Every problem, each naming its field (``models.1.params.max_depth: ...``).
    """
    problems: list[str] = []
    for i, model in enumerate(config.models):
        spec = ESTIMATORS[model.estimator]
        if config.task in spec.tasks:  # otherwise parse_config has already refused it
            problems.extend(check_search_space(spec, config.task, model.params, f"models.{i}"))
    return problems
