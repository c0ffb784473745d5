"""State: checks on a given state, partition entries in both layouts, the resume plan, bookmarks."""

from __future__ import annotations

import copy
import logging
import re
import typing as t

import pytest

from tap_linkedin_crm.engine.state import (
    ANALYTICS_LAYOUT,
    CRM_LAYOUT,
    PartitionState,
    StateStore,
    bookmark_after,
    normalize_state,
    resume_tasks,
)
from tap_linkedin_crm.errors import InvalidStateError
from tap_linkedin_crm.jobs import ExportJob
from tap_linkedin_crm.kinds.base import ExportTask, InFlightJob, Partition, Window

URN = "urn:li:crmInstance:(SFDC,00D5e000000AbCdEAF)"
OTHER = "urn:li:crmInstance:(DYNAMICS,362a3584-0d9b-44a1-a547-25de5cd95d08)"
RECORDS = "crm_data_validation_records"
EXPORTS = "crm_data_validation_exports"
PARTITION = Partition(context={"crmInstanceId": URN}, label=f"CRM instance {URN}", key=URN)
DAY = 86_400_000


def crm(entry: dict[str, t.Any]) -> PartitionState:
    return PartitionState(entry, CRM_LAYOUT, f"CRM instance {URN}")


def analytics(entry: dict[str, t.Any]) -> PartitionState:
    return PartitionState(entry, ANALYTICS_LAYOUT, "analytics export activity")


# normalize_state ----------------------------------------------------------------------------------


def test_given_no_state_when_normalized_then_empty_and_no_notes() -> None:
    assert normalize_state(None) == ({}, [])
    assert normalize_state({}) == ({"bookmarks": {}}, [])
    assert normalize_state({"bookmarks": None}) == ({"bookmarks": {}}, [])


@pytest.mark.parametrize(
    ("raw", "kind"), [([], "list"), ("x", "string"), (3, "number"), (True, "boolean")]
)
def test_given_state_not_an_object_when_normalized_then_says_what_it_is(
    raw: object, kind: str
) -> None:
    with pytest.raises(InvalidStateError, match=f"must be a JSON object, not a {kind}"):
        normalize_state(raw)


def test_given_meltano_wrapper_when_normalized_then_unwrapped_with_a_note() -> None:
    inner = {"bookmarks": {RECORDS: {"partitions": []}}}
    state, notes = normalize_state({"singer_state": inner})
    assert state == inner
    assert len(notes) == 1
    assert "singer_state" in notes[0]
    assert "meltano state get" in notes[0]


def test_given_wrapper_key_beside_bookmarks_when_normalized_then_left_alone() -> None:
    raw = {"singer_state": "whatever", "bookmarks": {}}
    assert normalize_state(raw) == (raw, [])


def test_given_wrapper_not_an_object_when_normalized_then_invalid() -> None:
    with pytest.raises(InvalidStateError, match='"singer_state" must be a JSON object'):
        normalize_state({"singer_state": []})


def test_given_bookmarks_a_list_when_normalized_then_invalid() -> None:
    with pytest.raises(
        InvalidStateError, match='"bookmarks" must be an object of streams, not a list'
    ):
        normalize_state({"bookmarks": []})


def test_given_stream_state_not_an_object_when_normalized_then_names_the_stream() -> None:
    with pytest.raises(InvalidStateError, match=f'State of stream "{RECORDS}" must be an object'):
        normalize_state({"bookmarks": {RECORDS: 5}})


def test_given_partitions_not_a_list_when_normalized_then_names_the_stream() -> None:
    with pytest.raises(
        InvalidStateError, match=f'"partitions" of stream "{RECORDS}" must be a list'
    ):
        normalize_state({"bookmarks": {RECORDS: {"partitions": {"context": {}}}}})


@pytest.mark.parametrize("entry", [{"nextExportStartAt": 5}, {"context": "x"}, "entry", None])
def test_given_partition_without_context_when_normalized_then_names_index_and_stream(
    entry: object,
) -> None:
    raw = {"bookmarks": {RECORDS: {"partitions": [{"context": {"crmInstanceId": URN}}, entry]}}}
    with pytest.raises(
        InvalidStateError, match=f'Partition 1 of stream "{RECORDS}" has no "context" object'
    ):
        normalize_state(raw)


def test_given_valid_state_when_normalized_then_a_copy_with_other_keys_kept() -> None:
    raw = {
        "bookmarks": {RECORDS: {"partitions": [{"context": {"crmInstanceId": URN}}]}},
        "currently_syncing": None,
    }
    state, notes = normalize_state(raw)
    assert state == raw
    assert notes == []
    state["bookmarks"][RECORDS]["partitions"].clear()
    assert raw["bookmarks"][RECORDS]["partitions"]  # the given state is not changed


