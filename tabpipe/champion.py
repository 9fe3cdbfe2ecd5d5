"""Champion policy: which metrics the candidate is compared with, and on which rows.

The current ``@champion`` is re-scored on the candidate's own test split, but only
on the test rows it was not trained on: its training run recorded the hashes of
the rows it was fitted and selected on (:func:`tabpipe.tracking.training_row_hashes`),
and a time-split or overlapping data set can put many of those rows in a later test
split, where the champion would be graded on answers it has learnt. The candidate is
compared on the same subset. Then:

- when too few unseen rows remain (``evaluation.champion_min_rows``), the comparison
  is skipped, with the reason, rather than made on a handful of rows;
- when the subset is the whole test split and the champion's run already recorded its
  metrics on this very split (its test fingerprint matches), those numbers are reused:
  scoring the same bundle on the same rows again would give the same ones;
- its bundle is verified like a served one before it is loaded: every file against
  the manifest, the manifest against the version's ``tabpipe.bundle_digest`` tag (a
  version from before manifests: the skops file against ``tabpipe.bundle_sha256``,
  with a warning);
- when its bundle cannot be fetched or fails verification, the test metrics recorded
  on its run are used, and the fallback is logged rather than skipping the gate;
- a champion trained before row hashes were recorded is scored on the whole split,
  and the source says its training rows are unknown.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChampionScore:
    """The champion's version and its metrics, how they were obtained, and on which rows.

    Attributes:
        version: The champion's registry version.
        metrics: Its metrics on the comparison rows (empty when ``skipped``).
        source: How they were obtained, with the row count, e.g.
            ``"re-scored on 1240 of 4000 test rows it was not trained on"``.
        rows: Test rows the comparison uses.
        test_rows: Rows in the whole test split.
        mask: Which test rows are compared on, or None for all of them.
        skipped: Why the comparison is skipped, or None when it is made.
    """

    version: str
    metrics: dict[str, float]
    source: str
    rows: int
    test_rows: int
    mask: np.ndarray | None = None
    skipped: str | None = None

    @property
    def whole_split(self) -> bool:
        """Whether the comparison uses every test row."""
        return self.mask is None


def unseen_mask(hashes: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Which rows (by hash) are not in ``seen``, a sorted array of row hashes.

    ``seen`` is what :func:`tabpipe.stages.evaluate.training_row_set` returns.

    Args:
        hashes: Row hashes of the rows to check, e.g. the test split.
        seen: Sorted row hashes of the rows a model has seen.

    Returns:
        A boolean mask, True for each row the model has not seen.

    """
    import numpy as np

    if len(seen) == 0:
        return np.ones(len(hashes), dtype=bool)
    position = np.searchsorted(seen, hashes)
    found = seen[np.minimum(position, len(seen) - 1)] == hashes
    return ~found


def comparison_rows(test_hashes: np.ndarray, seen: np.ndarray | None) -> tuple[np.ndarray | None, int]:
    """The test rows a champion may be scored on: those not among the rows it has seen.

    Args:
        test_hashes: One hash per test row (:func:`tabpipe.stages.evaluate.model_row_hashes`).
        seen: The champion's sorted training-row hashes, or None when unknown.

    Returns:
        (mask, rows): a boolean mask of the usable rows, or None when every row is usable
        (no overlap, or the training rows are unknown), and how many rows that is.
    """
    if seen is None:
        return None, len(test_hashes)
    mask = unseen_mask(test_hashes, seen)
    rows = int(mask.sum())
    return (None, rows) if rows == len(test_hashes) else (mask, rows)


