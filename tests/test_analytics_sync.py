"""The Sales Navigator analytics exports end to end: the tap process against the sandbox.

Every test compares what the tap emitted with what the sandbox generated for the same contract,
export type and time (`Sandbox.analytics_rows`), so rows lost, doubled or mistyped show up.
Windows are short (a few days, 1-2 days each) and days hold a few dozen rows: the suite stays fast.
"""

from __future__ import annotations

import itertools
import json
import re
import typing as t

import pytest
from analytics_kit import (
    ACTIVITIES,
    CONTRACTS,
    DAY_MS,
    EXPORT_TYPES,
    EXPORTS,
    OUTCOMES,
    PROVENANCE,
    ROWS_STREAM,
    SEATS,
    analytics_config,
    bookmark,
    duplicates_and_losses,
    expected_rows,
    jobs_of,
    midnight,
    partition,
    record_row,
    records_of,
    rfc3339_ms,
)
from faultkit import assert_no_secrets

from tap_linkedin_crm.sandbox import (
    ACTIVITY,
    ACTIVITY_OUTCOME,
    AMERICAS_CONTRACT,
    DEFAULT_ANALYTICS_COLUMNS,
    EMEA_CONTRACT,
    NO_REPORTING_CONTRACT,
    SEAT,
    Fault,
    Sandbox,
    Scenario,
)

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.conftest import TapRun

RunTap = t.Callable[..., "TapRun"]
REPORTING = (EMEA_CONTRACT, AMERICAS_CONTRACT)
#: An activity column LinkedIn does not document: it must land in extraColumns.
EXTRA_COLUMN = "campaignName"
SEAT_COLUMN_TYPES = {
    "sales_seats.seatId": "integer",
    "sales_seats.socialSellingIndex": "number",
    "sales_seats.totalConnections": "integer",
    "sales_seats.seatStatus": "string",
}


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    columns = {ACTIVITY: [*DEFAULT_ANALYTICS_COLUMNS[ACTIVITY], EXTRA_COLUMN]}
    with Sandbox(Scenario(analytics_columns=columns)) as sb:
        yield sb


def assert_every_row_once(
    sb: Sandbox,
    messages: list[dict[str, t.Any]],
    contract: str,
    export_type: str,
    *,
    span: tuple[int, int],
) -> int:
    """The rows of `span` (`[start, end)`) were emitted exactly once, typed; returns their number.

    The exported windows must tile `span`; each window's rows are compared with
    what the sandbox generates for that window (undeclared columns' filler values depend on it).
    """
    start_at, end_at = span
    windows = sorted(
        (e["startAt"], e["endAt"])
        for e in records_of(messages, EXPORTS, contract=contract, exportType=export_type)
    )
    assert windows, f"{contract} {export_type}: no export"
    assert windows[0][0] == start_at
    assert windows[-1][1] == end_at
    assert all(a[1] == b[0] for a, b in itertools.pairwise(windows)), windows
    expected = [
        row
        for window in windows
        for row in expected_rows(sb, contract, export_type, window[0], window[1])
    ]
    records = records_of(messages, ROWS_STREAM[export_type], contract=contract)
    doubled, lost = duplicates_and_losses(expected, [record_row(export_type, r) for r in records])
    assert (doubled, lost) == (0, 0), f"{contract} {export_type}: {doubled} doubled, {lost} lost"
    assert expected, f"{contract} {export_type}: the window holds no rows; the test proves nothing"
    return len(expected)


def assert_seat_rows_per_window(
    sb: Sandbox, messages: list[dict[str, t.Any]], contract: str
) -> None:
    """Each seat export's rows are the seats as of its window, typed by `column_types`."""
    exports = records_of(messages, EXPORTS, contract=contract, exportType=SEAT)
    assert exports
    for export in exports:
        rows = records_of(messages, SEATS, contract=contract, jobId=export["id"])
        raw = sb.analytics_rows(contract, SEAT, export["startAt"], export["endAt"])
        assert [r["rowNumber"] for r in rows] == list(range(1, len(raw) + 1))
        for record, generated in zip(rows, raw, strict=True):
            assert record["seatId"] == int(generated["seatId"])
            assert record["socialSellingIndex"] == float(generated["socialSellingIndex"])
            assert record["totalConnections"] == int(generated["totalConnections"])
            assert record["seatStatus"] == generated["seatStatus"]
            assert record["extraColumns"] == {
                "seatHolderName": generated["seatHolderName"],
                "totalLeadsSaved": generated["totalLeadsSaved"],
            }
            assert (record["startAt"], record["endAt"]) == (export["startAt"], export["endAt"])


