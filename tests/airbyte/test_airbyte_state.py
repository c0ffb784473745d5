"""The state a read is given, in every form Airbyte, PyAirbyte and Meltano hand over."""

from __future__ import annotations

import typing as t

import pytest
from conftest import EXPORTS, RECORDS

from tap_linkedin_crm.airbyte.catalog import ConfiguredStream
from tap_linkedin_crm.airbyte.state import StateGroups, tap_state_from_airbyte
from tap_linkedin_crm.engine.state import StateStore
from tap_linkedin_crm.errors import InvalidStateError
from tap_linkedin_crm.sandbox import DYNAMICS_INSTANCE, SFDC_INSTANCE
from tap_linkedin_crm.tap import TapLinkedInCRM

if t.TYPE_CHECKING:
    from tap_linkedin_crm.streams import ExportStream

CONFIG = {"crm_instance_ids": [DYNAMICS_INSTANCE], "access_token": "token"}
ROWS_BLOB = {
    "partitions": [{"context": {"crmInstanceId": DYNAMICS_INSTANCE}, "nextExportStartAt": 5}]
}
EXPORTS_BLOB = {
    "partitions": [{"context": {"crmInstanceId": SFDC_INSTANCE}, "nextExportStartAt": 7}]
}


@pytest.fixture(scope="module")
def streams() -> dict[str, ExportStream]:
    tap = TapLinkedInCRM(config=CONFIG, setup_mapper=False)
    return {name: t.cast("ExportStream", stream) for name, stream in tap.streams.items()}


def configured(
    streams: dict[str, ExportStream], *names: str, mode: str = "incremental"
) -> list[ConfiguredStream]:
    return [
        ConfiguredStream(streams[n], t.cast("t.Any", mode)) for n in names or (RECORDS, EXPORTS)
    ]


def message(stream: str, blob: object, **extra: t.Any) -> dict[str, t.Any]:
    return {
        "type": "STREAM",
        "stream": {"stream_descriptor": {"name": stream, "namespace": None}, "stream_state": blob},
        **extra,
    }


def convert(raw: object, streams: dict[str, ExportStream], *names: str, **kw: t.Any) -> object:
    return tap_state_from_airbyte(raw, configured(streams, *names, **kw), streams)


def resolved(
    raw: object, streams: dict[str, ExportStream], *names: str, owner: str = RECORDS
) -> dict[str, t.Any]:
    """Each instance's partition as the engine finds it: in the owner first, then the others."""
    state = t.cast("dict[str, t.Any]", convert(raw, streams, *names))
    store = StateStore(state)
    others = [n for n in (RECORDS, EXPORTS) if n != owner]
    found = {}
    for urn in (DYNAMICS_INSTANCE, SFDC_INSTANCE):
        entry = store.entry(owner, others, {"crmInstanceId": urn})
        found[urn] = entry.get("nextExportStartAt")
    return found


@pytest.mark.parametrize("raw", [None, [], {}])
def test_no_state_is_an_empty_tap_state(raw: object, streams: dict[str, ExportStream]) -> None:
    assert tap_state_from_airbyte(raw, configured(streams), streams) in ({}, {"bookmarks": {}})


def test_pyairbyte_messages_with_null_and_unknown_keys(streams: dict[str, ExportStream]) -> None:
    raw = [
        message(RECORDS, ROWS_BLOB, global_=None, data=None, destinationStats=None,
                sourceStats={"recordCount": 3.0, "rejectedRecordCount": None}),
        message(EXPORTS, ROWS_BLOB, global_=None, data=None),
    ]  # fmt: skip
    # The exports stream's copy of the records stream's partition is dropped: the owner's wins.
    assert convert(raw, streams) == {"bookmarks": {RECORDS: ROWS_BLOB}}
    assert resolved(raw, streams) == {DYNAMICS_INSTANCE: 5, SFDC_INSTANCE: None}


def test_the_owner_blob_wins_and_the_heartbeat_key_is_dropped(
    streams: dict[str, ExportStream],
) -> None:
    beating = {**ROWS_BLOB, "heartbeatAt": "2026-01-01T00:00:00.000+00:00"}
    older = {"partitions": [{**ROWS_BLOB["partitions"][0], "nextExportStartAt": 3}]}
    raw = [message(EXPORTS, older), message(RECORDS, beating)]
    assert convert(raw, streams) == {"bookmarks": {RECORDS: ROWS_BLOB}}
    assert resolved(raw, streams)[DYNAMICS_INSTANCE] == 5  # the owner's, not the older copy
    # The exports stream's STATE goes out first: a read stopped (or a destination that committed
    # one stream's STATE and not the other's) leaves it newer than the owner's. The owner's
    # still wins: the later bookmark would skip rows the records stream never committed.
    newer = {"partitions": [{**ROWS_BLOB["partitions"][0], "nextExportStartAt": 9}]}
    raw = [message(EXPORTS, newer), message(RECORDS, ROWS_BLOB)]
    assert resolved(raw, streams)[DYNAMICS_INSTANCE] == 5
    # With only the exports stream selected, it owns the state (a GLOBAL message is read too).
    shared = {"type": "GLOBAL", "global": {"stream_states": [raw[1]["stream"]]}}
    assert resolved([shared], streams, EXPORTS, owner=EXPORTS)[DYNAMICS_INSTANCE] == 5


