"""The Sales Navigator Analytics API of the sandbox: contracts, export jobs, data and faults."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import re

import pytest
import requests
from sandbox_kit import DAY_MS

from tap_linkedin_crm.sandbox import (
    ACTIVITY,
    ACTIVITY_OUTCOME,
    AMERICAS_CONTRACT,
    DEFAULT_ANALYTICS_COLUMNS,
    EMEA_CONTRACT,
    FAILED_STATUSES,
    NO_REPORTING_CONTRACT,
    SEAT,
    ContractSpec,
    Fault,
    Scenario,
)
from tap_linkedin_crm.sandbox.analytics_data import (
    ACTIVITY_TYPES,
    LEAD_ACTIVITIES,
    OUTCOME_TYPES,
    ContractActivity,
    iter_activities,
)

CREATED_AT = re.compile(r"^\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2}$")
ACTIONS = {
    ACTIVITY: "exportActivityData",
    ACTIVITY_OUTCOME: "exportActivityOutcomeData",
    SEAT: "exportSeatData",
}


def parse_created_at(text: str) -> int:
    moment = dt.datetime.strptime(text, "%m-%d-%Y %H:%M:%S").replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def read_csv(resp: requests.Response) -> tuple[list[str], list[dict[str, str]]]:
    content = resp.content
    if content[:2] == b"\x1f\x8b":
        content = gzip.decompress(content)
    reader = csv.reader(io.StringIO(content.decode("utf-8-sig"), newline=""))
    header = next(reader)
    return header, [dict(zip(header, rec, strict=True)) for rec in reader]


@pytest.fixture
def setup(make_sandbox, make_member):
    def factory(*faults: Fault, **kwargs):
        sb = make_sandbox(Scenario(faults=list(faults), **kwargs))
        return sb, make_member(sb)

    return factory


# -- salesContracts ---------------------------------------------------------------------------


def test_contracts_lists_the_members_contracts_one_without_reporting_access(member):
    with member.contracts() as resp:
        assert resp.status_code == 200
        assert resp.headers["X-RestLi-Protocol-Version"] == "2.0.0"
        body = resp.json()
    assert [e["contract"] for e in body["elements"]] == [
        EMEA_CONTRACT,
        AMERICAS_CONTRACT,
        NO_REPORTING_CONTRACT,
    ]
    assert [e["hasReportingAccess"] for e in body["elements"]] == [True, True, False]
    assert all(
        set(e) == {"contract", "name", "description", "hasReportingAccess"}
        for e in body["elements"]
    )
    assert body["paging"] == {"count": 10, "start": 0, "total": 3, "links": []}


def test_contracts_are_paged_with_links(member):
    with member.contracts(count=2) as resp:
        first = resp.json()
    assert len(first["elements"]) == 2
    assert first["paging"]["links"] == [
        {
            "rel": "next",
            "type": "application/json",
            "href": "/salesContracts?count=2&q=contractsByMember&start=2",
        }
    ]
    with member.contracts(start=2, count=2) as resp:
        second = resp.json()
    assert [e["contract"] for e in second["elements"]] == [NO_REPORTING_CONTRACT]
    assert [link["rel"] for link in second["paging"]["links"]] == ["prev"]
    assert second["paging"]["total"] == 3


def test_contracts_paging_total_can_be_left_out_and_other_members_see_theirs(setup):
    sb, member = setup(
        contracts_paging_total=False,
        contracts={
            EMEA_CONTRACT: ContractSpec(),
            "urn:li:contract:9": ContractSpec(members=["urn:li:person:other"]),
        },
    )
    with member.contracts() as resp:
        body = resp.json()
    assert "total" not in body["paging"]
    assert [e["contract"] for e in body["elements"]] == [EMEA_CONTRACT]
    member.token = sb.issue_member_tokens(member="urn:li:person:other")[0]
    with member.contracts() as resp:
        assert [e["contract"] for e in resp.json()["elements"]] == ["urn:li:contract:9"]


@pytest.mark.parametrize(
    "params", [{"q": "byNobody"}, {"start": "-1"}, {"count": "ten"}], ids=["q", "start", "count"]
)
def test_contracts_with_bad_parameters_is_400(member, params):
    with member.contracts(**params) as resp:
        assert resp.status_code == 400
        assert set(resp.json()) == {"message", "serviceErrorCode", "status"}


# -- create -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("exportEverything", None),
        (None, None),
        ("exportActivityData", {"startAt": 0, "endAt": 1}),
        ("exportActivityData", {"contract": EMEA_CONTRACT, "startAt": "0", "endAt": 1}),
        ("exportActivityData", {"contract": EMEA_CONTRACT, "startAt": 1.5, "endAt": 2}),
        ("exportActivityData", {"contract": EMEA_CONTRACT, "startAt": True, "endAt": 2}),
        ("exportActivityData", {"contract": EMEA_CONTRACT, "startAt": 0}),
        ("exportActivityData", {"contract": EMEA_CONTRACT, "startAt": 5, "endAt": 5}),
        ("exportActivityData", {"contract": EMEA_CONTRACT, "startAt": 9, "endAt": 5}),
        ("exportActivityData", ["not", "an", "object"]),
    ],
    ids=[
        "unknown-action",
        "no-action",
        "no-contract",
        "string-start",
        "float-start",
        "bool-start",
        "no-end",
        "empty-window",
        "reversed-window",
        "array-body",
    ],
)
def test_create_rejects_bad_requests_with_400(member, action, body):
    if body is None:
        start, end = member.window()
        body = {"contract": EMEA_CONTRACT, "startAt": start, "endAt": end}
    with member.create(action, body=body) as resp:
        assert resp.status_code == 400, resp.text
        assert resp.json()["status"] == 400


def test_create_with_end_in_the_future_is_400(sandbox, member):
    now = sandbox.clock.now_ms()
    with member.create(start=now - DAY_MS, end=now + 60_000) as resp:
        assert resp.status_code == 400


@pytest.mark.parametrize("contract", [NO_REPORTING_CONTRACT, "urn:li:contract:424242"])
def test_create_for_a_contract_without_reporting_access_or_not_held_is_403(member, contract):
    with member.create(contract=contract) as resp:
        assert resp.status_code == 403
        body = resp.json()
    assert body["serviceErrorCode"] == 100
    assert contract in body["message"]


def test_create_for_another_members_contract_is_403(setup):
    _, member = setup(
        contracts={"urn:li:contract:9": ContractSpec(members=["urn:li:person:other"])}
    )
    with member.create(contract="urn:li:contract:9") as resp:
        assert resp.status_code == 403


# -- get --------------------------------------------------------------------------------------


def test_job_goes_enqueued_processing_completed(sandbox, member):
    with member.create() as resp:
        assert resp.status_code == 200
        assert resp.headers["X-RestLi-Protocol-Version"] == "2.0.0"
        created = resp.json()
    job_id = created["value"]["id"]
    assert created == {"value": {"id": job_id, "status": "ENQUEUED"}}
    assert member.get_json(job_id) == {"id": job_id, "status": "ENQUEUED"}
    assert member.get_json(job_id) == {"id": job_id, "status": "PROCESSING"}
    body = member.get_json(job_id)
    assert set(body) == {"id", "status", "downloadUrl", "rowCount", "expireAt"}
    assert body["status"] == "COMPLETED"
    assert "/ambry/?x-li-ambry-ep=" in body["downloadUrl"]
    assert body["expireAt"] - sandbox.clock.now_ms() == pytest.approx(DAY_MS, abs=5000)
    with member.download(body["downloadUrl"]) as resp:
        assert resp.status_code == 200
        header, rows = read_csv(resp)
    assert tuple(header) == DEFAULT_ANALYTICS_COLUMNS[ACTIVITY]
    assert body["rowCount"] == len(rows) > 0
    assert rows == sandbox.expected_rows(job_id)
    info = sandbox.analytics_jobs[job_id]
    assert info["status"] == "COMPLETED"
    assert rows == sandbox.analytics_rows(EMEA_CONTRACT, ACTIVITY, info["startAt"], info["endAt"])
    assert job_id not in sandbox.jobs


def test_job_ids_are_shared_with_the_crm_api(sandbox, member, client):
    crm_job = client.create_job()
    analytics_job = member.create_job()
    assert analytics_job > crm_job
    with pytest.raises(KeyError):
        sandbox.expected_rows(analytics_job + 100)


def test_get_with_wrong_contract_unknown_id_or_other_member_is_404(sandbox, member, make_member):
    job_id = member.create_job()
    for job, contract in [(job_id, AMERICAS_CONTRACT), (999_999, EMEA_CONTRACT)]:
        with member.get(job, contract) as resp:
            assert resp.status_code == 404
    other = make_member(sandbox)
    other.token = sandbox.issue_member_tokens(member="urn:li:person:other")[0]
    with other.get(job_id) as resp:
        assert resp.status_code == 404
    with member.get("abc") as resp:
        assert resp.status_code == 400
    with member.get(job_id, contract=None) as resp:
        assert resp.status_code == 400
    sandbox.clock.advance(7 * 86_400 + 1)
    with member.get(job_id) as resp:
        assert resp.status_code == 404


def test_processing_time_can_follow_the_clock(setup):
    sb, member = setup(analytics_processing_seconds=3600)
    job_id = member.create_job()
    assert member.get_json(job_id)["status"] == "ENQUEUED"
    assert member.get_json(job_id)["status"] == "PROCESSING"
    assert member.get_json(job_id)["status"] == "PROCESSING"
    sb.clock.advance(3600)
    assert member.get_json(job_id)["status"] == "COMPLETED"


def test_download_urls_expire_and_a_get_issues_a_fresh_one(sandbox, member):
    job_id = member.create_job()
    body = member.wait_done(job_id)
    sandbox.clock.advance(86_400 + 1)
    with member.download(body["downloadUrl"]) as resp:
        assert resp.status_code == 403
    sandbox.issue_member_tokens()  # the member token outlives the URL anyway
    fresh = member.get_json(job_id)
    assert fresh["downloadUrl"] != body["downloadUrl"]
    with member.download(fresh["downloadUrl"]) as resp:
        assert read_csv(resp)[1] == sandbox.expected_rows(job_id)
    sandbox.expire_download_urls(job_id)
    with member.download(fresh["downloadUrl"]) as resp:
        assert resp.status_code == 403


def test_gzip_contract_serves_csv_gz(sandbox, member):
    job_id = member.create_job(contract=AMERICAS_CONTRACT)
    body = member.wait_done(job_id, AMERICAS_CONTRACT)
    with member.download(body["downloadUrl"]) as resp:
        assert resp.headers["Content-Type"] == "application/gzip"
        assert resp.headers["Content-Disposition"].endswith('.csv.gz"')
        rows = read_csv(resp)[1]
    assert rows == sandbox.expected_rows(job_id)
    assert len(rows) == body["rowCount"]


# -- data -------------------------------------------------------------------------------------


def test_activity_csv_follows_the_documented_columns(sandbox):
    end = sandbox.clock.now_ms()
    start = end - 30 * DAY_MS
    rows = sandbox.analytics_rows(EMEA_CONTRACT, ACTIVITY, start, end)
    assert len(rows) > 300
    assert len({r["activityId"] for r in rows}) == len(rows)
    assert {r["activityType"] for r in rows} == set(ACTIVITY_TYPES)
    for row in rows:
        assert CREATED_AT.match(row["createdAt"]), row
        assert start <= parse_created_at(row["createdAt"]) < end
        assert row["seatId"].isdigit()
        assert (row["memberIdentityKey"] != "") == (row["activityType"] in LEAD_ACTIVITIES)
    times = [parse_created_at(r["createdAt"]) for r in rows]
    assert times == sorted(times)
    assert len({r["seatId"] for r in rows}) == 8  # the EMEA contract's seats


def test_outcomes_follow_earlier_activities(sandbox):
    end = sandbox.clock.now_ms()
    start = end - 20 * DAY_MS
    outcomes = sandbox.analytics_rows(EMEA_CONTRACT, ACTIVITY_OUTCOME, start, end)
    activities = {
        r["activityId"]: r
        for r in sandbox.analytics_rows(EMEA_CONTRACT, ACTIVITY, start - 3 * DAY_MS, end)
    }
    assert outcomes
    assert {r["activityType"] for r in outcomes} <= set(OUTCOME_TYPES)
    for row in outcomes:
        source = activities[row["activityId"]]
        assert parse_created_at(source["createdAt"]) < parse_created_at(row["createdAt"])
        assert start <= parse_created_at(row["createdAt"]) < end
        assert (row["seatId"], row["memberIdentityKey"]) == (
            source["seatId"],
            source["memberIdentityKey"],
        )


def test_seat_csv_has_one_row_per_seat(sandbox):
    end = sandbox.clock.now_ms()
    start = end - 10 * DAY_MS
    rows = sandbox.analytics_rows(EMEA_CONTRACT, SEAT, start, end)
    assert len(rows) == 8
    assert tuple(rows[0]) == DEFAULT_ANALYTICS_COLUMNS[SEAT]
    saved = sum(
        1
        for r in sandbox.analytics_rows(EMEA_CONTRACT, ACTIVITY, start, end)
        if r["activityType"] == "SAVED_LEAD"
    )
    assert sum(int(r["totalLeadsSaved"]) for r in rows) == saved
    for row in rows:
        assert 0 <= float(row["socialSellingIndex"]) <= 100
        assert row["totalConnections"].isdigit()
        assert row["seatStatus"] in {"ACTIVE", "PENDING", "INACTIVE"}


@pytest.mark.parametrize("export_type", [ACTIVITY, ACTIVITY_OUTCOME])
def test_splitting_a_window_yields_the_rows_of_the_whole(sandbox, export_type):
    end = sandbox.clock.now_ms() - 12_345
    start = end - 9 * DAY_MS - 777
    whole = sandbox.analytics_rows(EMEA_CONTRACT, export_type, start, end)
    assert len(whole) > 10
    for cut in (start + DAY_MS // 3, start + 4 * DAY_MS + 1, end - 1000):
        halves = sandbox.analytics_rows(
            EMEA_CONTRACT, export_type, start, cut
        ) + sandbox.analytics_rows(EMEA_CONTRACT, export_type, cut, end)
        assert halves == whole


def test_split_jobs_download_the_rows_of_one_whole_job(sandbox, member):
    end = sandbox.clock.now_ms() - 1
    start = end - 6 * DAY_MS
    cut = start + 2 * DAY_MS + 4_321
    downloaded = []
    for window in [(start, end), (start, cut), (cut, end)]:
        job_id = member.create_job(start=window[0], end=window[1])
        with member.download(member.wait_done(job_id)["downloadUrl"]) as resp:
            downloaded.append(read_csv(resp)[1])
    assert downloaded[0] == downloaded[1] + downloaded[2]
    assert downloaded[0]


def test_rows_do_not_depend_on_the_job_or_the_contract_is_separate(sandbox):
    end = sandbox.clock.now_ms()
    start = end - 3 * DAY_MS
    once = sandbox.analytics_rows(EMEA_CONTRACT, ACTIVITY, start, end)
    assert sandbox.analytics_rows(EMEA_CONTRACT, ACTIVITY, start, end) == once
    other = sandbox.analytics_rows(AMERICAS_CONTRACT, ACTIVITY, start, end)
    assert {r["activityId"] for r in other}.isdisjoint(r["activityId"] for r in once)
    with pytest.raises(ValueError, match="export type"):
        sandbox.analytics_rows(EMEA_CONTRACT, "leads", start, end)


def test_density_and_history_are_configurable():
    params = ContractActivity(
        seed=1, contract="urn:li:contract:1", seats=3, activities_per_day=200, since_ms=10 * DAY_MS
    )
    rows = list(iter_activities(params, 0, 20 * DAY_MS))
    assert all(r.at_ms >= 10 * DAY_MS for r in rows)
    assert 10 * 100 <= len(rows) <= 10 * 300
    quiet = ContractActivity(
        seed=1, contract="urn:li:contract:1", seats=3, activities_per_day=0, since_ms=0
    )
    assert list(iter_activities(quiet, 0, 20 * DAY_MS)) == []


def test_seat_columns_are_configurable(setup):
    sb, member = setup(analytics_columns={SEAT: ["seatId", "totalInMailsSent", "seatStatus"]})
    job_id = member.create_job("exportSeatData")
    with member.download(member.wait_done(job_id)["downloadUrl"]) as resp:
        header, rows = read_csv(resp)
    assert header == ["seatId", "totalInMailsSent", "seatStatus"]
    assert all(r["totalInMailsSent"] for r in rows)
    assert rows == sb.expected_rows(job_id)


def test_unknown_analytics_column_export_type_is_rejected():
    with pytest.raises(ValueError, match="analytics_columns"):
        Scenario(analytics_columns={"leads": ["a"]})


# -- failures and faults ----------------------------------------------------------------------


@pytest.mark.parametrize("status", FAILED_STATUSES)
def test_job_failed_fault_reports_each_failed_status(setup, status):
    _, member = setup(
        Fault(kind="job_failed", variant=status, contract=EMEA_CONTRACT, export_type=SEAT)
    )
    other_type = member.create_job("exportActivityData")
    other_contract = member.create_job("exportSeatData", contract=AMERICAS_CONTRACT)
    failed = member.create_job("exportSeatData")
    assert member.wait_done(failed) == {"id": failed, "status": status}
    assert member.wait_done(other_type)["status"] == "COMPLETED"
    assert member.wait_done(other_contract, AMERICAS_CONTRACT)["status"] == "COMPLETED"
    assert member.wait_done(member.create_job("exportSeatData"))["status"] == "COMPLETED"


def test_job_failed_honours_after_and_times(setup):
    _, member = setup(Fault(kind="job_failed", endpoint="analytics_create", after=1, times=2))
    statuses = [member.wait_done(member.create_job())["status"] for _ in range(4)]
    assert statuses == ["COMPLETED", FAILED_STATUSES[0], FAILED_STATUSES[0], "COMPLETED"]


def test_job_never_finishes(setup):
    _, member = setup(Fault(kind="job_never_finishes", endpoint="analytics_create"))
    job_id = member.create_job()
    statuses = [member.get_json(job_id)["status"] for _ in range(6)]
    assert statuses == ["ENQUEUED", *["PROCESSING"] * 5]


def test_long_windows_fail_with_exceeded_file_size(setup):
    _, member = setup(analytics_max_window_days=30)
    start, end = member.window(30)  # one reading of the clock: two could make it 30 days + 1 ms
    ok = member.create_job(start=start, end=end)
    start, end = member.window(31)
    too_long = member.create_job(start=start, end=end)
    assert member.wait_done(ok)["status"] == "COMPLETED"
    assert member.wait_done(too_long)["status"] == "FAILED_DUE_TO_EXCEEDED_FILE_SIZE_ERROR"


def test_windows_ending_after_the_available_data_fail_with_data_delay(setup):
    _, member = setup(analytics_data_lag_seconds=2 * 86_400)
    recent = member.create_job()  # ends now
    start, end = member.window(5, end_offset_ms=3 * DAY_MS)
    settled = member.create_job(start=start, end=end)
    assert member.wait_done(recent)["status"] == "FAILED_DUE_TO_DATA_DELAY"
    assert member.wait_done(settled)["status"] == "COMPLETED"


def test_data_available_until_an_instant(make_sandbox, make_member):
    from tap_linkedin_crm.sandbox import Sandbox  # noqa: PLC0415

    probe = Sandbox()
    cutoff = probe.clock.now_ms() - DAY_MS
    sb = make_sandbox(analytics_data_available_until=cutoff)
    member = make_member(sb)
    before = member.create_job(start=cutoff - DAY_MS, end=cutoff)
    after = member.create_job(start=cutoff - DAY_MS, end=cutoff + 1)
    assert member.wait_done(before)["status"] == "COMPLETED"
    assert member.wait_done(after)["status"] == "FAILED_DUE_TO_DATA_DELAY"


def test_row_count_mismatch_for_the_first_gets(setup):
    sb, member = setup(Fault(kind="row_count_mismatch", delta=-3, times=2))
    job_id = member.create_job()
    body = member.wait_done(job_id)
    true_count = len(sb.expected_rows(job_id))
    assert body["rowCount"] == true_count - 3
    assert member.get_json(job_id)["rowCount"] == true_count - 3
    assert member.get_json(job_id)["rowCount"] == true_count
    assert [r.fault for r in sb.requests if r.endpoint == "analytics_get"][-3:] == [
        "row_count_mismatch",
        "row_count_mismatch",
        None,
    ]


@pytest.mark.parametrize(
    ("fault", "call", "status"),
    [
        (Fault(kind="rate_limit", endpoint="contracts"), "contracts", 429),
        (Fault(kind="error", endpoint="analytics_create", status=503), "create", 503),
        (Fault(kind="error", contract=EMEA_CONTRACT, export_type=ACTIVITY), "create", 500),
        (Fault(kind="forbidden", endpoint="analytics_get"), "get", 403),
        (Fault(kind="token_expired", endpoint="analytics_get"), "get", 401),
        (Fault(kind="error", endpoint="authorize", status=502), "authorize", 502),
    ],
    ids=["rate-limit", "error", "scoped-error", "forbidden", "token-expired", "authorize"],
)
def test_http_faults_on_the_new_endpoints(setup, fault, call, status):
    sb, member = setup(fault)
    job_id = member.create_job() if call == "get" else None
    calls = {
        "contracts": member.contracts,
        "create": member.create,
        "get": lambda: member.get(job_id),
        "authorize": member.authorize,
    }
    with calls[call]() as resp:
        assert resp.status_code == status
    assert [r.fault for r in sb.requests if r.status == status] == [fault.kind]


def test_scoped_faults_let_other_contracts_and_types_through(setup):
    _, member = setup(
        Fault(kind="error", contract=AMERICAS_CONTRACT, times=None),
        Fault(kind="error", export_type=SEAT, times=None),
    )
    member.create_job()  # EMEA, activity
    for action, contract in [
        ("exportActivityData", AMERICAS_CONTRACT),
        ("exportSeatData", EMEA_CONTRACT),
    ]:
        with member.create(action, contract=contract) as resp:
            assert resp.status_code == 500


def test_drop_and_truncate_on_analytics_calls(setup):
    _, member = setup(
        Fault(kind="drop", endpoint="contracts"),
        Fault(kind="truncate", endpoint="analytics_get", after_bytes=5),
    )
    with pytest.raises(requests.exceptions.ConnectionError):
        member.contracts().close()
    job_id = member.create_job()
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        member.get(job_id).close()


def test_download_faults_match_on_contract(setup):
    sb, member = setup(Fault(kind="error", endpoint="download", contract=EMEA_CONTRACT, status=503))
    job_id = member.create_job()
    url = member.wait_done(job_id)["downloadUrl"]
    with member.download(url) as resp:
        assert resp.status_code == 503
    with member.download(url) as resp:
        assert resp.status_code == 200
    record = next(r for r in sb.requests if r.status == 503)
    assert (record.contract, record.export_type, record.job_id) == (EMEA_CONTRACT, ACTIVITY, job_id)


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "row_count_mismatch", "endpoint": "get"},
        {"kind": "job_failed", "variant": "FAILED_BECAUSE"},
        {"kind": "error", "variant": "loud"},
        {"kind": "error", "export_type": "leads"},
        {"kind": "header_drift", "endpoint": "analytics_create"},
    ],
)
def test_invalid_analytics_faults_are_rejected(data):
    with pytest.raises(ValueError, match=r"fault|export type|endpoint"):
        Fault.from_dict(data)


def test_scenario_with_contracts_round_trips_through_json(tmp_path):
    scenario = Scenario(
        contracts={"urn:li:contract:5": ContractSpec(name="X", seats=1, gzip=True)},
        faults=[Fault(kind="job_failed", variant=FAILED_STATUSES[2], export_type=SEAT)],
        member_daily_quota={"analytics_create": 3},
    )
    path = tmp_path / "s.json"
    import json  # noqa: PLC0415

    path.write_text(json.dumps(scenario.to_dict()), encoding="utf-8")
    assert Scenario.from_file(path) == scenario
    with pytest.raises(ValueError, match="unknown contract keys"):
        Scenario.from_dict({"contracts": {"urn:li:contract:1": {"seatz": 1}}})