# Two contracts, three export types ----------------------------------------------------------


def test_two_contracts_three_types_land_every_row_once_typed_then_resume_at_bookmarks(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    start, middle, end = midnight(4), midnight(2), midnight(0)
    # The first run ends two days back (a 48 h lag); the second one catches up to today.
    cfg = analytics_config(sandbox, lag_hours=48, column_types=SEAT_COLUMN_TYPES)
    first = run_tap(cfg)
    assert first.returncode == 0, first.stderr[-3000:]
    for contract in REPORTING:
        for export_type in EXPORT_TYPES:
            assert bookmark(first.final_state, contract, export_type) == middle
            assert "inFlightJobs" not in partition(first.final_state, contract, export_type)

    second = run_tap({**cfg, "analytics_lag_hours": 0}, first.final_state)
    assert second.returncode == 0, second.stderr[-3000:]
    first_ids = {r["id"] for r in first.records(EXPORTS)}
    for contract in REPORTING:
        for export_type in EXPORT_TYPES:
            # The second run's only job starts at the first run's bookmark.
            later = [j for j in jobs_of(sandbox, contract, export_type) if j["id"] not in first_ids]
            assert [(j["startAt"], j["endAt"]) for j in later] == [(middle, end)]
            assert bookmark(second.final_state, contract, export_type) == end
    messages = first.messages + second.messages
    for contract in REPORTING:
        for export_type in (ACTIVITY, ACTIVITY_OUTCOME):
            assert_every_row_once(sandbox, messages, contract, export_type, span=(start, end))
        assert_seat_rows_per_window(sandbox, messages, contract)
    # The contract without reporting access is listed, but nothing is exported for it.
    contracts = {j["contract"] for j in sandbox.analytics_jobs.values()}
    assert NO_REPORTING_CONTRACT not in contracts
    assert_no_secrets(sandbox, first.stdout, first.stderr, second.stdout, second.stderr)


def test_records_carry_provenance_typed_columns_and_the_undeclared_ones(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    result = run_tap(analytics_config(sandbox, start_days=2, window_days=2))
    assert result.returncode == 0, result.stderr[-3000:]
    schemas = {m["stream"]: m["schema"] for m in result.messages if m["type"] == "SCHEMA"}
    activity = schemas[ACTIVITIES]["properties"]
    assert activity["createdAt"] == {"type": ["string", "null"], "format": "date-time"}
    assert activity["seatId"]["type"] == ["integer", "null"]
    assert EXTRA_COLUMN not in activity
    assert "extraColumns" in activity
    assert set(PROVENANCE) <= set(schemas[ACTIVITIES]["required"])
    # Keys as the issue names them.
    keys = {m["stream"]: m["key_properties"] for m in result.messages if m["type"] == "SCHEMA"}
    assert keys[ACTIVITIES] == ["contract", "activityId"]
    assert keys[OUTCOMES] == ["contract", "activityId", "activityType"]
    assert keys[SEATS] == ["contract", "startAt", "endAt", "rowNumber"]
    assert keys[CONTRACTS] == ["contract"]
    assert keys[EXPORTS] == ["id"]

    records = result.records(ACTIVITIES)
    assert records
    for record in records:
        assert isinstance(record["seatId"], int)
        assert record["createdAt"].endswith(("Z", "+00:00"))
        assert set(record["extraColumns"]) == {EXTRA_COLUMN}
        assert (record["startAt"], record["endAt"]) == (midnight(2), midnight(0))
        assert record["startAt"] <= rfc3339_ms(record["createdAt"]) < record["endAt"]
    # The outcome export documents two columns; the others are kept as text.
    outcomes = result.records(OUTCOMES)
    assert outcomes
    assert all(
        set(r["extraColumns"]) == {"createdAt", "seatId", "memberIdentityKey"} for r in outcomes
    )
    # Row numbers count each job's file from 1, in file order.
    for job_id in {r["jobId"] for r in records}:
        numbers = [r["rowNumber"] for r in records if r["jobId"] == job_id]
        assert numbers == list(range(1, len(numbers) + 1))


def test_a_file_without_a_key_column_lands_its_rows_with_a_warning_naming_the_key(
    run_tap: RunTap,
) -> None:
    """LinkedIn drops `activityId` from the activity file: the rows still land (nothing is lost),
    with a null key, and a WARNING says a target that upserts on the key would collapse them."""
    columns = {ACTIVITY: [c for c in DEFAULT_ANALYTICS_COLUMNS[ACTIVITY] if c != "activityId"]}
    with Sandbox(Scenario(analytics_columns=columns)) as sb:
        result = run_tap(analytics_config(sb, start_days=2, window_days=2))
    assert result.returncode == 0, result.stderr[-3000:]
    records = result.records(ACTIVITIES)
    assert records
    assert all(r["activityId"] is None for r in records)
    warnings = [line for line in result.stderr.splitlines() if "| WARNING" in line]
    assert any("activityId" in w and "primary key" in w for w in warnings), warnings
    # Outcome files still have their key: no such warning about them.
    assert not any("outcome export" in w and "primary key" in w for w in warnings), warnings


def test_contracts_and_exports_streams_describe_what_was_exported(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    result = run_tap(analytics_config(sandbox, start_days=2, window_days=1))
    assert result.returncode == 0, result.stderr[-3000:]
    scenario = sandbox.scenario.contracts
    assert result.records(CONTRACTS) == [
        {
            "contract": urn,
            "name": spec.name,
            "description": spec.description,
            "hasReportingAccess": spec.has_reporting_access,
        }
        for urn, spec in scenario.items()
    ]
    exports = result.records(EXPORTS)
    jobs = sandbox.analytics_jobs
    # One record per completed job: two contracts, three types, two one-day windows.
    assert len(exports) == len(jobs) == 2 * 3 * 2
    for export in exports:
        job = jobs[export["id"]]
        assert job["status"] == "COMPLETED"
        assert (export["contract"], export["exportType"]) == (job["contract"], job["exportType"])
        assert (export["startAt"], export["endAt"]) == (job["startAt"], job["endAt"])
        assert export["endAt"] - export["startAt"] == DAY_MS
        rows = records_of(result.messages, ROWS_STREAM[job["exportType"]], jobId=export["id"])
        assert export["rowCount"] == export["rowsEmitted"] == len(rows)
        assert len(rows) == len(sandbox.expected_rows(export["id"]))
        assert export["fileCount"] == 1
        assert export["attempts"] == 1
        assert export["byteCount"] > 0
        assert export["status"] == "COMPLETED"
        assert all("ambry-ep" not in url for url in export["downloadUrls"])
    # Emitted in window order per (contract, type).
    for contract in REPORTING:
        for export_type in EXPORT_TYPES:
            mine = records_of(result.messages, EXPORTS, contract=contract, exportType=export_type)
            assert [e["startAt"] for e in mine] == [midnight(2), midnight(1)]


# Job outcomes ---------------------------------------------------------------------------------


def test_too_big_windows_are_split_down_to_one_day_and_every_row_lands_once(
    run_tap: RunTap,
) -> None:
    # LinkedIn refuses windows longer than one day: 4 -> 2 + 2 -> 1 + 1 + 1 + 1.
    with Sandbox(Scenario(analytics_max_window_days=1)) as sb:
        cfg = analytics_config(sb, start_days=4, window_days=4, contract_ids=[EMEA_CONTRACT])
        result = run_tap(cfg)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "splitting window" in result.stderr
        for export_type in EXPORT_TYPES:
            jobs = jobs_of(sb, EMEA_CONTRACT, export_type)
            spans = sorted((j["endAt"] - j["startAt"]) // DAY_MS for j in jobs)
            assert spans == [1, 1, 1, 1, 2, 2, 4], export_type
            completed = sorted(
                (j["startAt"], j["endAt"]) for j in jobs if j["status"] == "COMPLETED"
            )
            assert completed == [(midnight(d), midnight(d - 1)) for d in (4, 3, 2, 1)]
            assert bookmark(result.final_state, EMEA_CONTRACT, export_type) == midnight(0)
        for export_type in (ACTIVITY, ACTIVITY_OUTCOME):
            assert_every_row_once(
                sb, result.messages, EMEA_CONTRACT, export_type, span=(midnight(4), midnight(0))
            )
        # Emitted in window order.
        activity_windows = [r["startAt"] for r in result.records(ACTIVITIES)]
        assert activity_windows == sorted(activity_windows)


def test_a_one_day_window_still_too_big_fails_that_contract_and_type_only(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    sandbox.add_fault(
        Fault(
            kind="job_failed",
            variant="FAILED_DUE_TO_EXCEEDED_FILE_SIZE_ERROR",
            contract=EMEA_CONTRACT,
            export_type=ACTIVITY,
            times=None,
        )
    )
    result = run_tap(analytics_config(sandbox, start_days=2, window_days=2))
    assert result.returncode != 0
    label = f"contract {EMEA_CONTRACT} (activity export)"
    assert label in result.stderr
    assert "FAILED_DUE_TO_EXCEEDED_FILE_SIZE_ERROR" in result.stderr
    # It was split to one-day windows before giving up.
    spans = sorted(
        (j["endAt"] - j["startAt"]) // DAY_MS for j in jobs_of(sandbox, EMEA_CONTRACT, ACTIVITY)
    )
    assert spans[0] == 1
    assert spans[-1] == 2
    assert bookmark(result.final_state, EMEA_CONTRACT, ACTIVITY) is None
    assert not records_of(result.messages, ACTIVITIES, contract=EMEA_CONTRACT)
    # The others went on.
    for contract in REPORTING:
        for export_type in EXPORT_TYPES:
            if (contract, export_type) == (EMEA_CONTRACT, ACTIVITY):
                continue
            assert bookmark(result.final_state, contract, export_type) == midnight(0)
    assert_every_row_once(
        sandbox, result.messages, AMERICAS_CONTRACT, ACTIVITY, span=(midnight(2), midnight(0))
    )


def test_data_delay_stops_at_the_previous_window_keeps_the_bookmark_and_exits_0(
    run_tap: RunTap,
) -> None:
    # LinkedIn's data ends at noon three days back: the window ending two days back is not ready.
    available = midnight(3) + DAY_MS // 2
    with Sandbox(Scenario(analytics_data_available_until=available)) as sb:
        cfg = analytics_config(sb, start_days=5, window_days=1, contract_ids=[EMEA_CONTRACT])
        first = run_tap(cfg)
        assert first.returncode == 0, first.stderr[-3000:]
        assert "FAILED_DUE_TO_DATA_DELAY" in first.stderr
        assert "not ready" in first.stderr
        assert "WARNING" in first.stderr
        for export_type in EXPORT_TYPES:
            assert bookmark(first.final_state, EMEA_CONTRACT, export_type) == midnight(3)
            windows = [
                (r["startAt"], r["endAt"])
                for r in records_of(
                    first.messages, EXPORTS, contract=EMEA_CONTRACT, exportType=export_type
                )
            ]
            assert windows == [(midnight(5), midnight(4)), (midnight(4), midnight(3))]
        assert_every_row_once(
            sb, first.messages, EMEA_CONTRACT, ACTIVITY, span=(midnight(5), midnight(3))
        )

        # Once the data is there, the next run goes on from the bookmark.
        sb.scenario.analytics_data_available_until = None
        second = run_tap(cfg, first.final_state)
        assert second.returncode == 0, second.stderr[-3000:]
        for export_type in EXPORT_TYPES:
            assert bookmark(second.final_state, EMEA_CONTRACT, export_type) == midnight(0)
        messages = first.messages + second.messages
        for export_type in (ACTIVITY, ACTIVITY_OUTCOME):
            assert_every_row_once(
                sb, messages, EMEA_CONTRACT, export_type, span=(midnight(5), midnight(0))
            )


@pytest.mark.parametrize("status", ["FAILED_DUE_TO_TIMED_OUT", "FAILED_DUE_TO_INTERNAL_ERROR"])
def test_a_timed_out_or_internal_failure_gets_a_new_job(
    sandbox: Sandbox, run_tap: RunTap, status: str
) -> None:
    sandbox.add_fault(
        Fault(kind="job_failed", variant=status, contract=AMERICAS_CONTRACT, export_type=ACTIVITY)
    )
    result = run_tap(analytics_config(sandbox, start_days=2, window_days=2))
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = jobs_of(sandbox, AMERICAS_CONTRACT, ACTIVITY)
    assert [j["status"] for j in jobs] == [status, "COMPLETED"]
    assert jobs[0]["startAt"] == jobs[1]["startAt"]
    assert jobs[0]["endAt"] == jobs[1]["endAt"]
    [export] = records_of(result.messages, EXPORTS, contract=AMERICAS_CONTRACT, exportType=ACTIVITY)
    assert export["attempts"] == 2
    assert export["id"] == jobs[1]["id"]
    assert_every_row_once(
        sandbox, result.messages, AMERICAS_CONTRACT, ACTIVITY, span=(midnight(2), midnight(0))
    )


def test_failures_past_job_max_attempts_split_the_window(sandbox: Sandbox, run_tap: RunTap) -> None:
    sandbox.add_fault(
        Fault(
            kind="job_failed",
            variant="FAILED_DUE_TO_TIMED_OUT",
            contract=EMEA_CONTRACT,
            export_type=ACTIVITY_OUTCOME,
            times=2,
        )
    )
    cfg = analytics_config(sandbox, start_days=2, window_days=2, job_max_attempts=2)
    result = run_tap(cfg)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = jobs_of(sandbox, EMEA_CONTRACT, ACTIVITY_OUTCOME)
    assert [(j["status"], (j["endAt"] - j["startAt"]) // DAY_MS) for j in jobs] == [
        ("FAILED_DUE_TO_TIMED_OUT", 2),
        ("FAILED_DUE_TO_TIMED_OUT", 2),
        ("COMPLETED", 1),
        ("COMPLETED", 1),
    ]
    assert_every_row_once(
        sandbox, result.messages, EMEA_CONTRACT, ACTIVITY_OUTCOME, span=(midnight(2), midnight(0))
    )
    assert bookmark(result.final_state, EMEA_CONTRACT, ACTIVITY_OUTCOME) == midnight(0)


def test_a_wrong_row_count_once_downloads_again_without_doubling_rows(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    sandbox.add_fault(
        Fault(
            kind="row_count_mismatch",
            endpoint="analytics_get",
            contract=EMEA_CONTRACT,
            export_type=ACTIVITY,
            times=1,
        )
    )
    result = run_tap(analytics_config(sandbox, start_days=2, window_days=2))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rowCount" in result.stderr
    [job] = jobs_of(sandbox, EMEA_CONTRACT, ACTIVITY)
    downloads = [r for r in sandbox.requests if r.endpoint == "download" and r.job_id == job["id"]]
    assert len(downloads) == 2
    assert_every_row_once(
        sandbox, result.messages, EMEA_CONTRACT, ACTIVITY, span=(midnight(2), midnight(0))
    )
    [export] = records_of(result.messages, EXPORTS, id=job["id"])
    assert export["rowCount"] == export["rowsEmitted"]


def test_a_row_count_that_never_matches_fails_that_window_and_keeps_the_bookmark(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    sandbox.add_fault(
        Fault(
            kind="row_count_mismatch",
            endpoint="analytics_get",
            contract=EMEA_CONTRACT,
            export_type=SEAT,
            times=None,
        )
    )
    result = run_tap(analytics_config(sandbox, start_days=2, window_days=1))
    assert result.returncode != 0
    assert f"contract {EMEA_CONTRACT} (seat export)" in result.stderr
    assert "also after downloading it again" in result.stderr
    assert bookmark(result.final_state, EMEA_CONTRACT, SEAT) is None
    assert bookmark(result.final_state, AMERICAS_CONTRACT, SEAT) == midnight(0)
    assert bookmark(result.final_state, EMEA_CONTRACT, ACTIVITY) == midnight(0)


@pytest.mark.parametrize("variant", ["null", "absent", "empty"])
def test_a_download_url_missing_once_is_asked_again_and_every_row_lands(
    sandbox: Sandbox, run_tap: RunTap, variant: str
) -> None:
    """`"downloadUrl": ""` is no URL, as null or absent are: asked again, not a broken body."""
    sandbox.add_fault(
        Fault(
            kind="download_urls_missing",
            endpoint="analytics_get",
            variant=variant,
            contract=EMEA_CONTRACT,
            export_type=ACTIVITY,
            times=1,
        )
    )
    result = run_tap(analytics_config(sandbox, start_days=2, window_days=2))
    assert result.returncode == 0, result.stderr[-3000:]
    assert_every_row_once(
        sandbox, result.messages, EMEA_CONTRACT, ACTIVITY, span=(midnight(2), midnight(0))
    )


@pytest.mark.parametrize("variant", ["null", "empty"])
def test_a_job_with_rows_but_never_a_download_url_fails_that_window_and_keeps_the_bookmark(
    sandbox: Sandbox, run_tap: RunTap, variant: str
) -> None:
    """LinkedIn's rowCount says the window has rows: it is not taken as empty (rows lost)."""
    sandbox.add_fault(
        Fault(
            kind="download_urls_missing",
            endpoint="analytics_get",
            variant=variant,
            contract=EMEA_CONTRACT,
            export_type=ACTIVITY,
            times=None,
        )
    )
    result = run_tap(analytics_config(sandbox, start_days=2, window_days=2))
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert bookmark(result.final_state, EMEA_CONTRACT, ACTIVITY) is None
    assert not records_of(result.messages, ACTIVITIES, contract=EMEA_CONTRACT)
    errors = [line for line in result.stderr.splitlines() if "| ERROR" in line]
    assert any(
        f"contract {EMEA_CONTRACT} (activity export)" in line and "rowCount" in line
        for line in errors
    ), errors
    assert bookmark(result.final_state, AMERICAS_CONTRACT, ACTIVITY) == midnight(0)
    assert bookmark(result.final_state, EMEA_CONTRACT, SEAT) == midnight(0)


@pytest.mark.parametrize(
    "entry",
    [
        {"replication_key": "endAt", "replication_key_value": 10**20},
        {"replication_key": "endAt", "replication_key_value": -(10**15)},
        {"inFlightJobs": [{"jobId": 7, "startAt": 0, "endAt": 10**20, "createdAt": 0}]},
    ],
    ids=["bookmark-beyond-year-9999", "bookmark-before-1970", "in-flight-window-beyond-9999"],
)
def test_a_bookmark_no_calendar_holds_fails_that_partition_only(
    sandbox: Sandbox, run_tap: RunTap, entry: dict[str, t.Any]
) -> None:
    context = {"contract": EMEA_CONTRACT, "exportType": ACTIVITY}
    state = {"bookmarks": {ACTIVITIES: {"partitions": [{"context": context, **entry}]}}}
    result = run_tap(analytics_config(sandbox, start_days=1, window_days=1), state)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert f"contract {EMEA_CONTRACT} (activity export)" in result.stderr
    assert "in the state is" in result.stderr
    assert not records_of(result.messages, ACTIVITIES, contract=EMEA_CONTRACT)
    assert bookmark(result.final_state, AMERICAS_CONTRACT, ACTIVITY) == midnight(0)
    assert bookmark(result.final_state, EMEA_CONTRACT, SEAT) == midnight(0)


# Contracts --------------------------------------------------------------------------------------


def test_contract_ids_limit_the_export_to_those_contracts(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    cfg = analytics_config(sandbox, start_days=1, window_days=1, contract_ids=[AMERICAS_CONTRACT])
    result = run_tap(cfg)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {j["contract"] for j in sandbox.analytics_jobs.values()} == {AMERICAS_CONTRACT}
    assert {r["contract"] for r in result.records(ACTIVITIES)} == {AMERICAS_CONTRACT}
    # The contracts stream still lists every contract the member can see.
    assert len(result.records(CONTRACTS)) == 3


@pytest.mark.parametrize(("kind", "status"), [("error", 500), ("forbidden", 403)])
def test_contract_ids_are_exported_even_when_the_contracts_cannot_be_listed(
    sandbox: Sandbox, run_tap: RunTap, kind: str, status: int
) -> None:
    """The listing only serves the sales_contracts stream (and a check) once contract_ids names
    the contracts: its failure fails that stream, not every export."""
    sandbox.add_fault(Fault(kind=kind, endpoint="contracts", status=status, times=None))
    cfg = analytics_config(
        sandbox,
        start_days=1,
        window_days=1,
        contract_ids=[AMERICAS_CONTRACT],
        request_max_retries=1,
    )
    result = run_tap(cfg)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert not result.records(CONTRACTS)
    errors = [line for line in result.stderr.splitlines() if "| ERROR" in line]
    assert any("list the member's Sales Navigator contracts" in line for line in errors), errors
    for export_type in EXPORT_TYPES:
        assert bookmark(result.final_state, AMERICAS_CONTRACT, export_type) == midnight(0)
    assert {r["contract"] for r in result.records(ACTIVITIES)} == {AMERICAS_CONTRACT}


@pytest.mark.parametrize("contract", ["urn:li:contract:999999", NO_REPORTING_CONTRACT])
def test_a_contract_the_member_cannot_export_fails_alone_naming_it(
    sandbox: Sandbox, run_tap: RunTap, contract: str
) -> None:
    cfg = analytics_config(
        sandbox, start_days=1, window_days=1, contract_ids=[contract, EMEA_CONTRACT]
    )
    result = run_tap(cfg)
    assert result.returncode != 0
    if contract not in sandbox.scenario.contracts:
        assert f"Contract {contract} is in contract_ids but the member cannot see it" in (
            result.stderr
        )
    assert f"contract {contract}" in result.stderr
    assert "403" in result.stderr or "permission" in result.stderr.lower()
    for export_type in EXPORT_TYPES:
        assert bookmark(result.final_state, contract, export_type) is None
        assert bookmark(result.final_state, EMEA_CONTRACT, export_type) == midnight(0)
    assert_every_row_once(
        sandbox, result.messages, EMEA_CONTRACT, ACTIVITY, span=(midnight(1), midnight(0))
    )


# Both families, each with its own token ----------------------------------------------------------


def test_crm_and_analytics_in_one_sync_each_with_its_own_token(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    result = run_tap(analytics_config(sandbox, start_days=1, window_days=1, crm=True))
    assert result.returncode == 0, result.stderr[-3000:]
    crm_rows = result.records("crm_data_validation_records")
    assert len(crm_rows) == sum(len(sandbox.expected_rows(j)) for j in sandbox.jobs)
    assert_every_row_once(
        sandbox, result.messages, EMEA_CONTRACT, ACTIVITY, span=(midnight(1), midnight(0))
    )
    # The sandbox refuses member tokens on the CRM API and application tokens on the analytics
    # API (403): nothing was refused, so each family used its own.
    requests = sandbox.requests
    assert not [r for r in requests if r.status in {401, 403}]
    assert {r.endpoint for r in requests} >= {"create", "get", "analytics_create", "analytics_get"}
    assert len([r for r in requests if r.endpoint == "token"]) == 2
    assert_no_secrets(sandbox, result.stdout, result.stderr)


def test_analytics_streams_without_member_credentials_are_skipped_with_one_line(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    result = run_tap(sandbox.tap_config())
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("Skipping the Sales Navigator analytics streams") == 1
    assert not result.records(ACTIVITIES)
    assert result.records("crm_data_validation_records")
    assert not [r for r in sandbox.requests if r.endpoint and r.endpoint.startswith("analytics")]


# The member's daily quota -------------------------------------------------------------------------


def test_a_spent_member_quota_stops_the_sync_and_the_next_day_finishes_it_without_loss(
    run_tap: RunTap,
) -> None:
    # The member may create seven export jobs a day; the sync wants twelve.
    with Sandbox(Scenario(member_daily_quota={"analytics_create": 7})) as sb:
        cfg = analytics_config(sb, start_days=2, window_days=1)
        first = run_tap(cfg)
        assert first.returncode != 0
        assert "daily API quota" in first.stderr
        assert "midnight UTC" in first.stderr
        # Readable messages, e.g. "create a seat export job", "an activity outcome export job".
        assert not re.search(r"\ban (seat|activity_outcome)\b", first.stderr)
        created = set(sb.analytics_jobs)
        assert len(created) == 7
        remembered = {
            job["jobId"]
            for contract in REPORTING
            for export_type in EXPORT_TYPES
            for job in partition(first.final_state, contract, export_type).get("inFlightJobs", [])
        }
        assert remembered == created

        # A day later (the sandbox's clock) the quota is back: the run resumes the seven jobs
        # and creates the other five.
        sb.clock.advance(DAY_MS / 1000)
        since = len(sb.requests)
        second = run_tap(cfg, first.final_state)
        assert second.returncode == 0, second.stderr[-3000:]
        creates = [r for r in sb.requests[since:] if r.endpoint == "analytics_create"]
        assert len(creates) == 5
        assert len(sb.analytics_jobs) == 12
        messages = first.messages + second.messages
        for contract in REPORTING:
            for export_type in (ACTIVITY, ACTIVITY_OUTCOME):
                assert_every_row_once(
                    sb, messages, contract, export_type, span=(midnight(2), midnight(0))
                )
            for export_type in EXPORT_TYPES:
                assert bookmark(second.final_state, contract, export_type) == midnight(0)


# Slow jobs and broken downloads ------------------------------------------------------------------


def test_jobs_past_job_timeout_are_polled_again_by_the_next_run_or_recreated_once_gone(
    run_tap: RunTap,
) -> None:
    # Each job takes 30 s of the sandbox's clock; the tap waits 1 s.
    with Sandbox(Scenario(analytics_processing_seconds=30)) as sb:
        cfg = analytics_config(sb, start_days=2, window_days=2, job_timeout=1)
        first = run_tap(cfg)
        assert first.returncode != 0
        assert "job_timeout" in first.stderr
        jobs = set(sb.analytics_jobs)
        assert len(jobs) == 6
        remembered = {
            job["jobId"]
            for contract in REPORTING
            for export_type in EXPORT_TYPES
            for job in partition(first.final_state, contract, export_type)["inFlightJobs"]
        }
        assert remembered == jobs

        # Half a minute later the jobs are done: the next run reads them, it creates none.
        sb.clock.advance(31)
        second = run_tap(cfg, first.final_state)
        assert second.returncode == 0, second.stderr[-3000:]
        assert set(sb.analytics_jobs) == jobs
        assert {e["id"] for e in second.records(EXPORTS)} == jobs
        assert_every_row_once(
            sb, second.messages, EMEA_CONTRACT, ACTIVITY, span=(midnight(2), midnight(0))
        )

        # Jobs that LinkedIn forgot (older than 7 days: 404) are created again for their windows:
        # the first run's state, given again, names the same six jobs.
        sb.clock.advance(8 * DAY_MS / 1000)
        sb.scenario.analytics_processing_seconds = None
        third = run_tap(cfg, first.final_state)
        assert third.returncode == 0, third.stderr[-3000:]
        assert "is gone" in third.stderr
        new = set(sb.analytics_jobs) - jobs
        assert len(new) == 6
        assert {e["id"] for e in third.records(EXPORTS)} == new
        assert_every_row_once(
            sb, third.messages, AMERICAS_CONTRACT, ACTIVITY, span=(midnight(2), midnight(0))
        )


@pytest.mark.parametrize(
    "fault",
    [
        Fault(kind="url_expired", endpoint="download", contract=EMEA_CONTRACT),
        Fault(kind="drop", endpoint="download", contract=EMEA_CONTRACT, after_bytes=3000),
        Fault(kind="error", endpoint="download", contract=AMERICAS_CONTRACT, status=503),
    ],
    ids=["url-expired", "dropped-mid-body", "503"],
)
def test_broken_analytics_downloads_are_retried_without_doubling_rows(
    sandbox: Sandbox, run_tap: RunTap, fault: Fault
) -> None:
    sandbox.add_fault(fault)
    result = run_tap(analytics_config(sandbox, start_days=2, window_days=2))
    assert result.returncode == 0, result.stderr[-3000:]
    assert [f.kind for f in sandbox.fired_faults] == [fault.kind]
    for contract in REPORTING:
        for export_type in (ACTIVITY, ACTIVITY_OUTCOME):
            assert_every_row_once(
                sandbox, result.messages, contract, export_type, span=(midnight(2), midnight(0))
            )
    assert_no_secrets(sandbox, result.stdout, result.stderr)


# Selection --------------------------------------------------------------------------------------


def select_only(run_tap: RunTap, config: dict[str, t.Any], *streams: str) -> dict[str, t.Any]:
    """The discovered catalog with only `streams` selected."""
    catalog = t.cast("dict[str, t.Any]", json.loads(run_tap(config, args=["--discover"]).stdout))
    for entry in catalog["streams"]:
        for metadata in entry["metadata"]:
            if metadata["breadcrumb"] == []:
                metadata["metadata"]["selected"] = entry["tap_stream_id"] in streams
    return catalog


def test_the_exports_stream_alone_keeps_each_bookmark_which_the_rows_streams_then_take_over(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    cfg = analytics_config(sandbox, start_days=2, window_days=1, analytics_lag_hours=24)
    first = run_tap(cfg, catalog=select_only(run_tap, cfg, EXPORTS))
    assert first.returncode == 0, first.stderr[-3000:]
    exports = first.records(EXPORTS)
    assert len(exports) == 2 * 3
    assert all(e["rowsEmitted"] is None for e in exports)
    assert not [r for r in sandbox.requests if r.endpoint == "download"]
    assert set(first.final_state["bookmarks"]) == {EXPORTS}
    for contract in REPORTING:
        for export_type in EXPORT_TYPES:
            assert bookmark(first.final_state, contract, export_type) == midnight(1)

    # Now with the rows: each (contract, type) goes on from the exports stream's bookmark.
    cfg["analytics_lag_hours"] = 0
    second = run_tap(cfg, first.final_state, catalog=select_only(run_tap, cfg, ACTIVITIES, SEATS))
    assert second.returncode == 0, second.stderr[-3000:]
    assert {(r["startAt"], r["endAt"]) for r in second.records(ACTIVITIES)} == {
        (midnight(1), midnight(0))
    }
    for contract in REPORTING:
        for export_type in (ACTIVITY, SEAT):
            assert bookmark(second.final_state, contract, export_type) == midnight(0)
        # Not selected: its bookmark stays where the exports stream left it.
        assert bookmark(second.final_state, contract, ACTIVITY_OUTCOME) == midnight(1)
    bookmarks = second.final_state["bookmarks"]
    assert {p["context"]["exportType"] for p in bookmarks[ACTIVITIES]["partitions"]} == {ACTIVITY}
    assert {p["context"]["exportType"] for p in bookmarks[EXPORTS]["partitions"]} == {
        ACTIVITY_OUTCOME
    }


def test_a_contract_listed_twice_in_contract_ids_is_exported_once(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    cfg = analytics_config(
        sandbox, start_days=1, window_days=1, contract_ids=[EMEA_CONTRACT, f" {EMEA_CONTRACT}"]
    )
    result = run_tap(cfg)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{EMEA_CONTRACT} is listed twice in contract_ids" in result.stderr
    assert len(sandbox.analytics_jobs) == 3
    assert_every_row_once(
        sandbox, result.messages, EMEA_CONTRACT, ACTIVITY, span=(midnight(1), midnight(0))
    )
