"""Drive a cluster target: apply the new version, wait for its rollout, smoke-test it, or restore.

The order is the local-server deploy's, in a cluster: the previous object is read first;
the new one is applied server-side; the stage waits for the controller to report the rollout
done (or failed, or the deadline to pass); held-out rows are sent to the new version alone;
and only then does the caller move an alias. On any failure the previous object is applied
again (or the new one deleted, on a first deploy), so the version that served before keeps
serving.

A canary adds the new version beside the served one with a share of the traffic (Seldon
``traffic``, KServe ``canaryTrafficPercent``, plain: a second Deployment behind the same
Service, weighted by replica count). :func:`promote` makes it the only version;
:func:`rollback` removes it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tabpipe.cluster_deploy import objects as obj
from tabpipe.cluster_deploy.objects import ClusterTarget, Release, Track
from tabpipe.cluster_deploy.status import Rollout, rollout_of
from tabpipe.errors import ServiceError, TabpipeError

POLL_SECONDS = 0.5
#: Where the deploy task mounts the tabpipe-deployer ServiceAccount's token Secret (token, ca.crt).
DEPLOYER_TOKEN_DIR = "/var/run/secrets/tabpipe-deployer"
CONTROLLER_GRACE_SECONDS = 15.0
STABLE_VERSION_ANNOTATION = "tabpipe.io/stable-version"
STABLE_BUNDLE_ANNOTATION = "tabpipe.io/stable-bundle-uri"

#: Smoke-tests the version at a URL; raises on a wrong answer (tabpipe.deploy.smoke_test, bound to rows).
SmokeTest = Callable[[str, str], None]

log = logging.getLogger(__name__)


class ClusterDeployError(TabpipeError):
    """The new version did not roll out or failed its smoke test; the previous state was restored."""


@dataclass(frozen=True)
class Served:
    """A version served by a target, read back from the cluster's annotations."""

    version: str
    bundle_uri: str


@dataclass(frozen=True)
class CanaryState:
    """A canary in progress: the served (stable) version and the new one beside it."""

    stable: Served
    canary: Served


@dataclass(frozen=True)
class ClusterOutcome:
    """What a deploy did."""

    target: ClusterTarget
    name: str
    namespace: str
    version: str
    previous: Served | None
    canary: bool
    smoke_url: str


