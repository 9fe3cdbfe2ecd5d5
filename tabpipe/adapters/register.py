"""Register adapter: a blessed model becomes a new registry version aliased ``challenger``."""

from __future__ import annotations

from tabpipe.config import PipelineConfig
from tabpipe.tracking import RunContext


def run(
    config: PipelineConfig,
    ctx: RunContext,
    model_uri: str,
    mlflow_run_id: str,
    model_sha256: str,
    bundle_digest: str | None = None,
) -> str:
    """Register ``model_uri`` under the config's model name; return the new version.

    ``bundle_digest`` (train's manifest digest) is tagged on the version, so loaders
    can verify every bundle file, not only the skops one.
    """
    from tabpipe.tracking import register

    return register(
        ctx.tracking_uri,
        config.registry.model_name,
        model_uri,
        mlflow_run_id,
        model_sha256,
        ctx.tags(),
        bundle_digest=bundle_digest or None,
    )
