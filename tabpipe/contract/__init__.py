"""The data contract: its schema, its rules (defined once) and the table checks built on them.

- :mod:`tabpipe.contract.schema`: the YAML document as pydantic models (parsed once, errors name the field).
- :mod:`tabpipe.contract.rules`: the row rules, one table used by validation, batch scoring and serving.
- :mod:`tabpipe.contract.frame`: checking a whole DataFrame (structure, dtypes, row and dataset rules).
- :mod:`tabpipe.contract.infer`: drafting a contract from example data.
"""

from tabpipe.contract.schema import (
    ColumnContract,
    ColumnType,
    DataContract,
    PiiAction,
    QualityRules,
    dump_contract,
    format_validation_error,
    load_contract,
    parse_contract,
    read_yaml,
    validate_document,
)

__all__ = [
    "ColumnContract",
    "ColumnType",
    "DataContract",
    "PiiAction",
    "QualityRules",
    "dump_contract",
    "format_validation_error",
    "load_contract",
    "parse_contract",
    "read_yaml",
    "validate_document",
]
