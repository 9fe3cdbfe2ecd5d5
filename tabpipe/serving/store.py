"""Loading verified models for serving: from a deploy bundle directory or the MLflow registry.

Nothing is read from a bundle but its manifest until every file matches it
(:func:`tabpipe.bundle.verify_bundle`), and the manifest must match the digest
recorded elsewhere: the registry version's ``tabpipe.bundle_digest`` tag, or a
digest the caller passes for a bundle folder (``tabpipe serve --digest``). A
folder checked against its own manifest alone still refuses any swapped,
missing or extra file. Bundles from before manifests (no digest tag, no
``manifest.json``) fall back to the per-file checks, with a warning: the skops
file against ``bundle.json`` or the ``tabpipe.bundle_sha256`` tag, the ONNX
file against the spec. skops bytes are only deserialized after that.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabpipe.errors import ArtifactIntegrityError, ConfigError
from tabpipe.serving.predictor import Predictor
from tabpipe.serving_spec import SERVING_SPEC_FILENAME, ServingSpec

log = logging.getLogger(__name__)

BUNDLE_SPEC_FILENAME = "bundle.json"
ONNX_FILENAME = "model.onnx"
_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to serve.

    Attributes:
        spec: Its serving spec (inputs with contract rules, task, classes, sha256, version).
        predictor: What runs it.
        version: The model version it answers as.
        loaded_at: Unix time the load finished.
        source: Where it came from (bundle directory or ``models:/`` URI).
        onnx_reason: Why scikit-learn serves it rather than its ONNX export (None when ONNX does).
    """

    spec: ServingSpec
    predictor: Predictor
    version: str
    loaded_at: float
    source: str
    onnx_reason: str | None = None


def is_registry_uri(uri: str) -> bool:
    """Whether ``uri`` names a registry model (``models:/name@alias`` or ``models:/name/version``)."""
    return uri.startswith("models:/")


def registry_model_name(uri: str) -> str | None:
    """The model name a well-formed ``models:/`` URI names, else None (a bundle's name is in its spec)."""
    match = _REGISTRY_URI.match(uri)
    return match["name"] if match else None


def claimed_model_name(uri: str) -> str | None:
    """The name a model URI claims before anything is verified: the registry name, or a bundle spec's.

    Only for saying which model a load is about (the index, readiness): the bundle's
    ``bundle.json`` is read as plain JSON, nothing is deserialised, and None is the
    answer for anything unreadable.
    """
    import json

    name = registry_model_name(uri)
    if name is not None or is_registry_uri(uri) or uri.startswith("s3://"):
        return name
    try:
        with open(Path(uri) / BUNDLE_SPEC_FILENAME, "rb") as handle:
            claimed = json.loads(handle.read(1024 * 1024)).get("model_name")
    except (OSError, ValueError, AttributeError):
        return None
    return claimed if isinstance(claimed, str) and claimed else None


def _read_spec(path: Path) -> ServingSpec:
    from pydantic import ValidationError

    try:
        return ServingSpec.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read serving spec {path}: {exc.strerror}") from None
    except ValidationError as exc:
        from tabpipe.contract import format_validation_error

        raise ConfigError(format_validation_error(exc, f"serving spec {path}")) from None


def choose_predictor(bundle_dir: Path, spec: ServingSpec, model: Any) -> Predictor:
    """Pick the predictor for a verified model: ONNX when the bundle has a verified export, else scikit-learn.

    The ONNX file is used only when the spec records its ``onnx_sha256`` and the
    file matches it; a bundle without that record, or an ONNX graph that fails to
    load, is served by scikit-learn (:func:`choose_predictor_with_reason` says why).

    Raises:
        ArtifactIntegrityError: ``model.onnx`` does not match the recorded ``onnx_sha256``.
    """
    return choose_predictor_with_reason(bundle_dir, spec, model)[0]


