"""The deploy stage's cluster targets against a real API server, controllers and KWOK.

The plain target's Deployments are rolled out by the real Deployment and ReplicaSet
controllers, with KWOK playing the kubelet (images tagged ``broken`` crash-loop). No
operator reconciles SeldonDeployments or InferenceServices here: as envtest-based operator
tests do, a thread writes their status the way Seldon Core and KServe report it. Smoke tests
go to a real local serving process of the same bundle on loopback, never to a Pod address.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane import BROKEN_IMAGE, ControlPlane

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
from serving_support import PHISHING_CONFIG, Server, fit_model, write_bundle  # noqa: E402

from tabpipe.cluster_deploy import rollout  # noqa: E402
from tabpipe.cluster_deploy.objects import MODEL_SERVER_ACCOUNT, ClusterTarget, Release  # noqa: E402
from tabpipe.deploy import smoke_test  # noqa: E402
from tabpipe.errors import TabpipeError  # noqa: E402

IMAGE = "tabpipe:0.1.0"
TIMEOUT = 60.0


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Versions 1 and 2 of a phishing bundle, each served by a real local server process."""
    root = tmp_path_factory.mktemp("cluster-bundles")
    config, model, rows = fit_model(PHISHING_CONFIG, keep=0)
    servers, specs = {}, {}
    try:
        for version in ("1", "2"):
            specs[version] = write_bundle(root / f"v{version}", config, model, version)
            servers[version] = Server(root / f"v{version}", log_path=root / f"server-{version}.log")
        for server in servers.values():
            server.wait_ready()
        yield {"servers": servers, "specs": specs, "rows": rows.head(5)}
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    import hashlib
    import re

    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    name = f"t-{slug}-{hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:6]}"
    control_plane.kubectl("create", "namespace", name)
    # The model server pods' account, as manifests/serving/base creates it in the serving namespace.
    control_plane.kubectl("-n", name, "create", "serviceaccount", MODEL_SERVER_ACCOUNT)
    yield name
    # Fewer pods for KWOK to play in the next tests.
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def cluster(control_plane: ControlPlane) -> rollout.Cluster:
    return rollout.Cluster(control_plane.api_client())


def _release(namespace: str, version: str, image: str = IMAGE, deadline: int = 300) -> Release:
    return Release(
        name="phishing",
        namespace=namespace,
        model_name="phishing-classifier",
        version=version,
        bundle_uri=f"s3://tabpipe-models/phishing-classifier/{version}",
        image=image,
        replicas=2,
        object_store_endpoint="http://minio.tabpipe.svc.cluster.local:9000",
        object_store_secret="tabpipe-serving-store",
        progress_deadline_seconds=deadline,
    )


def _smoke(served: dict[str, Any]) -> Callable[[str, str], None]:
    spec = served["specs"]["1"]
    return lambda url, version: smoke_test(url, spec, version, served["rows"])


def _deploy(cluster, target, release, served, version_served: str | None = None, **kwargs):
    url = served["servers"][version_served or release.version].url
    return rollout.deploy(cluster, target, release, _smoke(served), smoke_url=url, timeout=TIMEOUT, **kwargs)


def _get(plane: ControlPlane, kind: str, name: str, namespace: str) -> dict[str, Any]:
    import json

    return json.loads(plane.kubectl("-n", namespace, "get", kind, name, "-o", "json").stdout)


# ---- plain: real controllers, KWOK pods ---------------------------------------------------------
def test_plain_deployment_becomes_available_and_its_service_selects_it(
    control_plane: ControlPlane, cluster, namespace: str, served
) -> None:
    outcome = _deploy(cluster, ClusterTarget.PLAIN, _release(namespace, "1"), served)
    assert outcome.previous is None and not outcome.canary
    deployment = _get(control_plane, "deployment", "phishing", namespace)
    assert deployment["status"]["availableReplicas"] == 2
    assert deployment["metadata"]["annotations"]["tabpipe.io/model-version"] == "1"
    pods = control_plane.kubectl(
        "-n",
        namespace,
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/name=phishing",
        "-o",
        "jsonpath={.items[*].status.phase}",
    ).stdout.split()
    assert pods == ["Running", "Running"]
    service = _get(control_plane, "service", "phishing", namespace)
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "phishing"}


def test_a_crash_looping_image_fails_at_its_deadline_and_the_previous_version_keeps_serving(
    control_plane: ControlPlane, cluster, namespace: str, served
) -> None:
    _deploy(cluster, ClusterTarget.PLAIN, _release(namespace, "1"), served)
    started = time.monotonic()
    with pytest.raises(rollout.ClusterDeployError, match="progress deadline exceeded") as failure:
        _deploy(
            cluster, ClusterTarget.PLAIN, _release(namespace, "2", image=BROKEN_IMAGE, deadline=5), served
        )
    assert "back to version 1" in str(failure.value)
    assert time.monotonic() - started < TIMEOUT
    deployment = _get(control_plane, "deployment", "phishing", namespace)
    assert deployment["metadata"]["annotations"]["tabpipe.io/model-version"] == "1"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    # The rollback itself completed: every replica is the old version's and available.
    assert rollout.served(cluster, ClusterTarget.PLAIN, "phishing", namespace).version == "1"
    status = deployment["status"]
    assert status["updatedReplicas"] == status["availableReplicas"] == 2