# PartitionState: bookmark and complete ------------------------------------------------------------


def test_given_crm_entry_when_bookmark_read_then_next_start_else_replication_value() -> None:
    assert crm({"context": {}}).bookmark is None
    assert crm({"replication_key_value": 10}).bookmark == 10
    assert crm({"replication_key_value": 10, "nextExportStartAt": 12}).bookmark == 12
    assert crm({"replication_key_value": 10, "nextExportStartAt": None}).bookmark == 10
    assert crm({"nextExportStartAt": 12.0}).bookmark == 12


def test_given_analytics_entry_when_bookmark_read_then_replication_value_only() -> None:
    assert analytics({"replication_key_value": 10, "nextExportStartAt": 99}).bookmark == 10


@pytest.mark.parametrize(
    "entry",
    [
        {"nextExportStartAt": "2024-01-01T00:00:00Z"},
        {"replication_key_value": "1700000000000"},
        {"nextExportStartAt": 1.5},
        {"nextExportStartAt": True},
    ],
)
def test_given_text_or_odd_bookmark_when_read_then_invalid_for_that_partition_only(
    entry: dict[str, t.Any],
) -> None:
    bad, good = crm(entry), crm({"nextExportStartAt": 7})
    with pytest.raises(
        InvalidStateError, match=re.escape(f"CRM instance {URN}: bookmark in the state is")
    ):
        _ = bad.bookmark
    assert good.bookmark == 7


def test_given_empty_entry_when_completed_then_both_fields_set_never_null() -> None:
    entry: dict[str, t.Any] = {"context": {"crmInstanceId": URN}}
    assert crm(entry).complete(2000, None) == 2000
    assert entry == {
        "context": {"crmInstanceId": URN},
        "replication_key": "exportEndAt",
        "replication_key_value": 2000,
        "nextExportStartAt": 2000,
    }
    crm(entry).complete(3000, 2900)
    assert (entry["replication_key_value"], entry["nextExportStartAt"]) == (2900, 3000)


def test_given_later_bookmark_stored_when_completed_with_earlier_then_it_stays() -> None:
    entry: dict[str, t.Any] = {"nextExportStartAt": 5000, "replication_key_value": 5000}
    assert crm(entry).complete(4000, 4000) == 5000
    assert entry["nextExportStartAt"] == 5000
    assert crm(entry).bookmark == 5000
    moved: dict[str, t.Any] = {"replication_key_value": 100}
    assert analytics(moved).complete(50, 50) == 100
    assert analytics(moved).complete(200, 200) == 200
    assert moved == {"replication_key_value": 200, "replication_key": "endAt"}


# PartitionState: in-flight jobs -----------------------------------------------------------------


def test_given_crm_in_flight_job_when_written_and_read_then_round_trips() -> None:
    entry: dict[str, t.Any] = {"context": {}}
    state = crm(entry)
    job = InFlightJob(148, Window(1000), created_at=1500, attempt=2, file_index=1, rows_done=7)
    state.set_in_flight([job])
    assert entry["inFlightJob"] == {
        "jobId": 148,
        "exportStartAt": 1000,
        "createdAt": 1500,
        "attempt": 2,
        "fileIndex": 1,
        "rowsDone": 7,
    }
    assert state.in_flight() == [job]
    fresh = InFlightJob(149, Window(1000))
    state.set_in_flight([fresh])
    assert "fileIndex" not in entry["inFlightJob"]  # written only once rows were emitted
    assert state.in_flight() == [fresh]
    state.set_in_flight([])
    assert "inFlightJob" not in entry
    assert state.in_flight() == []


def test_given_analytics_in_flight_jobs_when_written_and_read_then_round_trip_in_order() -> None:
    entry: dict[str, t.Any] = {"context": {}}
    state = analytics(entry)
    jobs = [
        InFlightJob(1, Window(0, DAY), created_at=5, attempt=1, file_index=0, rows_done=3),
        InFlightJob(2, Window(DAY, 2 * DAY), created_at=None, attempt=3),
    ]
    state.set_in_flight(jobs)
    assert [item["endAt"] for item in entry["inFlightJobs"]] == [DAY, 2 * DAY]
    assert state.in_flight() == jobs


