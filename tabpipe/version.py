"""The code version recorded with every run: package version plus a hash of the installed code."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from tabpipe import __version__

#: Packages whose source is hashed: the stage code and the components that call it.
HASHED_PACKAGES = ("tabpipe", "components")


def _package_root(name: str) -> Path:
    # Located without importing it: the components sit above everything that asks.
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"package {name!r} is not installed")
    return Path(spec.origin).parent


def code_version() -> str:
    """Package version plus a hash of the installed stage code.

    It is a pipeline parameter, so the local cache misses whenever the code
    that a cached step ran has changed, even before it is committed.
    """
    digest = hashlib.sha256()
    for name in HASHED_PACKAGES:
        root = _package_root(name)
        for path in sorted(root.rglob("*.py")):
            digest.update(path.relative_to(root.parent).as_posix().encode())
            digest.update(path.read_bytes())
    return f"{__version__}+src.{digest.hexdigest()[:12]}"
