"""ExportRun end to end in process: the real sandbox, the tap's streams, a recording output.

The output records every sink write and every checkpoint in one sequence, so each checkpoint can be
held against the rows written before it: a checkpoint must never claim more than was delivered
(a target commits up to the last STATE and resumes from it), and never less than the position it
names, so a resume neither loses nor repeats rows.
"""

from __future__ import annotations

import copy
import time
import typing as t

import pytest

from tap_linkedin_crm.engine.stopper import Stopper
from tap_linkedin_crm.errors import SyncFailedError, SyncInterruptedError
from tap_linkedin_crm.sandbox import (
    DYNAMICS_INSTANCE,
    SFDC_INSTANCE,
    InstanceSpec,
    Sandbox,
    Scenario,
)
from tap_linkedin_crm.sync import run_sync
from tap_linkedin_crm.tap import TapLinkedInCRM

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from singer_sdk import Stream

RECORDS = "crm_data_validation_records"
EXPORTS = "crm_data_validation_exports"
URNS = (DYNAMICS_INSTANCE, SFDC_INSTANCE)
CHECKPOINT_ROWS = 7
Event = tuple[t.Any, ...]


class RecordingSink:
    def __init__(self, output: RecordingOutput, stream: str) -> None:
        self.output = output
        self.stream = stream

    def write(self, record: dict[str, t.Any]) -> None:
        self.output.events.append(("write", self.stream, dict(record)))
        if self.output.on_write is not None:
            self.output.on_write(self.stream, record)

    def flush(self) -> None:
        self.output.events.append(("flush", self.stream))


class RecordingOutput:
    """An `Output` keeping, in order, every write, flush, checkpoint and end of stream."""

    checkpoint_rows = CHECKPOINT_ROWS

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.started: list[str] = []
        self.sinks: dict[str, RecordingSink] = {}
        self.on_write: Callable[[str, dict[str, t.Any]], None] | None = None

    def start(self, streams: Sequence[Stream]) -> None:
        self.started = [stream.name for stream in streams]

    def sink(self, stream: Stream) -> RecordingSink:
        assert stream.name in self.started
        return self.sinks.setdefault(stream.name, RecordingSink(self, stream.name))

    def checkpoint(self, state: t.Mapping[str, t.Any]) -> None:
        self.events.append(("checkpoint", copy.deepcopy(dict(state))))

    def waiting(self, state: t.Mapping[str, t.Any]) -> None:
        self.events.append(("waiting", copy.deepcopy(dict(state))))

    def finish(self, stream: Stream, *, complete: bool) -> None:
        self.events.append(("finish", stream.name, complete))

    def records(self, stream: str, upto: int | None = None) -> list[dict[str, t.Any]]:
        events = self.events if upto is None else self.events[:upto]
        return [e[2] for e in events if e[0] == "write" and e[1] == stream]

    def checkpoints(self) -> list[tuple[int, dict[str, t.Any]]]:
        return [(i, e[1]) for i, e in enumerate(self.events) if e[0] == "checkpoint"]

    @property
    def final_state(self) -> dict[str, t.Any]:
        return self.checkpoints()[-1][1]

    def close(self) -> None:
        self.events.append(("close", None))


def scenario() -> Scenario:
    return Scenario(
        instances={
            DYNAMICS_INSTANCE: InstanceSpec(rows=40, files=3),
            SFDC_INSTANCE: InstanceSpec(rows=25, files=2, gzip=True),
        },
        job_processing_polls=1,
        long_field_chars=50,
    )


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(scenario()) as sb:
        yield sb


def sync(
    sb: Sandbox,
    state: dict[str, t.Any],
    output: RecordingOutput | None = None,
    stopper: Stopper | None = None,
    selected: tuple[str, ...] = (RECORDS, EXPORTS),
) -> RecordingOutput:
    tap = TapLinkedInCRM(config=sb.tap_config())
    output = output or RecordingOutput()
    streams = [tap.streams[name] for name in selected]
    run_sync(tap.settings, streams, output, state, stopper or Stopper())
    return output


def partition(state: t.Mapping[str, t.Any], urn: str, stream: str = RECORDS) -> dict[str, t.Any]:
    entries = state.get("bookmarks", {}).get(stream, {}).get("partitions", [])
    found = [p for p in entries if p["context"] == {"crmInstanceId": urn}]
    assert len(found) == 1, f"{urn}: {entries}"
    return found[0]


def positions(rows: list[dict[str, t.Any]], urn: str, job_id: int) -> list[tuple[int, int]]:
    return [
        (r["fileIndex"], r["rowNumber"])
        for r in rows
        if r["crmInstanceId"] == urn and r["jobId"] == job_id
    ]


