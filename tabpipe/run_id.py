"""The pipeline run's id, as every task reads it: from an environment variable, never a parameter.

A per-run value among a task's input parameters (``dsl.PIPELINE_JOB_ID_PLACEHOLDER``)
is part of KFP's cache fingerprint: the driver resolves it to the run id before
hashing the inputs, so no task could ever be served from the cache. The id comes
instead from the environment:

- on a cluster, from the pod's ``pipeline/runid`` label, which the KFP API server
  (and, for recurring runs, the scheduled-workflow controller) puts on every pod
  of the run; ``pipelines/training.py`` maps it into :data:`RUN_ID_ENV` with a
  Kubernetes field path (``kfp.kubernetes.use_field_path_as_env``);
- under ``kfp.local`` (which ignores Kubernetes settings; tasks inherit the parent's
  environment), from :func:`tabpipe.local_run.run_pipeline`, which sets it to the
  local run's id for the run's duration.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from tabpipe.errors import ConfigError

#: The environment variable every task reads its pipeline run's id from.
RUN_ID_ENV = "TABPIPE_KFP_RUN_ID"
#: The pod label KFP 2.17 sets to the run id (backend/src/common/util/consts.go LabelKeyWorkflowRunId).
RUN_ID_POD_LABEL = "pipeline/runid"
#: The Kubernetes downward-API field path of that label.
RUN_ID_FIELD_PATH = f"metadata.labels['{RUN_ID_POD_LABEL}']"


def current_run_id() -> str:
    """The id of the pipeline run this task belongs to.

    Raises:
        ConfigError: the variable is unset or empty (the task was started outside
            a KFP run and outside ``tabpipe run``).
    """
    value = os.environ.get(RUN_ID_ENV, "").strip()
    if not value:
        raise ConfigError(
            f"{RUN_ID_ENV} is not set: on a cluster the pipeline maps it from the pod label "
            f"{RUN_ID_POD_LABEL!r}; locally `tabpipe run` sets it. Run the compiled pipeline "
            "through one of those, or set it yourself"
        )
    return value


def new_local_run_id() -> str:
    """A fresh id for a local (kfp.local) run: sortable by time, unique."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"local-{stamp}-{uuid.uuid4().hex[:8]}"


@contextmanager
def run_id_in_environment(run_id: str) -> Iterator[str]:
    """Set :data:`RUN_ID_ENV` for the tasks started meanwhile (kfp.local's subprocesses inherit it).

    The previous value, or its absence, is restored afterwards.
    """
    previous = os.environ.get(RUN_ID_ENV)
    os.environ[RUN_ID_ENV] = run_id
    try:
        yield run_id
    finally:
        if previous is None:
            os.environ.pop(RUN_ID_ENV, None)
        else:
            os.environ[RUN_ID_ENV] = previous
