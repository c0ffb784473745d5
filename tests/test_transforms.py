"""Compiled stream maps give exactly what the SDK's own record path gives, map by map."""

from __future__ import annotations

import collections
import contextlib
import copy
import hashlib
import io
import json
import random
import typing as t

import orjson
import pytest
from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import MapExpressionError
from singer_sdk.singerlib.json import serialize_json

from tap_linkedin_crm.columns import DEFAULT_COLUMN_TYPES
from tap_linkedin_crm.output import transforms
from tap_linkedin_crm.output.transforms import MappedOutput, mapped_outputs
from tap_linkedin_crm.streams import records_schema

if t.TYPE_CHECKING:
    from tap_linkedin_crm.columns import ColumnType

RECORDS = "crm_data_validation_records"
SCHEMA = records_schema(DEFAULT_COLUMN_TYPES)
KEYS = ("crmInstanceId", "jobId", "fileIndex", "rowNumber")
FLAT_1 = {"flattening_enabled": True, "flattening_max_depth": 1}


def _row(schema: dict[str, t.Any] = SCHEMA, **values: t.Any) -> dict[str, t.Any]:
    """A complete row: every schema property, in schema order."""
    row: dict[str, t.Any] = dict.fromkeys(schema["properties"])
    row.update(crmInstanceId="urn:li:crmInstance:(DYNAMICS,1)", jobId=101, fileIndex=0)
    row.update(values)
    return row


ROWS = [
    _row(
        exportStartAt=1_700_000_000_000,
        exportEndAt=1_700_000_500_000,
        rowNumber=1,
        crmRecordId="0035g00000AAA",
        recordType="Lead",
        firstName="Zoë",
        lastName="O'Neil",
        email="zoe@example.com",
        title="Head of Sales\nEMEA",
        crmCompanyName='The "Best" Company',
        linkedInCompanyName="Best Co",
        linkedInProfileUrl="https://www.linkedin.com/in/zoe",
        notAtCompany=False,
        flaggedAt="2025-01-02T03:04:05Z",
        lastSyncedAt="2025-01-02T03:04:05.123Z",
    ),
    _row(rowNumber=2),  # None everywhere it may be
    _row(
        fileIndex=1,
        rowNumber=3,
        recordType="Contact",
        firstName="李",
        lastName="田中",
        email="li@例え.jp",
        title="営業部長",
        crmCompanyName="Müller & Söhne GmbH",
        flaggedAt="2024-12-31T23:59:59.000001Z",
        extraColumns={
            "territory": "EMEA",
            "Région": "Île-de-France",
            "empty": "",
            "missing": None,
            "nul": "a\x00b",
            "quoted": 'say "hi",\r\nthen \\ leave',
        },
        invalidValues={"notAtCompany": "maybe", "flaggedAt": "yesterday"},
    ),
    _row(
        jobId=2**63 - 1,
        exportStartAt=-(2**63),
        exportEndAt=2**64 - 1,
        fileIndex=2,
        rowNumber=4,
        crmRecordId="\x00",
        recordType="Lead",
        firstName="😀 \u2028 \x7f",
        lastName="",
        email="",
        title="",
        notAtCompany=True,
        extraColumns={},
    ),
    _row(jobId=2**70, fileIndex=3, rowNumber=5, email="big@example.com", extraColumns={"a": "b"}),
]


