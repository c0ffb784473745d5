"""The Singer output writes exactly what the SDK's own record path would, in every configuration.

The tap's run (compiled stream maps, orjson blocks) is compared with the SDK's per-record path
(`Stream.sync`: pop deselected properties, conform, simpleeval maps, flattening, simplejson) over
the very rows the engine produced from the sandbox's awkward files (BOM, NUL bytes, 70k-character
fields, quoted CR/LF, non-ASCII, header drift, gzip, values that fail their declared type), and
with a decoder that shares no code with the tap's.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import io
import json
import os
import typing as t
import urllib.request
from pathlib import Path

import orjson
import pytest
from reference_csv import reference_rows

from tap_linkedin_crm.columns import DEFAULT_COLUMN_TYPES, ColumnType
from tap_linkedin_crm.errors import ConsumerGoneError
from tap_linkedin_crm.output import singer as singer_output
from tap_linkedin_crm.output import writer as writer_module
from tap_linkedin_crm.output.singer import SingerRecordSink
from tap_linkedin_crm.output.writer import BufferedSingerWriter, RecordLineEncoder
from tap_linkedin_crm.sandbox import DYNAMICS_INSTANCE, SFDC_INSTANCE, InstanceSpec, Sandbox
from tap_linkedin_crm.sandbox.scenario import Scenario
from tap_linkedin_crm.tap import TapLinkedInCRM

RECORDS = "crm_data_validation_records"
EXPORTS = "crm_data_validation_exports"
ROWS = 2550
# Awkward on purpose: declared types that fail on the sandbox's text (invalidValues).
COLUMN_TYPES: dict[str, ColumnType] = {
    "title": "integer",
    "recordType": "boolean",
    "crmRecordId": "number",
}


@pytest.fixture(scope="module")
def sandbox() -> t.Iterator[Sandbox]:
    scenario = Scenario(
        instances={
            DYNAMICS_INSTANCE: InstanceSpec(rows=2400, files=3, header_drift=True),
            SFDC_INSTANCE: InstanceSpec(rows=150, files=2, gzip=True),
        },
        bom=True,
        nul_bytes=True,
        long_field_chars=70_000,
        job_processing_polls=1,
    )
    with Sandbox(scenario) as sb:
        yield sb


def _capture(run: t.Callable[[], None]) -> list[dict[str, t.Any]]:
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8")
    with contextlib.redirect_stdout(out):
        run()
    out.flush()
    return [json.loads(line) for line in raw.getvalue().decode().splitlines()]


def _tap(config: dict[str, t.Any], catalog: dict[str, t.Any] | None) -> TapLinkedInCRM:
    return TapLinkedInCRM(config=config, catalog=catalog, validate_config=True)


def _run_both(
    sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    *,
    catalog: t.Callable[[dict[str, t.Any]], None] | None = None,
    **overrides: t.Any,
) -> tuple[list[dict[str, t.Any]], list[dict[str, t.Any]]]:
    """RECORD messages of the tap's run, and of the SDK's path over the rows the run produced."""
    config = sandbox.tap_config(column_types=COLUMN_TYPES, **overrides)
    chosen = None
    if catalog is not None:
        chosen = TapLinkedInCRM(config=config).catalog_dict
        catalog(chosen)
    rows: dict[str, list[dict[str, t.Any]]] = {RECORDS: [], EXPORTS: []}
    write = SingerRecordSink.write
    tap = _tap(config, chosen)

    def spy(self: SingerRecordSink, record: dict[str, t.Any]) -> None:
        rows[self.stream_name].append(copy.deepcopy(record))
        write(self, record)

    monkeypatch.setattr(SingerRecordSink, "write", spy)
    ours = [m for m in _capture(tap.sync_all) if m["type"] == "RECORD"]
    monkeypatch.setattr(SingerRecordSink, "write", write)
    # The SDK's own path: the same streams' `sync()`, fed the rows the tap's run produced.
    sdk_tap = _tap(config, chosen)

    def same_rows(stream: t.Any, limit: int | None) -> t.Iterator[dict[str, t.Any]]:
        del limit
        yield from copy.deepcopy(rows[stream.name])

    monkeypatch.setattr(sdk_tap, "records_for", same_rows)
    theirs: list[dict[str, t.Any]] = []
    for name in (RECORDS, EXPORTS):
        stream = sdk_tap.streams[name]
        if stream.selected:
            theirs += [m for m in _capture(stream.sync) if m["type"] == "RECORD"]
    assert len(rows[RECORDS]) == ROWS
    return ours, theirs


def _key(message: dict[str, t.Any]) -> tuple[str, str]:
    return message["stream"], json.dumps(message["record"], sort_keys=True)


def _assert_same(ours: list[dict[str, t.Any]], theirs: list[dict[str, t.Any]]) -> None:
    assert theirs, "the SDK path wrote nothing"
    for message in ours:
        assert set(message) == {"type", "stream", "record", "time_extracted"}
    # Per stream alias, in the same order; streams interleave differently (one sync per stream).
    for alias in {m["stream"] for m in ours + theirs}:
        assert [_key(m) for m in ours if m["stream"] == alias] == [
            _key(m) for m in theirs if m["stream"] == alias
        ], alias


CONFIGURATIONS: dict[str, dict[str, t.Any]] = {
    "identity": {},
    "md5-expression": {
        "stream_maps": {RECORDS: {"email": "md5(email) if email else None"}},
    },
    "flattening-depth-1": {"flattening_enabled": True, "flattening_max_depth": 1},
    "flattening-separator": {
        "flattening_enabled": True,
        "flattening_max_depth": 2,
        "flattening_separator": ".",
    },
    "filter-alias-keys": {
        "stream_maps": {
            RECORDS: {
                "__filter__": "notAtCompany == True",
                "__alias__": "flagged",
                "__key_properties__": ["crmRecordId"],
            },
        },
    },
    "else-null": {
        "stream_maps": {
            RECORDS: {
                "__else__": "__NULL__",
                "__key_properties__": ["crmRecordId"],
                "crmRecordId": "crmRecordId",
                "emailHash": "sha256(email or '')",
            },
        },
    },
    "source-clone-and-removal": {
        "stream_maps": {
            "emails": {
                "__source__": RECORDS,
                "__else__": None,
                "__key_properties__": ["crmRecordId"],
                "crmRecordId": "crmRecordId",
                "email": "email",
            },
            EXPORTS: {"downloadUrls": None, "fileCount": "fileCount * 2"},
        },
    },
    "fallback-attribute": {"stream_maps": {RECORDS: {"lastName": "str(lastName).upper()"}}},
}


@pytest.mark.parametrize("name", list(CONFIGURATIONS))
def test_given_configuration_when_synced_then_records_equal_the_sdk_path(
    name: str, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, theirs = _run_both(sandbox, monkeypatch, **CONFIGURATIONS[name])
    _assert_same(ours, theirs)


def test_given_two_deselected_columns_when_synced_then_records_equal_the_sdk_path(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    def deselect(catalog: dict[str, t.Any]) -> None:
        for stream in catalog["streams"]:
            for entry in stream["metadata"]:
                if entry["breadcrumb"] in (["properties", "email"], ["properties", "title"]):
                    entry["metadata"]["selected"] = False

    ours, theirs = _run_both(sandbox, monkeypatch, catalog=deselect)
    _assert_same(ours, theirs)
    records = [m["record"] for m in ours if m["stream"] == RECORDS]
    assert all("email" not in r and "title" not in r and "firstName" in r for r in records)


def _reference(sandbox: Sandbox, job_ids: set[int]) -> list[dict[str, t.Any]]:
    """The jobs' files decoded by `reference_rows`, with the provenance fields added."""
    column_types = {**DEFAULT_COLUMN_TYPES, **COLUMN_TYPES}
    rows: list[dict[str, t.Any]] = []
    for job in sorted(sandbox.jobs.values(), key=lambda j: j["jobId"]):
        if job["jobId"] not in job_ids:
            continue
        for file_index, url in enumerate(job["downloadUrls"]):
            with urllib.request.urlopen(url) as response:  # noqa: S310 - loopback sandbox
                data = response.read()
            for number, row in enumerate(
                reference_rows(data, column_types, complete=True), start=1
            ):
                row.update(
                    crmInstanceId=job["instance"],
                    jobId=job["jobId"],
                    exportStartAt=job["exportStartAt"],
                    exportEndAt=job["exportEndAt"],
                    fileIndex=file_index,
                    rowNumber=number,
                )
                rows.append(row)
    return rows


