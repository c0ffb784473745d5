"""The fired-fault log: every fault that took effect, once, with what it hit."""

from __future__ import annotations

import pytest
import requests

from tap_linkedin_crm.sandbox import (
    DYNAMICS_INSTANCE,
    EMEA_CONTRACT,
    SEAT,
    SFDC_INSTANCE,
    Fault,
    FiredFault,
    InstanceSpec,
    Scenario,
)


def entries(sb) -> list[tuple[object, ...]]:
    return [(f.kind, f.endpoint, f.instance, f.job_id, f.variant) for f in sb.fired_faults]


@pytest.fixture
def setup(make_sandbox, make_client):
    def factory(*faults: Fault, **kwargs):
        sb = make_sandbox(Scenario(faults=list(faults), **kwargs))
        api = make_client(sb)
        api.login()
        return sb, api

    return factory


def test_http_faults_are_logged_with_the_request_they_hit(setup):
    sb, api = setup(
        Fault(kind="error", endpoint="get", instance=SFDC_INSTANCE, status=503),
        Fault(kind="rate_limit", endpoint="create", after=5),  # never due here
    )
    dynamics = api.create_job()
    sfdc = api.create_job(SFDC_INSTANCE)
    api.get_json(dynamics)
    with api.get(sfdc, SFDC_INSTANCE) as resp:
        assert resp.status_code == 503
    assert entries(sb) == [("error", "get", SFDC_INSTANCE, sfdc, None)]
    fired = sb.fired_faults[0]
    assert isinstance(fired, FiredFault)
    assert fired.at_ms == pytest.approx(sb.clock.now_ms(), abs=5000)
    sb.clear_fired_faults()
    assert sb.fired_faults == []


def test_job_failed_is_logged_when_the_failed_status_is_first_reported(setup):
    sb, api = setup(Fault(kind="job_failed", variant="FAILED_DUE_TO_TIMED_OUT"))
    job_id = api.create_job()
    assert sb.fired_faults == []  # decided, but not visible yet
    assert [r.fault for r in sb.requests if r.endpoint == "create"] == ["job_failed"]
    for _ in range(5):
        api.get_json(job_id)
    assert entries(sb) == [
        ("job_failed", "get", DYNAMICS_INSTANCE, job_id, "FAILED_DUE_TO_TIMED_OUT")
    ]


def test_job_never_finishes_is_logged_once_when_the_job_would_have_ended(setup):
    sb, api = setup(Fault(kind="job_never_finishes"))
    job_id = api.create_job()
    api.get_json(job_id)
    api.get_json(job_id)
    assert sb.fired_faults == []
    for _ in range(3):
        api.get_json(job_id)
    assert entries(sb) == [("job_never_finishes", "get", DYNAMICS_INSTANCE, job_id, None)]


def test_header_drift_fault_is_logged_when_the_files_are_offered_but_the_setting_is_not(setup):
    sb, api = setup(
        Fault(kind="header_drift", instance=DYNAMICS_INSTANCE),
        instances={
            DYNAMICS_INSTANCE: InstanceSpec(rows=8, files=2),
            SFDC_INSTANCE: InstanceSpec(rows=8, files=2, header_drift=True),
        },
    )
    drifted = api.create_job()
    setting = api.create_job(SFDC_INSTANCE)
    api.wait_completed(drifted)
    api.wait_completed(setting, SFDC_INSTANCE)
    assert entries(sb) == [("header_drift", "get", DYNAMICS_INSTANCE, drifted, None)]


def test_response_and_download_faults_log_their_variant(setup):
    sb, api = setup(
        Fault(kind="download_urls_missing"),
        Fault(kind="non_object_body", variant="string", after=1),
        Fault(kind="cr_line_endings"),
        Fault(kind="stall", endpoint="download", delay=0.01, after=1),
    )
    job_id = api.create_job()
    bodies = []
    for _ in range(5):
        with api.get(job_id) as resp:
            bodies.append(resp.json())
    url = bodies[-1]["downloadUrls"][0]
    for _ in range(2):
        api.download(url).close()
    assert [(kind, variant) for kind, _, _, _, variant in entries(sb)] == [
        ("non_object_body", "string"),
        ("download_urls_missing", "null"),
        ("cr_line_endings", None),
        ("stall", "before_response"),
    ]
    assert {f.job_id for f in sb.fired_faults} == {job_id}


