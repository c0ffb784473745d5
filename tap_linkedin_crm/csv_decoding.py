"""Streaming CSV decoding for export files: bytes in, typed dict rows out, in constant memory."""

from __future__ import annotations

import csv
import datetime as dt
import functools
import gzip
import importlib.util
import io
import operator
import re
import typing as t
import zlib
from dataclasses import dataclass

from tap_linkedin_crm.errors import DownloadIncompleteError, MalformedCSVError

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

__all__ = [
    "COLUMN_TYPES",
    "EXTRA_COLUMNS_KEY",
    "INVALID_VALUES_KEY",
    "MAX_FIELD_CHARS",
    "ColumnType",
    "CsvDecoder",
    "HeaderInfo",
    "reference_rows",
]

ColumnType = t.Literal["string", "integer", "number", "boolean", "timestamp"]
"""How a declared column is typed. Columns not declared stay strings under `EXTRA_COLUMNS_KEY`."""

COLUMN_TYPES: frozenset[str] = frozenset(t.get_args(ColumnType))

EXTRA_COLUMNS_KEY = "extraColumns"
"""Row key of an object holding, as raw strings, the file's columns that are not declared.

Present in every row of a file whose header has such columns, absent otherwise.
"""

INVALID_VALUES_KEY = "invalidValues"
"""Row key of an object holding the raw string of every declared value that did not convert.

The typed field of such a value is None. The key is present only in rows that have one.
"""

MAX_FIELD_CHARS = 64 * 1024 * 1024
"""Largest field accepted, in characters; a longer one (e.g. a lost closing quote) is malformed."""

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
READ_SIZE = 256 * 1024

_BOOLEAN_WORDS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}
# Every upper/lower-case spelling of the words, so the converter is one C-level dict lookup.
_BOOLEANS: dict[str, bool] = {
    "".join(chars): value
    for word, value in _BOOLEAN_WORDS.items()
    for chars in __import__("itertools").product(*({c.lower(), c.upper()} for c in word))
}

_INTEGER_RE = re.compile(r"[+-]?[0-9]+")
_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_MS_PER_DAY = 86_400_000
_UNIX_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
# Formatting tables for epoch timestamps: "HH:MM:" per minute of the day, "SS" and ".fffZ".
_MINUTES = tuple(f"{m // 60:02d}:{m % 60:02d}:" for m in range(1440))
_SECONDS = tuple(f"{s:02d}" for s in range(60))
_MILLIS = ("Z", *(f".{ms:03d}Z" for ms in range(1, 1000)))
_DAY_CACHE_SIZE = 4096

_Converter = t.Callable[[str], t.Any]


@dataclass(frozen=True, slots=True)
class HeaderInfo:
    """A file's header compared with the declared columns, for the caller to log drift.

    Attributes:
        columns: the header as read (BOM removed), in file order; () for an empty file.
        added: header columns that are not declared (kept under `EXTRA_COLUMNS_KEY`), in file order.
        missing: declared columns absent from the header (absent from rows), in declared order.
        reordered: whether the declared columns present appear in a different order than declared.
    """

    columns: tuple[str, ...]
    added: tuple[str, ...]
    missing: tuple[str, ...]
    reordered: bool

    @property
    def drifted(self) -> bool:
        """Whether the header differs from the declared columns in any way."""
        return bool(self.added or self.missing or self.reordered)


