"""The serving objects of the three cluster targets, rendered as plain dictionaries.

Every target runs the same container (``tabpipe serve`` reading the bundle from the object
store), so a bundle behaves the same behind Seldon, KServe or a plain Service. The objects
carry the model version and bundle URI as annotations: rollback, promote and the tests read
them back from the API server instead of keeping state anywhere else.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

from tabpipe.errors import ConfigError
from tabpipe.serving.launcher import SERVER_ENV

MANAGED_BY = "tabpipe"
FIELD_MANAGER = "tabpipe-deploy"
VERSION_ANNOTATION = "tabpipe.io/model-version"
BUNDLE_ANNOTATION = "tabpipe.io/bundle-uri"
TRACK_LABEL = "tabpipe.io/track"
NAME_LABEL = "app.kubernetes.io/name"
#: The container's name; Seldon matches it to the graph node of the same name.
CONTAINER = "model"
RUN_AS_USER = 10001
#: The model server pods' ServiceAccount (manifests/serving/base): no API token, no Role.
MODEL_SERVER_ACCOUNT = "tabpipe-model-server"
#: KServe: the namespaced ServingRuntime (manifests/serving/kserve) running our server for this format.
KSERVE_RUNTIME = "tabpipe"
KSERVE_MODEL_FORMAT = "tabpipe-bundle"


class ClusterTarget(enum.StrEnum):
    """The in-cluster serving stacks the deploy stage can drive."""

    SELDON = "seldon"
    KSERVE = "kserve"
    PLAIN = "plain"


class Track(enum.StrEnum):
    """The served version (stable) and, during a canary, the new one beside it."""

    STABLE = "stable"
    CANARY = "canary"


#: apiVersion and kind of the object each target manages (plain also manages a Service).
TARGET_KIND: dict[ClusterTarget, tuple[str, str]] = {
    ClusterTarget.SELDON: ("machinelearning.seldon.io/v1", "SeldonDeployment"),
    ClusterTarget.KSERVE: ("serving.kserve.io/v1beta1", "InferenceService"),
    ClusterTarget.PLAIN: ("apps/v1", "Deployment"),
}

#: The port the model server listens on: Seldon's executor calls its model containers on 9000,
#: KServe's custom predictors and our plain Deployment use 8080.
CONTAINER_PORT: dict[ClusterTarget, int] = {
    ClusterTarget.SELDON: 9000,
    ClusterTarget.KSERVE: 8080,
    ClusterTarget.PLAIN: 8080,
}
SERVICE_PORT = 8080


@dataclass(frozen=True)
class Release:
    """One model version to serve: what and how.

    Attributes:
        name: The serving object's name (a DNS label derived from the registered model name).
        namespace: The serving namespace.
        model_name: The registered model's name (the OIP model name).
        version: The registry version being deployed.
        bundle_uri: ``s3://...`` folder of the bundle.
        image: Serving image, pinned.
        replicas: Pods per track.
        object_store_endpoint: MinIO's URL, as seen from the pods.
        object_store_secret: Secret with the object store's keys, in ``namespace``.
        progress_deadline_seconds: The Deployment's own rollout deadline.
        inference_log_uri: ``s3://`` folder the servers log what they serve to (None: no log).
        inference_log_sample_rate: The share of requests logged.
    """

    name: str
    namespace: str
    model_name: str
    version: str
    bundle_uri: str
    image: str
    replicas: int
    object_store_endpoint: str
    object_store_secret: str
    progress_deadline_seconds: int = 300
    inference_log_uri: str | None = None
    inference_log_sample_rate: float = 1.0

    def model_args(self) -> list[str]:
        """The server arguments that differ per release: the bundle, and the inference log."""
        args = ["--model", self.bundle_uri]
        if self.inference_log_uri is not None:
            args += [
                "--inference-log", self.inference_log_uri,
                "--inference-log-sample-rate", repr(self.inference_log_sample_rate),
            ]  # fmt: skip
        return args


def object_name(model_name: str) -> str:
    """The DNS-1123 label the serving objects of ``model_name`` are named by.

    Raises:
        ConfigError: the model name cannot become a valid label.
    """
    name = re.sub(r"[^a-z0-9-]+", "-", model_name.lower()).strip("-")
    # Room for the "-canary" suffix and Seldon's "<name>-<predictor>" service names.
    if not name or len(name) > 40:
        raise ConfigError(
            f"registry.model_name {model_name!r} cannot name Kubernetes objects "
            "(1-40 characters of a-z, 0-9, -)"
        )
    return name


def _labels(release: Release, track: Track | None = None) -> dict[str, str]:
    labels = {NAME_LABEL: release.name, "app.kubernetes.io/managed-by": MANAGED_BY}
    if track is not None:
        labels[TRACK_LABEL] = track.value
    return labels


def _annotations(release: Release) -> dict[str, str]:
    return {VERSION_ANNOTATION: release.version, BUNDLE_ANNOTATION: release.bundle_uri}


def container(release: Release, target: ClusterTarget) -> dict[str, Any]:
    """The model server container: ``tabpipe serve`` on the bundle, non-root, read-only root."""
    port = CONTAINER_PORT[target]
    probe = {"httpGet": {"path": "/v2/health/ready", "port": port}, "periodSeconds": 5, "failureThreshold": 3}
    return {
        "name": CONTAINER,
        "image": release.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["tabpipe", "serve"],
        "args": [*release.model_args(), "--host", "0.0.0.0", "--port", str(port)],
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        # Read-only root filesystem: the bundle download and anything else written go to /tmp.
        "env": [
            {"name": "MINIO_ENDPOINT", "value": release.object_store_endpoint},
            {"name": "HOME", "value": "/tmp"},
            {"name": "TMPDIR", "value": "/tmp"},
            *({"name": key, "value": value} for key, value in SERVER_ENV.items()),
        ],
        "envFrom": [{"secretRef": {"name": release.object_store_secret}}],
        "readinessProbe": probe,
        "livenessProbe": {**probe, "httpGet": {"path": "/v2/health/live", "port": port}, "periodSeconds": 10},
        "startupProbe": {**probe, "failureThreshold": 60},
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def pod_spec(release: Release, target: ClusterTarget) -> dict[str, Any]:
    """The pod around :func:`container`; no API token, no service links (their env would leak names)."""
    return {
        "serviceAccountName": MODEL_SERVER_ACCOUNT,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS_USER, "fsGroup": RUN_AS_USER},
        "containers": [container(release, target)],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }


def deployment_name(release: Release, track: Track) -> str:
    """The plain target's Deployment for ``track``."""
    return release.name if track is Track.STABLE else f"{release.name}-canary"