def _by_key(rows: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    return sorted(
        rows, key=lambda r: (r["crmInstanceId"], r["jobId"], r["fileIndex"], r["rowNumber"])
    )


def test_given_awkward_files_when_synced_then_records_equal_a_reference_decoder(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(singer_output, "STATE_EVERY_ROWS", 37)  # many mid-file STATE messages
    monkeypatch.setattr(singer_output.SingerOutput, "checkpoint_rows", 37)
    before = set(sandbox.jobs)
    tap = _tap(sandbox.tap_config(column_types=COLUMN_TYPES), None)
    messages = _capture(tap.sync_all)
    records = [m["record"] for m in messages if m["type"] == "RECORD" and m["stream"] == RECORDS]
    assert len(records) == ROWS
    assert _by_key(records) == _by_key(_reference(sandbox, set(sandbox.jobs) - before))
    assert any(r["invalidValues"] for r in records)
    assert any(r["extraColumns"] for r in records)
    values = [
        v
        for r in records
        for v in [*r.values(), *(r["invalidValues"] or {}).values()]
        if isinstance(v, str)
    ]
    assert any("\x00" in v for v in values)
    assert any("\n" in v for v in values)
    assert any(len(v) >= 70_000 for v in values)
    assert any(not v.isascii() for v in values)
    _assert_state_follows_records(messages)


def _assert_state_follows_records(messages: list[dict[str, t.Any]]) -> None:
    """No STATE claims a row position the records before it did not reach."""
    emitted: dict[tuple[str, int, int], int] = {}
    checked = 0
    for message in messages:
        if message["type"] == "RECORD" and message["stream"] == RECORDS:
            record = message["record"]
            key = (record["crmInstanceId"], record["jobId"], record["fileIndex"])
            emitted[key] = record["rowNumber"]
        elif message["type"] == "STATE":
            partitions = message["value"]["bookmarks"].get(RECORDS, {}).get("partitions", [])
            for partition in partitions:
                job = partition.get("inFlightJob")
                if not job or not job.get("rowsDone"):
                    continue
                urn = partition["context"]["crmInstanceId"]
                key = (urn, job["jobId"], job["fileIndex"])
                assert emitted.get(key, 0) >= job["rowsDone"], (key, job)
                checked += 1
    assert checked > 0, "no mid-file STATE was checked"


def test_given_int_beyond_64_bits_then_sink_falls_back_to_the_sdk_encoder() -> None:
    writer = BufferedSingerWriter()
    sink = SingerRecordSink(writer, [(RECORDS, lambda r: r)])
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8")
    with contextlib.redirect_stdout(out):
        sink.write({"n": 2**62, "s": "Zoë\x00\n"})
        sink.write({"n": 2**70})
        sink.write({"n": 1})
        sink.flush()
    out.flush()
    records = [orjson.loads(line)["record"] for line in raw.getvalue().splitlines()]
    assert records == [{"n": 2**62, "s": "Zoë\x00\n"}, {"n": 2**70}, {"n": 1}]


def test_given_encoder_block_then_sdk_message_when_written_then_order_kept() -> None:
    writer = BufferedSingerWriter()
    encoder = RecordLineEncoder(writer, RECORDS, None)
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8")
    with contextlib.redirect_stdout(out):
        encoder.add({"n": 1})
        encoder.add({"n": 2})
        encoder.flush()
        writer.write_block(bytearray(b'{"n":3}\n'))
    out.flush()
    lines = [orjson.loads(line) for line in raw.getvalue().splitlines()]
    assert [line.get("record", line).get("n") for line in lines] == [1, 2, 3]


@pytest.mark.skipif(not hasattr(fcntl, "F_GETPIPE_SZ"), reason="Linux pipes only")
def test_given_stdout_is_a_pipe_when_block_written_then_pipe_enlarged() -> None:
    read_fd, write_fd = os.pipe()
    try:
        out = io.TextIOWrapper(io.FileIO(write_fd, "w", closefd=False), encoding="utf-8")
        writer = BufferedSingerWriter()
        with contextlib.redirect_stdout(out):
            writer.write_block(b'{"n":1}\n')
        assert os.read(read_fd, 100) == b'{"n":1}\n'
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text(encoding="ascii"))
        expected = writer_module.PIPE_BYTES if limit >= writer_module.PIPE_BYTES else 64 * 1024
        assert fcntl.fcntl(write_fd, fcntl.F_GETPIPE_SZ) == expected
    finally:
        os.close(read_fd)
        os.close(write_fd)


class TrickleRaw(io.RawIOBase):
    """A raw stdout (as under `python -u`) that takes at most 7 bytes per write."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: t.Any) -> int:
        chunk = bytes(b[:7])
        self.data += chunk
        return len(chunk)


class TextOverRaw(io.StringIO):
    def __init__(self, raw: io.RawIOBase) -> None:
        super().__init__()
        self.buffer = raw


def test_given_raw_stdout_taking_partial_writes_when_block_written_then_nothing_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = TrickleRaw()
    monkeypatch.setattr("sys.stdout", TextOverRaw(raw))
    block = b"".join(b'{"type":"RECORD","n":%d}\n' % i for i in range(100))
    BufferedSingerWriter().write_block(block)
    assert bytes(raw.data) == block


class ClosedPipe(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, b: t.Any) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self) -> int:
        raise io.UnsupportedOperation


def test_given_closed_stdout_when_written_then_consumer_gone_error_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdout", TextOverRaw(ClosedPipe()))
    with pytest.raises(ConsumerGoneError, match="stdout was closed"):
        BufferedSingerWriter().write_block(b'{"n":1}\n')
