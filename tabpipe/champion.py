"""Champion policy: which metrics the candidate is compared with.

The current ``@champion`` is re-scored on the candidate's own test split, so the
comparison is made on the same rows. Two shortcuts and one fallback:

- when the champion's run already recorded its metrics on this very test split
  (its test fingerprint matches), those numbers are reused: scoring the same bundle
  on the same rows again would give the same ones;
- when its bundle cannot be fetched or fails verification, the test metrics
  recorded on its run are used, and the fallback is logged rather than skipping the gate.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChampionScore:
    """The champion's version and its metrics, and how they were obtained."""

    version: str
    metrics: dict[str, float]
    source: str  # "re-scored", "recorded on the same test split" or "recorded (bundle unusable)"


def champion_score(
    tracking_uri: str,
    model_name: str,
    score: Callable[[Any], dict[str, float]],
    test_fingerprint: str | None = None,
    metric_names: Sequence[str] = (),
) -> ChampionScore | None:
    """The current champion's metrics on the candidate's test split, or None when there is no champion.

    Args:
        tracking_uri: The MLflow server.
        model_name: The registered model.
        score: Scores a loaded model on the candidate's test split.
        test_fingerprint: The test split's fingerprint, to reuse metrics recorded on it.
        metric_names: The metrics the comparison needs.
    """
    from mlflow.exceptions import MlflowException

    from tabpipe import tracking
    from tabpipe.errors import ArtifactIntegrityError
    from tabpipe.modelio import load_model

    mlflow_client = tracking.client(tracking_uri)
    current = tracking.champion(mlflow_client, model_name)
    if current is None:
        return None
    if test_fingerprint and metric_names:
        recorded = tracking.recorded_test_metrics(
            mlflow_client, current.run_id, test_fingerprint, tuple(metric_names)
        )
        if recorded is not None:
            return ChampionScore(current.version, recorded, "recorded on the same test split")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bundle = tracking.download_bundle(mlflow_client, current, Path(tmp))
            model = load_model(bundle, current.bundle_sha256)
    except (MlflowException, ArtifactIntegrityError, OSError) as exc:
        log.warning(
            "champion v%s bundle unusable (%s); using its recorded test metrics", current.version, exc
        )
        recorded_all = mlflow_client.get_run(current.run_id).data.metrics
        metrics = {k.removeprefix("test_"): v for k, v in recorded_all.items() if k.startswith("test_")}
        return ChampionScore(current.version, metrics, "recorded (bundle unusable)")
    return ChampionScore(current.version, score(model), "re-scored")