def test_given_old_crm_in_flight_entry_when_read_then_defaults_filled() -> None:
    state = crm({"inFlightJob": {"jobId": 148, "exportStartAt": 1000}})
    assert state.in_flight() == [InFlightJob(148, Window(1000), None, 1, 0, 0)]


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"exportStartAt": 1}, "lacks jobId or exportStartAt"),
        ({"jobId": 1}, "lacks jobId or exportStartAt"),
        ({"jobId": "148", "exportStartAt": 1}, r"inFlightJob\.jobId in the state is '148'"),
        ({"jobId": 1, "exportStartAt": 1, "rowsDone": -1}, "negative"),
        ({"jobId": 1, "exportStartAt": 1, "fileIndex": -2}, "negative"),
        ({"jobId": 1, "exportStartAt": 1, "rowsDone": 2.5}, "not a whole number"),
        ({"jobId": 1, "exportStartAt": 1, "rowsDone": "3"}, "not a number"),
        ({"jobId": 1, "exportStartAt": 1, "attempt": False}, "not a number"),
    ],
)
def test_given_malformed_in_flight_job_when_read_then_invalid_naming_the_field(
    item: dict[str, t.Any], message: str
) -> None:
    with pytest.raises(InvalidStateError, match=message) as info:
        crm({"inFlightJob": item}).in_flight()
    assert f"CRM instance {URN}" in str(info.value)


@pytest.mark.parametrize("raw", [[{"jobId": 1, "exportStartAt": 1}], "job", 5])
def test_given_crm_in_flight_field_not_an_object_when_read_then_invalid(raw: object) -> None:
    with pytest.raises(InvalidStateError, match="inFlightJob in the state is malformed"):
        crm({"inFlightJob": raw}).in_flight()


@pytest.mark.parametrize("raw", [{"jobId": 1, "startAt": 1}, [5], "job"])
def test_given_analytics_in_flight_field_not_a_list_of_objects_when_read_then_invalid(
    raw: object,
) -> None:
    with pytest.raises(InvalidStateError, match="inFlightJobs in the state is malformed"):
        analytics({"inFlightJobs": raw}).in_flight()


# StateStore ---------------------------------------------------------------------------------------


def test_given_no_entry_when_asked_then_created_under_the_owner() -> None:
    state: dict[str, t.Any] = {}
    entry = StateStore(state).entry(RECORDS, [EXPORTS], {"crmInstanceId": URN})
    assert entry == {"context": {"crmInstanceId": URN}}
    assert state == {"bookmarks": {RECORDS: {"partitions": [entry]}}}


def test_given_entry_in_the_owner_when_asked_then_that_same_object() -> None:
    entry = {"context": {"crmInstanceId": URN}, "nextExportStartAt": 5}
    state = {"bookmarks": {RECORDS: {"partitions": [{"context": {"crmInstanceId": OTHER}}, entry]}}}
    found = StateStore(state).entry(RECORDS, [EXPORTS], {"crmInstanceId": URN})
    assert found is entry
    found["nextExportStartAt"] = 6
    assert state["bookmarks"][RECORDS]["partitions"][1]["nextExportStartAt"] == 6


def test_given_entry_only_under_another_stream_of_the_kind_when_asked_then_moved_to_owner() -> None:
    moved = {"context": {"crmInstanceId": URN}, "nextExportStartAt": 5}
    kept = {"context": {"crmInstanceId": OTHER}, "nextExportStartAt": 9}
    state = {"bookmarks": {RECORDS: {"partitions": [moved, kept]}}}
    found = StateStore(state).entry(EXPORTS, [RECORDS], {"crmInstanceId": URN})
    assert found is moved
    assert state["bookmarks"][EXPORTS]["partitions"] == [moved]
    assert state["bookmarks"][RECORDS]["partitions"] == [kept]


def test_given_entry_under_an_unrelated_stream_when_asked_then_not_taken() -> None:
    foreign = {"context": {"crmInstanceId": URN}, "nextExportStartAt": 5}
    state = {"bookmarks": {"some_other_stream": {"partitions": [foreign]}}}
    entry = StateStore(state).entry(RECORDS, [EXPORTS], {"crmInstanceId": URN})
    assert entry == {"context": {"crmInstanceId": URN}}
    assert state["bookmarks"]["some_other_stream"]["partitions"] == [foreign]


# resume_tasks -------------------------------------------------------------------------------------


def test_given_in_flight_job_of_a_planned_window_when_planned_then_task_resumes_it() -> None:
    job = InFlightJob(148, Window(1000), created_at=1, attempt=2, file_index=1, rows_done=3)
    state = crm({})
    state.set_in_flight([job])
    tasks = resume_tasks(PARTITION, state, [Window(1000)])
    assert tasks == [ExportTask(partition=PARTITION, window=Window(1000), resume=job)]