def choose_predictor_with_reason(
    bundle_dir: Path, spec: ServingSpec, model: Any
) -> tuple[Predictor, str | None]:
    """Like :func:`choose_predictor`, with why scikit-learn serves the model (None when ONNX does).

    Raises:
        ArtifactIntegrityError: ``model.onnx`` does not match the recorded ``onnx_sha256``.
    """
    from tabpipe.serving.sklearn_predictor import SklearnPredictor

    onnx_path = bundle_dir / ONNX_FILENAME
    expected = getattr(spec, "onnx_sha256", None)
    # The spec's own reason when there is no export; otherwise what went wrong here.
    reason = getattr(spec, "onnx_reason", None)
    if onnx_path.is_file() and expected:
        onnx_bytes = onnx_path.read_bytes()
        if hashlib.sha256(onnx_bytes).hexdigest() != expected:
            raise ArtifactIntegrityError(f"{onnx_path}: sha256 does not match the spec's onnx_sha256")
        try:
            from tabpipe.onnx.predictor import OnnxPredictor
        except ImportError as exc:
            log.info("bundle has %s but the ONNX predictor is not available; using scikit-learn", onnx_path)
            reason = f"the ONNX predictor is not available here ({exc})"
        else:
            try:
                return OnnxPredictor(onnx_bytes, spec), None
            except Exception as exc:  # noqa: BLE001 (a bad ONNX graph must not stop serving the verified model)
                log.warning("ONNX predictor failed to load (%s); using scikit-learn", exc)
                reason = f"the ONNX export failed to load: {type(exc).__name__}: {exc}"
    elif onnx_path.is_file():
        log.warning("%s has no recorded onnx_sha256; serving with scikit-learn", onnx_path)
        reason = f"{ONNX_FILENAME} is present but the spec records no onnx_sha256 for it ({reason})"
    elif expected:
        reason = f"the spec records an ONNX export but the bundle has no {ONNX_FILENAME}"
    return SklearnPredictor(model, spec), reason or "the spec records no ONNX export"


