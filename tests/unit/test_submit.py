"""The cluster submission's arguments (the KFP API itself needs a cluster; see README)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tabpipe.config import load_config
from tabpipe.errors import ConfigError
from tabpipe.submit import REPO_ROOT, cluster_config, submission_arguments, to_image_path


def test_repository_paths_map_into_the_image() -> None:
    config = load_config(REPO_ROOT / "configs" / "phishing.yaml")
    args = submission_arguments(config, "http://mlflow.tabpipe.svc.cluster.local:5000", "/app")
    sent = json.loads(args["config_json"])
    assert sent["source"]["uri"] == "/app/data/phishing/phishing_websites.csv"
    assert args["mlflow_tracking_uri"] == "http://mlflow.tabpipe.svc.cluster.local:5000"
    assert args["code_version"].startswith("0.1.0+src.")


def test_object_store_uris_pass_through() -> None:
    assert to_image_path("s3://bucket/data.csv", "/app") == "s3://bucket/data.csv"


def test_local_file_outside_the_repository_is_refused(tmp_path: Path) -> None:
    config = load_config(REPO_ROOT / "configs" / "phishing.yaml")
    moved = config.model_copy(
        update={"source": config.source.model_copy(update={"uri": str(tmp_path / "x.csv")})}
    )
    with pytest.raises(ConfigError, match="outside the repository"):
        cluster_config(moved, "/app")