def test_a_rows_stream_resumes_only_from_its_own_state(streams: dict[str, ExportStream]) -> None:
    # The records stream is new in the connection, or Airbyte cleared its state: taking the
    # exports stream's bookmark over would leave it without every row before that bookmark.
    none = {DYNAMICS_INSTANCE: None, SFDC_INSTANCE: None}
    assert resolved([message(EXPORTS, EXPORTS_BLOB)], streams) == none
    raw = [message(EXPORTS, EXPORTS_BLOB), message(RECORDS, {"partitions": []})]
    assert resolved(raw, streams) == none
    raw = [message(EXPORTS, EXPORTS_BLOB), message(RECORDS, ROWS_BLOB)]
    assert resolved(raw, streams) == {DYNAMICS_INSTANCE: 5, SFDC_INSTANCE: None}
    # The exports stream holds no rows: read alone, it takes the records stream's bookmark over.
    raw = [message(RECORDS, EXPORTS_BLOB)]
    assert resolved(raw, streams, EXPORTS, owner=EXPORTS) == {
        DYNAMICS_INSTANCE: None,
        SFDC_INSTANCE: 7,
    }


def test_full_refresh_uses_no_state_of_the_family(streams: dict[str, ExportStream]) -> None:
    raw = [message(RECORDS, ROWS_BLOB), message(EXPORTS, ROWS_BLOB)]
    assert convert(raw, streams, mode="full_refresh") == {"bookmarks": {}}


ACTIVITY = {"context": {"contract": "urn:li:contract:1", "exportType": "activity"}, "x": 5}
SEAT = {"context": {"contract": "urn:li:contract:1", "exportType": "seat"}, "x": 7}


def test_analytics_state_starts_over_per_export_type(streams: dict[str, ExportStream]) -> None:
    activities, seats, exports = "sales_activities", "sales_seats", "sales_analytics_exports"
    both = {"partitions": [ACTIVITY, SEAT]}
    raw = [
        message(activities, {"partitions": [ACTIVITY]}),
        message(seats, {"partitions": [SEAT]}),
        message(exports, both),
    ]
    # Seats read in full refresh: only the seat exports start over, activities resume.
    configured = [
        ConfiguredStream(streams[activities], "incremental"),
        ConfiguredStream(streams[seats], "full_refresh"),
    ]
    assert tap_state_from_airbyte(raw, configured, streams) == {
        "bookmarks": {activities: {"partitions": [ACTIVITY]}}
    }
    # The activities stream's state was cleared: its exports start over, not from the copy in
    # the exports stream; the seat exports (their rows stream not read) resume from that copy.
    state = convert([message(exports, both)], streams, activities, exports)
    assert state == {"bookmarks": {exports: {"partitions": [SEAT]}}}


def test_singer_state_meltano_wrapper_and_legacy_message(streams: dict[str, ExportStream]) -> None:
    singer = {"bookmarks": {RECORDS: ROWS_BLOB, EXPORTS: {"partitions": []}}}
    expected = {DYNAMICS_INSTANCE: 5, SFDC_INSTANCE: None}
    assert resolved(singer, streams) == expected
    assert resolved({"singer_state": singer}, streams) == expected
    assert resolved([{"type": "LEGACY", "data": singer}], streams) == expected


def test_unknown_streams_and_null_blobs_are_ignored(streams: dict[str, ExportStream]) -> None:
    raw = [message("gone_stream", ROWS_BLOB), message(RECORDS, ROWS_BLOB), message(EXPORTS, None)]
    assert convert(raw, streams) == {"bookmarks": {RECORDS: ROWS_BLOB}}


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("text", "list of Airbyte STATE messages"),
        ([42], "not a JSON object"),
        ([{"type": "STREAM"}], "no stream state"),
        ([message(RECORDS, [1])], "must be a JSON object"),
        ([{"type": "STREAM", "stream": {"stream_state": {}}}], "stream_descriptor.name"),
        ([message(RECORDS, {"partitions": [{"nextExportStartAt": 1}]})], '"context"'),
    ],
)
def test_malformed_states_are_refused_saying_what_is_wrong(
    raw: object, says: str, streams: dict[str, ExportStream]
) -> None:
    with pytest.raises(InvalidStateError) as info:
        convert(raw, streams)
    assert says in str(info.value)


def test_groups_name_the_owner_and_send_it_last(streams: dict[str, ExportStream]) -> None:
    both = StateGroups.of([streams[EXPORTS], streams[RECORDS]])
    assert both.owner == {EXPORTS: RECORDS, RECORDS: RECORDS}
    assert both.owners == {EXPORTS: (RECORDS,), RECORDS: (RECORDS,)}
    assert both.emission_order() == [EXPORTS, RECORDS]
    tap_state = {"bookmarks": {RECORDS: ROWS_BLOB}}
    assert both.stream_state(EXPORTS, tap_state) == both.stream_state(RECORDS, tap_state)
    assert StateGroups.of([streams[EXPORTS]]).owner == {EXPORTS: EXPORTS}


def test_the_shared_analytics_exports_stream_carries_every_family_it_belongs_to(
    streams: dict[str, ExportStream],
) -> None:
    activities, exports = "sales_activities", "sales_analytics_exports"
    groups = StateGroups.of([streams[exports], streams[activities]])
    # activities owns its family; seats and outcomes (not selected) are owned by exports itself.
    assert groups.owners[exports] == (activities, exports)
    assert groups.owners[activities] == (activities,)
    assert groups.emission_order() == [exports, activities]
    a = {"context": {"contract": "urn:li:contract:1", "exportType": "activity"}}
    s = {"context": {"contract": "urn:li:contract:1", "exportType": "seat"}}
    tap_state = {"bookmarks": {activities: {"partitions": [a]}, exports: {"partitions": [s]}}}
    assert groups.stream_state(exports, tap_state) == {"partitions": [a, s]}
    assert groups.stream_state(activities, tap_state) == {"partitions": [a]}