class Cluster:
    """The few API calls the deploy stage makes, through the ``kubernetes`` dynamic client.

    Every write is a server-side apply by the ``tabpipe-deploy`` field manager, or a delete:
    exactly the verbs of the deploy Role (see :data:`REQUIRED_PERMISSIONS`).
    """

    def __init__(self, api_client: Any) -> None:
        from kubernetes import dynamic

        self._dynamic = dynamic.DynamicClient(api_client)

    @classmethod
    def connect(cls, kubeconfig: str | None = None) -> Cluster:
        """The deployer account's mounted token inside a pipeline pod; else ``kubeconfig`` or the default.

        KFP runs every task under the pipeline runner's account, which may not touch the serving
        namespace; the deploy task alone mounts the ``tabpipe-deployer`` token Secret
        (manifests/pipeline/deployer-rbac.yaml) and acts as that account.
        """
        import os

        from kubernetes import client, config

        token_file = os.path.join(DEPLOYER_TOKEN_DIR, "token")
        try:
            if (
                kubeconfig is None
                and os.environ.get("KUBERNETES_SERVICE_HOST")
                and os.path.exists(token_file)
            ):
                settings = client.Configuration()
                host = os.environ["KUBERNETES_SERVICE_HOST"]
                settings.host = f"https://{host}:{os.environ.get('KUBERNETES_SERVICE_PORT', '443')}"
                settings.ssl_ca_cert = os.path.join(DEPLOYER_TOKEN_DIR, "ca.crt")
                with open(token_file) as handle:
                    settings.api_key = {"authorization": f"Bearer {handle.read().strip()}"}
                return cls(client.ApiClient(settings))
            if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config()
                return cls(client.ApiClient())
            return cls(config.new_client_from_config(config_file=kubeconfig))
        except config.ConfigException as exc:
            raise ServiceError(f"Kubernetes: no usable credentials ({exc})") from None

    def _resource(self, api_version: str, kind: str) -> Any:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            return self._dynamic.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            raise ServiceError(f"the cluster has no {kind} ({api_version}): is its CRD installed?") from None

    def get(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        """The object as a dict, or None when it does not exist."""
        from kubernetes.dynamic.exceptions import NotFoundError

        try:
            return self._resource(api_version, kind).get(name=name, namespace=namespace).to_dict()
        except NotFoundError:
            return None
        except Exception as exc:
            raise _api_error(exc, f"read {kind} {namespace}/{name}") from None

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply ``body``, forcing conflicts: this stage owns these fields."""
        meta = body["metadata"]
        resource = self._resource(body["apiVersion"], body["kind"])
        try:
            return self._dynamic.server_side_apply(
                resource,
                body=body,
                name=meta["name"],
                namespace=meta["namespace"],
                field_manager=obj.FIELD_MANAGER,
                force_conflicts=True,
                # An unknown or misspelt field is an error, not silently pruned: what is applied is what runs.
                query_params=[("fieldValidation", "Strict")],
            ).to_dict()
        except Exception as exc:
            raise _api_error(exc, f"apply {body['kind']} {meta['namespace']}/{meta['name']}") from None

    def delete(self, api_version: str, kind: str, name: str, namespace: str) -> bool:
        """Delete the object; False when it was already gone."""
        from kubernetes.dynamic.exceptions import NotFoundError

        try:
            self._resource(api_version, kind).delete(name=name, namespace=namespace)
            return True
        except NotFoundError:
            return False
        except Exception as exc:
            raise _api_error(exc, f"delete {kind} {namespace}/{name}") from None


def _api_error(exc: Exception, action: str) -> TabpipeError:
    """One line naming the action and the API server's answer (403s name the missing permission)."""
    from kubernetes.dynamic.exceptions import DynamicApiError

    if isinstance(exc, DynamicApiError):
        import json

        try:
            message = json.loads(exc.body).get("message", exc.body)
        except (TypeError, ValueError):
            message = str(exc.body)[:300]
        return TabpipeError(f"Kubernetes refused to {action}: HTTP {exc.status}: {message}")
    return ServiceError(f"Kubernetes: could not {action}: {exc}")


#: (API group, resource, verbs) the deploy stage uses in the serving namespace: the deploy Role must
#: grant exactly these (tests/cluster checks it with `kubectl auth can-i`).
REQUIRED_PERMISSIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("apps", "deployments", ("get", "create", "patch", "delete")),
    ("", "services", ("get", "create", "patch", "delete")),
    ("machinelearning.seldon.io", "seldondeployments", ("get", "create", "patch", "delete")),
    ("serving.kserve.io", "inferenceservices", ("get", "create", "patch", "delete")),
)


# ---- reading what is served -----------------------------------------------------------------
def _served(annotations: dict[str, str] | None) -> Served | None:
    annotations = annotations or {}
    version = annotations.get(obj.VERSION_ANNOTATION)
    return Served(version, annotations.get(obj.BUNDLE_ANNOTATION, "")) if version else None


def _main_object(cluster: Cluster, target: ClusterTarget, name: str, namespace: str) -> dict[str, Any] | None:
    api_version, kind = obj.TARGET_KIND[target]
    return cluster.get(api_version, kind, name, namespace)


def served(cluster: Cluster, target: ClusterTarget, name: str, namespace: str) -> Served | None:
    """The stable version the target serves now (None when nothing is deployed)."""
    current = _main_object(cluster, target, name, namespace)
    if current is None:
        return None
    canary = canary_state(cluster, target, name, namespace)
    if canary is not None:
        return canary.stable
    return _served(current["metadata"].get("annotations"))