def test_given_in_flight_jobs_when_windows_differ_then_matching_ones_resumed_others_noted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = analytics({})
    state.set_in_flight([InFlightJob(1, Window(0, DAY)), InFlightJob(2, Window(DAY, 3 * DAY))])
    windows = [Window(0, DAY), Window(DAY, 2 * DAY), Window(2 * DAY, 3 * DAY)]
    with caplog.at_level(logging.INFO, logger="tap_linkedin_crm.engine"):
        tasks = resume_tasks(PARTITION, state, windows)
    assert [task.window for task in tasks] == windows
    assert [task.resume.job_id if task.resume else None for task in tasks] == [1, None, None]
    assert "export job 2 from the last run covers a window no longer planned" in caplog.text


# bookmark_after -----------------------------------------------------------------------------------


def job(
    start: int | None = 1000, end: int | None = 5000, next_start: int | None = 5000
) -> ExportJob:
    return ExportJob(
        job_id=148, status="COMPLETED", start_at=start, end_at=end, next_start_at=next_start
    )


def open_task(start: int = 1000) -> ExportTask:
    return ExportTask(partition=PARTITION, window=Window(start))


def test_given_fixed_window_when_bookmarked_then_its_end() -> None:
    fixed = ExportTask(partition=PARTITION, window=Window(0, DAY))
    assert bookmark_after(fixed, job(next_start=None, end=None), 7).value == DAY
    assert bookmark_after(fixed, job(), 7).fallback is None


def test_given_next_export_start_later_than_start_when_bookmarked_then_it() -> None:
    result = bookmark_after(open_task(), job(next_start=4000, end=5000), 9000)
    assert (result.value, result.fallback) == (4000, None)


def test_given_next_export_start_equal_to_start_when_bookmarked_then_export_end_with_note() -> None:
    result = bookmark_after(open_task(), job(start=1000, next_start=1000, end=5000), 9000)
    assert result.value == 5000
    assert result.fallback is not None
    assert result.fallback.startswith("exportEndAt")
    assert "1000, not later than the job's exportStartAt 1000" in result.fallback


def test_given_linkedin_clamped_start_when_bookmarked_then_compared_with_its_start() -> None:
    # LinkedIn reports the start it used (clamped to 30 days back), later than the task's.
    result = bookmark_after(open_task(1000), job(start=3000, next_start=3000, end=5000), 9000)
    assert (result.value, result.fallback is not None) == (5000, True)


def test_given_no_next_start_nor_end_when_bookmarked_then_creation_time_with_note() -> None:
    result = bookmark_after(open_task(), job(next_start=None, end=None), 9000)
    assert result.value == 9000
    assert result.fallback is not None
    assert "creation time" in result.fallback
    assert "nextExportStartAt was absent" in result.fallback
    assert "exportEndAt absent" in result.fallback


def test_given_creation_time_not_after_start_when_bookmarked_then_just_after_start() -> None:
    result = bookmark_after(open_task(1000), job(start=None, next_start=None, end=None), 400)
    assert result.value == 1001


@pytest.mark.parametrize("start_at", [None, 1000, 1010])
@pytest.mark.parametrize("next_start", [None, 0, 999, 1000, 1005, 1010, 6000])
@pytest.mark.parametrize("end", [None, 0, 1000, 1010, 5000])
@pytest.mark.parametrize("created_at", [0, 1000, 9000])
def test_given_any_job_answer_when_bookmarked_then_always_after_the_window_start(
    start_at: int | None, next_start: int | None, end: int | None, created_at: int
) -> None:
    result = bookmark_after(open_task(1000), job(start_at, end, next_start), created_at)
    assert result.value > 1000
    if start_at is not None:
        assert result.value > start_at  # the bookmark moves past the job's own window start
    assert (result.fallback is None) == (next_start is not None and next_start > (start_at or 1000))


def test_given_state_dict_when_bookmark_completed_then_dict_is_changed_in_place() -> None:
    state: dict[str, t.Any] = {}
    entry = StateStore(state).entry(RECORDS, [], {"crmInstanceId": URN})
    before = copy.deepcopy(state)
    crm(entry).complete(bookmark_after(open_task(), job(), 9000).value, 5000)
    assert state != before
    assert state["bookmarks"][RECORDS]["partitions"][0]["nextExportStartAt"] == 5000
