"""Tests of the streaming CSV decoder, its typing, and its agreement with the reference path."""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import random
import re
import subprocess
import sys
import tempfile
import typing as t
from pathlib import Path

import pytest
from reference_csv import reference_rows

from tap_linkedin_crm.decoding import (
    EXTRA_COLUMNS_KEY,
    INVALID_VALUES_KEY,
    MAX_FIELD_CHARS,
    ColumnType,
    CsvDecoder,
    HeaderInfo,
    byte_source,
    verified_if_gzip,
)
from tap_linkedin_crm.decoding.converters import timestamp_caching
from tap_linkedin_crm.errors import (
    DownloadIncompleteError,
    LocalStorageError,
    MalformedCSVError,
)

FIXTURES = Path(__file__).parent / "data" / "csv"

SPEC: dict[str, ColumnType] = {
    "id": "string",
    "name": "string",
    "note": "string",
    "active": "boolean",
    "score": "integer",
    "ratio": "number",
    "createdAt": "timestamp",
}


class ChunkedReader(io.RawIOBase):
    """A byte stream whose reads return 1-7 bytes, to flush out chunk-boundary bugs."""

    def __init__(self, data: bytes, seed: int = 0) -> None:
        self._data = data
        self._pos = 0
        self._random = random.Random(seed)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = len(self._data)
        size = min(size, self._random.randint(1, 7))
        chunk = self._data[self._pos : self._pos + size]
        self._pos += len(chunk)
        return chunk


def csv_bytes(rows: list[list[str]], *, line_end: str = "\r\n", bom: bool = False) -> bytes:
    # The writer quotes fields holding CR or LF only if they are in its line terminator, so each
    # row is written with CRLF (quoting both) and its terminator swapped afterwards.
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\r\n")
    lines = []
    for row in rows:
        text.seek(0)
        text.truncate()
        writer.writerow(row)
        lines.append(text.getvalue()[:-2] + line_end)
    return (b"\xef\xbb\xbf" if bom else b"") + "".join(lines).encode()


def decode(
    data: bytes, spec: t.Mapping[str, ColumnType] = SPEC, **kwargs: t.Any
) -> list[dict[str, t.Any]]:
    return list(CsvDecoder(spec, label="test.csv").rows(io.BytesIO(data), **kwargs))


AWKWARD_VALUES = [
    "plain",
    "a, comma",
    'a "quoted" word',
    "CRLF\r\ninside",
    "LF\ninside",
    "lone CR\rinside",
    "NUL\x00byte",
    "line\u2028separator and form\x0cfeed",
    "Zoë Ørsted",
    "李雷",
    "emoji 🎉👩‍💻",
    "",
    " spaced ",
    "trailing CR\r",
    '"',
    ",",
]


def awkward_file(*, line_end: str = "\r\n", bom: bool = False) -> bytes:
    rows = [["id", "name", "note"]]
    rows += [[str(i), value, value[::-1]] for i, value in enumerate(AWKWARD_VALUES)]
    return csv_bytes(rows, line_end=line_end, bom=bom)


@pytest.mark.parametrize("line_end", ["\r\n", "\n"])
@pytest.mark.parametrize("bom", [True, False])
@pytest.mark.parametrize("compress", [True, False])
def test_given_awkward_values_when_decoded_then_byte_exact(
    line_end: str, bom: bool, compress: bool
) -> None:
    data = awkward_file(line_end=line_end, bom=bom)
    if compress:
        data = gzip.compress(data)
    decoder = CsvDecoder({"id": "string", "name": "string", "note": "string"})
    rows = list(decoder.rows(io.BytesIO(data)))
    assert [(row["name"], row["note"]) for row in rows] == [(v, v[::-1]) for v in AWKWARD_VALUES]
    assert decoder.header == HeaderInfo(("id", "name", "note"), (), (), reordered=False)
    assert decoder.rows_read == len(AWKWARD_VALUES)


def test_given_1_to_7_byte_reads_when_decoded_then_same_rows() -> None:
    spec: dict[str, ColumnType] = {"id": "integer", "name": "string"}
    for compress in (False, True):
        data = awkward_file(bom=True)
        if compress:
            data = gzip.compress(data)
        for seed in range(5):
            chunked = list(CsvDecoder(spec).rows(t.cast("t.IO[bytes]", ChunkedReader(data, seed))))
            assert chunked == decode(data, spec)
            assert len(chunked) == len(AWKWARD_VALUES)