def _make_tap(
    rows: list[dict[str, t.Any]],
    config: dict[str, t.Any],
    *,
    schema: dict[str, t.Any] = SCHEMA,
    deselected: t.Iterable[tuple[str, ...]] = (),
) -> Tap:
    """An SDK tap with one stream of `rows`; `deselected` breadcrumbs are deselected."""

    class RowsStream(Stream):
        name = RECORDS
        primary_keys = KEYS

        def get_records(self, context: t.Any) -> t.Iterator[dict[str, t.Any]]:
            yield from copy.deepcopy(rows)  # the SDK pops deselected properties in place

    class RowsTap(Tap):
        name = "tap-rows"
        config_jsonschema = th.PropertiesList().to_dict()

        def discover_streams(self) -> list[Stream]:
            return [RowsStream(self, schema=copy.deepcopy(schema))]

    catalog = None
    deselected = list(deselected)
    if deselected:
        catalog = RowsTap(config=copy.deepcopy(config), validate_config=False).catalog_dict
        metadata = catalog["streams"][0]["metadata"]
        for entry in metadata:
            entry["metadata"]["selected"] = True
        metadata += [{"breadcrumb": list(crumb), "metadata": {}} for crumb in deselected]
        for entry in metadata:
            if tuple(entry["breadcrumb"]) in deselected:
                entry["metadata"]["selected"] = False
    return RowsTap(config=copy.deepcopy(config), catalog=catalog, validate_config=True)


