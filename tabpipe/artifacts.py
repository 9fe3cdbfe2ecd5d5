"""Names of artifact files and metadata keys, in one place.

Components, the local runner and tests all read these instead of repeating
string literals.
"""

from __future__ import annotations


class Meta:
    """Keys of KFP artifact metadata."""

    N_ROWS = "n_rows"
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


# Files inside directory artifacts.
DATA_FILENAME = "data.parquet"
PREPROCESSOR_FILENAME = "preprocessor.skops"
BUNDLE_METADATA_FILENAME = "bundle.json"
VALIDATION_REPORT_JSON = "validation_report.json"
BLESSING_JSON = "blessing.json"
