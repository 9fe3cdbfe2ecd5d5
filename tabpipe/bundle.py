"""The deployable bundle: the model files a server loads, checked against their recorded checksums.

A bundle folder holds ``model.skops``, ``model.onnx`` when the model was
exported, and ``bundle.json`` (the serving spec with both checksums). It is
assembled from artifacts that evaluate already loaded and scored; each copy is
verified against the same sha256, so a corrupted file never reaches a server.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tabpipe.artifacts import BUNDLE_METADATA_FILENAME
from tabpipe.errors import ArtifactIntegrityError
from tabpipe.io import sha256_file, write_atomic
from tabpipe.modelio import MODEL_FILENAME
from tabpipe.serving_spec import ONNX_FILENAME, ServingSpec


def _copy_verified(source: str | Path, dest: Path, sha256: str) -> None:
    shutil.copyfile(source, dest)
    if sha256_file(dest) != sha256:
        dest.unlink(missing_ok=True)
        raise ArtifactIntegrityError(f"bundle: {source} does not match its recorded sha256")


def assemble_bundle(
    bundle_dir: str | Path,
    spec: ServingSpec,
    model: str | Path,
    onnx_model: str | Path | None = None,
) -> ServingSpec:
    """Copy the model files into ``bundle_dir``, verify them and write the spec beside them.

    Args:
        bundle_dir: The bundle folder (created when missing).
        spec: The serving spec; ``spec.sha256`` is the skops file's checksum and
            ``spec.onnx_sha256`` the ONNX file's (None when there is no export).
        model: The ``model.skops`` to copy.
        onnx_model: The ONNX export to copy, when ``spec.onnx_sha256`` is set.

    Returns:
        The spec as written to ``bundle.json``.

    Raises:
        ArtifactIntegrityError: a copied file does not match its checksum.
    """
    bundle = Path(bundle_dir)
    bundle.mkdir(parents=True, exist_ok=True)
    _copy_verified(model, bundle / MODEL_FILENAME, spec.sha256)
    if spec.onnx_sha256:
        if onnx_model is None:
            raise ArtifactIntegrityError("bundle: the spec records an ONNX export but no file was given")
        _copy_verified(onnx_model, bundle / ONNX_FILENAME, spec.onnx_sha256)
    write_atomic(bundle / BUNDLE_METADATA_FILENAME, spec.model_dump_json(indent=2).encode())
    return spec
