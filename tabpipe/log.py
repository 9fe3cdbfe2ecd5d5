"""Logging set-up for the command line and the pipeline's tasks.

Modules log through ``logging.getLogger(__name__)`` and never configure
logging themselves; the entry points (the ``tabpipe`` command, a stage's
guard) call :func:`configure_logging` once, at run time, never at import.
"""

from __future__ import annotations

import logging
import sys

#: The root of the project's loggers.
LOGGER_NAME = "tabpipe"
_FORMAT = "[tabpipe] %(message)s"


def configure_logging(level: int = logging.INFO) -> None:
    """Send the project's log records to stderr, once; later calls only change the level."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    if not any(getattr(handler, "_tabpipe", False) for handler in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler._tabpipe = True  # type: ignore[attr-defined]  # marks our handler, so it is added once
        logger.addHandler(handler)
        logger.propagate = False
