"""Whether a serving object's rollout finished, failed, or is still under way (pure functions).

Each reads only what its controller writes: the Deployment controller's replica counts and
``Progressing`` condition (the rules of ``kubectl rollout status``), Seldon Core's
``status.state`` and per-deployment replica counts, and KServe's ``Ready`` condition for
the current generation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tabpipe.cluster_deploy.objects import ClusterTarget, predictor_name


@dataclass(frozen=True)
class Rollout:
    """A rollout's state: done, failed (with the controller's reason), or neither yet."""

    done: bool = False
    failure: str | None = None
    waiting_for: str = ""


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)


def deployment_rollout(obj: dict[str, Any], old_may_linger: bool = False) -> Rollout:
    """A Deployment's rollout, judged as ``kubectl rollout status`` does.

    With ``old_may_linger`` (a rollback) it is done once every replica of the restored version is
    available, even while pods of the failed version are still terminating: those never served.
    """
    spec, status = obj.get("spec", {}), obj.get("status") or {}
    generation = obj.get("metadata", {}).get("generation", 0)
    if status.get("observedGeneration", 0) < generation:
        return Rollout(waiting_for="the controller to see the new spec")
    replica_failure = _condition(status, "ReplicaFailure")
    if replica_failure and replica_failure.get("status") == "True":
        # Pods cannot even be created (a missing ServiceAccount, a quota, admission): waiting cannot help.
        return Rollout(failure=f"pods cannot be created: {replica_failure.get('message', '')}".strip())
    progressing = _condition(status, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Rollout(failure=f"progress deadline exceeded: {progressing.get('message', '')}".strip())
    wanted = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    if updated < wanted:
        return Rollout(waiting_for=f"{updated} of {wanted} new replicas updated")
    if status.get("replicas", 0) > updated and not old_may_linger:
        return Rollout(waiting_for=f"{status.get('replicas', 0) - updated} old replicas to terminate")
    if status.get("availableReplicas", 0) < updated:
        return Rollout(
            waiting_for=f"{status.get('availableReplicas', 0)} of {updated} new replicas available"
        )
    return Rollout(done=True)


def seldon_rollout(obj: dict[str, Any], version: str, restoring: bool = False) -> Rollout:
    """A SeldonDeployment's rollout of ``version``'s predictor.

    Seldon Core's v1 status has no observed generation, so ``Available`` alone could be the
    previous version's: the new predictor's own deployments must report their replicas too.
    While ``restoring``, a ``Failed`` state is the failed version's, not yet replaced: keep waiting.
    """
    status = obj.get("status") or {}
    state = status.get("state", "")
    if state == "Failed" and not restoring:
        return Rollout(failure=f"Seldon reports Failed: {status.get('description', '')}".strip())
    predictor = next(
        (p for p in obj.get("spec", {}).get("predictors", []) if p.get("name") == predictor_name(version)),
        None,
    )
    if predictor is None:
        return Rollout(failure=f"no predictor {predictor_name(version)!r} in the SeldonDeployment")
    marker = f"-{predictor_name(version)}-"
    ours = {name: d for name, d in (status.get("deploymentStatus") or {}).items() if marker in f"-{name}-"}
    if state != "Available":
        return Rollout(waiting_for=f"state {state or 'unset'}")
    wanted = predictor.get("replicas", 1)
    if not ours or any((d.get("availableReplicas") or 0) < wanted for d in ours.values()):
        return Rollout(waiting_for=f"predictor {predictor_name(version)} to have {wanted} available replicas")
    return Rollout(done=True)


def kserve_rollout(obj: dict[str, Any]) -> Rollout:
    """An InferenceService's rollout: ``Ready`` for the current generation, or its failure reason."""
    status = obj.get("status") or {}
    generation = obj.get("metadata", {}).get("generation", 0)
    if status.get("observedGeneration", 0) < generation:
        return Rollout(waiting_for="the controller to see the new spec")
    ready = _condition(status, "Ready")
    predictor_ready = _condition(status, "PredictorReady")
    for condition in (predictor_ready, ready):
        if (
            condition
            and condition.get("status") == "False"
            and condition.get("reason") in ("RevisionFailed", "ProgressDeadlineExceeded", "RevisionMissing")
        ):
            return Rollout(
                failure=f"{condition['type']}: {condition.get('reason')}: {condition.get('message', '')}"
            )
    if not ready or ready.get("status") != "True":
        return Rollout(waiting_for="Ready")
    return Rollout(done=True)


def rollout_of(target: ClusterTarget, obj: dict[str, Any], version: str, restoring: bool = False) -> Rollout:
    """The rollout state of ``obj`` deploying ``version`` with ``target`` (``restoring``: a rollback)."""
    if target is ClusterTarget.PLAIN:
        return deployment_rollout(obj, old_may_linger=restoring)
    if target is ClusterTarget.SELDON:
        return seldon_rollout(obj, version, restoring=restoring)
    return kserve_rollout(obj)
