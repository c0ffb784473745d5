"""Streaming CSV decoding for export files: bytes in, typed dict rows out, in constant memory."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import functools
import gzip
import importlib.util
import io
import itertools
import re
import shutil
import tempfile
import typing as t
import zlib
from dataclasses import dataclass

from tap_linkedin_crm.columns import COLUMN_TYPE_NAMES, EXTRA_COLUMNS_FIELD, ColumnType
from tap_linkedin_crm.errors import DownloadIncompleteError, MalformedCSVError

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

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

COLUMN_TYPES: tuple[ColumnType, ...] = COLUMN_TYPE_NAMES

EXTRA_COLUMNS_KEY = EXTRA_COLUMNS_FIELD
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
READ_SIZE = 1024 * 1024  # per read from the stream (the socket, for downloads)

_BOOLEAN_WORDS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}
# Every upper/lower-case spelling of the words, so the converter is one C-level dict lookup.
_BOOLEANS: dict[str, bool | None] = {
    "".join(chars): value
    for word, value in _BOOLEAN_WORDS.items()
    for chars in itertools.product(*({c.lower(), c.upper()} for c in word))
}
_BOOLEANS[""] = None

_INTEGER_RE = re.compile(r"[+-]?[0-9]+")
_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_ISO_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?"
)
_MS_PER_DAY = 86_400_000
_UNIX_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
# Formatting tables for epoch timestamps: "HH:MM:" per minute of the day, "SS" and ".fffZ".
_MINUTES = tuple(f"{m // 60:02d}:{m % 60:02d}:" for m in range(1440))
_SECONDS = tuple(f"{s:02d}" for s in range(60))
_MILLIS = ("Z", *(f".{ms:03d}Z" for ms in range(1, 1000)))
_DAY_CACHE_SIZE = 4096
#: Entries per cache of validated timestamp parts before it is emptied (a few MiB at most).
_PART_CACHE_SIZE = 8192
_MILLIS_BY_DIGITS = {f"{ms:03d}": text for ms, text in enumerate(_MILLIS)}

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
        csv_error = _csv_module().Error
        try:
            records = _csv_records(_open_lines(stream))
            header = next(filter(None, records), [])
            self.header = self._header_info(header)
            if skip_rows:
                self.rows_read = sum(map(bool, itertools.islice(filter(None, records), skip_rows)))
            yield from self._typed_rows(records, header)
        except UnicodeDecodeError as exc:
            msg = (
                f"{self.label}: {self._where()} is not valid UTF-8"
                f" ({exc.reason} at byte {exc.start} of its line)"
            )
            raise MalformedCSVError(msg) from exc
        except csv_error as exc:
            msg = f"{self.label}: {self._where()} is not valid CSV: {exc}"
            raise MalformedCSVError(msg) from exc
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            msg = f"{self.label}: the gzip stream is truncated or corrupt at {self._where()}: {exc}"
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
        """Type every remaining record with a row builder made once from the header.

        The builder (see `_row_builder`) unpacks the row, which also checks its width, and
        builds the typed dict in one expression. Any failure (an empty line, a ragged row, a
        value that does not convert) sends that one row through `_type_slowly`.
        """
        if not header:
            return
        build = _row_builder(header, self.column_types, complete=self.complete)
        slowly = self._type_slowly(header)
        number = self.rows_read
        for row in records:
            try:
                record = build(row)
            except (ValueError, LookupError, OverflowError):
                if not row:
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
            (i, name, _converter(declared[name]))
            for i, name in enumerate(header)
            if declared.get(name, "string") != "string"
        ]
        fill = self._fill(header, has_extra=bool(extra))

        def slowly(row: list[str]) -> dict[str, t.Any]:
            if len(row) != width:
                self._raise_ragged(row, width)
            record: dict[str, t.Any] = dict(zip(kept_names, [row[i] for i in kept], strict=True))
            record.update(fill)
            invalid = _convert_one_by_one(record, row, typed)
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


def _row_builder(
    header: Sequence[str], declared: Mapping[str, ColumnType], *, complete: bool
) -> Callable[[list[str]], dict[str, t.Any]]:
    """Return a function typing one row of a file with this (non-empty) header.

    It is generated from the header, like `collections.namedtuple` and `dataclasses` generate
    their methods, so typing a row costs one tuple unpack (which raises ValueError when the
    width differs) and one dict display with constant keys; booleans are a dict subscript,
    other types one converter call. It raises ValueError or LookupError when a value does not
    convert. Keys come out in the order `CsvDecoder` documents (`_type_slowly` makes the same).
    Header names only ever appear as `repr()` string constants in the generated source.
    """
    variables = [f"c{i}" for i in range(len(header))]
    namespace: dict[str, t.Any] = {"__builtins__": {}, "B": _BOOLEANS}
    items: list[str] = []
    extra: list[str] = []
    for i, name in enumerate(header):
        column_type = declared.get(name)
        if column_type is None:
            extra.append(f"{name!r}: c{i}")
        elif column_type == "string":
            items.append(f"{name!r}: c{i}")
        elif column_type == "boolean":
            items.append(f"{name!r}: B[c{i}]")
        elif column_type == "timestamp":
            namespace[f"t{i}"], namespace[f"f{i}"] = _timestamp_caching()
            # A cached result is never "" (falsy), so `or` calls the converter on a miss only.
            items.append(f"{name!r}: t{i}.get(c{i}) or f{i}(c{i})")
        else:
            namespace[f"f{i}"] = _converter(column_type)
            items.append(f"{name!r}: f{i}(c{i})")
    extra_object = "{" + ", ".join(extra) + "}"
    if complete:
        items += [f"{name!r}: None" for name in declared if name not in header]
        if extra:
            items += [f"{INVALID_VALUES_KEY!r}: None", f"{EXTRA_COLUMNS_KEY!r}: {extra_object}"]
        else:
            items += [f"{EXTRA_COLUMNS_KEY!r}: None", f"{INVALID_VALUES_KEY!r}: None"]
    elif extra:
        items.append(f"{EXTRA_COLUMNS_KEY!r}: {extra_object}")
    source = (
        f"def build(row):\n    {', '.join(variables)}, = row\n    return {{{', '.join(items)}}}\n"
    )
    exec(source, namespace)  # noqa: S102 - generated from repr() constants only, see above
    return t.cast("Callable[[list[str]], dict[str, t.Any]]", namespace["build"])


def _convert_one_by_one(
    record: dict[str, t.Any], row: list[str], typed: list[tuple[int, str, _Converter]]
) -> dict[str, str]:
    """Convert a row's values one at a time; return the raw strings that did not convert."""
    invalid: dict[str, str] = {}
    for i, name, convert in typed:
        value = row[i]
        try:
            record[name] = convert(value)
        except (ValueError, LookupError, OverflowError):
            record[name] = None
            invalid[name] = value
    return invalid


