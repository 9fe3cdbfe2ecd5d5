"""Transform adapter: fit the shared preprocessing on the training split and save it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tabpipe.adapters.files import PathLike, read_frame
from tabpipe.artifacts import Meta
from tabpipe.config import PipelineConfig
from tabpipe.io import write_atomic


@dataclass(frozen=True)
class TransformResult:
    """The saved preprocessor's checksum and its output width."""

    sha256: str
    n_features_out: int

    def metadata(self) -> dict[str, Any]:
        """Artifact metadata, keyed by :class:`tabpipe.artifacts.Meta`."""
        return {Meta.SHA256: self.sha256, Meta.N_FEATURES_OUT: self.n_features_out}


def run(
    config: PipelineConfig, train: PathLike, preprocessor: PathLike, report_markdown: PathLike
) -> TransformResult:
    """Fit on ``train``; write the preprocessor (skops) and a Markdown feature summary."""
    from tabpipe.modelio import save_model
    from tabpipe.stages.transform import describe_features, fit_preprocessor

    fitted, names = fit_preprocessor(config, read_frame(train))
    sha = save_model(fitted, preprocessor)
    write_atomic(report_markdown, describe_features(config, names).encode())
    return TransformResult(sha256=sha, n_features_out=len(names))