def test_given_field_at_limit_then_kept_one_more_char_malformed_global_limit_untouched() -> None:
    limit = csv.field_size_limit()
    big = "x" * (MAX_FIELD_CHARS - 3) + "\r\n,"
    rows = decode(csv_bytes([["id", "note"], ["1", big], ["2", "small"]]))
    assert rows[0]["note"] == big
    assert rows[1] == {"id": "2", "note": "small"}
    with pytest.raises(MalformedCSVError, match=r"test\.csv: data row 1 has a field longer than"):
        decode(csv_bytes([["id", "note"], ["1", big + "x"], ["2", "small"]]))
    assert csv.field_size_limit() == limit


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"\r\n\n", b"\xef\xbb\xbf\n\r\n\n"])
@pytest.mark.parametrize("compress", [False, True])
def test_given_no_header_row_then_no_rows_and_header_none(data: bytes, compress: bool) -> None:
    decoder = CsvDecoder(SPEC)
    assert list(decoder.rows(io.BytesIO(gzip.compress(data) if compress else data))) == []
    assert decoder.header is None
    assert decoder.rows_read == 0


@pytest.mark.parametrize(
    "data", [b"id,name\r\n", b"id,name", b"\xef\xbb\xbfid,name\n\n\r\n", b"\n\nid,name\n"]
)
@pytest.mark.parametrize("compress", [False, True])
def test_given_header_only_then_no_rows_and_header_info(data: bytes, compress: bool) -> None:
    decoder = CsvDecoder(SPEC)
    assert list(decoder.rows(io.BytesIO(gzip.compress(data) if compress else data))) == []
    assert decoder.header is not None
    assert decoder.header.columns == ("id", "name")
    assert decoder.rows_read == 0


def test_given_header_then_no_header_when_decoded_again_then_header_reset() -> None:
    decoder = CsvDecoder(SPEC)
    assert list(decoder.rows(io.BytesIO(b"id\n1\n"))) == [{"id": "1"}]
    assert decoder.header is not None
    assert list(decoder.rows(io.BytesIO(b""))) == []
    assert decoder.header is None


def test_given_repeated_column_names_then_repeats_renamed_and_every_value_kept() -> None:
    # Two "Company" columns, or blank names from trailing commas: the file failed its instance
    # on every run. Now the repeats get a free `<name>_<n>` and every value is kept.
    data = b"id,Company,Company,,,Company_2\r\n1,Acme,Foo,x,y,z\r\n"
    decoder = CsvDecoder({"id": "string", "Company": "string"}, complete=True)
    rows = list(decoder.rows(io.BytesIO(data)))
    assert rows == [
        {
            "id": "1",
            "Company": "Acme",
            "extraColumns": {"Company_3": "Foo", "": "x", "_2": "y", "Company_2": "z"},
            "invalidValues": None,
        }
    ]
    assert decoder.header is not None
    assert decoder.header.columns == ("id", "Company", "Company_3", "", "_2", "Company_2")
    assert decoder.header.renamed == (("Company", "Company_3"), ("", "_2"))


def test_given_empty_lines_then_skipped_and_not_numbered() -> None:
    data = b"id,score\r\n\r\n1,5\r\n\n\r\n2,6\r\n\r\n"
    decoder = CsvDecoder({"id": "string", "score": "integer"})
    assert list(decoder.rows(io.BytesIO(data))) == [
        {"id": "1", "score": 5},
        {"id": "2", "score": 6},
    ]
    assert decoder.rows_read == 2


