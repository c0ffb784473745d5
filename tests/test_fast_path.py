"""The fast record path writes exactly what the SDK's record path and a plain reference would."""

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
from tap_linkedin_crm.writer import BufferedSingerWriter, RecordLineEncoder

from tap_linkedin_crm import streams
from tap_linkedin_crm import writer as writer_module
from tap_linkedin_crm.columns import DEFAULT_COLUMN_TYPES, ColumnType
from tap_linkedin_crm.csv_decoding import reference_rows
from tap_linkedin_crm.sandbox import DYNAMICS_INSTANCE, SFDC_INSTANCE, InstanceSpec, Sandbox
from tap_linkedin_crm.sandbox.scenario import Scenario
from tap_linkedin_crm.streams import RecordsStream
from tap_linkedin_crm.tap import TapLinkedInCRM

RECORDS = "crm_data_validation_records"
# Awkward on purpose: BOM, NUL bytes, 70k-character fields, quoted CR/LF and non-ASCII (sandbox
# data), header drift between files, gzip, and declared types that fail (invalidValues).
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


def _sync(
    config: dict[str, t.Any], *, binary: bool, catalog: dict[str, t.Any] | None = None
) -> tuple[TapLinkedInCRM, list[dict[str, t.Any]]]:
    """Sync in-process; stdout is a real text layer over bytes, or (binary=False) a StringIO."""
    tap = TapLinkedInCRM(config=config, catalog=catalog, validate_config=True)
    raw = io.BytesIO()
    out: t.IO[str] = io.TextIOWrapper(raw, encoding="utf-8") if binary else io.StringIO()
    with contextlib.redirect_stdout(out):
        tap.sync_all()
    out.flush()
    text = raw.getvalue().decode() if binary else t.cast("io.StringIO", out).getvalue()
    return tap, [json.loads(line) for line in text.splitlines()]


def _records(messages: list[dict[str, t.Any]], stream: str = RECORDS) -> list[dict[str, t.Any]]:
    return [m["record"] for m in messages if m["type"] == "RECORD" and m["stream"] == stream]