@functools.cache
def _csv_module() -> t.Any:  # noqa: ANN401 - the `_csv` C module; typeshed has no type for it
    """Return a private instance of the C `_csv` module whose field size limit is ours.

    `csv.field_size_limit` is process-wide state of the shared `_csv` module (default 128 KiB).
    `_csv` uses multi-phase initialisation (PEP 489), so a second instance has its own limit:
    raising it there leaves every other user of `csv` untouched. Should an interpreter ever
    return the shared module instead, the default limit is kept and longer fields are reported
    as malformed rather than changing global state.
    """
    spec = importlib.util.find_spec("_csv")
    if spec is None or spec.loader is None:  # pragma: no cover - CPython always has _csv
        return csv
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if module is getattr(csv, "_csv", None) or module.Error is csv.Error:  # pragma: no cover
        return csv
    module.field_size_limit(MAX_FIELD_CHARS)
    return module


def _csv_records(lines: Iterator[str]) -> Iterator[list[str]]:
    """Parse decoded lines into records with the strict RFC 4180 dialect."""
    reader: Iterator[list[str]] = _csv_module().reader(
        lines,
        delimiter=",",
        quotechar='"',
        doublequote=True,
        skipinitialspace=False,
        strict=True,
    )
    return reader


def _open_lines(stream: t.IO[bytes]) -> Iterator[str]:
    """Turn a byte stream into decoded lines split at LF, gunzipping it if it starts like gzip.

    Lines are split on LF only (a CR stays in its line for the CSV parser to judge) and decoded
    one at a time, so an invalid byte is reported on the row that holds it.
    """
    prefix = _read_at_least(stream, len(GZIP_MAGIC))
    raw: io.RawIOBase = _ReplayingReader(prefix, stream)
    if prefix == GZIP_MAGIC:
        raw = _ReplayingReader(b"", gzip.GzipFile(fileobj=raw, mode="rb"))
    buffered = io.BufferedReader(raw, READ_SIZE)
    first = buffered.readline()
    first = first.removeprefix(UTF8_BOM)
    decode = bytes.decode
    return itertools.chain((decode(first),) if first else (), map(decode, buffered))