def canary_state(cluster: Cluster, target: ClusterTarget, name: str, namespace: str) -> CanaryState | None:
    """The canary in progress, if any."""
    current = _main_object(cluster, target, name, namespace)
    if current is None:
        return None
    if target is ClusterTarget.PLAIN:
        canary = cluster.get("apps/v1", "Deployment", f"{name}-{Track.CANARY.value}", namespace)
        stable, new = (
            _served(current["metadata"].get("annotations")),
            canary and _served(canary["metadata"].get("annotations")),
        )
    elif target is ClusterTarget.SELDON:
        predictors = current.get("spec", {}).get("predictors", [])
        if len(predictors) < 2:
            return None
        stable = _served((_predictor(current, Track.STABLE) or {}).get("annotations"))
        new = _served((_predictor(current, Track.CANARY) or {}).get("annotations"))
    else:
        annotations = current["metadata"].get("annotations") or {}
        if STABLE_VERSION_ANNOTATION not in annotations:
            return None
        stable = Served(annotations[STABLE_VERSION_ANNOTATION], annotations.get(STABLE_BUNDLE_ANNOTATION, ""))
        new = _served(annotations)
    return CanaryState(stable, new) if stable and new else None


# ---- waiting ------------------------------------------------------------------------------------
def wait_for_rollout(
    cluster: Cluster,
    target: ClusterTarget,
    name: str,
    namespace: str,
    version: str,
    timeout: float,
    kind_name: tuple[str, str] | None = None,
    restoring: bool = False,
) -> None:
    """Wait until the controller reports ``version`` rolled out.

    Raises:
        ClusterDeployError: the controller reports a failure, or ``timeout`` seconds passed.
    """
    api_version, kind = kind_name or obj.TARGET_KIND[target]
    # Past the object's own deadline by a grace period, so the controller's verdict (with its reason)
    # arrives before this gives up with a bare timeout.
    deadline = time.monotonic() + timeout + CONTROLLER_GRACE_SECONDS
    state = Rollout(waiting_for="the object")
    while time.monotonic() < deadline:
        current = cluster.get(api_version, kind, name, namespace)
        if current is None:
            raise ClusterDeployError(f"{kind} {namespace}/{name} disappeared during its rollout")
        state = rollout_of(target, current, version, restoring=restoring)
        if state.failure:
            raise ClusterDeployError(f"{kind} {namespace}/{name}: {state.failure}")
        if state.done:
            return
        time.sleep(POLL_SECONDS)
    raise ClusterDeployError(
        f"{kind} {namespace}/{name} not rolled out after {timeout + CONTROLLER_GRACE_SECONDS:.0f} s "
        f"(waiting for {state.waiting_for})"
    )


# ---- deploy -------------------------------------------------------------------------------------
def _strip(current: dict[str, Any]) -> dict[str, Any]:
    """An applyable copy of an object read back: identity, labels, annotations and spec only."""
    meta = current["metadata"]
    keep = {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if meta.get(k)}
    return {
        "apiVersion": current["apiVersion"],
        "kind": current["kind"],
        "metadata": keep,
        "spec": current["spec"],
    }


def canary_replicas(stable_replicas: int, percent: int) -> int:
    """Replicas giving the canary about ``percent`` of a shared Service's traffic (at least one)."""
    return max(1, math.ceil(stable_replicas * percent / (100 - percent)))