class CsvDecoder:
    """Decodes one export file at a time into typed rows.

    A file is UTF-8 CSV (RFC 4180, `,` and `"`), optionally gzip-compressed (detected by its magic
    bytes) and optionally starting with a BOM. Values are byte-exact: quoted commas, CR, LF, CRLF,
    NUL, U+2028 and fields up to `MAX_FIELD_CHARS` characters come through unchanged, without
    changing the process-wide `csv.field_size_limit`. Memory use does not grow with the file.

    Data rows are numbered from 1; empty lines are skipped and not numbered. A row with more or
    fewer fields than the header, bad quoting or invalid UTF-8 raise `MalformedCSVError`; a broken
    or truncated gzip stream raises `DownloadIncompleteError`.

    Declared columns are converted (an empty value becomes None, except for "string" columns):

    - integer: ASCII `[+-]digits` -> int.
    - number: ASCII decimal or exponent notation; integral text -> int (exact at any size), other
      text -> float; NaN, infinities and values overflowing a float are invalid.
    - boolean: true/false, yes/no, 1/0 in any letter case.
    - timestamp: epoch milliseconds (12-13 digits) or seconds (9-10 digits, i.e. 1973-2286 for
      both), ISO 8601 / RFC 3339 (`T` or space, optional fraction up to 6 digits, `Z` or offset;
      no offset means UTC), or `MM-DD-YYYY HH:MM:SS` (UTC). The result is RFC 3339 in UTC with a
      `Z`: `YYYY-MM-DDTHH:MM:SSZ`, with `.fff` when the instant has milliseconds and `.ffffff`
      when it has microseconds, so each instant has exactly one spelling.

    A value that does not convert never stops the sync and is never lost: its field is None and
    its raw string goes into the row's `INVALID_VALUES_KEY` object under the column name.
    """

    def __init__(self, column_types: Mapping[str, ColumnType], *, label: str = "file") -> None:
        """Check the declared columns once.

        Args:
            column_types: declared column name -> type, in the order the columns are expected.
            label: how the file is named in error messages, e.g. "job 123, file 2 of 3".

        Raises:
            ValueError: a type is unknown, or a column uses one of the reserved row keys.
        """
        for name, column_type in column_types.items():
            if column_type not in COLUMN_TYPES:
                msg = f"column {name!r}: unknown type {column_type!r}; use one of {sorted(COLUMN_TYPES)}"
                raise ValueError(msg)
            if name in {EXTRA_COLUMNS_KEY, INVALID_VALUES_KEY}:
                msg = f"column name {name!r} is reserved for the decoder's own row keys"
                raise ValueError(msg)
        self.column_types: dict[str, ColumnType] = dict(column_types)
        self.label = label
        self.header: HeaderInfo | None = None
        self.rows_read = 0

    def rows(self, stream: t.IO[bytes], *, skip_rows: int = 0) -> Iterator[dict[str, t.Any]]:
        """Yield the file's typed data rows, reading `stream` in chunks as they are consumed.

        `header` is set once the header has been read and `rows_read` counts the data rows
        consumed, skipped ones included. The caller keeps ownership of `stream` and closes it.

        Args:
            stream: the file's bytes, e.g. `open(path, "rb")` or an HTTP response body.
            skip_rows: data rows to pass over without typing them, to resume after a crash. They
                are still parsed (to find where rows end) but not checked for their field count.

        Yields:
            One dict per data row: declared columns present in the header, typed, then the
            `EXTRA_COLUMNS_KEY` and `INVALID_VALUES_KEY` objects when there is anything to put there.

        Raises:
            ValueError: skip_rows is negative.
            MalformedCSVError: the file is not CSV that can be read without guessing.
            DownloadIncompleteError: the gzip stream is truncated or corrupt.
        """
        if skip_rows < 0:
            msg = f"skip_rows must be >= 0, not {skip_rows}"
            raise ValueError(msg)
        self.header = None
        self.rows_read = 0
        csv_error = _csv_module().Error
        try:
            records = _csv_records(_open_lines(stream))
            header = next(filter(None, records), [])
            self.header = self._header_info(header)
            if skip_rows:
                self.rows_read = sum(map(bool, _islice(filter(None, records), skip_rows)))
            yield from self._typed_rows(records, header)
        except UnicodeDecodeError as exc:
            msg = f"{self.label}: {self._where()} is not valid UTF-8 ({exc.reason} at byte {exc.start} of its line)"
            raise MalformedCSVError(msg) from exc
        except csv_error as exc:
            msg = f"{self.label}: {self._where()} is not valid CSV: {exc}"
            raise MalformedCSVError(msg) from exc
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            msg = f"{self.label}: the gzip stream is truncated or corrupt after {self._where()}: {exc}"
            raise DownloadIncompleteError(msg) from exc

    def _where(self) -> str:
        """Name the row being read, for error messages."""
        return "the header" if self.header is None else f"data row {self.rows_read + 1}"

    def _header_info(self, header: list[str]) -> HeaderInfo:
        """Compare the header with the declared columns; reject duplicate names."""
        seen: set[str] = set()
        for name in header:
            if name in seen:
                msg = f"{self.label}: the header names column {name!r} more than once"
                raise MalformedCSVError(msg)
            seen.add(name)
        declared = self.column_types
        present = [name for name in header if name in declared]
        expected = [name for name in declared if name in seen]
        return HeaderInfo(
            columns=tuple(header),
            added=tuple(name for name in header if name not in declared),
            missing=tuple(name for name in declared if name not in seen),
            reordered=present != expected,
        )

    def _typed_rows(
        self, records: Iterator[list[str]], header: list[str]
    ) -> Iterator[dict[str, t.Any]]:
        """Type every remaining record with converters chosen once from the header."""
        declared = self.column_types
        width = len(header)
        kept = [i for i, name in enumerate(header) if name in declared]
        extra = [i for i, name in enumerate(header) if name not in declared]
        kept_names = [header[i] for i in kept]
        extra_names = [header[i] for i in extra]
        pick_kept = _picker(kept, width)
        pick_extra = _picker(extra, width)
        typed = [
            (i, name, _converter(declared[name]))
            for i, name in enumerate(header)
            if declared.get(name, "string") != "string"
        ]
        number = self.rows_read
        for row in records:
            if len(row) != width:
                if not row:
                    continue
                self._raise_ragged(row, width)
            number += 1
            self.rows_read = number
            record = dict(zip(kept_names, pick_kept(row), strict=True))
            invalid: dict[str, str] | None = None
            for i, name, convert in typed:
                value = row[i]
                if value:
                    try:
                        record[name] = convert(value)
                    except (ValueError, LookupError, OverflowError):
                        record[name] = None
                        if invalid is None:
                            invalid = {}
                        invalid[name] = value
                else:
                    record[name] = None
            if extra:
                record[EXTRA_COLUMNS_KEY] = dict(zip(extra_names, pick_extra(row), strict=True))
            if invalid is not None:
                record[INVALID_VALUES_KEY] = invalid
            yield record

    def _raise_ragged(self, row: list[str], width: int) -> t.NoReturn:
        """Raise the error for a row whose field count differs from the header's."""
        msg = (
            f"{self.label}: data row {self.rows_read + 1} has {len(row)} fields but the header"
            f" has {width}"
        )
        raise MalformedCSVError(msg)


def _picker(indexes: Sequence[int], width: int) -> Callable[[list[str]], Sequence[str]]:
    """Return a C-level function that picks `indexes` out of a row, as a sequence."""
    if list(indexes) == list(range(width)):
        return _identity
    if len(indexes) > 1:
        return t.cast("Callable[[list[str]], Sequence[str]]", operator.itemgetter(*indexes))
    return functools.partial(_pick, indexes)


def _identity(row: list[str]) -> list[str]:
    return row


def _pick(indexes: Sequence[int], row: list[str]) -> list[str]:
    return [row[i] for i in indexes]


def _islice(records: Iterable[list[str]], count: int) -> Iterator[list[str]]:
    """`itertools.islice`, typed."""
    import itertools  # noqa: PLC0415

    return itertools.islice(records, count)
