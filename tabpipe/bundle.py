"""The deployable bundle: the model files a server loads, checked against their recorded checksums.

A bundle folder holds ``model.skops``, ``model.onnx`` when the model was
exported, the serving spec (``bundle.json`` in a deploy bundle, ``serving.json``
in a training run's ``bundle/`` artifact folder) and ``manifest.json``: every
other file of the folder with its sha256, in canonical JSON. The bundle's
**digest** is the sha256 of the manifest's bytes, so one checksum covers every
file that can change a prediction; the registry records it on each version
(``tabpipe.bundle_digest``), and :func:`verify_bundle` refuses a folder where any
file, the file list or the manifest itself disagrees, before anything is loaded.

A deploy bundle is assembled from artifacts that evaluate already loaded and
scored; each copy is verified against the same sha256, so a corrupted file never
reaches a server.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tabpipe.artifacts import BUNDLE_METADATA_FILENAME
from tabpipe.errors import ArtifactIntegrityError
from tabpipe.io import sha256_bytes, sha256_file, write_atomic
from tabpipe.modelio import MODEL_FILENAME
from tabpipe.serving_spec import ONNX_FILENAME, ServingSpec

MANIFEST_FILENAME = "manifest.json"
#: The manifest's format, recorded in it so a later change of layout is recognisable.
MANIFEST_FORMAT = "tabpipe.bundle.v1"


def _short(sha: str) -> str:
    return f"{sha[:12]}…"


def _canonical(manifest: dict[str, object]) -> bytes:
    # Sorted keys and fixed separators: the same files always give the same bytes, so
    # the digest names the content, not how it happened to be written.
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _entries(bundle: Path) -> dict[str, Path]:
    """Everything in the folder except the manifest, by name (sub-folders included, to be refused)."""
    return {p.name: p for p in sorted(bundle.iterdir()) if p.name != MANIFEST_FILENAME}


def write_manifest(bundle_dir: str | Path) -> str:
    """List every file of ``bundle_dir`` with its sha256 in ``manifest.json``; return the digest.

    Call it once every other file is in place: a file added later is refused by
    :func:`verify_bundle` as extra.

    Raises:
        ArtifactIntegrityError: the folder holds a sub-folder (a bundle is flat, and a
            folder has no single checksum).
    """
    bundle = Path(bundle_dir)
    files: dict[str, str] = {}
    for name, path in _entries(bundle).items():
        if not path.is_file():
            raise ArtifactIntegrityError(f"bundle {bundle}: {name} is not a file; a bundle holds files only")
        files[name] = sha256_file(path)
    data = _canonical({"format": MANIFEST_FORMAT, "files": files})
    write_atomic(bundle / MANIFEST_FILENAME, data)
    return sha256_bytes(data)


def has_manifest(bundle_dir: str | Path) -> bool:
    """Whether the folder has a manifest (bundles written before manifests have none)."""
    return (Path(bundle_dir) / MANIFEST_FILENAME).is_file()


def bundle_digest(bundle_dir: str | Path) -> str:
    """The digest a bundle folder's manifest claims: the sha256 of ``manifest.json``.

    It says nothing about the other files until :func:`verify_bundle` has checked them.

    Raises:
        ArtifactIntegrityError: the folder has no manifest.
    """
    path = Path(bundle_dir) / MANIFEST_FILENAME
    try:
        return sha256_file(path)
    except OSError as exc:
        raise ArtifactIntegrityError(
            f"bundle {bundle_dir}: cannot read {MANIFEST_FILENAME} ({exc.strerror})"
        ) from None


def _read_manifest(bundle: Path, data: bytes) -> dict[str, str]:
    """The manifest's file list, refusing anything but the canonical form this module writes."""
    where = f"bundle {bundle}: {MANIFEST_FILENAME}"
    try:
        manifest = json.loads(data)
    except (ValueError, RecursionError):
        raise ArtifactIntegrityError(f"{where} is not valid JSON") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != MANIFEST_FORMAT
        or set(manifest) != {"format", "files"}
        or not isinstance(files, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
    ):
        raise ArtifactIntegrityError(f"{where} is not a {MANIFEST_FORMAT} manifest")
    if _canonical(manifest) != data:
        # Only one byte string per file list, so equal digests mean equal manifests.
        raise ArtifactIntegrityError(f"{where} is not in canonical form")
    unsafe = sorted(n for n in files if n in ("", ".", "..", MANIFEST_FILENAME) or "/" in n or "\\" in n)
    if unsafe:
        raise ArtifactIntegrityError(f"{where} lists names that are not plain file names: {unsafe}")
    return files


def verify_bundle(bundle_dir: str | Path, expected_digest: str | None = None) -> None:
    """Check every file of a bundle folder against its manifest, and the manifest against a digest.

    Nothing in the folder is parsed but the manifest, so call this before loading
    anything from it.

    Args:
        bundle_dir: The bundle folder.
        expected_digest: The digest recorded elsewhere (the registry version's
            ``tabpipe.bundle_digest`` tag, or one the operator passed). None checks
            the files against the folder's own manifest only, which catches a
            swapped file but not a rewritten manifest.

    Raises:
        ArtifactIntegrityError: the manifest is missing, malformed or not the expected
            one, or a file disagrees with it, is missing or is not listed; the message
            names every such file.
    """
    bundle = Path(bundle_dir)
    path = bundle / MANIFEST_FILENAME
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactIntegrityError(
            f"bundle {bundle}: cannot read {MANIFEST_FILENAME} ({exc.strerror})"
        ) from None
    digest = sha256_bytes(data)
    if expected_digest is not None and digest != expected_digest:
        raise ArtifactIntegrityError(
            f"bundle {bundle}: {MANIFEST_FILENAME}: sha256 {_short(digest)} does not match "
            f"the expected bundle digest {_short(expected_digest)}"
        )
    listed = _read_manifest(bundle, data)
    present = _entries(bundle)
    problems = []
    for name, expected in sorted(listed.items()):
        file = present.get(name)
        if file is None or not file.is_file():
            problems.append(f"{name}: listed in the manifest but missing")
            continue
        actual = sha256_file(file)
        if actual != expected:
            problems.append(
                f"{name}: sha256 {_short(actual)} does not match the manifest ({_short(expected)})"
            )
    problems += [f"{name}: not listed in the manifest" for name in sorted(set(present) - set(listed))]
    if problems:
        raise ArtifactIntegrityError(f"bundle {bundle} refused: " + "; ".join(problems))


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
    spec_filename: str = BUNDLE_METADATA_FILENAME,
) -> ServingSpec:
    """Copy the model files into ``bundle_dir``, verify them, write the spec beside them, then the manifest.

    Args:
        bundle_dir: The bundle folder (created when missing).
        spec: The serving spec; ``spec.sha256`` is the skops file's checksum and
            ``spec.onnx_sha256`` the ONNX file's (None when there is no export).
        model: The ``model.skops`` to copy.
        onnx_model: The ONNX export to copy, when ``spec.onnx_sha256`` is set.
        spec_filename: The spec's file name: ``bundle.json`` in a deploy bundle,
            ``serving.json`` in a training run's ``bundle/`` folder.

    Returns:
        The spec as written.

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
    else:
        # A stale export the spec does not record would otherwise be listed in the manifest.
        (bundle / ONNX_FILENAME).unlink(missing_ok=True)
    write_atomic(bundle / spec_filename, spec.model_dump_json(indent=2).encode())
    write_manifest(bundle)
    return spec