def assert_checkpoints_match_delivered_rows(
    output: RecordingOutput,
    sb: Sandbox,
    given: t.Mapping[str, t.Any] | None = None,
    committed: Sequence[dict[str, t.Any]] = (),
) -> None:
    """At every checkpoint, what the state claims for each instance equals what was written.

    `given` is the state the run started from, `committed` the rows a target kept from the runs
    before (those up to their last checkpoint).
    """
    jobs = sb.jobs
    final_rows = [*committed, *output.records(RECORDS)]
    last_bookmark: dict[str, int] = {}
    for urn in URNS:
        if given and (start := partition(given, urn).get("nextExportStartAt")) is not None:
            last_bookmark[urn] = start
    for index, state in output.checkpoints():
        written = [*committed, *output.records(RECORDS, upto=index)]
        exported = {(r["crmInstanceId"], r["jobId"]) for r in output.records(EXPORTS, upto=index)}
        for urn in URNS:
            entry = partition(state, urn)
            bookmark = entry.get("nextExportStartAt")
            if urn in last_bookmark:
                assert bookmark is not None
                assert bookmark >= last_bookmark[urn]
            if bookmark is not None and bookmark != last_bookmark.get(urn):
                # The bookmark moved past a job: all its rows and its exports record came first.
                [done] = [
                    j
                    for j, info in jobs.items()
                    if info["instance"] == urn and info["nextExportStartAt"] == bookmark
                ]
                assert len(positions(written, urn, done)) == jobs[done]["rows"]
                assert (urn, done) in exported
                last_bookmark[urn] = bookmark
            flying = entry.get("inFlightJob")
            if flying is None:
                continue
            job_id = flying["jobId"]
            everything = positions(final_rows, urn, job_id)
            at = (flying.get("fileIndex", 0), flying.get("rowsDone", 0))
            expected = (
                [p for p in everything if p <= at]
                if at[1]
                else [p for p in everything if p[0] < at[0]]
            )
            assert positions(written, urn, job_id) == expected, (urn, at)


def emitted_job(output: RecordingOutput, urn: str) -> int:
    ids = {r["jobId"] for r in output.records(RECORDS) if r["crmInstanceId"] == urn}
    assert len(ids) == 1, ids
    return ids.pop()


def test_given_two_instances_when_run_then_every_row_once_and_bookmarks_at_next_start(
    sandbox: Sandbox,
) -> None:
    state: dict[str, t.Any] = {}
    output = sync(sandbox, state)
    assert output.started == [RECORDS, EXPORTS]
    assert ("finish", RECORDS, True) in output.events
    assert ("finish", EXPORTS, True) in output.events
    assert output.final_state == state
    assert len(output.checkpoints()) > 40 // CHECKPOINT_ROWS  # checkpoints inside files too
    assert_checkpoints_match_delivered_rows(output, sandbox)
    jobs = sandbox.jobs
    records = output.records(RECORDS)
    exports = {e["crmInstanceId"]: e for e in output.records(EXPORTS)}
    for urn in URNS:
        job_id = emitted_job(output, urn)
        rows = [r for r in records if r["crmInstanceId"] == urn]
        expected = sandbox.expected_rows(job_id)
        assert [r["crmRecordId"] for r in rows] == [e["crmRecordId"] for e in expected]
        entry = partition(state, urn)
        assert entry["nextExportStartAt"] == jobs[job_id]["nextExportStartAt"]
        assert entry["replication_key_value"] == jobs[job_id]["exportEndAt"]
        assert entry["replication_key"] == "exportEndAt"
        assert "inFlightJob" not in entry
        export = exports[urn]
        assert (export["jobId"], export["status"]) == (job_id, "COMPLETED")
        assert (export["rowCount"], export["fileCount"]) == (len(rows), jobs[job_id]["files"])
        assert export["nextExportStartAt"] == entry["nextExportStartAt"]
        assert all("x-li-ambry-ep" not in url for url in export["downloadUrls"])


def test_given_state_of_a_run_when_run_again_then_jobs_start_at_the_bookmarks(
    sandbox: Sandbox,
) -> None:
    state: dict[str, t.Any] = {}
    sync(sandbox, state)
    first = {urn: partition(state, urn)["nextExportStartAt"] for urn in URNS}
    known = set(sandbox.jobs)
    again = copy.deepcopy(state)
    output = sync(sandbox, again)
    new_jobs = {info["instance"]: info for j, info in sandbox.jobs.items() if j not in known}
    assert {urn: new_jobs[urn]["exportStartAt"] for urn in URNS} == first
    assert_checkpoints_match_delivered_rows(output, sandbox, given=state)
    for urn in URNS:
        assert emitted_job(output, urn) == new_jobs[urn]["jobId"]
        assert partition(again, urn)["nextExportStartAt"] == new_jobs[urn]["nextExportStartAt"]


