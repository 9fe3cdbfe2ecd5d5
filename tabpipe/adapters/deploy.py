"""Deploy adapter: assemble the bundle, deploy it to its target, then move ``champion``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tabpipe.adapters.files import PathLike, read_frame
from tabpipe.artifacts import Meta
from tabpipe.config import PipelineConfig
from tabpipe.deploy import DeployTarget
from tabpipe.errors import TabpipeError

if TYPE_CHECKING:
    from tabpipe.cluster_deploy.objects import Release
    from tabpipe.cluster_deploy.rollout import ClusterOutcome
    from tabpipe.serving_spec import ServingSpec

#: Test-split rows sent to a newly loaded version before it becomes the champion.
SMOKE_TEST_ROWS = 20


@dataclass(frozen=True)
class ModelFiles:
    """The trained model's files and the checksums train recorded."""

    model: PathLike
    model_sha256: str
    classes_json: str
    onnx_model: PathLike | None = None
    onnx_sha256: str | None = None
    onnx_reason: str | None = None


@dataclass(frozen=True)
class DeployResult:
    """What was deployed, and what it replaced."""

    version: str
    sha256: str
    previous_champion: str | None
    target: DeployTarget
    serving_url: str | None = None
    previously_served: str | None = None
    bundle_uri: str | None = None

    def metadata(self) -> dict[str, Any]:
        """Artifact metadata, keyed by :class:`tabpipe.artifacts.Meta`."""
        meta: dict[str, Any] = {
            Meta.MODEL_VERSION: self.version,
            Meta.SHA256: self.sha256,
            Meta.PREVIOUS_CHAMPION: self.previous_champion or "",
            Meta.DEPLOY_TARGET: self.target.value,
        }
        if self.bundle_uri is not None:
            meta[Meta.BUNDLE_URI] = self.bundle_uri
        if self.serving_url is not None:
            meta[Meta.SERVING_URL] = self.serving_url
            meta[Meta.PREVIOUSLY_SERVED] = self.previously_served or ""
        return meta


def run(
    config: PipelineConfig,
    tracking_uri: str,
    files: ModelFiles,
    version: str,
    bundle_dir: PathLike,
    target: DeployTarget = DeployTarget.REGISTRY,
    serving_url: str | None = None,
    test: PathLike | None = None,
    kubeconfig: str | None = None,
) -> DeployResult:
    """Write the deployable bundle, deploy it to the target, then move ``champion``.

    With the ``local-server`` target the new version is first loaded into the
    server at ``serving_url`` and smoke-tested on test-split rows; a failure
    restores the server and leaves the alias where it was. The cluster targets
    (``seldon``, ``kserve``, ``plain``) roll the bundle out from object storage,
    wait until the controller reports it available, smoke-test it, and restore
    the previous objects on failure; with ``cluster.canary_percent`` the new
    version serves that share beside the champion and gets the ``canary`` alias. Deploy needs no
    scikit-learn: the bundle is verified by checksum, not loaded.

    Raises:
        ArtifactIntegrityError: a model file does not match its recorded checksum.
        DeployError: the server refused the new version or its smoke test failed.
        ClusterDeployError: the cluster rollout or its smoke test failed (previous objects restored).
    """
    from tabpipe.bundle import assemble_bundle
    from tabpipe.serving_spec import build_serving_spec
    from tabpipe.tracking import promote

    spec = build_serving_spec(config, json.loads(files.classes_json), files.model_sha256).model_copy(
        update={
            "version": version,
            "onnx_sha256": files.onnx_sha256 or None,
            # Why scikit-learn serves it, as train recorded it (never lost on the way to the bundle).
            "onnx_reason": None if files.onnx_sha256 else (files.onnx_reason or None),
        }
    )
    assemble_bundle(bundle_dir, spec, files.model, files.onnx_model)
    bundle_uri = None
    if config.registry.bundle_store:
        from tabpipe.objectstore import upload_dir_atomic

        # Each file uploaded atomically and checked, its MANIFEST last: never a half bundle that looks whole.
        bundle_uri = f"{config.registry.bundle_store.rstrip('/')}/{config.registry.model_name}/{version}"
        upload_dir_atomic(bundle_dir, bundle_uri)
    served_before: str | None = None
    if target is DeployTarget.LOCAL_SERVER:
        from tabpipe.deploy import deploy_to_server
        from tabpipe.features import split_xy

        if serving_url is None or test is None:
            raise TabpipeError("deploy: the local-server target needs serving_url and the test split")
        rows, _ = split_xy(read_frame(test).head(SMOKE_TEST_ROWS), config)
        before = deploy_to_server(serving_url, spec, version, rows)
        served_before = before.version if before else None
    canary = False
    if target.in_cluster:
        if bundle_uri is None or test is None:
            raise TabpipeError(
                f"deploy_target {target.value!r} serves the bundle from object storage: "
                "set registry.bundle_store"
            )
        outcome = _deploy_to_cluster(config, spec, target, version, bundle_uri, test, kubeconfig)
        served_before = outcome.previous.version if outcome.previous else None
        serving_url, canary = outcome.smoke_url, outcome.canary
    if canary:
        from tabpipe.tracking import set_canary

        # The champion keeps its alias until `make promote`; the canary gets its own.
        set_canary(tracking_uri, config.registry.model_name, version)
        previous = None
    else:
        previous = promote(tracking_uri, config.registry.model_name, version)
    return DeployResult(
        version=version,
        sha256=files.model_sha256,
        previous_champion=previous,
        target=target,
        serving_url=serving_url if target is not DeployTarget.REGISTRY else None,
        previously_served=served_before,
        bundle_uri=bundle_uri,
    )


def cluster_release(config: PipelineConfig, version: str, bundle_uri: str) -> Release:
    """What the cluster targets serve for ``version`` of the config's model."""
    from tabpipe.cluster_deploy.objects import Release, object_name

    cluster = config.cluster
    return Release(
        name=object_name(config.registry.model_name),
        namespace=cluster.namespace,
        model_name=config.registry.model_name,
        version=version,
        bundle_uri=bundle_uri,
        image=cluster.image,
        replicas=cluster.replicas,
        object_store_endpoint=cluster.object_store_endpoint,
        object_store_secret=cluster.object_store_secret,
        progress_deadline_seconds=int(cluster.rollout_timeout_seconds),
        inference_log_uri=cluster.inference_log_uri,
        inference_log_sample_rate=cluster.inference_log_sample_rate,
    )


def _deploy_to_cluster(
    config: PipelineConfig,
    spec: ServingSpec,
    target: DeployTarget,
    version: str,
    bundle_uri: str,
    test: PathLike,
    kubeconfig: str | None,
) -> ClusterOutcome:
    from tabpipe.cluster_deploy import rollout
    from tabpipe.cluster_deploy.objects import ClusterTarget
    from tabpipe.deploy import smoke_test
    from tabpipe.features import split_xy

    rows, _ = split_xy(read_frame(test).head(SMOKE_TEST_ROWS), config)
    return rollout.deploy(
        rollout.Cluster.connect(kubeconfig),
        ClusterTarget(target.value),
        cluster_release(config, version, bundle_uri),
        smoke_test=lambda url, served_version: smoke_test(url, spec, served_version, rows),
        canary_percent=config.cluster.canary_percent,
        smoke_url=config.cluster.smoke_url,
        timeout=config.cluster.rollout_timeout_seconds,
    )
