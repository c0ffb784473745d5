"""`CsvDecoder`: one export file's bytes in, typed dict rows out, in bounded memory."""

from __future__ import annotations

import gzip
import typing as t
import zlib
from dataclasses import dataclass

from tap_linkedin_crm.columns import COLUMN_TYPE_NAMES, ColumnType
from tap_linkedin_crm.decoding.byte_source import LineTooLongError, RecordTooLongError, open_lines
from tap_linkedin_crm.decoding.converters import converter
from tap_linkedin_crm.decoding.csv_records import csv_module, csv_records
from tap_linkedin_crm.decoding.limits import MAX_FIELD_CHARS, MAX_RECORD_BYTES
from tap_linkedin_crm.decoding.row_typing import (
    EXTRA_COLUMNS_KEY,
    INVALID_VALUES_KEY,
    convert_one_by_one,
    row_builder,
)
from tap_linkedin_crm.errors import DownloadIncompleteError, MalformedCSVError

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

__all__ = ["COLUMN_TYPES", "CsvDecoder", "HeaderInfo"]

COLUMN_TYPES: tuple[ColumnType, ...] = COLUMN_TYPE_NAMES

# How the C csv module words the error for a field over its limit.
_FIELD_LIMIT_ERROR = "field larger than field limit"
_BARE_CR_ERROR = "new-line character seen in unquoted field"


@dataclass(frozen=True, slots=True)
class HeaderInfo:
    """A file's header compared with the declared columns, for the caller to log drift.

    Attributes:
        columns: the header as read (BOM removed), in file order; never empty.
        added: header columns that are not declared (kept under `EXTRA_COLUMNS_KEY`), in file order.
        missing: declared columns absent from the header (absent from rows), in declared order.
        reordered: whether the declared columns present appear in a different order than declared.
        renamed: `(name, new name)` of each repeated column name, renamed `<name>_2`, `<name>_3`...
            (the first one keeps the name), so no column of the file is lost.
    """

    columns: tuple[str, ...]
    added: tuple[str, ...]
    missing: tuple[str, ...]
    reordered: bool
    renamed: tuple[tuple[str, str], ...] = ()

    @property
    def drifted(self) -> bool:
        """Whether the header differs from the declared columns in any way."""
        return bool(self.added or self.missing or self.reordered)