@contextlib.contextmanager
def verified_if_gzip(stream: t.IO[bytes]) -> Iterator[t.IO[bytes]]:
    """Yield a stream of the same bytes; a gzip body is first checked whole.

    gzip checks its CRC and length only at the end of the member, and a corrupt deflate stream
    can inflate to wrong text before any error: rows read on the fly would be emitted, wrong,
    and a retry would skip them. So a gzip body is copied to a temporary file (compressed, so
    small), inflated once to check it, and only then handed to the decoder. Plain CSV streams
    straight through.

    Raises:
        DownloadIncompleteError: The gzip body is truncated or corrupt (worth downloading again).
    """
    prefix = _read_at_least(stream, len(GZIP_MAGIC))
    if prefix != GZIP_MAGIC:
        yield t.cast("t.IO[bytes]", _ReplayingReader(prefix, stream))
        return
    with tempfile.TemporaryFile() as spool:
        spool.write(prefix)
        shutil.copyfileobj(stream, spool, READ_SIZE)
        spool.seek(0)
        try:
            with gzip.GzipFile(fileobj=spool, mode="rb") as check:
                while check.read(READ_SIZE):
                    pass
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            msg = f"the gzip file is truncated or corrupt ({type(exc).__name__})"
            raise DownloadIncompleteError(msg) from None
        spool.seek(0)
        yield spool


def _read_at_least(stream: t.IO[bytes], size: int) -> bytes:
    """Read `size` bytes, or fewer only at the end of the stream (reads may come back short)."""
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


class _ReplayingReader(io.RawIOBase):
    """A raw reader over `source` that first returns `prefix`; it never closes `source`."""

    def __init__(self, prefix: bytes, source: t.IO[bytes] | gzip.GzipFile) -> None:
        self._prefix = prefix
        self._source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: t.Any) -> int:  # noqa: ANN401 - a writable buffer (memoryview)
        view = memoryview(buffer).cast("B")
        if self._prefix:
            size = min(len(view), len(self._prefix))
            view[:size] = self._prefix[:size]
            self._prefix = self._prefix[size:]
            return size
        if isinstance(self._source, _ReplayingReader):
            return self._source.readinto(view)  # nested replay: no extra copy
        data = self._source.read(len(view))
        size = len(data)
        view[:size] = data
        return size


def _converter(column_type: ColumnType) -> _Converter:
    """Return the converter of a non-string type.

    A converter maps "" to None and raises ValueError or LookupError for a value it cannot convert.
    """
    converters: dict[str, _Converter] = {
        "integer": _to_integer,
        "number": _to_number,
        "boolean": _BOOLEANS.__getitem__,
        "timestamp": _timestamp_converter(),
    }
    return converters[column_type]


def _to_integer(value: str) -> int | None:
    if value.isdigit() and value.isascii():
        return int(value)
    if not value:
        return None
    if _INTEGER_RE.fullmatch(value) is None:
        msg = f"not an integer: {value!r}"
        raise ValueError(msg)
    return int(value)