def _sdk_messages(tap: TapLinkedInCRM, rows: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    """What the SDK's own `_write_record_message` writes for the same rows."""
    stream = tap.streams[RECORDS]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for row in rows:
            stream._write_record_message(copy.deepcopy(row))
    return [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.fixture
def tee(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, t.Any]]:
    """Every row handed to the fast encoder, as it was handed."""
    seen: list[dict[str, t.Any]] = []
    add = RecordLineEncoder.add

    def spy(self: RecordLineEncoder, record: dict[str, t.Any]) -> bool:
        seen.append(copy.deepcopy(record))
        return add(self, record)

    monkeypatch.setattr(RecordLineEncoder, "add", spy)
    return seen


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


@pytest.mark.parametrize("binary", [True, False], ids=["stdout-buffer", "stringio"])
def test_given_default_maps_when_synced_then_fast_path_equals_sdk_path_and_reference(
    sandbox: Sandbox,
    tee: list[dict[str, t.Any]],
    monkeypatch: pytest.MonkeyPatch,
    binary: bool,
) -> None:
    monkeypatch.setattr(streams, "STATE_EVERY_ROWS", 37)  # many mid-file STATE messages
    before = set(sandbox.jobs)
    tap, messages = _sync(sandbox.tap_config(column_types=COLUMN_TYPES), binary=binary)
    fast = _records(messages)
    assert len(fast) == 2550
    assert len(tee) == 2550  # every row took the fast path
    # The SDK's path over the very same rows gives the same messages (time_extracted aside).
    sdk = _sdk_messages(tap, tee)
    fast_messages = [m for m in messages if m["type"] == "RECORD" and m["stream"] == RECORDS]
    for ours, theirs in zip(fast_messages, sdk, strict=True):
        assert ours.keys() == theirs.keys() == {"type", "stream", "record", "time_extracted"}
        assert ours["record"] == theirs["record"]
    # And a reference decoder that shares no code with the fast one.
    reference = _by_key(_reference(sandbox, set(sandbox.jobs) - before))
    assert _by_key(fast) == reference
    assert any("invalidValues" in r for r in fast)
    assert any("extraColumns" in r for r in fast)
    # (title is declared an integer here, so its NUL and very long values are in invalidValues)
    values = [
        v
        for r in fast
        for v in [*r.values(), *(r.get("invalidValues") or {}).values()]
        if isinstance(v, str)
    ]
    assert any("\x00" in v for v in values)
    assert any("\n" in v for v in values)
    assert any(len(v) >= 70_000 for v in values)
    assert any(not v.isascii() for v in values)
    # A STATE never gets ahead of the records it covers.
    _assert_state_follows_records(messages)


def _assert_state_follows_records(messages: list[dict[str, t.Any]]) -> None:
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


def test_given_stream_map_when_synced_then_sdk_path_applies_it(
    sandbox: Sandbox, tee: list[dict[str, t.Any]]
) -> None:
    config = sandbox.tap_config(
        stream_maps={RECORDS: {"email": "__NULL__", "emailUpper": "str(email).upper()"}}
    )
    _, messages = _sync(config, binary=True)
    records = _records(messages)
    assert not tee  # the fast path stood aside
    assert len(records) == 2550
    assert all("email" not in r and "emailUpper" in r for r in records)


def test_given_flattening_when_synced_then_sdk_path_flattens(
    sandbox: Sandbox, tee: list[dict[str, t.Any]]
) -> None:
    config = sandbox.tap_config(flattening_enabled=True, flattening_max_depth=1)
    _, messages = _sync(config, binary=True)
    records = _records(messages)
    assert not tee
    # Flattening turns the extraColumns object into a JSON string (depth 1).
    assert any(isinstance(r.get("extraColumns"), str) for r in records)


def test_given_deselected_field_when_synced_then_sdk_path_drops_it(
    sandbox: Sandbox, tee: list[dict[str, t.Any]]
) -> None:
    config = sandbox.tap_config()
    catalog = TapLinkedInCRM(config=config).catalog_dict
    for stream in catalog["streams"]:
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == ["properties", "email"]:
                entry["metadata"]["selected"] = False
    _, messages = _sync(config, binary=True, catalog=catalog)
    records = _records(messages)
    assert not tee
    assert len(records) == 2550
    assert all("email" not in r and "firstName" in r for r in records)


def test_given_int_beyond_64_bits_then_encoder_declines_and_stream_uses_sdk() -> None:
    writer = BufferedSingerWriter()
    encoder = RecordLineEncoder(writer, RECORDS, None)
    assert not encoder.add({"n": 2**70})
    assert encoder.add({"n": 2**62, "s": "Zoë\x00\n"})
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        encoder.flush()
        writer.flush()
    (message,) = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert message["record"] == {"n": 2**62, "s": "Zoë\x00\n"}
    assert message["type"] == "RECORD"
    assert message["stream"] == RECORDS


def test_given_records_stream_then_fast_path_chosen_only_for_identity_maps(
    sandbox: Sandbox,
) -> None:
    tap = TapLinkedInCRM(config=sandbox.tap_config())
    stream = tap.streams[RECORDS]
    assert isinstance(stream, RecordsStream)
    assert stream._record_line_encoder() is not None
    mapped = TapLinkedInCRM(
        config=sandbox.tap_config(stream_maps={RECORDS: {"__alias__": "renamed"}})
    )
    assert t.cast("RecordsStream", mapped.streams[RECORDS])._record_line_encoder() is None


def test_given_lines_then_block_then_message_when_written_then_order_kept() -> None:
    writer = BufferedSingerWriter()
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8")
    with contextlib.redirect_stdout(out):
        writer.write_lines([b'{"n":1}\n'])
        writer.write_block(bytearray(b'{"n":2}\n{"n":3}\n'))
        writer.write_lines([b'{"n":4}\n'])
        writer.flush()
    out.flush()
    assert [orjson.loads(line)["n"] for line in raw.getvalue().splitlines()] == [1, 2, 3, 4]


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
    def __init__(self, raw: TrickleRaw) -> None:
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