def _rendered(
    release: Release, target: ClusterTarget, previous: dict[str, Any] | None, canary_percent: int
) -> list[dict[str, Any]]:
    """The objects to apply for ``release``: as the only version, or as a canary beside ``previous``."""
    if target is ClusterTarget.PLAIN:
        if canary_percent:
            stable_replicas = (previous or {}).get("spec", {}).get("replicas", release.replicas)
            canary = dataclasses.replace(release, replicas=canary_replicas(stable_replicas, canary_percent))
            return [obj.plain_deployment(canary, Track.CANARY), obj.plain_service(canary, Track.CANARY)]
        return [obj.plain_deployment(release), obj.plain_service(release)]
    if target is ClusterTarget.SELDON:
        new = obj.seldon_predictor(release, canary_percent or 100)
        new["annotations"][obj.TRACK_LABEL] = (Track.CANARY if canary_percent else Track.STABLE).value
        predictors = [new]
        if canary_percent and previous is not None:
            stable = next(p for p in previous["spec"]["predictors"])
            stable = {**stable, "traffic": 100 - canary_percent}
            predictors = [stable, new]
        body = obj.seldon_deployment(release, predictors)
        return [body]
    body = obj.inference_service(release, canary_percent or None)
    if canary_percent and previous is not None:
        before = _served(previous["metadata"].get("annotations"))
        if before:
            body["metadata"]["annotations"][STABLE_VERSION_ANNOTATION] = before.version
            body["metadata"]["annotations"][STABLE_BUNDLE_ANNOTATION] = before.bundle_uri
    return [body]


def deploy(
    cluster: Cluster,
    target: ClusterTarget,
    release: Release,
    smoke_test: SmokeTest,
    canary_percent: int = 0,
    smoke_url: str | None = None,
    timeout: float = 300.0,
) -> ClusterOutcome:
    """Roll ``release`` out with ``target``, smoke-test it, or restore what served before.

    Raises:
        ClusterDeployError: the rollout failed or timed out, or the smoke test failed; the
            previous objects were applied again (or the new ones deleted on a first deploy).
        TabpipeError: a canary is already in progress, or the API server refused a write.
    """
    name, namespace = release.name, release.namespace
    previous = _main_object(cluster, target, name, namespace)
    in_progress = canary_state(cluster, target, name, namespace)
    if in_progress is not None:
        raise TabpipeError(
            f"a canary of version {in_progress.canary.version} is in progress on "
            f"{target.value} {namespace}/{name}: "
            "make promote or make rollback first"
        )
    if canary_percent and previous is None:
        log.info(
            "nothing is served yet: version %s rolls out as the only version, not as a canary",
            release.version,
        )
        canary_percent = 0
    before = _served(previous["metadata"].get("annotations")) if previous else None
    bodies = _rendered(release, target, previous, canary_percent)
    # What to put back on failure: each object as it was, or nothing (delete) when it did not exist.
    saved = [(b, cluster.get(b["apiVersion"], b["kind"], b["metadata"]["name"], namespace)) for b in bodies]
    url = smoke_url or obj.smoke_url(release, target, canary=bool(canary_percent))
    try:
        for body in bodies:
            cluster.apply(body)
        rollout_name = bodies[0]["metadata"]["name"]
        wait_for_rollout(
            cluster,
            target,
            rollout_name,
            namespace,
            release.version,
            timeout,
            kind_name=(bodies[0]["apiVersion"], bodies[0]["kind"]),
        )
        smoke_test(url, release.version)
    except TabpipeError as exc:
        restored = _restore(cluster, target, saved, timeout)
        raise ClusterDeployError(
            f"deploying version {release.version} with {target.value} to {namespace}/{name} failed: {exc}; "
            f"{restored}; the aliases were not moved"
        ) from None
    return ClusterOutcome(target, name, namespace, release.version, before, bool(canary_percent), url)


def _restore(
    cluster: Cluster,
    target: ClusterTarget,
    saved: list[tuple[dict[str, Any], dict[str, Any] | None]],
    timeout: float,
) -> str:
    """Put each object back as it was; returns what happened, for the error message."""
    done: list[str] = []
    try:
        for body, before in saved:
            meta = body["metadata"]
            if before is None:
                cluster.delete(body["apiVersion"], body["kind"], meta["name"], meta["namespace"])
                done.append(f"deleted the new {body['kind']} {meta['name']}")
            else:
                cluster.apply(_strip(before))
                served_before = _served(before["metadata"].get("annotations"))
                if body["kind"] != "Service" and served_before:
                    # Wait until the controller reports the previous version serving again, so the next
                    # deploy never reads this failure's status as its own.
                    wait_for_rollout(
                        cluster,
                        target,
                        meta["name"],
                        meta["namespace"],
                        served_before.version,
                        timeout,
                        kind_name=(body["apiVersion"], body["kind"]),
                        restoring=True,
                    )
                back = f"back to version {served_before.version}" if served_before else "restored"
                done.append(f"{body['kind']} {meta['name']} {back}")
    except TabpipeError as exc:
        return f"ROLLBACK FAILED: {exc}"
    return "; ".join(done)