class CsvDecoder:
    """Decodes one export file at a time into typed rows.

    A file is UTF-8 CSV (RFC 4180, `,` and `"`), optionally gzip-compressed (detected by its magic
    bytes) and optionally starting with a BOM. Values are byte-exact: quoted commas, CR, LF, CRLF,
    NUL, U+2028 and fields up to `MAX_FIELD_CHARS` characters come through unchanged, without
    changing the process-wide `csv.field_size_limit`. Lines are split on LF (a CR stays in its line
    for the CSV parser); a record, on one line or several, may be up to `MAX_RECORD_BYTES` long.
    Memory use does not grow with the file, and stays bounded on any input: a longer field, line
    or record is refused after reading about that much, never read whole.

    Data rows are numbered from 1; empty lines are skipped and not numbered. A row with more or
    fewer fields than the header, bad quoting, invalid UTF-8 or a field, line or record over its
    limit raise `MalformedCSVError`; a broken or truncated gzip stream raises
    `DownloadIncompleteError`.

    Declared columns are converted (an empty value becomes None, except for "string" columns):

    - integer: ASCII `[+-]digits` -> int.
    - number: ASCII decimal or exponent notation; integral text -> int (exact at any size), other
      text -> float; NaN, infinities and values overflowing a float are invalid.
    - boolean: true/false, yes/no, 1/0 in any letter case.
    - timestamp: epoch milliseconds (12-13 digits) or seconds (9-10 digits, i.e. 1973-2286 for
      both), ISO 8601 / RFC 3339 (`T` or space, optional fraction up to 6 digits, `Z` or offset;
      no offset means UTC), or `MM-DD-YYYY HH:MM:SS` (UTC; leading zeros optional, `-` or `/`).
      The result is RFC 3339 in UTC with a `Z`: `YYYY-MM-DDTHH:MM:SSZ`, with `.fff` when the
      instant has milliseconds and `.ffffff` when it has microseconds, so each instant has
      exactly one spelling.

    A value that does not convert never stops the sync and is never lost: its field is None and
    its raw string goes into the row's `INVALID_VALUES_KEY` object under the column name.

    Attributes:
        header: the last file's `HeaderInfo` once its header row has been read; None before, and
            after a file with no header row at all (see `rows`).
        rows_read: data rows of the last file consumed so far, skipped ones included.
    """

    def __init__(
        self,
        column_types: Mapping[str, ColumnType],
        *,
        label: str = "file",
        complete: bool = False,
    ) -> None:
        """Check the declared columns once.

        Args:
            column_types: declared column name -> type, in the order the columns are expected.
            label: how the file is named in error messages, e.g. "job 123, file 2 of 3".
            complete: give every row every field of the schema: declared columns the file
                lacks, `extraColumns` and `invalidValues` are then null rather than absent.

        Raises:
            ValueError: a type is unknown, or a column uses one of the reserved row keys.
        """
        for name, column_type in column_types.items():
            if column_type not in COLUMN_TYPES:
                msg = f"column {name!r}: unknown type {column_type!r}; use one of {COLUMN_TYPES}"
                raise ValueError(msg)
            if name in {EXTRA_COLUMNS_KEY, INVALID_VALUES_KEY}:
                msg = f"column name {name!r} is reserved for the decoder's own row keys"
                raise ValueError(msg)
        self.column_types: dict[str, ColumnType] = dict(column_types)
        self.label = label
        self.complete = complete
        self.header: HeaderInfo | None = None
        self.rows_read = 0
        self._other_records = 0  # records that are not data rows: the header, empty lines

    def rows(self, stream: t.IO[bytes], *, skip_rows: int = 0) -> Iterator[dict[str, t.Any]]:
        """Yield the file's typed data rows, reading `stream` in chunks as they are consumed.

        `header` is set once the header has been read and `rows_read` counts the data rows
        consumed, skipped ones included. Once the rows are exhausted, `header` tells an empty
        body from a header-only file: it is None when the file has no header row at all (0
        bytes, or nothing but a BOM and empty lines), and a `HeaderInfo` otherwise, with or
        without data rows. The caller keeps ownership of `stream` and closes it.

        Args:
            stream: the file's bytes, e.g. `open(path, "rb")` or an HTTP response body.
            skip_rows: data rows to pass over without typing them, to resume after a crash. They
                are still parsed (to find where rows end) but not checked for their field count.

        Yields:
            One dict per data row: declared columns present in the header, typed, then the
            `EXTRA_COLUMNS_KEY` and `INVALID_VALUES_KEY` objects when they have anything to hold.

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
        self._other_records = 0
        csv_error = csv_module().Error
        try:
            records = csv_records(open_lines(stream, self._records_done))
            header = self._read_header(records)
            if header is None:
                return
            header, renamed = _unique_names(header)
            self.header = self._header_info(header, renamed)
            self._skip(records, skip_rows)
            yield from self._typed_rows(records, header)
        except UnicodeDecodeError as exc:
            msg = (
                f"{self.label}: {self._where()} is not valid UTF-8"
                f" ({exc.reason} at byte {exc.start} of its line)"
            )
            raise MalformedCSVError(msg) from exc
        except LineTooLongError:
            msg = (
                f"{self.label}: no line break (LF) in the {MAX_RECORD_BYTES // 2**20} MiB from"
                f" the start of {self._where()}: CR-only line endings or an unterminated quote"
            )
            raise MalformedCSVError(msg) from None
        except RecordTooLongError:
            msg = (
                f"{self.label}: {self._where()} runs on over more than"
                f" {MAX_RECORD_BYTES // 2**20} MiB of lines: an unterminated quote?"
            )
            raise MalformedCSVError(msg) from None
        except csv_error as exc:
            if str(exc).startswith(_FIELD_LIMIT_ERROR):
                msg = (
                    f"{self.label}: {self._where()} has a field longer than {MAX_FIELD_CHARS:,}"
                    " characters: an unterminated quote, or a value too large to be real"
                )
            elif str(exc).startswith(_BARE_CR_ERROR):
                # The csv module's own text suggests opening the file differently; no help here.
                msg = (
                    f"{self.label}: {self._where()} is not valid CSV: a CR outside quotes "
                    "without an LF after it (CR-only line endings?)"
                )
            else:
                msg = f"{self.label}: {self._where()} is not valid CSV: {exc}"
            raise MalformedCSVError(msg) from exc
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            msg = f"{self.label}: the gzip stream is truncated or corrupt at {self._where()}: {exc}"
            raise DownloadIncompleteError(msg) from exc

    def _records_done(self) -> int:
        """Count the records received so far, for `line_blocks` to bound the size of one."""
        return self.rows_read + self._other_records

    def _read_header(self, records: Iterator[list[str]]) -> list[str] | None:
        """Return the first non-empty record, or None when there is none."""
        for record in records:
            self._other_records += 1
            if record:
                return record
        return None

    def _skip(self, records: Iterator[list[str]], count: int) -> None:
        """Pass over `count` data rows (fewer at the end of the file), counting them as read."""
        if not count:
            return
        number = 0
        for record in records:
            if not record:
                self._other_records += 1
                continue
            number += 1
            self.rows_read = number
            if number == count:
                return

    def _where(self) -> str:
        """Name the row being read, for error messages."""
        return "the header" if self.header is None else f"data row {self.rows_read + 1}"

    def _header_info(
        self, header: list[str], renamed: tuple[tuple[str, str], ...] = ()
    ) -> HeaderInfo:
        """Compare the header (its names made unique) with the declared columns."""
        seen = set(header)
        declared = self.column_types
        present = [name for name in header if name in declared]
        expected = [name for name in declared if name in seen]
        return HeaderInfo(
            columns=tuple(header),
            added=tuple(name for name in header if name not in declared),
            missing=tuple(name for name in declared if name not in seen),
            reordered=present != expected,
            renamed=renamed,
        )

    def _typed_rows(
        self, records: Iterator[list[str]], header: list[str]
    ) -> Iterator[dict[str, t.Any]]:
        """Type every remaining record with a row builder made once from the (non-empty) header.

        The builder (see `row_builder`) unpacks the row, which also checks its width, and
        builds the typed dict in one expression. Any failure (an empty line, a ragged row, a
        value that does not convert) sends that one row through `_type_slowly`.
        """
        build = row_builder(header, self.column_types, complete=self.complete)
        slowly = self._type_slowly(header)
        number = self.rows_read
        for row in records:
            try:
                record = build(row)
            except (ValueError, LookupError, OverflowError):
                if not row:
                    self._other_records += 1
                    continue
                record = slowly(row)
            number += 1
            self.rows_read = number
            yield record

    def _type_slowly(self, header: list[str]) -> Callable[[list[str]], dict[str, t.Any]]:
        """Return the plain typing of one row: checks its width, collects invalid values."""
        declared = self.column_types
        width = len(header)
        kept = [i for i, name in enumerate(header) if name in declared]
        extra = [i for i, name in enumerate(header) if name not in declared]
        kept_names = [header[i] for i in kept]
        extra_names = [header[i] for i in extra]
        typed = [
            (i, name, converter(declared[name]))
            for i, name in enumerate(header)
            if declared.get(name, "string") != "string"
        ]
        fill = self._fill(header, has_extra=bool(extra))

        def slowly(row: list[str]) -> dict[str, t.Any]:
            if len(row) != width:
                self._raise_ragged(row, width)
            record: dict[str, t.Any] = dict(zip(kept_names, [row[i] for i in kept], strict=True))
            record.update(fill)
            invalid = convert_one_by_one(record, row, typed)
            if invalid:
                record[INVALID_VALUES_KEY] = invalid
            if extra:
                record[EXTRA_COLUMNS_KEY] = {name: row[i] for i, name in zip(extra, extra_names)}  # noqa: B905
            return record

        return slowly

    def _fill(self, header: list[str], *, has_extra: bool) -> dict[str, None]:
        """The null fields `complete` adds to each row of a file with this header.

        Declared columns the file lacks are null, and so are the two objects when there is
        nothing to put in them (targets that size their tables from the first record, like
        target-csv, then see every column).
        """
        if not self.complete:
            return {}
        absent = [name for name in self.column_types if name not in header]
        if not has_extra:
            absent.append(EXTRA_COLUMNS_KEY)
        return dict.fromkeys([*absent, INVALID_VALUES_KEY])

    def _raise_ragged(self, row: list[str], width: int) -> t.NoReturn:
        """Raise the error for a row whose field count differs from the header's."""
        msg = (
            f"{self.label}: data row {self.rows_read + 1} has {len(row)} fields but the header"
            f" has {width}"
        )
        raise MalformedCSVError(msg)


def _unique_names(header: list[str]) -> tuple[list[str], tuple[tuple[str, str], ...]]:
    """The header with each repeated name renamed, and the renamings.

    The first occurrence keeps its name; the others become `<name>_2`, `<name>_3`... (never a
    name the header already has).

    A file may name a column twice (two "Company" columns, or several blank names from trailing
    commas); refusing it would stop its instance on every run, for a file that can be read.
    """
    if len(set(header)) == len(header):
        return header, ()
    taken = set(header)
    seen: set[str] = set()
    names: list[str] = []
    renamed: list[tuple[str, str]] = []
    for name in header:
        if name not in seen:
            seen.add(name)
            names.append(name)
            continue
        number = 2
        while f"{name}_{number}" in taken:
            number += 1
        new = f"{name}_{number}"
        taken.add(new)
        names.append(new)
        renamed.append((name, new))
    return names, tuple(renamed)
