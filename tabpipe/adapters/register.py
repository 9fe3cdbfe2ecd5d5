"""Register adapter: a blessed model becomes a new registry version aliased ``challenger``."""

from __future__ import annotations

from tabpipe.config import PipelineConfig
from tabpipe.tracking import RunContext


def run(
    config: PipelineConfig, ctx: RunContext, model_uri: str, mlflow_run_id: str, model_sha256: str
) -> str:
    """Register ``model_uri`` under the config's model name; return the new version."""
    from tabpipe.tracking import register

    return register(
        ctx.tracking_uri, config.registry.model_name, model_uri, mlflow_run_id, model_sha256, ctx.tags()
    )
