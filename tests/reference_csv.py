"""A plain reference decoder, to check the fast `CsvDecoder` against in tests.

It shares no parsing or conversion code with `tap_linkedin_crm.decoding` (only the two row key
names): a character-by-character RFC 4180 parser, and one plain function per type. It holds
everything in memory; never use it on real exports.
"""

from __future__ import annotations

import datetime as dt
import gzip
import re
import typing as t
import zlib

from tap_linkedin_crm.decoding import EXTRA_COLUMNS_KEY, INVALID_VALUES_KEY
from tap_linkedin_crm.errors import DownloadIncompleteError, MalformedCSVError

if t.TYPE_CHECKING:
    from collections.abc import Mapping

    from tap_linkedin_crm.decoding import ColumnType

__all__ = ["reference_rows"]

_ISO = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,6}))?)?"
    r"(Z|([+-])([0-9]{2})(?::?([0-9]{2}))?)?)?"
)


def reference_rows(
    data: bytes, column_types: Mapping[str, ColumnType], *, complete: bool = False
) -> list[dict[str, t.Any]]:
    """Decode a whole file the plain way.

    Args:
        data: the file's bytes, gzip-compressed or not.
        column_types: declared column name -> type.
        complete: as for `CsvDecoder`: every schema field in every row.

    Returns:
        The rows `CsvDecoder.rows` yields for the same input.

    Raises:
        MalformedCSVError: the file is not CSV that can be read without guessing.
        DownloadIncompleteError: the gzip stream is truncated or corrupt.
    """
    if data.startswith(b"\x1f\x8b"):
        try:
            data = gzip.decompress(data)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            msg = f"broken gzip: {exc}"
            raise DownloadIncompleteError(msg) from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        msg = f"invalid UTF-8: {exc}"
        raise MalformedCSVError(msg) from exc
    records = [record for record in _parse(text) if record != []]
    if not records:
        return []
    header = records[0]
    if len(set(header)) != len(header):
        msg = "duplicate column names"
        raise MalformedCSVError(msg)
    rows = []
    for record in records[1:]:
        if len(record) != len(header):
            msg = f"{len(record)} fields, header has {len(header)}"
            raise MalformedCSVError(msg)
        rows.append(_row(header, record, column_types, complete=complete))
    return rows


def _row(
    header: list[str],
    record: list[str],
    column_types: Mapping[str, ColumnType],
    *,
    complete: bool,
) -> dict[str, t.Any]:
    """Type one record."""
    row: dict[str, t.Any] = {}
    extra_columns = {}
    invalid_values = {}
    for name, value in zip(header, record, strict=True):
        if name not in column_types:
            extra_columns[name] = value
        elif column_types[name] == "string":
            row[name] = value
        elif value == "":
            row[name] = None
        else:
            try:
                row[name] = _convert(column_types[name], value)
            except ValueError:
                row[name] = None
                invalid_values[name] = value
    if any(name not in column_types for name in header):
        row[EXTRA_COLUMNS_KEY] = extra_columns
    if invalid_values:
        row[INVALID_VALUES_KEY] = invalid_values
    if complete:
        for name in [*column_types, EXTRA_COLUMNS_KEY, INVALID_VALUES_KEY]:
            row.setdefault(name, None)
    return row


def _parse(text: str) -> list[list[str]]:  # noqa: C901, PLR0912, PLR0915 - plain on purpose
    """Split CSV text into records; an empty line gives []."""
    records: list[list[str]] = []
    record: list[str] = []
    field = ""
    in_quotes = False
    field_was_quoted = False
    line_has_content = False
    i = 0
    while i < len(text):
        char = text[i]
        if in_quotes:
            if char == '"':
                if text[i + 1 : i + 2] == '"':
                    field += '"'
                    i += 1
                else:
                    in_quotes = False
            else:
                field += char
        elif char == '"':
            if field or field_was_quoted:
                msg = "quote inside an unquoted field"
                raise MalformedCSVError(msg)
            in_quotes = True
            field_was_quoted = True
            line_has_content = True
        elif char == ",":
            record.append(field)
            field = ""
            field_was_quoted = False
            line_has_content = True
        elif char in "\r\n":
            if char == "\r" and text[i + 1 : i + 2] not in {"\n", ""}:
                msg = "lone CR outside quotes"
                raise MalformedCSVError(msg)
            if char == "\r":
                i += 1
            if line_has_content:
                record.append(field)
            records.append(record)
            record, field, field_was_quoted, line_has_content = [], "", False, False
        elif field_was_quoted:
            msg = "text after a closing quote"
            raise MalformedCSVError(msg)
        else:
            field += char
            line_has_content = True
        i += 1
    if in_quotes:
        msg = "unterminated quoted field"
        raise MalformedCSVError(msg)
    if line_has_content:
        record.append(field)
        records.append(record)
    return records


def _convert(column_type: ColumnType, value: str) -> t.Any:
    """Convert one non-empty value; ValueError when it does not convert."""
    if column_type == "integer":
        if re.fullmatch(r"[+-]?[0-9]+", value) is None:
            raise ValueError(value)
        return int(value)
    if column_type == "number":
        if re.fullmatch(r"[+-]?[0-9]+", value) is not None:
            return int(value)
        if re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", value) is None:
            raise ValueError(value)
        number = float(value)
        if number in {float("inf"), float("-inf")}:
            raise ValueError(value)
        return number
    if column_type == "boolean":
        words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        if value.lower() not in words:
            raise ValueError(value)
        return words[value.lower()]
    return _timestamp(value)


def _timestamp(value: str) -> str:
    """Convert timestamp text to the canonical RFC 3339 UTC form."""
    if re.fullmatch(r"[0-9]{12,13}", value):
        moment = dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=int(value))  # noqa: DTZ001
    elif re.fullmatch(r"[0-9]{9,10}", value):
        moment = dt.datetime(1970, 1, 1) + dt.timedelta(seconds=int(value))  # noqa: DTZ001
    elif match := re.fullmatch(
        r"([0-9]{1,2})([-/])([0-9]{1,2})\2([0-9]{4}) ([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})", value
    ):
        month, _, day, year, hour, minute, second = match.groups()
        moment = dt.datetime(  # noqa: DTZ001
            int(year), int(month), int(day), int(hour), int(minute), int(second)
        )
    else:
        moment = _iso_timestamp(value)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond % 1000:
        text += f".{moment.microsecond:06d}"
    elif moment.microsecond:
        text += f".{moment.microsecond // 1000:03d}"
    return text + "Z"


def _iso_timestamp(value: str) -> dt.datetime:
    """Parse RFC 3339-like text (`T` or space, optional seconds, fraction, offset) to naive UTC."""
    match = _ISO.fullmatch(value)
    if match is None:
        raise ValueError(value)
    year, month, day, hour, minute, second, fraction, zone, sign, zone_h, zone_m = match.groups()
    moment = dt.datetime(  # noqa: DTZ001 - naive UTC; range checks raise ValueError
        int(year),
        int(month),
        int(day),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        int((fraction or "0").ljust(6, "0")),
    )
    if zone in {None, "Z"}:
        return moment
    offset = dt.timedelta(hours=int(zone_h), minutes=int(zone_m or 0))
    if offset >= dt.timedelta(hours=24):
        raise ValueError(value)
    return moment - offset if sign == "+" else moment + offset
