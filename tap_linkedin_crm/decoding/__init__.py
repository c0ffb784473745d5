"""Temporary re-export while the decoder moves into this package (replaced by the move itself)."""

from tap_linkedin_crm.csv_decoding import (
    COLUMN_TYPES,
    EXTRA_COLUMNS_KEY,
    INVALID_VALUES_KEY,
    MAX_FIELD_CHARS,
    ColumnType,
    CsvDecoder,
    HeaderInfo,
    verified_if_gzip,
)

__all__ = [
    "COLUMN_TYPES",
    "EXTRA_COLUMNS_KEY",
    "INVALID_VALUES_KEY",
    "MAX_FIELD_CHARS",
    "ColumnType",
    "CsvDecoder",
    "HeaderInfo",
    "verified_if_gzip",
]