# ---- canary: promote or roll back ----------------------------------------------------------------
def promote(
    cluster: Cluster,
    target: ClusterTarget,
    release_of: Callable[[Served], Release],
    name: str,
    namespace: str,
    timeout: float = 300.0,
) -> CanaryState:
    """Make the canary the only served version; returns the canary that was promoted.

    Raises:
        TabpipeError: no canary is in progress.
        ClusterDeployError: the promoted version did not roll out (the canary stays as it was).
    """
    state = _require_canary(cluster, target, name, namespace)
    release = release_of(state.canary)
    if target is ClusterTarget.PLAIN:
        cluster.apply(obj.plain_deployment(release))
        wait_for_rollout(cluster, target, name, namespace, release.version, timeout)
        _remove_plain_canary(cluster, name, namespace)
    elif target is ClusterTarget.SELDON:
        canary = _predictor(_main_object(cluster, target, name, namespace) or {}, Track.CANARY) or {}
        canary = {
            **canary,
            "traffic": 100,
            "annotations": {**canary["annotations"], obj.TRACK_LABEL: Track.STABLE.value},
        }
        cluster.apply(obj.seldon_deployment(release, [canary]))
        wait_for_rollout(cluster, target, name, namespace, release.version, timeout)
    else:
        cluster.apply(obj.inference_service(release))
        wait_for_rollout(cluster, target, name, namespace, release.version, timeout)
    return state


def rollback(
    cluster: Cluster,
    target: ClusterTarget,
    release_of: Callable[[Served], Release],
    name: str,
    namespace: str,
    timeout: float = 300.0,
) -> CanaryState:
    """Remove the canary; the stable version takes all the traffic again. Returns the canary removed.

    Raises:
        TabpipeError: no canary is in progress.
    """
    state = _require_canary(cluster, target, name, namespace)
    if target is ClusterTarget.PLAIN:
        _remove_plain_canary(cluster, name, namespace)
        return state
    release = release_of(state.stable)
    if target is ClusterTarget.SELDON:
        stable = _predictor(_main_object(cluster, target, name, namespace) or {}, Track.STABLE) or {}
        cluster.apply(obj.seldon_deployment(release, [{**stable, "traffic": 100}]))
    else:
        cluster.apply(obj.inference_service(release))
    wait_for_rollout(cluster, target, name, namespace, release.version, timeout)
    return state


def _predictor(seldon_deployment: dict[str, Any], track: Track) -> dict[str, Any] | None:
    """The SeldonDeployment predictor of ``track`` (annotated by :func:`_rendered`), if any."""
    predictors = seldon_deployment.get("spec", {}).get("predictors", [])
    return next(
        (p for p in predictors if (p.get("annotations") or {}).get(obj.TRACK_LABEL) == track.value), None
    )


def _remove_plain_canary(cluster: Cluster, name: str, namespace: str) -> None:
    canary = f"{name}-{Track.CANARY.value}"
    cluster.delete("apps/v1", "Deployment", canary, namespace)
    cluster.delete("v1", "Service", canary, namespace)


def _require_canary(cluster: Cluster, target: ClusterTarget, name: str, namespace: str) -> CanaryState:
    state = canary_state(cluster, target, name, namespace)
    if state is None:
        raise TabpipeError(f"no canary is in progress on {target.value} {namespace}/{name}")
    return state