def plain_deployment(release: Release, track: Track = Track.STABLE) -> dict[str, Any]:
    """A Deployment of one track; both tracks share the Service's selector (traffic by replica share)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(release, track),
            "namespace": release.namespace,
            "labels": _labels(release, track),
            "annotations": _annotations(release),
        },
        "spec": {
            "replicas": release.replicas,
            "progressDeadlineSeconds": release.progress_deadline_seconds,
            "revisionHistoryLimit": 5,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "selector": {"matchLabels": _labels(release, track)},
            "template": {
                "metadata": {"labels": _labels(release, track), "annotations": _annotations(release)},
                "spec": pod_spec(release, ClusterTarget.PLAIN),
            },
        },
    }


def plain_service(release: Release, track: Track | None = None) -> dict[str, Any]:
    """The Service in front of both tracks (``track=None``), or of one track (for its smoke test)."""
    selector = {NAME_LABEL: release.name}
    name = release.name
    if track is not None:
        selector[TRACK_LABEL] = track.value
        name = f"{release.name}-{track.value}"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": release.namespace, "labels": _labels(release)},
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def predictor_name(version: str) -> str:
    """Seldon predictor named by version, so each version's pods and Service are told apart."""
    return f"v{version}"


def seldon_predictor(release: Release, traffic: int) -> dict[str, Any]:
    """One SeldonDeployment predictor serving ``release`` with ``traffic`` percent."""
    return {
        "name": predictor_name(release.version),
        "replicas": release.replicas,
        "traffic": traffic,
        # No Seldon executor for a one-node graph: the one Seldon 1.17 injects drops no capabilities,
        # so Pod Security "restricted" in the serving namespace would reject the pod.
        "annotations": {**_annotations(release), "seldon.io/no-engine": "true"},
        "componentSpecs": [{"spec": pod_spec(release, ClusterTarget.SELDON)}],
        "graph": {"name": CONTAINER, "type": "MODEL", "children": []},
    }


def seldon_deployment(release: Release, predictors: list[dict[str, Any]]) -> dict[str, Any]:
    """A SeldonDeployment (v1 API, Open Inference Protocol) with the given predictors."""
    return {
        "apiVersion": "machinelearning.seldon.io/v1",
        "kind": "SeldonDeployment",
        "metadata": {
            "name": release.name,
            "namespace": release.namespace,
            "labels": _labels(release),
            "annotations": _annotations(release),
        },
        "spec": {"name": release.name, "protocol": "v2", "predictors": predictors},
    }


def inference_service(release: Release, canary_percent: int | None = None) -> dict[str, Any]:
    """A KServe InferenceService: our ServingRuntime for the bundle, Open Inference Protocol v2.

    KServe 0.15's CRD declares ``protocolVersion`` only for a model served by a runtime (a bare
    custom container cannot declare it), so the server runs as the ``tabpipe`` ServingRuntime and
    the InferenceService adds the bundle's ``--model`` argument. With ``canary_percent`` KServe keeps
    the previously rolled-out revision for the rest of the traffic (Serverless mode only).
    """
    server = container(release, ClusterTarget.KSERVE)
    spec = pod_spec(release, ClusterTarget.KSERVE)
    predictor: dict[str, Any] = {
        "minReplicas": release.replicas,
        "serviceAccountName": spec["serviceAccountName"],
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": spec["securityContext"],
        "volumes": spec["volumes"],
        "model": {
            "modelFormat": {"name": KSERVE_MODEL_FORMAT, "version": "1"},
            "runtime": KSERVE_RUNTIME,
            "protocolVersion": "v2",
            # The runtime's container is the same server; the model adds what differs per version.
            "image": release.image,
            "args": release.model_args(),
            "env": server["env"],
            "envFrom": server["envFrom"],
            "securityContext": server["securityContext"],
            "volumeMounts": server["volumeMounts"],
        },
    }
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = canary_percent
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": release.name,
            "namespace": release.namespace,
            "labels": _labels(release),
            # Tag routing gives the latest revision its own address, so a canary is smoke-tested alone.
            "annotations": {**_annotations(release), "serving.kserve.io/enable-tag-routing": "true"},
        },
        "spec": {"predictor": predictor},
    }


def smoke_url(release: Release, target: ClusterTarget, canary: bool) -> str:
    """Where the new version answers on its own inside the cluster."""
    domain = f"{release.namespace}.svc.cluster.local"
    if target is ClusterTarget.PLAIN:
        service = f"{release.name}-{Track.CANARY.value}" if canary else release.name
        return f"http://{service}.{domain}:{SERVICE_PORT}"
    if target is ClusterTarget.SELDON:
        return f"http://{release.name}-{predictor_name(release.version)}.{domain}:8000"
    prefix = "latest-" if canary else ""
    return f"http://{prefix}{release.name}-predictor.{domain}"
