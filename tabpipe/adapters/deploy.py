"""Deploy adapter: assemble the bundle, deploy it to its target, then move ``champion``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tabpipe.adapters.files import PathLike, read_frame
from tabpipe.artifacts import Meta
from tabpipe.config import PipelineConfig
from tabpipe.deploy import DeployTarget
from tabpipe.errors import TabpipeError

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
) -> DeployResult:
    """Write the deployable bundle, deploy it to the target, then move ``champion``.

    With the ``local-server`` target the new version is first loaded into the
    server at ``serving_url`` and smoke-tested on test-split rows; a failure
    restores the server and leaves the alias where it was. Deploy needs no
    scikit-learn: the bundle is verified by checksum, not loaded.

    Raises:
        ArtifactIntegrityError: a model file does not match its recorded checksum.
        DeployError: the server refused the new version or its smoke test failed.
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
    previous = promote(tracking_uri, config.registry.model_name, version)
    return DeployResult(
        version=version,
        sha256=files.model_sha256,
        previous_champion=previous,
        target=target,
        serving_url=serving_url if target is DeployTarget.LOCAL_SERVER else None,
        previously_served=served_before,
        bundle_uri=bundle_uri,
    )
