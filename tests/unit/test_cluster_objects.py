"""The cluster targets' objects and rollout rules, as data (no cluster needed)."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import ValidationError

from tabpipe.cluster_deploy import objects as obj
from tabpipe.cluster_deploy.objects import ClusterTarget, Release, Track
from tabpipe.cluster_deploy.rollout import canary_replicas
from tabpipe.cluster_deploy.status import deployment_rollout, kserve_rollout, seldon_rollout
from tabpipe.config import ClusterDeployConfig
from tabpipe.errors import ConfigError

RELEASE = Release(
    name="phishing-classifier",
    namespace="tabpipe-serving",
    model_name="phishing-classifier",
    version="3",
    bundle_uri="s3://tabpipe-models/phishing-classifier/3",
    image="tabpipe:0.1.0",
    replicas=2,
    object_store_endpoint="http://minio.tabpipe.svc.cluster.local:9000",
    object_store_secret="store",
    inference_log_uri="s3://tabpipe-data/inference-log",
    inference_log_sample_rate=0.25,
)


@pytest.mark.parametrize(
    ("model_name", "expected"),
    [("phishing_classifier", "phishing-classifier"), ("Housing.Model", "housing-model")],
)
def test_object_names_are_dns_labels(model_name: str, expected: str) -> None:
    assert obj.object_name(model_name) == expected


def test_a_model_name_too_long_for_kubernetes_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="registry.model_name"):
        obj.object_name("m" * 41)


@pytest.mark.parametrize("image", ["tabpipe:latest", "tabpipe", "Tabpipe:1"])
def test_the_serving_image_must_be_pinned(image: str) -> None:
    with pytest.raises(ValidationError, match="image"):
        ClusterDeployConfig(image=image)


def test_without_an_inference_log_the_servers_get_no_log_arguments() -> None:
    quiet = dataclasses.replace(RELEASE, inference_log_uri=None)
    (container,) = obj.plain_deployment(quiet)["spec"]["template"]["spec"]["containers"]
    assert "--inference-log" not in container["args"]
    assert obj.inference_service(quiet)["spec"]["predictor"]["model"]["args"] == ["--model", quiet.bundle_uri]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("inference_log_uri", "/var/log/x"),
        ("inference_log_sample_rate", 0),
        ("inference_log_sample_rate", 1.5),
    ],
)
def test_bad_inference_log_settings_are_refused_by_name(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        ClusterDeployConfig(**{field: value})


def test_every_target_runs_the_same_non_root_server_on_the_bundle() -> None:
    pods = [
        obj.plain_deployment(RELEASE)["spec"]["template"]["spec"],
        obj.seldon_deployment(RELEASE, [obj.seldon_predictor(RELEASE, 100)])["spec"]["predictors"][0][
            "componentSpecs"
        ][0]["spec"],
    ]
    model = obj.inference_service(RELEASE)["spec"]["predictor"]["model"]
    logged = ["--inference-log", "s3://tabpipe-data/inference-log", "--inference-log-sample-rate", "0.25"]
    assert model["args"] == ["--model", RELEASE.bundle_uri, *logged] and model["protocolVersion"] == "v2"
    for pod in pods:
        (container,) = pod["containers"]
        assert container["args"][:6] == ["--model", RELEASE.bundle_uri, *logged]
        assert container["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["automountServiceAccountToken"] is False
        # Credentials only by reference to a Secret, never as values.
        assert container["envFrom"] == [{"secretRef": {"name": "store"}}]
        assert {e["name"] for e in container["env"]} == {"MINIO_ENDPOINT", "HOME", "TMPDIR", "PYTHONMALLOC"}


def test_the_canary_deployment_has_its_own_name_and_track_but_the_shared_service_selects_both() -> None:
    canary = obj.plain_deployment(RELEASE, Track.CANARY)
    stable = obj.plain_deployment(RELEASE)
    shared = obj.plain_service(RELEASE)
    assert canary["metadata"]["name"] == "phishing-classifier-canary"
    assert canary["spec"]["selector"]["matchLabels"][obj.TRACK_LABEL] == "canary"
    for deployment in (canary, stable):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert shared["spec"]["selector"].items() <= labels.items()


@pytest.mark.parametrize(("stable", "percent", "expected"), [(1, 10, 1), (3, 25, 1), (3, 50, 3), (9, 10, 1)])
def test_canary_replicas_approximate_the_traffic_share(stable: int, percent: int, expected: int) -> None:
    assert canary_replicas(stable, percent) == expected


def _deployment(generation: int = 2, **status: object) -> dict:
    return {"metadata": {"generation": generation}, "spec": {"replicas": 2}, "status": status}


def test_a_deployment_is_rolled_out_only_when_every_new_replica_is_available() -> None:
    assert not deployment_rollout(_deployment(observedGeneration=1)).done
    assert not deployment_rollout(_deployment(observedGeneration=2, updatedReplicas=1)).done
    old_left = _deployment(observedGeneration=2, updatedReplicas=2, replicas=3, availableReplicas=2)
    assert "old replicas" in deployment_rollout(old_left).waiting_for
    assert deployment_rollout(
        _deployment(observedGeneration=2, updatedReplicas=2, replicas=2, availableReplicas=2)
    ).done


def test_a_rollback_is_done_once_the_restored_version_is_available_while_failed_pods_terminate() -> None:
    lingering = _deployment(observedGeneration=2, updatedReplicas=2, replicas=3, availableReplicas=2)
    assert not deployment_rollout(lingering).done
    assert deployment_rollout(lingering, old_may_linger=True).done


def test_pods_that_cannot_be_created_fail_at_once() -> None:
    refused = _deployment(
        observedGeneration=2,
        conditions=[
            {
                "type": "ReplicaFailure",
                "status": "True",
                "reason": "FailedCreate",
                "message": 'pods "x-" is forbidden: error looking up service account',
            }
        ],
    )
    assert "service account" in deployment_rollout(refused).failure


def test_a_deployment_past_its_progress_deadline_has_failed() -> None:
    stuck = _deployment(
        observedGeneration=2,
        updatedReplicas=1,
        conditions=[
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": 'ReplicaSet "x" has timed out progressing.',
            }
        ],
    )
    state = deployment_rollout(stuck)
    assert not state.done and "progress deadline exceeded" in state.failure


def _seldon(state: str, deployments: dict) -> dict:
    return {
        "metadata": {"generation": 2},
        "spec": {"predictors": [{"name": "v3", "replicas": 1}]},
        "status": {"state": state, "deploymentStatus": deployments},
    }


def test_seldon_available_for_the_old_predictor_is_not_the_new_version_rolled_out() -> None:
    stale = _seldon("Available", {"phishing-classifier-v2-0-model": {"availableReplicas": 1}})
    assert not seldon_rollout(stale, "3").done
    fresh = _seldon("Available", {"phishing-classifier-v3-0-model": {"availableReplicas": 1}})
    assert seldon_rollout(fresh, "3").done
    assert "Failed" in seldon_rollout(_seldon("Failed", {}), "3").failure
    # Restoring: the Failed state is the failed version's until the operator writes the new status.
    assert seldon_rollout(_seldon("Failed", {}), "3", restoring=True).failure is None


def test_kserve_ready_counts_only_for_the_current_generation() -> None:
    ready = [{"type": "Ready", "status": "True"}]
    assert not kserve_rollout(
        {"metadata": {"generation": 3}, "status": {"observedGeneration": 2, "conditions": ready}}
    ).done
    assert kserve_rollout(
        {"metadata": {"generation": 3}, "status": {"observedGeneration": 3, "conditions": ready}}
    ).done
    failed = [{"type": "PredictorReady", "status": "False", "reason": "RevisionFailed", "message": "crash"}]
    state = kserve_rollout(
        {"metadata": {"generation": 3}, "status": {"observedGeneration": 3, "conditions": failed}}
    )
    assert "RevisionFailed" in state.failure


def test_smoke_urls_reach_the_new_version_alone() -> None:
    assert obj.smoke_url(RELEASE, ClusterTarget.PLAIN, canary=True).startswith(
        "http://phishing-classifier-canary."
    )
    assert "-v3." in obj.smoke_url(RELEASE, ClusterTarget.SELDON, canary=True)
    assert obj.smoke_url(RELEASE, ClusterTarget.KSERVE, canary=True).startswith("http://latest-")