def _load_skops(path: Path, expected_sha256: str) -> Any:
    """:func:`tabpipe.modelio.load_model`, with an unreadable file reported as an integrity error.

    A file whose checksum matches a rewritten record can still be garbage (not a zip,
    a truncated archive, a broken schema): that is a bad artifact, not a server fault.

    Raises:
        ArtifactIntegrityError: the checksum or the trusted types disagree, or the file
            cannot be read as a skops model.
    """
    from tabpipe.errors import TabpipeError
    from tabpipe.modelio import load_model

    try:
        return load_model(path, expected_sha256)
    except TabpipeError:
        raise
    except Exception as exc:  # noqa: BLE001 (skops raises zipfile, json, KeyError, ... on a bad file)
        raise ArtifactIntegrityError(
            f"{path}: cannot be read as a skops model ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None


def verify_bundle_dir(path: str | Path, expected_digest: str | None = None) -> None:
    """Check a bundle folder's files before anything in it is read (see the module docstring).

    Args:
        path: The bundle folder.
        expected_digest: The digest the folder's manifest must have; None trusts the
            folder's own manifest as the list of files, which still refuses a swapped,
            missing or extra file.

    Raises:
        ConfigError: the folder does not exist.
        ArtifactIntegrityError: a file disagrees with the manifest, or the manifest
            with ``expected_digest``, or a digest is expected but there is no manifest.
    """
    from tabpipe.bundle import MANIFEST_FILENAME, has_manifest, verify_bundle

    bundle = Path(path)
    try:
        is_dir = bundle.is_dir()
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise ConfigError(f"model bundle {str(bundle)[:300]}: {exc.strerror or exc}") from None
    if not is_dir:
        raise ConfigError(f"model bundle {bundle} is not a directory")
    if has_manifest(bundle):
        verify_bundle(bundle, expected_digest)
    elif expected_digest:
        raise ArtifactIntegrityError(
            f"bundle {bundle} has no {MANIFEST_FILENAME}, so it cannot match the expected digest "
            f"{expected_digest[:12]}…"
        )
    else:
        log.warning(
            "bundle %s has no %s (written before bundle manifests): only model.skops and model.onnx "
            "are checked, against its own spec",
            bundle,
            MANIFEST_FILENAME,
        )


def load_bundle_dir(path: str | Path, expected_digest: str | None = None) -> LoadedModel:
    """Load a deploy bundle directory (``model.skops`` + ``bundle.json`` + ``manifest.json``).

    Args:
        path: The bundle folder.
        expected_digest: The digest its manifest must have (e.g. ``tabpipe serve --digest``).

    Raises:
        ConfigError: the directory or its ``bundle.json`` is missing or invalid.
        ArtifactIntegrityError: a file disagrees with the manifest or the manifest with
            ``expected_digest`` (:func:`verify_bundle_dir`), ``model.skops`` does not
            match the spec's sha256 or holds untrusted types, or ``model.onnx`` does not
            match the spec's ``onnx_sha256``.
    """
    from tabpipe.modelio import MODEL_FILENAME

    bundle = Path(path)
    verify_bundle_dir(bundle, expected_digest)
    spec = _read_spec(bundle / BUNDLE_SPEC_FILENAME)
    if not (bundle / MODEL_FILENAME).is_file():
        raise ConfigError(f"model bundle {bundle} has no {MODEL_FILENAME}")
    model = _load_skops(bundle / MODEL_FILENAME, spec.sha256)
    version = spec.version or "1"
    predictor, onnx_reason = choose_predictor_with_reason(bundle, spec, model)
    return LoadedModel(spec, predictor, version, time.time(), str(bundle), onnx_reason)


def load_registry(tracking_uri: str, model_uri: str, expected_digest: str | None = None) -> LoadedModel:
    """Load a registered version (``models:/name@alias`` or ``models:/name/version``).

    Downloads the version run's whole ``bundle`` folder and verifies it against the
    version's ``tabpipe.bundle_digest`` tag (every file, the ONNX export included)
    before reading any of it. A version from before manifests (no digest tag) falls
    back, with a warning, to checking ``model.skops`` and ``serving.json`` against its
    ``tabpipe.bundle_sha256`` tag and the ONNX file against the spec.

    Args:
        tracking_uri: The MLflow server.
        model_uri: The registry URI.
        expected_digest: A digest the caller requires besides the registry's record.

    Raises:
        ConfigError: the URI is malformed, or the model, alias or version does not exist.
        ArtifactIntegrityError: the tags are missing or the bundle does not match them;
            the message names the file that disagrees.
        ServiceError: the tracking server is unreachable.
    """
    from mlflow.exceptions import MlflowException

    from tabpipe.bundle import verify_bundle
    from tabpipe.modelio import MODEL_FILENAME
    from tabpipe.tracking import BUNDLE_ARTIFACT_DIR, Tag, client, download_bundle_dir

    match = _REGISTRY_URI.match(model_uri)
    if match is None:
        raise ConfigError(
            f"model URI {model_uri!r}: expected models:/<name>@<alias> or models:/<name>/<version>"
        )
    name, alias, number = match["name"], match["alias"], match["version"]
    mlflow_client = client(tracking_uri)
    try:
        if alias is not None:
            version = mlflow_client.get_model_version_by_alias(name, alias)
        else:
            version = mlflow_client.get_model_version(name, number)
    except MlflowException as exc:
        raise ConfigError(f"model URI {model_uri!r}: {exc.message}") from None
    sha = version.tags.get(Tag.BUNDLE_SHA256)
    digest = version.tags.get(Tag.BUNDLE_DIGEST)
    if expected_digest and digest and expected_digest != digest:
        raise ArtifactIntegrityError(
            f"{model_uri} (version {version.version}): the registry's bundle digest {digest[:12]}… "
            f"is not the expected {expected_digest[:12]}…"
        )
    digest = digest or expected_digest
    if not sha and not digest:
        raise ArtifactIntegrityError(
            f"{model_uri} (version {version.version}) has no {Tag.BUNDLE_SHA256} tag; refusing to load it"
        )
    if not digest:
        log.warning(
            "%s (version %s) has no %s tag (registered before bundle manifests): only model.skops is "
            "checked against the registry, and model.onnx against the downloaded spec",
            model_uri,
            version.version,
            Tag.BUNDLE_DIGEST,
        )
    with tempfile.TemporaryDirectory(prefix="tabpipe-serve-") as tmp:
        bundle = Path(tmp)
        try:
            if digest:
                download_bundle_dir(mlflow_client, version.run_id, bundle)
            else:
                _download_legacy(mlflow_client, version.run_id, bundle, BUNDLE_ARTIFACT_DIR)
        except MlflowException as exc:
            raise ConfigError(
                f"{model_uri}: cannot download the bundle of run {version.run_id}: {exc.message}"
            ) from None
        if digest:
            # Before anything in it is parsed: every file, the spec and the ONNX export included.
            verify_bundle(bundle, digest)
        spec = _read_spec(bundle / SERVING_SPEC_FILENAME)
        if sha and spec.sha256 != sha:
            raise ArtifactIntegrityError(
                f"{model_uri}: serving spec sha256 {spec.sha256[:12]}… does not match "
                f"the registry tag {sha[:12]}…"
            )
        model = _load_skops(bundle / MODEL_FILENAME, spec.sha256)
        spec = spec.model_copy(update={"version": str(version.version)})
        predictor, onnx_reason = choose_predictor_with_reason(bundle, spec, model)
    return LoadedModel(spec, predictor, spec.version or "", time.time(), model_uri, onnx_reason)


def _download_legacy(mlflow_client: Any, run_id: str, bundle: Path, folder: str) -> None:
    """Download the files a bundle had before manifests: skops, spec, and ONNX when present."""
    from tabpipe.modelio import MODEL_FILENAME

    names = {Path(a.path).name for a in mlflow_client.list_artifacts(run_id, folder)}
    wanted = [MODEL_FILENAME, SERVING_SPEC_FILENAME] + ([ONNX_FILENAME] if ONNX_FILENAME in names else [])
    for filename in wanted:
        # Each file lands flat in the temporary bundle dir, whatever layout the store uses.
        local = mlflow_client.download_artifacts(run_id, f"{folder}/{filename}", str(bundle))
        if Path(local) != bundle / filename:
            Path(local).replace(bundle / filename)


def load_uri(uri: str, tracking_uri: str | None = None, expected_digest: str | None = None) -> LoadedModel:
    """Load from a bundle directory or a ``models:/`` URI (which needs ``tracking_uri``).

    Args:
        uri: A bundle directory or a registry URI.
        tracking_uri: The MLflow server, for registry URIs.
        expected_digest: The bundle digest the caller requires (see the two loaders).

    Raises:
        ConfigError, ArtifactIntegrityError, ServiceError: see the two loaders.
    """
    if is_registry_uri(uri):
        if not tracking_uri:
            raise ConfigError(f"model URI {uri!r} needs a tracking URI (--tracking-uri)")
        return load_registry(tracking_uri, uri, expected_digest)
    if uri.startswith("s3://"):
        return load_object_store(uri, expected_digest)
    return load_bundle_dir(uri, expected_digest)


def load_object_store(uri: str, expected_digest: str | None = None) -> LoadedModel:
    """Load a bundle deploy pushed to the object store (``s3://bucket/model/version``).

    The folder is downloaded file by file, each checked against the upload's ``MANIFEST``,
    then loaded like a local bundle (its own manifest and ``expected_digest`` verified again).

    Raises:
        ConfigError, SourceError, ArtifactIntegrityError, ServiceError: as the downloader and
            :func:`load_bundle_dir` raise them, naming the file at fault.
    """
    import tempfile

    from tabpipe.objectstore import download_dir

    with tempfile.TemporaryDirectory(prefix="tabpipe-bundle-") as tmp:
        local = download_dir(uri, Path(tmp) / "bundle")
        return load_bundle_dir(local, expected_digest)