def test_a_first_deploy_that_fails_leaves_nothing_behind(
    control_plane: ControlPlane, cluster, namespace: str, served
) -> None:
    with pytest.raises(rollout.ClusterDeployError, match="deleted the new Deployment"):
        _deploy(
            cluster, ClusterTarget.PLAIN, _release(namespace, "1", image=BROKEN_IMAGE, deadline=5), served
        )
    listed = control_plane.kubectl("-n", namespace, "get", "deployments,services", "-o", "name").stdout
    assert listed.strip() == ""


def test_pods_that_cannot_be_created_fail_the_rollout_at_once_with_the_reason(
    control_plane: ControlPlane, cluster, namespace: str, served
) -> None:
    control_plane.kubectl("-n", namespace, "delete", "serviceaccount", MODEL_SERVER_ACCOUNT)
    started = time.monotonic()
    with pytest.raises(rollout.ClusterDeployError, match="pods cannot be created.*serviceaccount"):
        _deploy(cluster, ClusterTarget.PLAIN, _release(namespace, "1"), served)
    assert time.monotonic() - started < 30


def test_a_failed_smoke_test_restores_the_previous_version(
    control_plane: ControlPlane, cluster, namespace: str, served
) -> None:
    _deploy(cluster, ClusterTarget.PLAIN, _release(namespace, "1"), served)
    # Version 2 rolls out, but the endpoint answering is still version 1's: the smoke test catches it.
    with pytest.raises(rollout.ClusterDeployError, match="smoke test"):
        _deploy(cluster, ClusterTarget.PLAIN, _release(namespace, "2"), served, version_served="1")
    deployment = _get(control_plane, "deployment", "phishing", namespace)
    assert deployment["metadata"]["annotations"]["tabpipe.io/model-version"] == "1"


