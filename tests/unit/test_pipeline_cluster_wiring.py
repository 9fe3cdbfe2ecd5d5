"""What the compiled pipeline asks of the cluster: the deployer token (deploy only), store keys by name."""

from __future__ import annotations

import yaml

from pipelines.training import COMPILED_PATH, DEPLOYER_TOKEN_SECRET, SERVING_CLIENT_LABEL, STORE_SECRET
from tabpipe.cluster_deploy.rollout import DEPLOYER_TOKEN_DIR


def _executors() -> dict[str, dict]:
    documents = list(yaml.safe_load_all(COMPILED_PATH.read_text()))
    platform = next(d for d in documents if "platforms" in d)
    return platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_only_the_deploy_task_mounts_the_deployer_token_where_the_deploy_stage_reads_it() -> None:
    mounting = {
        name: volume
        for name, spec in _executors().items()
        for volume in spec.get("secretAsVolume", [])
        if volume["secretName"] == DEPLOYER_TOKEN_SECRET
    }
    assert list(mounting) == ["exec-deploy"]
    assert mounting["exec-deploy"]["mountPath"] == DEPLOYER_TOKEN_DIR
    assert mounting["exec-deploy"]["optional"] is True  # the registry target needs no cluster account
    assert (
        _executors()["exec-deploy"]["podMetadata"]["labels"][SERVING_CLIENT_LABEL[0]]
        == SERVING_CLIENT_LABEL[1]
    )


def test_store_keys_come_from_the_secret_by_reference_to_the_tasks_that_touch_object_storage() -> None:
    using = sorted(
        name
        for name, spec in _executors().items()
        if any(s["secretName"] == STORE_SECRET for s in spec.get("secretAsEnv", []))
    )
    assert using == ["exec-deploy", "exec-ingest", "exec-validate"]
