"""Tests of the streaming CSV decoder, its typing, and its agreement with the reference path."""

from __future__ import annotations

import csv
import gzip
import io
import random
import typing as t
from pathlib import Path

import pytest

from tap_linkedin_crm.csv_decoding import (
    EXTRA_COLUMNS_KEY,
    INVALID_VALUES_KEY,
    ColumnType,
    CsvDecoder,
    HeaderInfo,
    _timestamp_caching,
    reference_rows,
    verified_if_gzip,
)
from tap_linkedin_crm.errors import DownloadIncompleteError, MalformedCSVError

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


def test_given_5_mib_field_then_kept_and_global_limit_untouched() -> None:
    limit = csv.field_size_limit()
    big = "x" * (5 * 1024 * 1024 - 3) + "\r\n,"
    rows = decode(csv_bytes([["id", "note"], ["1", big], ["2", "small"]]))
    assert rows[0]["note"] == big
    assert rows[1] == {"id": "2", "note": "small"}
    assert csv.field_size_limit() == limit


def test_given_empty_file_then_no_rows_and_empty_header() -> None:
    decoder = CsvDecoder(SPEC)
    assert list(decoder.rows(io.BytesIO(b""))) == []
    assert decoder.header is not None
    assert decoder.header.columns == ()
    assert decoder.rows_read == 0
    assert list(decoder.rows(io.BytesIO(gzip.compress(b"")))) == []


@pytest.mark.parametrize("data", [b"id,name\r\n", b"id,name", b"\xef\xbb\xbfid,name\n\n\r\n"])
def test_given_header_only_then_no_rows(data: bytes) -> None:
    decoder = CsvDecoder(SPEC)
    assert list(decoder.rows(io.BytesIO(data))) == []
    assert decoder.header is not None
    assert decoder.header.columns == ("id", "name")


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
        b"id,id\r\n1,2\r\n",
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

    texts, warm = _timestamp_caching()
    for _ in range(3):
        for value in TIMESTAMP_SEQUENCE:
            cold = outcome(_timestamp_caching()[1], value)
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