def _sdk_messages(tap: Tap) -> list[dict[str, t.Any]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        tap.sync_all()
    return [json.loads(line) for line in out.getvalue().splitlines()]


def _as_json(record: dict[str, t.Any]) -> t.Any:
    """The record as the tap's writer encodes it (orjson; json beyond 64-bit ints), parsed."""
    try:
        return json.loads(orjson.dumps(record))
    except orjson.JSONEncodeError:
        return json.loads(json.dumps(record))


def _emitted(outputs: list[MappedOutput], rows: list[dict[str, t.Any]]) -> list[tuple[str, t.Any]]:
    emitted = []
    for row in rows:
        for output in outputs:
            record = output.transform(row)
            if record is not None:
                emitted.append((output.alias, _as_json(record)))
    return emitted


def _check_same_as_sdk(
    config: dict[str, t.Any],
    *,
    rows: list[dict[str, t.Any]] = ROWS,
    schema: dict[str, t.Any] = SCHEMA,
    deselected: t.Iterable[str | tuple[str, ...]] = (),
    compiled: list[bool] | None = None,
) -> list[tuple[str, t.Any]]:
    """Both paths (compiled and the SDK's transform) equal the SDK's sync; returns the records.

    `compiled` says which outputs compile (default: all of them).
    """
    crumbs = [("properties", c) if isinstance(c, str) else c for c in deselected]
    tap = _make_tap(rows, config, schema=schema, deselected=crumbs)
    messages = _sdk_messages(tap)
    expected = [(m["stream"], m["record"]) for m in messages if m["type"] == "RECORD"]
    schemas = [
        (m["stream"], m["schema"], m["key_properties"]) for m in messages if m["type"] == "SCHEMA"
    ]
    originals = copy.deepcopy(rows)
    stream = tap.streams[RECORDS]
    for compile_maps in (True, False):
        outputs = mapped_outputs(stream, tap.config.get("stream_maps"), compile_maps=compile_maps)
        flags = [compile_maps and flag for flag in (compiled or [True] * len(outputs))]
        assert [output.compiled for output in outputs] == flags
        emitted = _emitted(outputs, rows)
        assert emitted == expected
        assert [list(record) for _, record in emitted] == [list(r) for _, r in expected]  # order
        assert [
            (o.alias, json.loads(json.dumps(o.schema)), o.key_properties or []) for o in outputs
        ] == schemas
    assert rows == originals  # rows are read-only
    return expected


def _streams(records: list[tuple[str, t.Any]]) -> list[str]:
    return sorted({stream for stream, _ in records})


# --- Exactness --------------------------------------------------------------------------------


def test_identity_emits_the_rows() -> None:
    records = _check_same_as_sdk({})
    assert [record for _, record in records] == [_as_json(row) for row in ROWS]


def test_two_deselected_columns() -> None:
    records = _check_same_as_sdk({}, deselected=["title", "linkedInCompanyName"])
    assert all("title" not in r and "linkedInCompanyName" not in r for _, r in records)
    assert len(records) == len(ROWS)


def test_md5_of_a_nullable_column() -> None:
    config = {"stream_maps": {RECORDS: {"email": "md5(email) if email else None"}}}
    records = _check_same_as_sdk(config)
    assert (
        records[0][1]["email"] == hashlib.md5(b"zoe@example.com", usedforsecurity=False).hexdigest()
    )
    assert records[1][1]["email"] is None


EXPRESSIONS = {
    "emailSha": "sha256(email) if email else None",
    "title": "str(title)",
    "jobIdText": "str(jobId)",
    "rowPlusOne": "rowNumber + 1",
    "jobTimesTwo": "int(jobId) * 2",
    "half": "float(rowNumber) / 2",
    "notAtCompany": "bool(notAtCompany)",
    "fullName": "(firstName or '') + ' ' + (lastName or '')",
    "firstFile": "fileIndex == 0",
    "early": "0 < rowNumber <= 2",
    "earlyNotIn": "1 <= rowNumber not in [2, 3] != False",
    "tenant": "config['tenant']",
    "nested": "config['nested']['level']",
    "recordId": "record['crmRecordId']",
    "surname": "_['lastName']",
    "crmCompanyName": "self + '!' if self else self",
    "streamName": "__stream_name__",
    "originalName": "__original_stream_name__",
    "extraJson": "json.dumps(extraColumns)",
    "squared": "rowNumber ** 2",
    "negative": "-rowNumber",
    "inverted": "~fileIndex",
    "noEmail": "not email",
    "isLead": "'Lead' in (recordType or '')",
    "unflagged": "flaggedAt is None",
    "flagged": "flaggedAt is not None",
    "modulo": "rowNumber % 3",
    "floorHalf": "rowNumber // 2",
    "bits": "(rowNumber & 6) | (fileIndex ^ 1)",
    "shifted": "rowNumber << 3 >> 1",
    "prefix": "(crmRecordId or '')[:3]",
    "every2nd": "(email or '')[::2]",
    "pair": "[rowNumber, fileIndex]",
    "tuple": "(rowNumber,)",
    "mapping": "{'n': rowNumber, 'e': email}",
    "territory": (
        "extraColumns['territory'] if extraColumns and 'territory' in extraColumns else None"
    ),
    "constant": "'x'",
    "constants": "[None, True, 1.5, -2, 'é']",
    "either": "email or lastName or 'nobody'",
    "both": "email and lastName",
    "whole": "record",
    "config": "config",
    "stringTimes": "(title or '') * 2",
    "keywords": "json.dumps(extraColumns, sort_keys=True, ensure_ascii=False)",
}


def test_property_expressions() -> None:
    config = {
        "stream_maps": {RECORDS: EXPRESSIONS},
        "stream_map_config": {"tenant": "acme", "nested": {"level": 2}},
    }
    records = _check_same_as_sdk(config)
    first = records[0][1]
    assert first["streamName"] == RECORDS
    assert first["fullName"] == "Zoë O'Neil"
    assert first["crmCompanyName"] == 'The "Best" Company!'
    assert records[1][1]["crmCompanyName"] is None


def test_datetime_calls() -> None:
    config = {
        "stream_maps": {
            RECORDS: {
                "flaggedOn": "datetime.datetime.fromisoformat(flaggedAt) if flaggedAt else None",
                "flaggedYear": (
                    "datetime.datetime.fromisoformat(flaggedAt).year if flaggedAt else None"
                ),
                "epoch": "str(datetime.datetime(1970, 1, 1))",
            }
        }
    }
    # `.year` of a value is outside the compiled subset: that map runs the SDK's transform.
    _check_same_as_sdk(
        {"stream_maps": {RECORDS: {"flaggedOn": config["stream_maps"][RECORDS]["flaggedOn"]}}}
    )
    _check_same_as_sdk(config, compiled=[False])


def test_filter() -> None:
    rule = "rowNumber % 2 == 1 and email is not None"
    config = {"stream_maps": {RECORDS: {"__filter__": rule}}}
    records = _check_same_as_sdk(config)
    assert [r["rowNumber"] for _, r in records] == [1, 3, 5]


def test_alias_and_removed_properties() -> None:
    config = {
        "stream_maps": {
            RECORDS: {"__alias__": "people", "title": None, "linkedInCompanyName": "__NULL__"}
        }
    }
    records = _check_same_as_sdk(config)
    assert _streams(records) == ["people"]
    assert all("title" not in r and "linkedInCompanyName" not in r for _, r in records)


def test_alias_expression() -> None:
    config = {"stream_maps": {RECORDS: {"__alias__": "__stream_name__ + '_v2'"}}}
    assert _streams(_check_same_as_sdk(config)) == [f"{RECORDS}_v2"]


def test_key_properties_and_else_null() -> None:
    config = {
        "stream_maps": {
            RECORDS: {
                "__key_properties__": ["crmRecordId"],
                "__else__": None,
                "crmRecordId": "crmRecordId",
                "email": "md5(email) if email else None",
            }
        }
    }
    records = _check_same_as_sdk(config)
    assert all(list(r) == ["crmRecordId", "email"] for _, r in records)


def test_else_null_keeps_the_key_properties() -> None:
    config = {
        "stream_maps": {
            RECORDS: {
                "__else__": "__NULL__",
                "hashed": "md5(email or '')",
                "rowNumber": "rowNumber",
                "fileIndex": "fileIndex",
                "jobId": "jobId",
                "crmInstanceId": "crmInstanceId",
            }
        }
    }
    records = _check_same_as_sdk(config)
    assert list(records[0][1]) == [*KEYS, "hashed"]


def test_else_null_without_properties_emits_nothing() -> None:
    config = {"stream_maps": {RECORDS: {"__else__": None, "__key_properties__": []}}}
    assert _check_same_as_sdk(config) == []


def test_source_clones() -> None:
    config = {
        "stream_maps": {
            RECORDS: {"email": "md5(email) if email else None"},
            "records_early": {"__source__": RECORDS, "__filter__": "rowNumber <= 2"},
            "records_slim": {
                "__source__": RECORDS,
                "__else__": None,
                "__key_properties__": ["id"],
                "id": "crmRecordId",
                "alias": "__stream_name__",
                "source": "__original_stream_name__",
            },
        }
    }
    records = _check_same_as_sdk(config)
    assert _streams(records) == sorted([RECORDS, "records_early", "records_slim"])


def test_wildcard_stream_names() -> None:
    config = {
        "stream_maps": {
            "crm_*": {"email": None},
            "crm_copy": {"__source__": "crm_data_*", "__filter__": "rowNumber == 3"},
        }
    }
    records = _check_same_as_sdk(config)
    assert [s for s, _ in records].count("crm_copy") == 1
    assert all("email" not in r for s, r in records if s == RECORDS)


def test_stream_removed_but_cloned() -> None:
    for stream_maps in (
        {"__else__": None, "clone": {"__source__": RECORDS}},
        {RECORDS: None, "clone": {"__source__": RECORDS, "email": "md5(email or '')"}},
        {RECORDS: "__NULL__", "clone": {"__source__": RECORDS, "__alias__": "'a property'"}},
    ):
        assert _streams(_check_same_as_sdk({"stream_maps": stream_maps})) == ["clone"]


def test_flattening_depth_1() -> None:
    records = _check_same_as_sdk(FLAT_1)
    assert json.loads(records[2][1]["extraColumns"])["Région"] == "Île-de-France"
    assert records[2][1]["extraColumns"].isascii()  # the SDK's serializer escapes non-ASCII


def test_flattening_encodes_any_strings_as_the_sdk() -> None:
    rnd = random.Random(3)
    pool = [*map(chr, range(0x80)), "é", "ÿ", "\u2028", "\ud7ff", "\ue000", "\uffff", "😀"]
    pool += ["\U0010ffff", "\ud800", "\udfff", "/", "\\", '"']

    def text() -> str:
        return "".join(rnd.choice(pool) for _ in range(rnd.randrange(6)))

    rows = [
        _row(
            rowNumber=n,
            extraColumns={text(): rnd.choice([None, text()]) for _ in range(rnd.randrange(4))},
            invalidValues={"notAtCompany": text()} if n % 2 else None,
        )
        for n in range(300)
    ]
    records = _check_same_as_sdk(FLAT_1, rows=rows)
    assert len(records) == len(rows)


def test_flattened_objects_of_strings_take_the_fast_path() -> None:
    container_json = transforms._container_json()
    assert container_json is not serialize_json  # the SDK's serializer passed the probe
    others: list[t.Any] = [{}, {"a": 1}, {"a": [1, None]}, {1: "a"}, {"a": True}, [1, "é"]]
    others += [{"a": 1.5}, collections.OrderedDict(a="b"), {"a": {"b": "c"}}, "text", None]
    for value in others:
        assert container_json(value) == serialize_json(value)


def test_flattening_depth_2_custom_separator_short_keys() -> None:
    config = {
        "flattening_enabled": True,
        "flattening_max_depth": 2,
        "flattening_separator": ".",
        "flattening_max_key_length": 10,
    }
    records = _check_same_as_sdk(config)
    assert "cii" in records[0][1]  # crmInstanceId, shortened by the SDK's rule


def test_combination_map_flattening_deselection() -> None:
    config = {
        **FLAT_1,
        "flattening_separator": "_",
        "stream_maps": {
            RECORDS: {
                "email": "md5(email) if email else None",
                "ec": "extraColumns",
                "pair": "[jobId, rowNumber]",
                "lead": "recordType == 'Lead'",
                "title": None,
            },
            "copy": {"__source__": RECORDS, "__filter__": "fileIndex > 0", "x": "{'a': [1]}"},
        },
    }
    records = _check_same_as_sdk(config, deselected=["linkedInCompanyName", "invalidValues"])
    assert records[0][1]["pair"] == "[101,1]"


def test_flattening_an_object_with_properties_runs_the_sdk_path() -> None:
    # `"whole": "record"` gets the record's schema; flattening spreads it over several keys.
    config = {**FLAT_1, "stream_maps": {RECORDS: {"whole": "record", "n": "rowNumber"}}}
    records = _check_same_as_sdk(config, compiled=[False])
    assert records[0][1]["whole__rowNumber"] == 1


def test_record_name_with_deselection() -> None:
    config = {
        "stream_maps": {
            RECORDS: {
                "whole": "record",
                "text": "str(record)",
                "keys": "list(record.keys())",
                "has": "'title' in record",
                "title2": "record['title'] if 'title' in _ else 'gone'",
            }
        }
    }
    _check_same_as_sdk(config, deselected=["title", "email"], compiled=[False])
    del config["stream_maps"][RECORDS]["keys"]  # a method of a value: outside the subset
    _check_same_as_sdk(config, deselected=["title", "email"])


def test_key_order_follows_the_sdk() -> None:
    # A deselected property mapped anew comes last; mapped existing ones keep their place.
    config = {
        "stream_maps": {
            RECORDS: {
                "title": "str(jobId)",
                "email": "md5(email) if email else None",
                "added": "rowNumber",
                "lastName": None,
            },
            "unordered": {
                "__source__": RECORDS,
                "__key_properties__": ["rowNumber", "crmInstanceId"],
                "__else__": None,
                "email": "email",
                "rowNumber": "rowNumber",
                "crmInstanceId": "crmInstanceId",
            },
        }
    }
    records = _check_same_as_sdk(config, deselected=["title", "firstName"])
    assert list(records[0][1])[-2:] == ["title", "added"]
    assert list(records[1][1]) == ["rowNumber", "crmInstanceId", "email"]


def test_else_null_with_every_property_keeps_the_map_order() -> None:
    names = list(SCHEMA["properties"])
    reordered = {"__else__": None, "__key_properties__": [], **{n: n for n in reversed(names)}}
    new_first = {"__else__": None, "__key_properties__": [], "aNew": "1", **{n: n for n in names}}
    config = {"stream_maps": {RECORDS: reordered, "copy": {"__source__": RECORDS, **new_first}}}
    records = _check_same_as_sdk(config)
    assert list(records[0][1]) == names[::-1]
    assert list(records[1][1]) == ["aNew", *names]


def test_nested_deselection_runs_the_sdk_path() -> None:
    crumb = ("properties", "extraColumns", "properties", "territory")
    config = {"stream_maps": {RECORDS: {"email": "md5(email) if email else None"}}}
    records = _check_same_as_sdk(config, deselected=[crumb], compiled=[False])
    assert "territory" not in records[2][1]["extraColumns"]
    assert "Région" in records[2][1]["extraColumns"]


def test_names_shadowing_functions_and_map_names() -> None:
    column_types: dict[str, ColumnType] = {
        **DEFAULT_COLUMN_TYPES,
        "str": "string",
        "config": "string",
        "md5": "integer",
        "self": "string",
    }
    schema = records_schema(column_types)
    rows = [
        _row(schema, rowNumber=1, email="a@b.c", str="text", config="column", md5=5, self="me"),
        _row(schema, rowNumber=2),
    ]
    config = {
        "stream_map_config": {"k": "v"},
        "stream_maps": {
            RECORDS: {
                "a": "str",  # the property (names before functions)
                "b": "str(jobId)",  # the function (calls look up functions only)
                "c": "config",  # the map config (map names before properties)
                "d": "md5",
                "e": "md5(email or '')",
                "newProp": "self",  # `self` is not defined here: the property named "self"
                "self": "self",
            }
        },
    }
    records = _check_same_as_sdk(config, rows=rows, schema=schema)
    assert records[0][1]["a"] == "text"
    assert records[0][1]["b"] == "101"
    assert records[0][1]["c"] == {"k": "v"}
    assert records[0][1]["newProp"] == "me"


def test_outside_the_subset_runs_the_sdk_transform() -> None:
    config = {
        "stream_maps": {
            RECORDS: {"emailLower": "email.lower() if email else None"},
            "copy": {"__source__": RECORDS, "n": "rowNumber"},
            "comprehension": {"__source__": RECORDS, "letters": "[c for c in (title or '')]"},
            "fstring": {"__source__": RECORDS, "label": "f'{rowNumber}: {email}'"},
            "method": {"__source__": RECORDS, "keys": "list(record.keys())"},
        }
    }
    _check_same_as_sdk(config, compiled=[False, True, False, False, False])


def test_config_that_does_not_match_the_maps_runs_the_sdk_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = {
        "stream_maps": {
            RECORDS: {"email": "md5(email) if email else None"},
            "copy": {"__source__": RECORDS, "n": "rowNumber"},
        }
    }
    tap = _make_tap(ROWS, config)
    expected = [(m["stream"], m["record"]) for m in _sdk_messages(tap) if m["type"] == "RECORD"]
    other_keys = {
        RECORDS: {"hashed": "md5(email) if email else None"},
        "copy": {"__source__": RECORDS, "m": "rowNumber"},
    }
    for wrong in ({}, {"copy": {"__source__": RECORDS}}, {RECORDS: None, "copy": None}, other_keys):
        outputs = mapped_outputs(tap.streams[RECORDS], wrong)
        assert [output.compiled for output in outputs] == [False, False]
        assert _emitted(outputs, ROWS) == expected
    assert "do not match the stream_maps config" in caplog.text


# --- Errors -----------------------------------------------------------------------------------


def _build_error(config: dict[str, t.Any], deselected: t.Iterable[str] = ()) -> str:
    crumbs = [("properties", name) for name in deselected]
    tap = _make_tap(ROWS, config, deselected=crumbs)
    with pytest.raises(MapExpressionError) as raised:
        mapped_outputs(tap.streams[RECORDS], tap.config.get("stream_maps"))
    # The SDK itself fails on the first row that evaluates the expression.
    with pytest.raises(MapExpressionError):
        _sdk_messages(_make_tap(ROWS, config, deselected=crumbs))
    return str(raised.value)


def test_unknown_name_fails_at_build_time() -> None:
    message = _build_error({"stream_maps": {RECORDS: {"email": "md5(emial)"}}})
    assert f"stream '{RECORDS}'" in message
    assert "property 'email'" in message
    assert "'md5(emial)'" in message
    assert "uses the name 'emial'" in message
    assert "Available properties: crmInstanceId, jobId," in message
    assert "email," in message.split("Available properties:")[1]


def test_deselected_property_fails_at_build_time() -> None:
    config = {"stream_maps": {RECORDS: {"hashed": "md5(email) if email else None"}}}
    message = _build_error(config, deselected=["email"])
    assert "property 'hashed'" in message
    assert "uses the property 'email', which the catalog deselects" in message
    assert "email," not in message.split("Available properties:")[1]


def test_unknown_function_fails_at_build_time() -> None:
    message = _build_error({"stream_maps": {RECORDS: {"email": "md6(email)"}}})
    assert "calls 'md6', which is not a stream map function" in message
    assert "md5" in message


def test_unknown_name_in_filter_fails_at_build_time() -> None:
    copy_map = {"__source__": RECORDS, "__filter__": "rowNumbr > 1"}
    message = _build_error({"stream_maps": {"copy": copy_map}})
    assert "'__filter__'" in message
    assert "output stream 'copy'" in message
    assert "'rowNumbr'" in message


def test_self_of_a_new_property_fails_at_build_time() -> None:
    message = _build_error({"stream_maps": {RECORDS: {"newProp": "self"}}})
    assert "uses the name 'self'" in message
    assert "exists only when that property is in the record" in message


def test_unknown_name_outside_the_subset_fails_at_build_time() -> None:
    message = _build_error({"stream_maps": {RECORDS: {"x": "emial.lower()"}}})
    assert "'emial'" in message


def test_names_bound_by_the_expression_are_not_errors() -> None:
    config = {"stream_maps": {RECORDS: {"letters": "[c for c in (title or '')]"}}}
    _check_same_as_sdk(config, compiled=[False])


@pytest.mark.parametrize(
    ("expressions", "bad_row"),
    [
        ({"email": "md5(email)"}, _row(rowNumber=9)),  # AttributeError: None has no encode
        (
            {"n": "int(title) if rowNumber == 9 else 0"},
            _row(rowNumber=9, title="abc"),
        ),  # ValueError
        (
            {"long": "title * 100000 if rowNumber == 9 else 0"},
            _row(rowNumber=9, title="ab"),
        ),  # simpleeval's limit
        ({"power": "rowNumber ** (rowNumber * 500000)"}, _row(rowNumber=9)),  # simpleeval's limit
        ({"missing": "config['missing'] if rowNumber == 9 else 0"}, _row(rowNumber=9)),  # KeyError
        ({"gone": "record['title'] if rowNumber == 9 else 0"}, _row(rowNumber=9)),  # deselected
        (
            {"__filter__": "rowNumber + ('x' if rowNumber == 9 else 0)"},
            _row(rowNumber=9),
        ),  # TypeError in the filter
        ({"a": "rowNumber + 1", "b": "1 / (rowNumber - 9)", "c": "md5(email)"}, _row(rowNumber=9)),
    ],
)
def test_runtime_errors_are_the_sdks(
    expressions: dict[str, str], bad_row: dict[str, t.Any]
) -> None:
    config = {"stream_maps": {RECORDS: expressions}}
    good = ROWS[0]
    deselected = [("properties", "title")] if "gone" in expressions else []
    tap = _make_tap([good, bad_row], config, deselected=deselected)
    with pytest.raises(Exception) as sdk_raised:  # the SDK's own type is the point
        _sdk_messages(tap)
    for compile_maps in (True, False):
        (output,) = mapped_outputs(
            tap.streams[RECORDS], tap.config.get("stream_maps"), compile_maps=compile_maps
        )
        assert output.compiled is compile_maps
        assert output.transform(good) is not None
        with pytest.raises(type(sdk_raised.value)) as raised:
            output.transform(bad_row)
        assert str(raised.value) == str(sdk_raised.value)
        assert type(raised.value.__cause__) is type(sdk_raised.value.__cause__)
