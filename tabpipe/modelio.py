"""Saving and loading model bundles without trusting their bytes.

Bundles are written with skops, whose loader rebuilds only allow-listed
types instead of running pickle's arbitrary code, and every load first checks
the file's sha256 against the checksum recorded when it was written.
"""

from __future__ import annotations

from pathlib import Path

from tabpipe.errors import ArtifactIntegrityError
from tabpipe.io import sha256_file, write_atomic

MODEL_FILENAME = "model.skops"

# Modules whose classes a bundle may contain. Anything else in a file is refused, and so is
# any name that is not a class (a function such as numpy.load could be called on load).
TRUSTED_MODULE_PREFIXES = ("sklearn.", "numpy.", "scipy.", "tabpipe.features.")


def save_model(model: object, path: str | Path) -> str:
    """Serialize a fitted scikit-learn object with skops; return its sha256."""
    import skops.io as sio

    write_atomic(path, sio.dumps(model))
    return sha256_file(path)


def _is_class(dotted: str) -> bool:
    """Whether a dotted name (from a trusted package) resolves to a class."""
    import importlib

    module_name, _, attr = dotted.rpartition(".")
    try:
        return isinstance(getattr(importlib.import_module(module_name), attr), type)
    except (ImportError, AttributeError, ValueError):
        return False


def trusted_types(data: bytes, source: str) -> list[str]:
    """The non-default types in a skops payload, if all come from trusted modules.

    Raises:
        ArtifactIntegrityError: the payload holds a type outside the trusted modules.
    """
    import skops.io as sio

    untrusted = sio.get_untrusted_types(data=data)
    refused = [t for t in untrusted if not (t.startswith(TRUSTED_MODULE_PREFIXES) and _is_class(t))]
    if refused:
        raise ArtifactIntegrityError(f"model bundle {source}: refuses to load untrusted types {refused}")
    return untrusted


def load_model(path: str | Path, expected_sha256: str) -> object:
    """Load a skops bundle after verifying its checksum and the types it holds.

    Raises:
        ArtifactIntegrityError: the checksum differs, or the file holds a type
            outside the trusted modules.
    """
    import skops.io as sio

    path = Path(path)
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise ArtifactIntegrityError(
            f"model bundle {path}: sha256 {actual[:12]}… does not match the recorded {expected_sha256[:12]}…"
        )
    data = path.read_bytes()
    return sio.loads(data, trusted=trusted_types(data, str(path)))