def test_given_stop_inside_a_file_when_resumed_then_committed_rows_are_every_row_once(
    sandbox: Sandbox,
) -> None:
    stopper = Stopper()
    output = RecordingOutput()
    seen = [0]

    def stop_after_ten(stream: str, record: dict[str, t.Any]) -> None:
        if stream == RECORDS and record["crmInstanceId"] == DYNAMICS_INSTANCE:
            seen[0] += 1
            if seen[0] == 10:
                stopper.stop()

    output.on_write = stop_after_ten
    state: dict[str, t.Any] = {}
    with pytest.raises(SyncInterruptedError):
        sync(sandbox, state, output, stopper)
    assert_checkpoints_match_delivered_rows(output, sandbox)
    last, saved = output.checkpoints()[-1]
    assert partition(saved, DYNAMICS_INSTANCE)["inFlightJob"]["rowsDone"] == 10
    committed = output.records(RECORDS, upto=last)
    creates = len(sandbox.jobs)

    resumed = sync(sandbox, copy.deepcopy(saved))
    assert len(sandbox.jobs) == creates  # both jobs were resumed, none created
    assert_checkpoints_match_delivered_rows(resumed, sandbox, given=saved, committed=committed)
    delivered = committed + resumed.records(RECORDS)
    for urn in URNS:
        job_id = emitted_job(resumed, urn)
        got = [r["crmRecordId"] for r in delivered if r["crmInstanceId"] == urn]
        assert got == [e["crmRecordId"] for e in sandbox.expected_rows(job_id)]


def test_given_unreadable_bookmark_for_one_instance_when_run_then_only_it_fails(
    sandbox: Sandbox,
) -> None:
    bad = {"context": {"crmInstanceId": DYNAMICS_INSTANCE}, "nextExportStartAt": "yesterday"}
    state: dict[str, t.Any] = {"bookmarks": {RECORDS: {"partitions": [copy.deepcopy(bad)]}}}
    output = RecordingOutput()
    with pytest.raises(SyncFailedError) as info:
        sync(sandbox, state, output)
    assert "1 of 2 CRM instance(s) failed" in str(info.value)
    assert DYNAMICS_INSTANCE in str(info.value)
    assert "not a number" in str(info.value)
    assert partition(state, DYNAMICS_INSTANCE) == bad
    assert {info["instance"] for info in sandbox.jobs.values()} == {SFDC_INSTANCE}
    assert partition(state, SFDC_INSTANCE)["nextExportStartAt"] is not None
    assert ("finish", RECORDS, False) in output.events


def test_given_only_the_exports_stream_when_run_then_no_downloads_and_bookmark_moved_there(
    sandbox: Sandbox,
) -> None:
    state: dict[str, t.Any] = {}
    sync(sandbox, state)
    bookmarks = {urn: partition(state, urn)["nextExportStartAt"] for urn in URNS}
    known = set(sandbox.jobs)
    downloads = sum(1 for r in sandbox.requests if r.endpoint == "download")
    output = sync(sandbox, state, selected=(EXPORTS,))
    assert output.started == [EXPORTS]
    assert output.records(RECORDS) == []
    assert sum(1 for r in sandbox.requests if r.endpoint == "download") == downloads
    assert state["bookmarks"][RECORDS]["partitions"] == []  # moved to the owner stream
    new = {info["instance"]: info for j, info in sandbox.jobs.items() if j not in known}
    for urn in URNS:
        assert new[urn]["exportStartAt"] == bookmarks[urn]
        [export] = [e for e in output.records(EXPORTS) if e["crmInstanceId"] == urn]
        assert export["rowCount"] is None
        entry = partition(state, urn, EXPORTS)
        assert (
            entry["nextExportStartAt"]
            == new[urn]["nextExportStartAt"]
            == export["nextExportStartAt"]
        )


@pytest.mark.parametrize(
    "selected", [(RECORDS, EXPORTS), (EXPORTS,)], ids=["both-selected", "exports-only"]
)
def test_given_an_instance_bookmarked_in_both_streams_when_run_then_the_later_one_kept_once(
    sandbox: Sandbox, selected: tuple[str, ...]
) -> None:
    """The first release kept a copy of each instance's bookmark in both streams, and only the
    selected stream's copy moved on. A stale copy in the stream that now keeps the bookmark
    must not move it back (re-exporting days already delivered); one entry remains."""
    day = 86_400_000
    latest = int(time.time() * 1000) - 2 * day
    stale = latest - 8 * day

    def entry(mark: int) -> dict[str, t.Any]:
        return {
            "context": {"crmInstanceId": DYNAMICS_INSTANCE},
            "replication_key": "exportEndAt",
            "replication_key_value": mark,
            "nextExportStartAt": mark,
        }

    owner = selected[0]
    other = EXPORTS if owner == RECORDS else RECORDS
    state: dict[str, t.Any] = {
        "bookmarks": {
            owner: {"partitions": [entry(stale)]},
            other: {"partitions": [entry(latest)]},
        }
    }
    sync(sandbox, state, selected=selected)
    [created] = [i for i in sandbox.jobs.values() if i["instance"] == DYNAMICS_INSTANCE]
    assert created["exportStartAt"] == latest
    assert partition(state, DYNAMICS_INSTANCE, owner)["nextExportStartAt"] > latest
    assert not [
        p
        for p in state["bookmarks"][other]["partitions"]
        if p["context"] == {"crmInstanceId": DYNAMICS_INSTANCE}
    ]
