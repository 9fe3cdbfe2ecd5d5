"""Errors a user can act on.

Every failure the pipeline expects (bad config, bad data, drift, a failed gate)
raises a subclass of :class:`TabpipeError`. The command line and the KFP
components print these as one clear message instead of a traceback.
"""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none (for one-line errors)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class TabpipeError(Exception):
    """Base class for expected, user-facing failures."""

    #: Stage in which the failure happened; set by the stage guard.
    stage: str | None = None


class ConfigError(TabpipeError):
    """The pipeline config or the data contract is invalid."""


class SourceError(TabpipeError):
    """The source data is missing, empty, unreadable or corrupt."""


class DataValidationError(TabpipeError):
    """The data broke the contract, a quality rule or the drift limit.

    Attributes:
        violations: One human-readable line per violated rule.
    """

    def __init__(self, violations: list[str], *, title: str = "data validation failed") -> None:
        self.violations = list(violations)
        lines = "\n".join(f"  - {v}" for v in self.violations)
        super().__init__(f"{title} ({len(self.violations)} violation(s)):\n{lines}")


class ArtifactIntegrityError(TabpipeError):
    """An artifact's checksum does not match the one recorded for it."""


class ServiceError(TabpipeError):
    """A service the pipeline depends on (MLflow) is unreachable or refused a call."""


class StorageError(TabpipeError):
    """A local write failed: the folder is read-only, full or not ours to write.

    The message names the path and the operation, so the fix (free space, another
    folder) is clear without a traceback.
    """
