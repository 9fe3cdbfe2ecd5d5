"""Names of artifact files and metadata keys, in one place.

Components, the local runner and tests all read these instead of repeating
string literals.
"""

from __future__ import annotations


class Meta:
    """Keys of KFP artifact metadata."""

    N_ROWS = "n_rows"
    N_TRAIN = "n_train"
    N_VALIDATION = "n_validation"
    N_TEST = "n_test"
    DUPLICATES_REMOVED = "duplicates_removed"
    BEST_PARAMS_JSON = "best_params_json"
    WARNINGS = "warnings"
    N_FEATURES_OUT = "n_features_out"
    CODE_VERSION = "code_version"
    DATA_VERSION = "data_version"
    SPLIT = "split"
    SHA256 = "sha256"
    CONTRACT_HASH = "contract_hash"
    MLFLOW_RUN_ID = "mlflow_run_id"
    MLFLOW_MODEL_URI = "mlflow_model_uri"
    ESTIMATOR = "estimator"
    MODEL_VERSION = "model_version"
    REGISTERED_NAME = "registered_model_name"
    BLESSED = "blessed"
    FEATURE_NAMES = "feature_names"
    SECONDS = "seconds"
    CLASSES_JSON = "classes_json"
    ONNX_SHA256 = "onnx_sha256"
    ONNX_REASON = "onnx_reason"
    #: sha256 of the bundle's manifest, which lists every bundle file with its sha256.
    BUNDLE_DIGEST = "bundle_digest"
    REASONS = "reasons"
    CHAMPION_VERSION = "champion_version"
    PREVIOUS_CHAMPION = "previous_champion"
    DEPLOY_TARGET = "deploy_target"
    SERVING_URL = "serving_url"
    BUNDLE_URI = "bundle_uri"
    PREVIOUSLY_SERVED = "previously_served"


class Split:
    """Names of the three splits (the ``split`` metadata value)."""

    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"


# Files inside directory artifacts.
DATA_FILENAME = "data.parquet"
PREPROCESSOR_FILENAME = "preprocessor.skops"
BUNDLE_METADATA_FILENAME = "bundle.json"
VALIDATION_REPORT_JSON = "validation_report.json"
BLESSING_JSON = "blessing.json"