def champion_score(
    tracking_uri: str,
    model_name: str,
    score: Callable[[Any, np.ndarray | None], dict[str, float]],
    test_hashes: np.ndarray,
    test_fingerprint: str | None = None,
    metric_names: Sequence[str] = (),
    min_rows: int = 1,
) -> ChampionScore | None:
    """The current champion's metrics on the test rows it has not seen, or None when there is no champion.

    Args:
        tracking_uri: The MLflow server.
        model_name: The registered model.
        score: Scores a loaded model on the test split, restricted to a row mask (None: every row).
        test_hashes: One hash per test row, to find the rows the champion trained on.
        test_fingerprint: The test split's fingerprint, to reuse metrics recorded on it.
        metric_names: The metrics the comparison needs.
        min_rows: Fewest unseen rows to compare on; with fewer, the comparison is skipped.
    """
    from mlflow.exceptions import MlflowException

    from tabpipe import tracking
    from tabpipe.errors import ArtifactIntegrityError

    mlflow_client = tracking.client(tracking_uri)
    current = tracking.champion(mlflow_client, model_name)
    if current is None:
        return None
    n_test = len(test_hashes)
    try:
        seen = tracking.training_row_hashes(mlflow_client, current.run_id)
    except (MlflowException, ArtifactIntegrityError) as exc:
        # Which rows it has seen is unknowable; comparing on all of them could favour it.
        reason = (
            f"champion v{current.version}'s record of its training rows is unusable ({exc}); "
            "comparison skipped"
        )
        log.warning("%s", reason)
        return ChampionScore(current.version, {}, f"skipped: {reason}", 0, n_test, None, reason)
    mask, rows = comparison_rows(test_hashes, seen)
    if seen is None:
        where = f"all {n_test} test rows (its training rows were not recorded)"
    elif mask is None:
        where = f"all {n_test} test rows (none in its training data)"
    else:
        where = f"{rows} of {n_test} test rows it was not trained on"
    if rows < min_rows:
        reason = (
            f"only {rows} of {n_test} test rows are not in champion v{current.version}'s training data "
            f"(champion_min_rows {min_rows}); comparison skipped"
        )
        return ChampionScore(current.version, {}, f"skipped: {reason}", rows, n_test, mask, reason)

    # Recorded metrics stand in only for the very same rows: the whole split, unchanged.
    if mask is None and test_fingerprint and metric_names:
        recorded = tracking.recorded_test_metrics(
            mlflow_client, current.run_id, test_fingerprint, tuple(metric_names)
        )
        if recorded is not None:
            return ChampionScore(
                current.version, recorded, f"recorded on the same test split, {where}", rows, n_test
            )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            model = _verified_model(mlflow_client, current, Path(tmp))
    except (MlflowException, ArtifactIntegrityError, OSError) as exc:
        log.warning(
            "champion v%s bundle unusable (%s); using its recorded test metrics", current.version, exc
        )
        recorded_all = mlflow_client.get_run(current.run_id).data.metrics
        metrics = {k.removeprefix("test_"): v for k, v in recorded_all.items() if k.startswith("test_")}
        # Its own test split, which it was never trained on; no subset of this one applies.
        return ChampionScore(
            current.version, metrics, "recorded on its own test split (bundle unusable)", 0, n_test, None
        )
    return ChampionScore(current.version, score(model, mask), f"re-scored on {where}", rows, n_test, mask)


def _verified_model(mlflow_client: Any, current: Any, dest: Path) -> Any:
    """Download the champion's bundle, verify it and load its skops model.

    With a ``tabpipe.bundle_digest`` tag, the whole ``bundle`` folder is checked
    against it (every file, the ONNX export and the spec included) before the model
    is read; an older version is checked by its skops file's sha256 alone, with a
    warning.

    Raises:
        ArtifactIntegrityError: a file disagrees with the manifest or the tags.
        MlflowException, OSError: the bundle could not be downloaded.
    """
    from tabpipe import tracking
    from tabpipe.bundle import verify_bundle
    from tabpipe.modelio import MODEL_FILENAME, load_model

    if not current.bundle_digest:
        log.warning(
            "champion v%s has no %s tag (registered before bundle manifests): "
            "only its model.skops is verified",
            current.version,
            tracking.Tag.BUNDLE_DIGEST,
        )
        return load_model(tracking.download_bundle(mlflow_client, current, dest), current.bundle_sha256)
    bundle = tracking.download_bundle_dir(mlflow_client, current.run_id, dest / "bundle")
    verify_bundle(bundle, current.bundle_digest)
    return load_model(bundle / MODEL_FILENAME, current.bundle_sha256)
