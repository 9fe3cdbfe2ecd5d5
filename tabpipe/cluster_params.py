"""What a run on the cluster is given: paths inside the image, in-cluster services, its parameters.

Local paths in the config are rewritten to where the project image holds
the same files (``/app/data/...``), so the default data sets run in a
cluster without an object store. ``s3://`` sources pass through unchanged.
:func:`pipeline_defaults` are compiled into the pipeline as its parameter
defaults; :func:`submission_arguments` are what ``tabpipe submit`` and
``tabpipe schedule`` pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tabpipe.errors import ConfigError

if TYPE_CHECKING:
    from tabpipe.config import PipelineConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
# The least-privilege account from manifests/ (pipeline-runner-rbac.yaml), not KFP's broad default.
PIPELINE_SERVICE_ACCOUNT = "tabpipe-pipeline-runner"
#: MLflow as pipeline pods reach it: the Service ``mlflow`` in namespace ``tabpipe`` (manifests/).
CLUSTER_TRACKING_URI = "http://mlflow.tabpipe.svc.cluster.local:5000"
#: Where the project image holds configs/ and data/ (docker/Dockerfile WORKDIR).
IMAGE_ROOT = "/app"
#: The config a run uses when none is given (make's CONFIG default).
DEFAULT_CONFIG_PATH = REPO_ROOT / "configs" / "phishing.yaml"


def to_image_path(uri: str, image_root: str, repo_root: Path = REPO_ROOT) -> str:
    """Map a repository file to its path inside the image; leave URIs with a scheme alone.

    Raises:
        ConfigError: a local path outside the repository, which the image cannot hold.
    """
    if "://" in uri:
        return uri
    path = Path(uri).resolve()
    try:
        relative = path.relative_to(repo_root)
    except ValueError:
        raise ConfigError(
            f"source.uri {uri!r} is a local file outside the repository; a cluster run needs it in the "
            "image or in object storage"
        ) from None
    return f"{image_root.rstrip('/')}/{relative.as_posix()}"


def cluster_config(config: PipelineConfig, image_root: str, repo_root: Path = REPO_ROOT) -> PipelineConfig:
    """The config with local data paths rewritten for the image."""
    from tabpipe.config import PipelineConfig

    data = config.model_dump()
    data["source"]["uri"] = to_image_path(config.source.uri, image_root, repo_root)
    if config.drift.reference_uri:
        data["drift"]["reference_uri"] = to_image_path(config.drift.reference_uri, image_root, repo_root)
    return PipelineConfig.model_validate(data)


def pipeline_defaults(config_path: Path = DEFAULT_CONFIG_PATH) -> dict[str, str]:
    """The parameter defaults compiled into the pipeline: a run started from the dashboard works as is.

    Deterministic, so the committed compiled YAML is reproducible: ``code_version`` is
    empty (the tasks then use the version of the code installed in their image;
    ``tabpipe upload`` bakes the exact version into the uploaded pipeline version).
    """
    from tabpipe.config import load_config

    return {
        "config_json": cluster_config(load_config(config_path), IMAGE_ROOT).to_parameter(),
        "mlflow_tracking_uri": CLUSTER_TRACKING_URI,
        "code_version": "",
    }


def submission_arguments(config: PipelineConfig, tracking_uri: str, image_root: str) -> dict[str, str]:
    """The pipeline parameters of a cluster run."""
    from tabpipe.version import code_version

    return {
        "config_json": cluster_config(config, image_root).to_parameter(),
        "mlflow_tracking_uri": tracking_uri,
        "code_version": code_version(),
    }