def test_stalls_and_cuts_are_logged_before_the_client_gives_up(setup):
    sb, api = setup(
        Fault(kind="stall", endpoint="get", delay=2.0),
        Fault(kind="drop", endpoint="create", after=1),
    )
    job_id = api.create_job()
    with pytest.raises(requests.exceptions.ReadTimeout):
        api.get(job_id, timeout=(5, 0.2)).close()
    assert entries(sb) == [("stall", "get", DYNAMICS_INSTANCE, job_id, "before_response")]
    with pytest.raises(requests.exceptions.ConnectionError):
        api.create().close()
    assert sb.fired_faults[-1].kind == "drop"
    assert sb.fired_faults[-1].job_id == job_id + 1  # the job was created before the cut


def test_redirect_and_token_faults_are_logged(setup):
    sb, api = setup()
    sb.add_fault(Fault(kind="redirect", status=308))
    sb.add_fault(Fault(kind="token_expired", endpoint="create"))
    api.login()
    with api.create() as resp:
        assert resp.status_code == 401
    assert entries(sb) == [
        ("redirect", "token", None, None, "308"),
        ("token_expired", "create", DYNAMICS_INSTANCE, None, None),
    ]


def test_analytics_faults_and_rules_are_logged_with_contract_and_type(make_sandbox, make_member):
    sb = make_sandbox(
        analytics_max_window_days=10,
        member_daily_quota={"analytics_create": 3},
        faults=[
            Fault(kind="job_failed", export_type=SEAT, variant="FAILED_DUE_TO_DATA_DELAY"),
            Fault(kind="row_count_mismatch", delta=2),
            Fault(kind="error", endpoint="analytics_get", export_type=SEAT, after=3),
        ],
    )
    member = make_member(sb)
    seat = member.create_job("exportSeatData")
    start, end = member.window(12)
    too_long = member.create_job(start=start, end=end)
    plain = member.create_job()
    with member.create() as resp:
        assert resp.status_code == 429
    for job in (seat, too_long, plain):
        member.wait_done(job)
    with member.get(seat) as resp:
        assert resp.status_code == 500
    got = [
        (f.kind, f.endpoint, f.contract, f.export_type, f.job_id, f.variant)
        for f in sb.fired_faults
    ]
    assert got == [
        ("member_daily_quota", "analytics_create", EMEA_CONTRACT, "activity", None, None),
        ("job_failed", "analytics_get", EMEA_CONTRACT, SEAT, seat, "FAILED_DUE_TO_DATA_DELAY"),
        (
            "max_window",
            "analytics_get",
            EMEA_CONTRACT,
            "activity",
            too_long,
            "FAILED_DUE_TO_EXCEEDED_FILE_SIZE_ERROR",
        ),
        ("row_count_mismatch", "analytics_get", EMEA_CONTRACT, "activity", plain, None),
        ("error", "analytics_get", EMEA_CONTRACT, SEAT, seat, None),
    ]


def test_data_delay_rule_and_authorization_denial_are_logged(make_sandbox, make_member):
    sb = make_sandbox(analytics_data_lag_seconds=3600, faults=[Fault(kind="authorization_denied")])
    member = make_member(sb)
    member.authorize().close()
    job_id = member.create_job()
    member.wait_done(job_id)
    assert [(f.kind, f.endpoint, f.job_id, f.variant) for f in sb.fired_faults] == [
        ("authorization_denied", "authorize", None, "user_cancelled_authorize"),
        ("data_delay", "analytics_get", job_id, "FAILED_DUE_TO_DATA_DELAY"),
    ]
