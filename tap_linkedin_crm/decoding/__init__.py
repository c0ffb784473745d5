"""Streaming CSV decoding for export files: bytes in, typed dict rows out, in bounded memory.

The modules follow the data: `gzip_check` (a gzip download checked whole before decoding),
`byte_source` (gzip sniffing, the BOM, lines and records of bounded size), `csv_records` (lines
to records), `converters` (typed values) and `row_typing` (records to row dicts), tied together
by `decoder.CsvDecoder`; `limits` holds the size limits that bound memory.
"""

from __future__ import annotations

from tap_linkedin_crm.columns import ColumnType
from tap_linkedin_crm.decoding.decoder import COLUMN_TYPES, CsvDecoder, HeaderInfo
from tap_linkedin_crm.decoding.gzip_check import verified_if_gzip
from tap_linkedin_crm.decoding.limits import MAX_FIELD_CHARS
from tap_linkedin_crm.decoding.row_typing import EXTRA_COLUMNS_KEY, INVALID_VALUES_KEY

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