def test_plain_canary_runs_beside_the_stable_version_then_is_promoted_or_rolled_back(
    control_plane: ControlPlane, cluster, namespace: str, served
) -> None:
    _deploy(cluster, ClusterTarget.PLAIN, _release(namespace, "1"), served)
    outcome = _deploy(cluster, ClusterTarget.PLAIN, _release(namespace, "2"), served, canary_percent=50)
    assert outcome.canary
    canary = _get(control_plane, "deployment", "phishing-canary", namespace)
    assert canary["spec"]["replicas"] == 2 and canary["status"]["availableReplicas"] == 2  # 50% of 4 pods
    state = rollout.canary_state(cluster, ClusterTarget.PLAIN, "phishing", namespace)
    assert (state.stable.version, state.canary.version) == ("1", "2")
    # A second deploy during a canary is refused, naming the way out.
    with pytest.raises(TabpipeError, match="make promote or make rollback"):
        _deploy(cluster, ClusterTarget.PLAIN, _release(namespace, "2"), served, canary_percent=50)

    promoted = rollout.promote(
        cluster,
        ClusterTarget.PLAIN,
        lambda s: _release(namespace, s.version),
        "phishing",
        namespace,
        timeout=TIMEOUT,
    )
    assert promoted.canary.version == "2"
    stable = _get(control_plane, "deployment", "phishing", namespace)
    assert stable["metadata"]["annotations"]["tabpipe.io/model-version"] == "2"
    assert stable["status"]["availableReplicas"] == 2
    gone = control_plane.kubectl("-n", namespace, "get", "deployment", "phishing-canary", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr

    _deploy(cluster, ClusterTarget.PLAIN, _release(namespace, "1"), served, canary_percent=25)
    rolled_back = rollout.rollback(
        cluster,
        ClusterTarget.PLAIN,
        lambda s: _release(namespace, s.version),
        "phishing",
        namespace,
        timeout=TIMEOUT,
    )
    assert rolled_back.canary.version == "1"
    assert rollout.canary_state(cluster, ClusterTarget.PLAIN, "phishing", namespace) is None
    assert rollout.served(cluster, ClusterTarget.PLAIN, "phishing", namespace).version == "2"


# ---- Seldon and KServe: their status written as their operators would -------------------------
class Operator:
    """Writes a custom resource's status from its spec, as the operator would, until stopped."""

    def __init__(
        self,
        plane: ControlPlane,
        namespace: str,
        group: str,
        version: str,
        plural: str,
        status_of: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> None:
        from kubernetes import client

        self.api = client.CustomObjectsApi(plane.api_client())
        self.args = (group, version, namespace, plural)
        self.status_of = status_of
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(0.2):
            for item in self.api.list_namespaced_custom_object(*self.args)["items"]:
                status = self.status_of(item)
                if item.get("status") != status:
                    self.api.patch_namespaced_custom_object_status(
                        *self.args, item["metadata"]["name"], {"status": status}
                    )

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)


def _image(pod_spec: dict[str, Any]) -> str:
    return pod_spec["containers"][0]["image"]


def seldon_status(item: dict[str, Any]) -> dict[str, Any]:
    """Seldon Core v1's status: state, and one entry per predictor's deployment."""
    name, predictors = item["metadata"]["name"], item["spec"]["predictors"]
    if any(_image(p["componentSpecs"][0]["spec"]) == BROKEN_IMAGE for p in predictors):
        return {"state": "Failed", "description": "container model: CrashLoopBackOff"}
    return {
        "state": "Available",
        "deploymentStatus": {
            f"{name}-{p['name']}-0-model": {"replicas": p["replicas"], "availableReplicas": p["replicas"]}
            for p in predictors
        },
    }


def kserve_status(item: dict[str, Any]) -> dict[str, Any]:
    """KServe's status for the current generation: Ready, or the predictor's revision failed."""
    generation = item["metadata"]["generation"]
    if item["spec"]["predictor"]["model"]["image"] == BROKEN_IMAGE:
        conditions = [
            {
                "type": "PredictorReady",
                "status": "False",
                "reason": "RevisionFailed",
                "message": "container model: CrashLoopBackOff",
            }
        ]
    else:
        conditions = [{"type": "PredictorReady", "status": "True"}, {"type": "Ready", "status": "True"}]
    return {"observedGeneration": generation, "conditions": conditions}


OPERATORS = {
    ClusterTarget.SELDON: ("machinelearning.seldon.io", "v1", "seldondeployments", seldon_status),
    ClusterTarget.KSERVE: ("serving.kserve.io", "v1beta1", "inferenceservices", kserve_status),
}


@pytest.fixture(params=[ClusterTarget.SELDON, ClusterTarget.KSERVE], ids=["seldon", "kserve"])
def operated(request: pytest.FixtureRequest, control_plane: ControlPlane, namespace: str):
    target = request.param
    group, version, plural, status_of = OPERATORS[target]
    operator = Operator(control_plane, namespace, group, version, plural, status_of)
    yield target
    operator.stop()


def test_operator_targets_roll_out_fail_back_and_run_canaries(
    control_plane: ControlPlane, cluster, namespace: str, served, operated: ClusterTarget
) -> None:
    target = operated
    kind = "seldondeployment" if target is ClusterTarget.SELDON else "inferenceservice"
    first = _deploy(cluster, target, _release(namespace, "1"), served)
    assert first.previous is None
    assert rollout.served(cluster, target, "phishing", namespace).version == "1"

    with pytest.raises(rollout.ClusterDeployError, match="Failed|RevisionFailed"):
        _deploy(cluster, target, _release(namespace, "2", image=BROKEN_IMAGE), served)
    after_failure = _get(control_plane, kind, "phishing", namespace)
    assert after_failure["metadata"]["annotations"]["tabpipe.io/model-version"] == "1"
    assert BROKEN_IMAGE not in str(after_failure["spec"])

    canary = _deploy(cluster, target, _release(namespace, "2"), served, canary_percent=20)
    assert canary.canary
    body = _get(control_plane, kind, "phishing", namespace)
    if target is ClusterTarget.SELDON:
        weights = {p["name"]: p["traffic"] for p in body["spec"]["predictors"]}
        assert weights == {"v1": 80, "v2": 20}
    else:
        assert body["spec"]["predictor"]["canaryTrafficPercent"] == 20
    state = rollout.canary_state(cluster, target, "phishing", namespace)
    assert (state.stable.version, state.canary.version) == ("1", "2")

    rollout.rollback(
        cluster, target, lambda s: _release(namespace, s.version), "phishing", namespace, timeout=TIMEOUT
    )
    body = _get(control_plane, kind, "phishing", namespace)
    assert rollout.canary_state(cluster, target, "phishing", namespace) is None
    assert rollout.served(cluster, target, "phishing", namespace).version == "1"
    if target is ClusterTarget.SELDON:
        assert [(p["name"], p["traffic"]) for p in body["spec"]["predictors"]] == [("v1", 100)]
    else:
        assert "canaryTrafficPercent" not in body["spec"]["predictor"]

    _deploy(cluster, target, _release(namespace, "2"), served, canary_percent=20)
    rollout.promote(
        cluster, target, lambda s: _release(namespace, s.version), "phishing", namespace, timeout=TIMEOUT
    )
    body = _get(control_plane, kind, "phishing", namespace)
    assert rollout.served(cluster, target, "phishing", namespace).version == "2"
    if target is ClusterTarget.SELDON:
        assert [(p["name"], p["traffic"]) for p in body["spec"]["predictors"]] == [("v2", 100)]
    else:
        assert "canaryTrafficPercent" not in body["spec"]["predictor"]