def _to_number(value: str) -> float | None:
    if value.isdigit() and value.isascii():
        return int(value)
    if not value:
        return None
    if _NUMBER_RE.fullmatch(value) is None:
        msg = f"not a number: {value!r}"
        raise ValueError(msg)
    if _INTEGER_RE.fullmatch(value) is not None:
        return int(value)
    number = float(value)
    if number - number != 0:  # infinity (also from overflow) or NaN
        msg = f"not a finite number: {value!r}"
        raise ValueError(msg)
    return number


def _timestamp_converter() -> _Converter:
    """Return a converter from timestamp text to the canonical RFC 3339 UTC string."""
    return _timestamp_caching()[1]


def _timestamp_caching() -> tuple[dict[str, str], _Converter]:
    """Return a timestamp converter and its cache of whole text values (see below).

    The common shapes hit bounded caches of validated parts: epoch milliseconds by their
    seconds digits (the millisecond digits then pick a suffix from a table), and
    `YYYY-MM-DD HH:MM:SS` / `MM-DD-YYYY HH:MM:SS` by their date and time halves (a valid date
    and a valid time always make a valid timestamp). Such text values, which repeat (second
    resolution), are also kept whole, value -> result: a caller may look a value up there before
    calling the converter. A miss, or any other shape, goes through `_timestamp_slowly`, which
    validates with `datetime` and fills the part caches.
    """
    texts: dict[str, str] = {}  # "2026-11-25 18:56:14" -> "2026-11-25T18:56:14Z"
    by_second: dict[str, str] = {}  # "1795625830" -> "2026-11-25T18:57:10"
    dates: dict[str, str] = {}  # "2026-11-25 " or "11-25-2026 " -> "2026-11-25T"
    times: dict[str, str] = {}  # "18:56:14" -> "18:56:14Z"
    millis = _MILLIS_BY_DIGITS
    slowly = functools.partial(_timestamp_slowly, {}, by_second, dates, times)

    def convert(value: str) -> str | None:
        size = len(value)
        if size == 13 or size == 12:  # noqa: PLR1714, PLR2004 - two int compares beat a set
            head = by_second.get(value[:-3])
            if head is not None:
                tail = millis.get(value[-3:])
                if tail is not None:
                    return head + tail
        elif size == 19:  # noqa: PLR2004
            result = texts.get(value)
            if result is not None:
                return result
            date = dates.get(value[:11])
            time = None if date is None else times.get(value[11:])
            if date is None or time is None:
                return slowly(value)
            if len(texts) >= _PART_CACHE_SIZE:
                texts.clear()
            result = texts[value] = date + time
            return result
        return slowly(value)

    return texts, convert


def _timestamp_slowly(  # noqa: C901, PLR0912 - one function keeps the shapes side by side
    day_prefixes: dict[int, str],
    by_second: dict[str, str],
    dates: dict[str, str],
    times: dict[str, str],
    value: str,
) -> str | None:
    """Convert one timestamp the full way; remember the validated parts of common shapes.

    Raises:
        ValueError: the value is not a timestamp this tap reads.
    """
    if value.isdigit() and value.isascii():
        size = len(value)
        if size in {12, 13}:
            epoch_ms = int(value)
        elif size in {9, 10}:
            epoch_ms = int(value) * 1000
        else:
            msg = f"epoch value {value!r} is neither 12-13 digit ms nor 9-10 digit seconds"
            raise ValueError(msg)
        days, of_day = divmod(epoch_ms, _MS_PER_DAY)
        date = day_prefixes.get(days)
        if date is None:
            if len(day_prefixes) >= _DAY_CACHE_SIZE:
                day_prefixes.clear()
            date = dt.date.fromordinal(_UNIX_EPOCH_ORDINAL + days).isoformat() + "T"
            day_prefixes[days] = date
        minute, of_minute = divmod(of_day, 60_000)
        second, milli = divmod(of_minute, 1000)
        head = f"{date}{_MINUTES[minute]}{_SECONDS[second]}"
        if size > 10:  # noqa: PLR2004 - milliseconds: the seconds digits name `head`
            if len(by_second) >= _PART_CACHE_SIZE:
                by_second.clear()
            by_second[value[:-3]] = head
        return head + _MILLIS[milli]
    if not value:
        return None
    if len(value) == 19 and value[13] == ":" and value[16] == ":":  # noqa: PLR2004
        if value[4] == "-" and value[7] == "-" and value[10] in " T":
            _fromisoformat(value)  # validates the digits and ranges
            date = value[:10] + "T"
        elif value[2] == "-" and value[5] == "-" and value[10] == " ":
            date = f"{value[6:10]}-{value[:2]}-{value[3:5]}T"
            _fromisoformat(date + value[11:])
        else:
            return _format_datetime(_parse_iso(value))
        if len(dates) >= _PART_CACHE_SIZE:
            dates.clear()
        if len(times) >= _PART_CACHE_SIZE:
            times.clear()
        time = value[11:] + "Z"
        dates[value[:11]] = date
        times[value[11:]] = time
        return date + time
    return _format_datetime(_parse_iso(value))