def test_given_truncated_gzip_then_download_incomplete() -> None:
    data = gzip.compress(awkward_file() * 50)
    with pytest.raises(DownloadIncompleteError, match=r"test\.csv"):
        decode(data[: len(data) // 2])
    with pytest.raises(DownloadIncompleteError):
        decode(data[:-4])  # trailer cut: size check missing
    corrupt = bytearray(data)
    corrupt[len(corrupt) // 2] ^= 0xFF
    with pytest.raises(DownloadIncompleteError):
        decode(bytes(corrupt))


def test_given_invalid_utf8_then_error_names_file_and_row() -> None:
    data = b"id,name\r\n1,ok\r\n2,ok\r\n3,bad \xff byte\r\n4,ok\r\n"
    with pytest.raises(MalformedCSVError, match=r"test\.csv: data row 3 is not valid UTF-8"):
        decode(data)
    with pytest.raises(MalformedCSVError, match="the header is not valid UTF-8"):
        decode(b"id,n\xc3me\r\n")


@pytest.mark.parametrize(("line", "fields"), [("1,a,extra", 3), ("1", 1), ('""', 1), ("1,a,", 3)])
def test_given_ragged_row_then_error_names_file_and_row(line: str, fields: int) -> None:
    data = f"id,name\r\n1,a\r\n{line}\r\n".encode()
    with pytest.raises(MalformedCSVError, match=rf"test\.csv: data row 2 has {fields} fields"):
        decode(data)


@pytest.mark.parametrize(
    "data",
    [
        b'id,name\r\n1,"unterminated\r\n',
        b'id,name\r\n1,"a"b\r\n',
        b"id,name\r\n1,a\rb,c\r\n",
        # (A header naming a column twice is read since: see the repeated-names test.)
    ],
)
def test_given_bad_csv_then_malformed(data: bytes) -> None:
    with pytest.raises(MalformedCSVError, match=r"test\.csv"):
        decode(data)
    with pytest.raises(MalformedCSVError):
        reference_rows(data, SPEC)


def test_header_drift_is_reported_and_extra_columns_kept() -> None:
    spec: dict[str, ColumnType] = {"id": "string", "score": "integer", "gone": "boolean"}
    data = b"score,new,id,other\r\n7,x,a,\r\n,y,b,z\r\n"
    decoder = CsvDecoder(spec)
    rows = list(decoder.rows(io.BytesIO(data)))
    assert decoder.header == HeaderInfo(
        columns=("score", "new", "id", "other"),
        added=("new", "other"),
        missing=("gone",),
        reordered=True,
    )
    assert decoder.header.drifted
    assert rows == [
        {"score": 7, "id": "a", EXTRA_COLUMNS_KEY: {"new": "x", "other": ""}},
        {"score": None, "id": "b", EXTRA_COLUMNS_KEY: {"new": "y", "other": "z"}},
    ]


def test_given_no_drift_then_no_extra_key() -> None:
    decoder = CsvDecoder({"id": "string", "score": "integer"})
    assert list(decoder.rows(io.BytesIO(b"id,score\n1,2\n"))) == [{"id": "1", "score": 2}]
    assert decoder.header is not None
    assert not decoder.header.drifted


def test_reserved_and_unknown_column_types_are_refused() -> None:
    with pytest.raises(ValueError, match="reserved"):
        CsvDecoder({EXTRA_COLUMNS_KEY: "string"})
    with pytest.raises(ValueError, match="unknown type"):
        CsvDecoder({"a": t.cast("ColumnType", "date")})
    with pytest.raises(ValueError, match="skip_rows"):
        list(CsvDecoder({}).rows(io.BytesIO(b""), skip_rows=-1))


@pytest.mark.parametrize("compress", [False, True])
def test_skip_rows_resume_equals_tail_of_full_read(compress: bool) -> None:
    data = awkward_file() + b"\r\n" + csv_bytes([[str(i), "n", "x"] for i in range(100, 140)])
    if compress:
        data = gzip.compress(data)
    spec: dict[str, ColumnType] = {"id": "integer", "name": "string", "note": "string"}
    full = decode(data, spec)
    for skip in (0, 1, 5, len(full) - 1, len(full), len(full) + 3):
        decoder = CsvDecoder(spec)
        assert list(decoder.rows(io.BytesIO(data), skip_rows=skip)) == full[skip:]
        assert decoder.rows_read == len(full)


VALID_CONVERSIONS: list[tuple[ColumnType, str, t.Any]] = [
    ("string", "", ""),
    ("string", " 007 ", " 007 "),
    ("integer", "42", 42),
    ("integer", "-42", -42),
    ("integer", "+7", 7),
    ("integer", "007", 7),
    ("integer", "123456789012345678901234567890", 123456789012345678901234567890),
    ("integer", "", None),
    ("number", "1.5", 1.5),
    ("number", "-0.25e3", -250.0),
    ("number", ".5", 0.5),
    ("number", "12345678901234567890", 12345678901234567890),
    ("number", "", None),
    ("boolean", "true", True),
    ("boolean", "FALSE", False),
    ("boolean", "Yes", True),
    ("boolean", "no", False),
    ("boolean", "1", True),
    ("boolean", "0", False),
    ("boolean", "", None),
    ("timestamp", "", None),
    ("timestamp", "1793520900123", "2026-11-01T08:15:00.123Z"),
    ("timestamp", "1793520900000", "2026-11-01T08:15:00Z"),
    ("timestamp", "1793520900", "2026-11-01T08:15:00Z"),
    ("timestamp", "946684800000", "2000-01-01T00:00:00Z"),
    ("timestamp", "999999999", "2001-09-09T01:46:39Z"),
    ("timestamp", "2026-11-01 08:15:00", "2026-11-01T08:15:00Z"),
    ("timestamp", "2026-11-01T08:15:00", "2026-11-01T08:15:00Z"),
    ("timestamp", "2026-11-01T08:15:00Z", "2026-11-01T08:15:00Z"),
    ("timestamp", "2026-11-01T08:15:00.5Z", "2026-11-01T08:15:00.500Z"),
    ("timestamp", "2026-11-01T08:15:00.123456Z", "2026-11-01T08:15:00.123456Z"),
    ("timestamp", "2026-11-01T10:15:00+02:00", "2026-11-01T08:15:00Z"),
    ("timestamp", "2026-11-01 03:15:00.120-05:00", "2026-11-01T08:15:00.120Z"),
    ("timestamp", "2026-11-01T08:15", "2026-11-01T08:15:00Z"),
    ("timestamp", "2026-11-01", "2026-11-01T00:00:00Z"),
    ("timestamp", "11-01-2026 08:15:00", "2026-11-01T08:15:00Z"),
    ("timestamp", "11-1-2026 8:15:00", "2026-11-01T08:15:00Z"),
    ("timestamp", "1-5-2026 8:05:09", "2026-01-05T08:05:09Z"),
    ("timestamp", "11/01/2026 08:15:00", "2026-11-01T08:15:00Z"),
    ("timestamp", "1/5/2026 0:0:0", "2026-01-05T00:00:00Z"),
]

INVALID_CONVERSIONS: list[tuple[ColumnType, str]] = [
    ("integer", "1.0"),
    ("integer", " 1"),
    ("integer", "1_000"),
    ("integer", "١٢"),
    ("integer", "abc"),
    ("number", "nan"),
    ("number", "inf"),
    ("number", "-Infinity"),
    ("number", "1e400"),
    ("number", "1,5"),
    ("number", "1_0.5"),
    ("boolean", "y"),
    ("boolean", "true "),
    ("boolean", "2"),
    ("timestamp", "12345678901"),
    ("timestamp", "12345678"),
    ("timestamp", "99999999999999"),
    ("timestamp", "2026-13-01 08:15:00"),
    ("timestamp", "2026-11-01X08:15:00"),
    ("timestamp", "13-01-2026 08:15:00"),
    ("timestamp", "2-30-2026 8:15:00"),
    ("timestamp", "1-5/2026 8:15:00"),
    ("timestamp", "1-5-2026 8:15"),
    ("timestamp", "1-5-2026T8:15:00"),
    ("timestamp", "11-01-26 08:15:00"),
    ("timestamp", "2026-11-01T08:15:00.1234567Z"),
    ("timestamp", "2026-W44-7"),
    ("timestamp", "yesterday"),
    ("timestamp", "2026-11-01 24:00:00"),
]


@pytest.mark.parametrize(("column_type", "raw", "expected"), VALID_CONVERSIONS)
def test_valid_conversion(column_type: ColumnType, raw: str, expected: object) -> None:
    data = csv_bytes([["id", "value"], ["1", raw]])
    rows = decode(data, {"id": "string", "value": column_type})
    assert rows == [{"id": "1", "value": expected}]
    assert type(rows[0]["value"]) is type(expected)
    assert reference_rows(data, {"id": "string", "value": column_type}) == rows


@pytest.mark.parametrize(("column_type", "raw"), INVALID_CONVERSIONS)
def test_invalid_value_is_null_and_kept_raw(column_type: ColumnType, raw: str) -> None:
    data = csv_bytes([["id", "value", "more"], ["1", raw, "x"], ["2", "", "y"]])
    spec: dict[str, ColumnType] = {"id": "string", "value": column_type, "more": "string"}
    rows = decode(data, spec)
    assert rows == [
        {"id": "1", "value": None, "more": "x", INVALID_VALUES_KEY: {"value": raw}},
        {"id": "2", "value": None, "more": "y"},
    ]
    assert reference_rows(data, spec) == rows


def test_fixture_files_fast_path_equals_reference() -> None:
    fixtures = sorted(FIXTURES.glob("*.csv*"))
    assert fixtures
    for path in fixtures:
        data = path.read_bytes()
        assert decode(data) == reference_rows(data, SPEC), path.name


def random_value(rnd: random.Random) -> str:
    alphabet = 'ab ,"\r\n\x00\u2028\x0cë李🎉'
    kind = rnd.randrange(6)
    if kind == 0:
        return ""
    if kind == 1:
        return str(rnd.randrange(-(10**6), 10**6))
    if kind == 2:
        return rnd.choice(["true", "No", "1", "maybe"])
    if kind == 3:
        return str(rnd.randrange(10**12, 2 * 10**12))
    return "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(12)))


def test_random_rows_round_trip_through_csv_writer() -> None:
    rnd = random.Random(20261101)
    types: list[ColumnType] = ["string", "integer", "number", "boolean", "timestamp"]
    for case in range(40):
        width = rnd.randrange(1, 8)
        header = [f"c{i}" for i in range(width)]
        spec: dict[str, ColumnType] = {name: rnd.choice(types) for name in header[:-1]}
        rows = [[random_value(rnd) for _ in header] for _ in range(rnd.randrange(30))]
        rows = [row for row in rows if row != [""]]  # a lone empty field is an empty line
        data = csv_bytes([header, *rows], line_end=rnd.choice(["\r\n", "\n"]), bom=case % 2 == 0)
        if case % 3 == 0:
            data = gzip.compress(data)
        decoded = decode(data, spec)
        assert decoded == reference_rows(data, spec)
        chunked = list(CsvDecoder(spec).rows(t.cast("t.IO[bytes]", ChunkedReader(data, case))))
        assert chunked == decoded
        strings = decode(data, dict.fromkeys(header, "string"))
        assert [[row[name] for name in header] for row in strings] == rows


def test_given_complete_when_decoded_then_every_schema_field_in_every_row() -> None:
    spec: dict[str, ColumnType] = {"id": "integer", "gone": "boolean", "name": "string"}
    data = csv_bytes([["id", "name", "extra"], ["1", "a", "x"], ["oops", "b", ""]])
    rows = list(CsvDecoder(spec, complete=True).rows(io.BytesIO(data)))
    assert rows == [
        {"id": 1, "name": "a", "gone": None, "extraColumns": {"extra": "x"}, "invalidValues": None},
        {
            "id": None,
            "name": "b",
            "gone": None,
            "extraColumns": {"extra": ""},
            "invalidValues": {"id": "oops"},
        },
    ]
    assert rows == reference_rows(data, spec, complete=True)
    plain = list(CsvDecoder(spec, complete=True).rows(io.BytesIO(csv_bytes([["id"], ["2"]]))))
    assert plain == [
        {"id": 2, "gone": None, "name": None, "extraColumns": None, "invalidValues": None}
    ]


@pytest.mark.parametrize("complete", [False, True])
@pytest.mark.parametrize(
    "header",
    [
        ["id", "name", "note", "active", "score", "ratio", "createdAt"],
        ["createdAt", "extra1", "score", "id"],
        ["other", "active"],
        ["id"],
    ],
)
def test_generated_row_builder_equals_plain_typing_key_order_included(
    header: list[str], complete: bool
) -> None:
    values = {
        "id": "7",
        "name": "Zoë",
        "note": "a\r\nb",
        "active": "Yes",
        "score": "-3",
        "ratio": "1.5",
        "createdAt": "2026-11-01 08:15:00",
    }
    row = [values.get(name, f"raw {name}") for name in header]
    data = csv_bytes([header, row])
    (fast,) = CsvDecoder(SPEC, complete=complete).rows(io.BytesIO(data))
    assert fast == reference_rows(data, SPEC, complete=complete)[0]
    # The one-value-at-a-time path, taken by rows with an invalid value, builds the same keys
    # in the same order.
    decoder = CsvDecoder(SPEC, complete=complete)
    slow = decoder._type_slowly(header)(row)
    assert list(slow.items()) == list(fast.items())


TIMESTAMP_SEQUENCE = [
    # Each value converts (or fails) the same whether the caches are cold or warm, including
    # values that share a cached date, time or seconds prefix with an earlier valid one.
    "1793520900123",
    "1793520900000",
    "1793520900999",
    "179352090012x",
    "179352090012",
    "179352090",
    "0793520900123",
    "1793520900",
    "2026-11-01 08:15:00",
    "2026-11-01T08:15:00",
    "2026-11-01 08:15:01",
    "2026-11-01 24:00:00",
    "2026-11-01 08:15:0Z",
    "2026-11-01X08:15:00",
    "2026-02-28 08:15:00",
    "2026-02-29 08:15:00",
    "2024-02-29 08:15:00",
    "11-01-2026 08:15:00",
    "11-01-2026T08:15:00",
    "13-01-2026 08:15:00",
    "11-01-2026 08:15:61",
    "11-1-2026 8:15:00",
    "11/01/2026 08:15:00",
    "11/01/2026 08:15:01",
    "2-30-2026 8:15:00",
    "2026-11-01T08:15+02",
    "2026-11-01T10:15:00+02:00",
    "",
]


def test_timestamp_caches_never_change_a_result() -> None:
    def outcome(convert: t.Callable[[str], t.Any], value: str) -> object:
        try:
            return convert(value)
        except (ValueError, LookupError):
            return "invalid"

    texts, warm = timestamp_caching()
    for _ in range(3):
        for value in TIMESTAMP_SEQUENCE:
            cold = outcome(timestamp_caching()[1], value)
            assert outcome(warm, value) == cold, value
            assert texts.get(value, cold) == cold, value
            if value:
                data = csv_bytes([["v"], [value]])
                expected = "invalid" if cold == "invalid" else cold
                (row,) = reference_rows(data, {"v": "timestamp"})
                assert (row["v"] if INVALID_VALUES_KEY not in row else "invalid") == expected


def test_given_gzip_corrupt_mid_stream_when_verified_then_no_row_yielded_before_error() -> None:
    rows = [["id", "note"]] + [[str(i), f"note {i} " + "x" * (i % 50)] for i in range(20_000)]
    data = gzip.compress(csv_bytes(rows))
    rng = random.Random(11)
    for _ in range(20):
        corrupt = bytearray(data)
        spot = rng.randrange(len(data) // 3, len(data) - 8)
        corrupt[spot] ^= 1 << rng.randrange(8)
        yielded = []
        with (
            pytest.raises(DownloadIncompleteError),
            verified_if_gzip(io.BytesIO(bytes(corrupt))) as stream,
        ):
            yielded.extend(CsvDecoder({"id": "integer"}).rows(stream))
        assert yielded == []


def test_given_plain_or_good_gzip_when_verified_then_same_rows() -> None:
    data = csv_bytes([["id"], ["1"], ["2"]])
    for body in (data, gzip.compress(data)):
        with verified_if_gzip(io.BytesIO(body)) as stream:
            assert [r["id"] for r in CsvDecoder({"id": "integer"}).rows(stream)] == [1, 2]


# A child process decodes a generated 300 MB stream (never held anywhere whole) and reports the
# error and how much it read; a wrapper process runs it alone, so that RUSAGE_CHILDREN is its
# peak RSS and nothing else's.
BOUNDED_MEMORY_CHILD = r"""
import io, itertools, json, sys, zlib
from tap_linkedin_crm.decoding import CsvDecoder
from tap_linkedin_crm.errors import MalformedCSVError

TOTAL = 300 * 10**6
VARIANTS = {
    # CR-only line endings: not a single LF in 300 MB.
    "cr_only": (b"id,note\r", b"1,plain text \xc3\xa9\xe6\x9d\x8e\xf0\x9f\x8e\x89 and more\r"),
    # One unclosed quote early, then ordinary LF lines: one quoted field grows and grows.
    "unclosed_quote": (
        b'id,note\n1,ok\n2,"lost quote\n',
        b"3,li\xf0\x9f\x8e\x89ne \xe6\x9d\x8e after line\n",
    ),
    # No line break of any kind: one endless unquoted line.
    "no_line_break": (b"id,", b"note and more text "),
    # Lines within the limit, but each one record of 2 Mi two-character fields.
    "tiny_fields_line": (b"id,note\n", b"ab," * (2 * 2**20 - 2) + b"ab\n"),
    # One record of tiny fields on ever more lines, joined by quoted line breaks.
    "tiny_fields_quoted_lines": (b'id,note\n1,"x\n', b'",' + b"ab," * 20_000 + b'"x\n'),
}


class Generated(io.RawIOBase):
    def __init__(self, head, body, compress):
        body = body * max(1, 65536 // len(body))
        self.parts = itertools.chain([head], itertools.repeat(body))
        self.left = TOTAL
        self.read_out = 0  # bytes of CSV handed out (before compression)
        self.gzip = zlib.compressobj(wbits=31) if compress else None
        self.pending = b""

    def readable(self):
        return True

    def readinto(self, buffer):
        while not self.pending and (self.left or self.gzip):
            part = next(self.parts)[: self.left] if self.left else b""
            self.left -= len(part)
            self.read_out += len(part)
            if self.gzip is None:
                self.pending = part
            elif part:
                self.pending = self.gzip.compress(part)
            else:
                self.pending, self.gzip = self.gzip.flush(), None
        size = min(len(buffer), len(self.pending))
        buffer[:size] = self.pending[:size]
        self.pending = self.pending[size:]
        return size


variant, compress = sys.argv[1], sys.argv[2] == "gzip"
source = Generated(*VARIANTS[variant], compress)
decoder = CsvDecoder({"id": "integer", "note": "string"}, label="generated.csv")
try:
    rows = sum(1 for _ in decoder.rows(io.BufferedReader(source, 1 << 20)))
    outcome = f"no error after {rows} rows"
except MalformedCSVError as exc:
    outcome = str(exc)
print(json.dumps({"error": outcome, "read": source.read_out}))
"""

BOUNDED_MEMORY_WRAPPER = r"""
import json, resource, subprocess, sys
child = subprocess.run(
    [sys.executable, "-c", sys.argv[1], *sys.argv[2:]], capture_output=True, text=True, check=False
)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
print(json.dumps({"returncode": child.returncode, "stdout": child.stdout,
                  "stderr": child.stderr[-2000:], "peak_kib": peak}))
"""


@pytest.mark.parametrize("compress", ["plain", "gzip"])
@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("cr_only", r"no line break \(LF\) in the 6 MiB from the start of the header"),
        ("unclosed_quote", r"data row 2 has a field longer than 1,572,864 characters"),
        ("no_line_break", r"no line break \(LF\) in the 6 MiB from the start of the header"),
        ("tiny_fields_line", r"data row 1 has 2097151 fields but the header has 2"),
        ("tiny_fields_quoted_lines", r"data row 1 runs on over more than 6 MiB of lines"),
    ],
)
def test_given_300_mb_without_line_breaks_then_malformed_in_bounded_memory(
    variant: str, expected: str, compress: str
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            BOUNDED_MEMORY_WRAPPER,
            BOUNDED_MEMORY_CHILD,
            variant,
            compress,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(result.stdout)
    assert report["returncode"] == 0, report["stderr"]
    child = json.loads(report["stdout"])
    assert re.search(r"^generated\.csv: .*" + expected, child["error"]), child["error"]
    assert child["read"] < 32 * 2**20  # stopped early, not after reading the file whole
    assert report["peak_kib"] < 300 * 1024, f"peak RSS {report['peak_kib'] / 1024:.0f} MiB"


def storage_message(directory: str, cause: str) -> str:
    return (
        "cannot keep the temporary copy of a gzip download in"
        f" {re.escape(directory)} \\({cause}\\): free space there, or set TMPDIR to a writable"
        " directory with room for the compressed file"
    )


@pytest.mark.parametrize(
    ("make", "cause"),
    [
        (lambda path: None, "No such file or directory"),
        (lambda path: path.write_bytes(b"a file, not a directory"), "Not a directory"),
    ],
)
def test_given_unusable_tmpdir_when_gzip_verified_then_local_storage_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make: t.Callable[[Path], object],
    cause: str,
) -> None:
    directory = tmp_path / "tmpdir"
    make(directory)
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    body = gzip.compress(csv_bytes([["id"], ["1"]]))
    with (
        pytest.raises(LocalStorageError, match=storage_message(str(directory), cause)),
        verified_if_gzip(io.BytesIO(body)),
    ):
        pytest.fail("the body ran")
    # A plain body needs no temporary file.
    with verified_if_gzip(io.BytesIO(csv_bytes([["id"], ["1"]]))) as stream:
        assert [row["id"] for row in CsvDecoder({"id": "integer"}).rows(stream)] == [1]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_given_full_disk_when_gzip_verified_then_local_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # /dev/full answers every write with ENOSPC, as a full TMPDIR would.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def full_disk_file(**kwargs: object) -> t.IO[bytes]:
        return Path("/dev/full").open("w+b", buffering=0)

    monkeypatch.setattr(tempfile, "TemporaryFile", full_disk_file)
    rows = [["id", "note"]] + [[str(i), "x" * (i % 100)] for i in range(50_000)]
    body = gzip.compress(csv_bytes(rows))
    with (
        pytest.raises(
            LocalStorageError, match=storage_message(str(tmp_path), "No space left on device")
        ),
        verified_if_gzip(io.BytesIO(body)),
    ):
        pytest.fail("the body ran")


class FailingReader(io.RawIOBase):
    """Returns `data`, then fails the way a dropped connection does."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if not self._data:
            raise ConnectionResetError(104, "Connection reset by peer")
        chunk, self._data = self._data[:size], self._data[size:]
        return chunk


def test_given_download_error_while_spooling_then_it_passes_through() -> None:
    body = gzip.compress(csv_bytes([["id"], ["1"]]))
    with (
        pytest.raises(ConnectionResetError),
        verified_if_gzip(t.cast("t.IO[bytes]", FailingReader(body[:10]))),
    ):
        pytest.fail("the body ran")


@pytest.mark.parametrize("seed", range(4))
def test_line_limit_counts_the_lf_and_holds_across_read_boundaries(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    monkeypatch.setattr(byte_source, "MAX_RECORD_BYTES", 32)
    monkeypatch.setattr(byte_source, "READ_SIZE", 16)
    moving = itertools.count().__next__  # a record done at every check: only lines are limited
    fits = b"a" * 31 + b"\n"
    lines = [b"id\n", fits, b"b" * 5 + b"\r\n", fits, b"c" * 32]
    reader = ChunkedReader(b"\xef\xbb\xbf" + b"".join(lines), seed)
    blocks = list(byte_source.line_blocks(reader.read, moving))
    assert b"".join(blocks) == b"".join(lines)
    assert all(block.endswith(b"\n") for block in blocks[:-1])
    stream = t.cast("t.IO[bytes]", ChunkedReader(b"".join(lines), seed))
    assert list(byte_source.open_lines(stream, moving)) == [line.decode() for line in lines]
    for too_long in (b"a" * 32 + b"\n", b"a" * 33):
        data = b"".join([b"id\n", fits, too_long, fits])
        reader = ChunkedReader(data, seed)
        with pytest.raises(byte_source.LineTooLongError):
            list(byte_source.line_blocks(reader.read, moving))
        with pytest.raises(MalformedCSVError, match=r"test\.csv: no line break .* data row 2"):
            decode(data, {"id": "string"})


@pytest.mark.parametrize("chunked", [False, True])
def test_record_limit_bounds_quoted_line_breaks_to_within_a_read(
    monkeypatch: pytest.MonkeyPatch, chunked: bool
) -> None:
    monkeypatch.setattr(byte_source, "MAX_RECORD_BYTES", 64)
    monkeypatch.setattr(byte_source, "READ_SIZE", 8)
    spec: dict[str, ColumnType] = {"id": "integer", "note": "string"}

    def rows(lines: int) -> list[dict[str, t.Any]]:
        # Data row 2 is 6 + 2 * lines bytes long, on 1 + lines lines; the rows around it are short.
        data = b"id,note\n" + b"1,a\n" * 30 + b'2,"' + b"x\n" * lines + b'"\n' + b"3,c\n" * 30
        stream = ChunkedReader(data, lines) if chunked else io.BytesIO(data)
        return list(CsvDecoder(spec, label="test.csv").rows(t.cast("t.IO[bytes]", stream)))

    assert rows(20)[30] == {"id": 2, "note": "x\n" * 20}  # 46 bytes: kept
    with pytest.raises(MalformedCSVError, match=r"test\.csv: data row 31 runs on over more than"):
        rows(50)  # 106 bytes: more than the limit and two reads


@pytest.mark.parametrize("chunked", [False, True])
def test_skipped_rows_and_empty_lines_count_as_records_done(
    monkeypatch: pytest.MonkeyPatch, chunked: bool
) -> None:
    monkeypatch.setattr(byte_source, "MAX_RECORD_BYTES", 64)
    monkeypatch.setattr(byte_source, "READ_SIZE", 8)
    # Runs of short records, empty lines and skipped rows, each far longer than the limit, but
    # never one long record.
    rows_1 = b"1\n\n" * 50 + b"\n" * 300 + b"1\n" * 50
    data = b"\n" * 300 + b"id\n" + rows_1 + b"\n" * 300 + b"2\n" + b"\r\n" * 300
    for skip in (0, 99):
        stream = ChunkedReader(data, skip) if chunked else io.BytesIO(data)
        decoder = CsvDecoder({"id": "integer"})
        rows = list(decoder.rows(t.cast("t.IO[bytes]", stream), skip_rows=skip))
        assert rows == [{"id": 1}] * (100 - skip) + [{"id": 2}]
        assert decoder.rows_read == 101
