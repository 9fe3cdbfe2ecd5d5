"""Offline schema checks for Kubernetes manifests, using the kubernetes client's typed models.

No cluster and no downloaded JSON schemas are needed. Each object is checked twice:

1. ``schema_problems`` walks the parsed YAML against the model's ``attribute_map`` /
   ``openapi_types``. It reports keys the API does not know (``contianers``), which
   deserialization would drop silently, and scalars of the wrong type (an env ``value: 5000``
   that the API server rejects because it is not a string).
2. ``deserialize`` builds the typed model. Its client-side validation raises on required
   fields that are missing (a Deployment without ``selector``, a container without ``name``).

Reuse it from any test under tests/unit (pytest puts this folder on ``sys.path``)::

    from k8s_schema import validate_object
    validate_object(doc)  # raises AssertionError naming every problem
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

# (apiVersion, kind) -> model class. A wrong apiVersion (apps/v1beta1) is an error too.
MODELS: dict[tuple[str, str], str] = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "Service"): "V1Service",
    ("v1", "PersistentVolumeClaim"): "V1PersistentVolumeClaim",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Secret"): "V1Secret",
    ("v1", "Pod"): "V1Pod",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("apps/v1", "StatefulSet"): "V1StatefulSet",
    ("batch/v1", "Job"): "V1Job",
    ("batch/v1", "CronJob"): "V1CronJob",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
    ("networking.k8s.io/v1", "NetworkPolicy"): "V1NetworkPolicy",
}

# Attributes typed `str` by the client that the API server also accepts as numbers
# (resource.Quantity): `cpu: 1`, `storage: 5`.
_QUANTITY_ATTRS = frozenset({"limits", "requests", "size_limit", "capacity", "hard"})

_LIST = re.compile(r"^list\[(.+)\]$")
_DICT = re.compile(r"^dict\(([^,]+), (.+)\)$")


def load_documents(path: Path) -> list[dict[str, Any]]:
    """All non-empty YAML documents of a file (``yaml.safe_load_all``)."""
    with path.open() as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def model_name(obj: dict[str, Any]) -> str:
    """The client model class for an object, from its apiVersion and kind."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key not in MODELS:
        raise AssertionError(f"no model known for apiVersion/kind {key!r}; add it to k8s_schema.MODELS")
    return MODELS[key]  # type: ignore[index]


def _scalar_problem(value: Any, type_name: str, path: str, quantity: bool) -> str | None:
    if type_name == "object":  # IntOrString and free-form fields
        return None
    if type_name == "str":
        if isinstance(value, str) or (
            quantity and isinstance(value, int | float) and not isinstance(value, bool)
        ):
            return None
        return f"{path}: expected a string, got {type(value).__name__} {value!r}"
    if type_name == "int":
        return (
            None
            if isinstance(value, int) and not isinstance(value, bool)
            else (f"{path}: expected an integer, got {type(value).__name__} {value!r}")
        )
    if type_name == "float":
        return (
            None
            if isinstance(value, int | float) and not isinstance(value, bool)
            else (f"{path}: expected a number, got {value!r}")
        )
    if type_name == "bool":
        return None if isinstance(value, bool) else f"{path}: expected a boolean, got {value!r}"
    if type_name in ("datetime", "date"):
        return None if isinstance(value, str | dt.date) else f"{path}: expected a timestamp, got {value!r}"
    raise AssertionError(f"{path}: unhandled model type {type_name!r}")


def schema_problems(data: Any, type_name: str, path: str = "", quantity: bool = False) -> list[str]:
    """Unknown keys and wrongly typed scalars in ``data``, checked against a client model type.

    Args:
        data: Parsed YAML for the value.
        type_name: A client type string: a model class (``V1Deployment``), ``list[...]``,
            ``dict(str, ...)`` or a primitive (``str``, ``int``, ``bool``, ``object``...).
        path: Where ``data`` sits, for the messages.
        quantity: The value is a resource quantity, so numbers are accepted for ``str``.

    Returns:
        One message per problem; empty when the value fits the type.
    """
    if data is None:  # explicit nulls are allowed by the API for optional fields
        return []
    if m := _LIST.match(type_name):
        if not isinstance(data, list):
            return [f"{path}: expected a list, got {type(data).__name__}"]
        problems: list[str] = []
        for i, item in enumerate(data):
            problems += schema_problems(item, m.group(1), f"{path}[{i}]", quantity)
        return problems
    if m := _DICT.match(type_name):
        if not isinstance(data, dict):
            return [f"{path}: expected a mapping, got {type(data).__name__}"]
        problems = []
        for key, value in data.items():
            problems += schema_problems(value, m.group(2), f"{path}.{key}", quantity)
        return problems
    model = getattr(client.models, type_name, None)
    if model is None:
        problem = _scalar_problem(data, type_name, path or "<root>", quantity)
        return [problem] if problem else []
    if not isinstance(data, dict):
        return [f"{path or '<root>'}: expected a mapping ({type_name}), got {type(data).__name__}"]
    json_to_attr = {json_key: attr for attr, json_key in model.attribute_map.items()}
    problems = []
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        attr = json_to_attr.get(key)
        if attr is None:
            problems.append(f"{where}: unknown field for {type_name} (known: {sorted(json_to_attr)})")
            continue
        problems += schema_problems(value, model.openapi_types[attr], where, attr in _QUANTITY_ATTRS)
    return problems


def deserialize(obj: dict[str, Any]) -> Any:
    """Build the typed client model; raises ValueError when a required field is missing."""
    api = client.ApiClient()
    return api._ApiClient__deserialize(obj, model_name(obj))  # the client's own decoder


def validate_object(obj: dict[str, Any]) -> Any:
    """Check one manifest object; returns the typed model.

    Raises:
        AssertionError: naming every unknown key, mistyped value or missing required field.
    """
    name = model_name(obj)
    label = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name', '?')}"
    problems = schema_problems(obj, name)
    if problems:
        raise AssertionError(f"{label} does not match {name}:\n  " + "\n  ".join(problems))
    try:
        return deserialize(obj)
    except ValueError as exc:
        raise AssertionError(f"{label}: {exc}") from None