_fromisoformat = dt.datetime.fromisoformat


def _parse_iso(value: str) -> dt.datetime:
    """Parse RFC 3339-like text (`T` or space, optional seconds, fraction, offset) to naive UTC.

    `datetime.fromisoformat` alone would also take any separator character, week dates and
    sub-microsecond digits (which it drops), so the shape is checked first.
    """
    if _ISO_RE.fullmatch(value) is None:
        msg = f"not a timestamp this tap reads: {value!r}"
        raise ValueError(msg)
    parsed = _fromisoformat(value)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def _format_datetime(moment: dt.datetime) -> str:
    """Format a naive UTC datetime in the canonical form (see `CsvDecoder`)."""
    micro = moment.microsecond
    if not micro:
        return moment.isoformat(timespec="seconds") + "Z"
    if micro % 1000 == 0:
        return moment.isoformat(timespec="milliseconds") + "Z"
    return moment.isoformat(timespec="microseconds") + "Z"


def reference_rows(
    data: bytes, column_types: Mapping[str, ColumnType], *, complete: bool = False
) -> list[dict[str, t.Any]]:
    """Decode a whole file the plain way, to check `CsvDecoder` against it in tests.

    It shares no parsing or conversion code with the fast path: a character-by-character RFC 4180
    parser, and one plain function per type. It holds everything in memory; never use it on
    real exports.

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
    if data.startswith(GZIP_MAGIC):
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
    records = [record for record in _reference_parse(text) if record != []]
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
        rows.append(_reference_row(header, record, column_types, complete=complete))
    return rows


def _reference_row(
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
                row[name] = _reference_convert(column_types[name], value)
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


def _reference_parse(text: str) -> list[list[str]]:  # noqa: C901, PLR0912, PLR0915 - plain on purpose
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


def _reference_convert(column_type: ColumnType, value: str) -> t.Any:  # noqa: ANN401
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
    return _reference_timestamp(value)


def _reference_timestamp(value: str) -> str:
    """Convert timestamp text to the canonical RFC 3339 UTC form."""
    if re.fullmatch(r"[0-9]{12,13}", value):
        moment = dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=int(value))  # noqa: DTZ001
    elif re.fullmatch(r"[0-9]{9,10}", value):
        moment = dt.datetime(1970, 1, 1) + dt.timedelta(seconds=int(value))  # noqa: DTZ001
    elif match := re.fullmatch(r"([0-9]{2})-([0-9]{2})-([0-9]{4}) ([0-9:]{8})", value):
        month, day, year, time = match.groups()
        moment = dt.datetime.strptime(f"{year}-{month}-{day} {time}", "%Y-%m-%d %H:%M:%S")  # noqa: DTZ007
    else:
        moment = _parse_iso(value)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond % 1000:
        text += f".{moment.microsecond:06d}"
    elif moment.microsecond:
        text += f".{moment.microsecond // 1000:03d}"
    return text + "Z"
