"""The Airbyte source's four commands as the platform runs them: real processes, the sandbox.

Every stdout line of every run is validated with the official protocol models (see conftest).
"""

from __future__ import annotations

import datetime as dt
import socket
import tomllib
import typing as t

import jsonschema
import pytest
from conftest import EXPORTS, RECORDS, ROOT, STREAMS, RawText, configured_catalog
from faultkit import assert_no_secrets, check_rows

from tap_linkedin_crm.sandbox import (
    DYNAMICS_INSTANCE,
    SFDC_INSTANCE,
    Fault,
    InstanceSpec,
    Sandbox,
    Scenario,
)
from tap_linkedin_crm.settings import secret_settings
from tap_linkedin_crm.tap import CONFIG_SCHEMA, TapLinkedInCRM

if t.TYPE_CHECKING:
    from conftest import Source, SourceRun

pytestmark = [pytest.mark.e2e]

START_DATE = dt.datetime.now(tz=dt.UTC) - dt.timedelta(days=5)


def config_for(sb: Sandbox, **overrides: t.Any) -> dict[str, t.Any]:
    return sb.tap_config(request_retry_delay=0.05, **overrides)


def pyairbyte_state(run: SourceRun) -> list[dict[str, t.Any]]:
    """The last STATE of each stream as PyAirbyte hands it back: with null and extra keys."""
    return [
        {
            **state,
            "global_": None,
            "data": None,
            "sourceStats": {**state["sourceStats"], "rejectedRecordCount": None},
            "destinationStats": None,
        }
        for state in run.last_states()
    ]


def assert_state_rules(run: SourceRun) -> None:
    """Per stream: a STATE at least once, never the same twice in a row, none after its end;
    `recordCount` = records of the stream since its previous STATE."""
    since: dict[str, int] = dict.fromkeys(STREAMS, 0)
    last_blob: dict[str, t.Any] = {}
    ended: set[str] = set()
    previous = None
    for message in run.messages:
        if message["type"] == "RECORD":
            stream = message["record"]["stream"]
            assert stream not in ended, f"a {stream} record after its terminal status"
            assert isinstance(message["record"]["emitted_at"], int)
            since[stream] += 1
        elif message["type"] == "STATE":
            state = message["state"]
            assert state["type"] == "STREAM"
            assert message != previous, "two identical STATE messages in a row"
            stream = state["stream"]["stream_descriptor"]["name"]
            assert stream not in ended, f"a {stream} STATE after its terminal status"
            blob = state["stream"]["stream_state"]
            assert blob != last_blob.get(stream), f"{stream}: the same state twice in a row"
            last_blob[stream] = blob
            assert state["sourceStats"]["recordCount"] == since[stream], stream
            since[stream] = 0
            previous = message
        elif message["type"] == "TRACE" and message["trace"]["type"] == "STREAM_STATUS":
            status = message["trace"]["stream_status"]
            if status["status"] in {"COMPLETE", "INCOMPLETE"}:
                ended.add(status["stream_descriptor"]["name"])
    for stream in STREAMS:
        assert stream in last_blob, f"no STATE for {stream}"
        assert since[stream] == 0, f"{stream}: records after its last STATE"


def bookmarks(blob: dict[str, t.Any]) -> dict[str, int | None]:
    return {p["context"]["crmInstanceId"]: p.get("nextExportStartAt") for p in blob["partitions"]}


# spec --------------------------------------------------------------------------------------


def test_spec_is_the_settings_schema_with_airbyte_secrets_and_without_singer_settings(
    source: Source, sandbox: Sandbox
) -> None:
    run = source("spec")
    assert run.returncode == 0, run.stderr
    assert [m["type"] for m in run.messages] == ["SPEC"]
    spec = run.messages[0]["spec"]
    schema = spec["connectionSpecification"]
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert list(schema["properties"]) == list(CONFIG_SCHEMA["properties"])
    secrets = secret_settings(CONFIG_SCHEMA)
    assert secrets == {"client_secret", "access_token", "refresh_token", "analytics_access_token"}
    for name, prop in schema["properties"].items():
        assert prop.get("airbyte_secret", False) is (name in secrets), name
        assert "null" not in str(prop.get("type")), name
    # The SDK adds its Singer-only settings to the tap's schema; Airbyte must not offer them.
    singer_only = set(TapLinkedInCRM(config={}).config_jsonschema["properties"]) - set(
        CONFIG_SCHEMA["properties"]
    )
    assert {"stream_maps", "flattening_enabled"} <= singer_only
    assert not singer_only & set(schema["properties"])
    # A working configuration is valid against it, and a wrong type is not.
    jsonschema.validate(config_for(sandbox), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**config_for(sandbox), "poll_interval": "fast"}, schema)
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    assert spec["documentationUrl"] == urls["Documentation"]


# check -------------------------------------------------------------------------------------


def test_check_succeeds_with_a_token_and_one_read_call_and_creates_no_job(
    source: Source, sandbox: Sandbox
) -> None:
    run = source("check", config=config_for(sandbox))
    assert run.returncode == 0, run.stderr
    assert [m["connectionStatus"]["status"] for m in run.messages] == ["SUCCEEDED"]
    calls = [(r.endpoint, r.status) for r in sandbox.requests]
    assert calls == [("token", 200), ("get", 404)]
    assert not sandbox.jobs
    assert_no_secrets(sandbox, run.stdout, run.stderr)


def test_check_with_a_wrong_client_secret_fails_with_what_to_fix(
    source: Source, sandbox: Sandbox
) -> None:
    wrong = "not-the-secret-9f8e7d"
    run = source("check", config=config_for(sandbox, client_secret=wrong))
    assert run.returncode == 0, run.stderr
    status = run.messages[-1]["connectionStatus"]
    assert status["status"] == "FAILED"
    assert "client_id and client_secret" in status["message"]
    assert wrong not in run.stdout + run.stderr
    assert [r.endpoint for r in sandbox.requests] == ["token"]


def test_check_without_the_permission_fails_naming_it(source: Source) -> None:
    scenario = Scenario(instances={DYNAMICS_INSTANCE: InstanceSpec(permitted=False)})
    with Sandbox(scenario) as sb:
        run = source("check", config=config_for(sb))
        assert run.returncode == 0, run.stderr
        status = run.messages[-1]["connectionStatus"]
        assert status["status"] == "FAILED"
        assert "403" in status["message"]
        assert "r_sales_nav_validation" in status["message"]
        assert DYNAMICS_INSTANCE in status["message"]
        assert_no_secrets(sb, run.stdout, run.stderr)


def test_check_hands_a_rotated_refresh_token_to_the_platform(source: Source) -> None:
    """Should LinkedIn rotate the refresh token (revoking the old one) while checking, the next
    read only works with the new one: the platform stores it from a CONTROL message."""
    with Sandbox(Scenario(rotate_refresh_tokens=True)) as sb:
        config = config_for(sb, analytics=True)
        run = source("check", config=config)
        assert run.returncode == 0, run.stderr
        assert run.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["status"] == "SUCCEEDED"
        (control,) = run.of_type("CONTROL")
        stored = control["control"]["connectorConfig"]["config"]
        assert stored["refresh_token"] != config["refresh_token"]
        assert stored == {**config, "refresh_token": stored["refresh_token"]}
        # A read rotates it again; the config it hands back is the one given, new token aside.
        catalog = configured_catalog(source.discover(stored), ["sales_contracts"])
        read = source("read", config=stored, catalog=catalog)
        assert read.returncode == 0, read.stderr
        (control,) = read.of_type("CONTROL")
        latest = control["control"]["connectorConfig"]["config"]
        assert latest == {**stored, "refresh_token": latest["refresh_token"]}
        again = source("check", config=latest)
        assert again.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["status"] == "SUCCEEDED"
        tokens = (stored["refresh_token"], latest["refresh_token"])
        assert not any(token in run.stderr + read.stderr for token in tokens)


def test_check_of_an_invalid_configuration_fails_without_calling_linkedin(
    source: Source, sandbox: Sandbox
) -> None:
    run = source("check", config=config_for(sandbox, crm_instance_ids=["urn:li:crmInstance:bad"]))
    assert run.returncode == 0, run.stderr
    status = run.messages[-1]["connectionStatus"]
    assert status["status"] == "FAILED"
    assert "crm_instance_ids" in status["message"]
    assert not sandbox.requests


def test_check_with_no_export_family_configured_says_what_to_set(
    source: Source, sandbox: Sandbox
) -> None:
    config = config_for(sandbox)
    del config["crm_instance_ids"]
    run = source("check", config=config)
    assert run.returncode == 0, run.stderr
    status = run.messages[-1]["connectionStatus"]
    assert status["status"] == "FAILED"
    assert "crm_instance_ids" in status["message"]
    assert not sandbox.requests


def test_check_that_cannot_reach_linkedin_is_a_transient_error(source: Source) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = {
        "crm_instance_ids": [DYNAMICS_INSTANCE],
        "client_id": "id",
        "client_secret": "secret-never-shown",
        "api_url": f"http://127.0.0.1:{port}/v2",
        "token_url": f"http://127.0.0.1:{port}/oauth/v2/accessToken",
        "request_retry_delay": 0.05,
    }
    run = source("check", config=config)
    assert run.returncode == 1
    assert [e["failure_type"] for e in run.errors] == ["transient_error"]
    assert "secret-never-shown" not in run.stdout + run.stderr


# discover ----------------------------------------------------------------------------------


def test_discover_lists_every_stream_with_its_schema_keys_and_cursor(
    source: Source, sandbox: Sandbox
) -> None:
    run = source("discover", config=config_for(sandbox))
    assert run.returncode == 0, run.stderr
    assert [m["type"] for m in run.messages] == ["CATALOG"]
    streams = {s["name"]: s for s in run.messages[0]["catalog"]["streams"]}
    tap = TapLinkedInCRM(config=config_for(sandbox))
    # Only the streams of the families the config sets up (CRM here), so "select all" works.
    assert set(streams) == set(STREAMS) < set(tap.streams)
    for name, stream in streams.items():
        declared = tap.streams[name]
        assert stream["json_schema"] == declared.schema
        assert stream["supported_sync_modes"] == ["full_refresh", "incremental"]
        assert stream["source_defined_cursor"] is True
        assert stream["default_cursor_field"] == [declared.replication_key]
        assert stream["source_defined_primary_key"] == [[k] for k in declared.primary_keys]
        assert stream["is_resumable"] is True


def test_discover_with_a_member_token_lists_the_analytics_streams_too(
    source: Source, sandbox: Sandbox
) -> None:
    config = {**config_for(sandbox), "analytics_access_token": "member-token"}
    run = source("discover", config=config)
    assert run.returncode == 0, run.stderr
    streams = {s["name"]: s for s in run.messages[0]["catalog"]["streams"]}
    assert set(streams) == {
        *STREAMS,
        "sales_contracts",
        "sales_activities",
        "sales_activity_outcomes",
        "sales_seats",
        "sales_analytics_exports",
    }
    assert streams["sales_contracts"]["supported_sync_modes"] == ["full_refresh"]
    assert streams["sales_activities"]["default_cursor_field"] == ["endAt"]
    assert streams["sales_activities"]["source_defined_primary_key"] == [
        ["contract"],
        ["activityId"],
    ]


# read --------------------------------------------------------------------------------------


def test_read_then_a_second_read_with_its_state_brings_only_new_rows(
    source: Source, sandbox: Sandbox
) -> None:
    config = config_for(sandbox)
    catalog = configured_catalog(source.discover(config))
    first = source("read", config=config, catalog=catalog, state=[])
    assert first.returncode == 0, first.stderr
    first_jobs = sorted(sandbox.jobs)
    assert len(first_jobs) == 2
    for job_id in first_jobs:
        result = check_rows(sandbox, job_id, first.records(RECORDS))
        assert result.exact, f"job {job_id}: {result}"
    assert sorted(r["jobId"] for r in first.records(EXPORTS)) == first_jobs
    for stream in STREAMS:
        assert first.statuses(stream) == ["STARTED", "RUNNING", "COMPLETE"]
    assert_state_rules(first)
    # Both streams carry the family's state; its bookmarks are LinkedIn's nextExportStartAt.
    blob = first.stream_state(RECORDS)
    assert first.stream_state(EXPORTS) == blob
    jobs = sandbox.jobs
    assert bookmarks(blob) == {
        jobs[j]["instance"]: jobs[j]["nextExportStartAt"] for j in first_jobs
    }
    assert not any("inFlightJob" in p for p in blob["partitions"])
    assert not first.errors
    assert_no_secrets(sandbox, first.stdout, first.stderr)

    second = source("read", config=config, catalog=catalog, state=pyairbyte_state(first))
    assert second.returncode == 0, second.stderr
    new_jobs = sorted(set(sandbox.jobs) - set(first_jobs))
    assert len(new_jobs) == 2
    jobs = sandbox.jobs
    for job_id in new_jobs:
        assert jobs[job_id]["exportStartAt"] == bookmarks(blob)[jobs[job_id]["instance"]]
        result = check_rows(sandbox, job_id, second.records(RECORDS))
        assert result.exact, f"job {job_id}: {result}"
    assert {r["jobId"] for r in second.records(RECORDS)} == set(new_jobs)
    assert sorted(r["jobId"] for r in second.records(EXPORTS)) == new_jobs
    assert_state_rules(second)


def test_read_of_one_stream_keeps_the_family_state_in_it(source: Source, sandbox: Sandbox) -> None:
    config = config_for(sandbox)
    catalog = configured_catalog(source.discover(config), [EXPORTS])
    run = source("read", config=config, catalog=catalog)
    assert run.returncode == 0, run.stderr
    assert {m["record"]["stream"] for m in run.of_type("RECORD")} == {EXPORTS}
    assert [s["stream"]["stream_descriptor"]["name"] for s in run.states()] == [EXPORTS] * len(
        run.states()
    )
    assert set(bookmarks(run.stream_state(EXPORTS))) == {DYNAMICS_INSTANCE, SFDC_INSTANCE}
    assert run.statuses(EXPORTS) == ["STARTED", "RUNNING", "COMPLETE"]
    assert run.statuses(RECORDS) == []


def test_full_refresh_ignores_the_state_and_exports_from_start_date(
    source: Source, sandbox: Sandbox
) -> None:
    config = config_for(sandbox, start_date=START_DATE.isoformat())
    discovered = source.discover(config)
    first = source("read", config=config, catalog=configured_catalog(discovered))
    assert first.returncode == 0, first.stderr
    known = set(sandbox.jobs)
    catalog = configured_catalog(discovered, sync_mode="full_refresh")
    again = source("read", config=config, catalog=catalog, state=first.last_states())
    assert again.returncode == 0, again.stderr
    start_ms = int(START_DATE.timestamp() * 1000)
    new = [job for job_id, job in sandbox.jobs.items() if job_id not in known]
    assert len(new) == 2
    assert all(job["exportStartAt"] == start_ms for job in new)


def test_a_records_stream_whose_state_was_cleared_is_exported_from_start_date_again(
    source: Source, sandbox: Sandbox
) -> None:
    """Airbyte's "Clear data" of one stream (or adding it to a connection) drops its state only.

    The stream's table is emptied, so it must get every row again, not only the rows after the
    bookmark the exports stream still holds.
    """
    config = config_for(sandbox, start_date=START_DATE.isoformat())
    catalog = configured_catalog(source.discover(config))
    first = source("read", config=config, catalog=catalog)
    assert first.returncode == 0, first.stderr
    known = set(sandbox.jobs)
    kept = [s for s in first.last_states() if s["stream"]["stream_descriptor"]["name"] == EXPORTS]
    again = source("read", config=config, catalog=catalog, state=kept)
    assert again.returncode == 0, again.stderr
    start_ms = int(START_DATE.timestamp() * 1000)
    new = [job for job_id, job in sandbox.jobs.items() if job_id not in known]
    assert sorted(job["exportStartAt"] for job in new) == [start_ms, start_ms]
    assert {r["jobId"] for r in again.records(RECORDS)} == {job["jobId"] for job in new}
    assert "has no state of its own" in again.stderr


@pytest.mark.parametrize("wrapped", [False, True], ids=["singer-state", "meltano-state-get"])
def test_a_singer_state_carried_over_from_meltano_is_resumed(
    source: Source, sandbox: Sandbox, run_tap: t.Any, wrapped: bool
) -> None:
    config = config_for(sandbox)
    singer = run_tap(config)
    assert singer.returncode == 0, singer.stderr
    first_jobs = set(sandbox.jobs)
    state = {"singer_state": singer.final_state} if wrapped else singer.final_state
    run = source(
        "read", config=config, catalog=configured_catalog(source.discover(config)), state=state
    )
    assert run.returncode == 0, run.stderr
    singer_bookmarks = {
        p["context"]["crmInstanceId"]: p["nextExportStartAt"]
        for p in singer.final_state["bookmarks"][RECORDS]["partitions"]
    }
    new = [job for job_id, job in sandbox.jobs.items() if job_id not in first_jobs]
    assert {job["instance"]: job["exportStartAt"] for job in new} == singer_bookmarks
    assert {r["jobId"] for r in run.records(RECORDS)} == {job["jobId"] for job in new}


def test_expired_download_urls_are_renewed_and_every_row_comes_once(source: Source) -> None:
    with Sandbox(Scenario(faults=[Fault("url_expired", endpoint="download", times=2)])) as sb:
        config = config_for(sb)
        run = source("read", config=config, catalog=configured_catalog(source.discover(config)))
        assert run.returncode == 0, run.stderr
        assert any(r.fault == "url_expired" for r in sb.requests)
        for job_id in sb.jobs:
            assert check_rows(sb, job_id, run.records(RECORDS)).exact


# failures ----------------------------------------------------------------------------------


def test_a_failed_instance_leaves_its_streams_incomplete_and_the_others_synced(
    source: Source,
) -> None:
    scenario = Scenario(
        instances={
            DYNAMICS_INSTANCE: InstanceSpec(rows=250, files=3),
            SFDC_INSTANCE: InstanceSpec(rows=120, files=2, permitted=False),
        }
    )
    with Sandbox(scenario) as sb:
        config = config_for(sb)
        run = source("read", config=config, catalog=configured_catalog(source.discover(config)))
        assert run.returncode == 1
        (job_id,) = sb.jobs
        assert check_rows(sb, job_id, run.records(RECORDS)).exact
        blob = run.stream_state(RECORDS)
        assert bookmarks(blob)[DYNAMICS_INSTANCE] == sb.jobs[job_id]["nextExportStartAt"]
        assert bookmarks(blob)[SFDC_INSTANCE] is None
        for stream in STREAMS:
            assert run.statuses(stream)[-1] == "INCOMPLETE"
        (error,) = run.errors
        assert error["failure_type"] == "config_error"
        assert SFDC_INSTANCE in error["message"]
        assert "403" in error["message"]
        assert run.messages[-1]["type"] == "TRACE"
        assert_no_secrets(sb, run.stdout, run.stderr)


def test_a_crm_instance_linkedin_does_not_know_is_a_config_error(source: Source) -> None:
    unknown = "urn:li:crmInstance:(SFDC,00D000000000001AAA)"
    with Sandbox(Scenario(unknown_instance_status=404)) as sb:
        config = config_for(sb, crm_instance_ids=[unknown])
        run = source("read", config=config, catalog=configured_catalog(source.discover(config)))
        assert run.returncode == 1
        (error,) = run.errors
        assert error["failure_type"] == "config_error"
        assert unknown in error["message"]
        assert "not found" in error["message"]


def test_linkedin_failing_with_5xx_is_a_transient_error(source: Source) -> None:
    with Sandbox(
        Scenario(faults=[Fault("error", endpoint="create", status=503, times=None)])
    ) as sb:
        config = config_for(sb, request_max_retries=1)
        run = source("read", config=config, catalog=configured_catalog(source.discover(config)))
        assert run.returncode == 1
        assert [e["failure_type"] for e in run.errors] == ["transient_error"]
        assert "503" in run.errors[0]["message"]
        for stream in STREAMS:
            assert run.statuses(stream) == ["STARTED", "INCOMPLETE"]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("bad-setting", "poll_max_interval"),
        ("bad-state", "State message 0"),
        ("not-json-state", "not valid JSON"),
        ("unknown-stream", "no_such_stream"),
        ("exports-in-full-refresh", "cannot be read in different sync modes"),
    ],
)
def test_bad_inputs_end_the_read_as_a_config_error_before_any_call(
    source: Source, sandbox: Sandbox, case: str, expected: str
) -> None:
    config = config_for(sandbox)
    catalog = configured_catalog(source.discover(config))
    state: object = []
    if case == "bad-setting":
        config = {**config, "poll_interval": 10, "poll_max_interval": 1}
    elif case == "bad-state":
        state = [{"type": "STREAM", "stream": "nope"}]
    elif case == "not-json-state":
        state = RawText("[{")
    elif case == "exports-in-full-refresh":
        # Exports in full refresh would export every row of the incremental records stream
        # again on every read.
        (exports,) = [s for s in catalog["streams"] if s["stream"]["name"] == EXPORTS]
        exports["sync_mode"] = "full_refresh"
    else:
        catalog["streams"][0]["stream"]["name"] = "no_such_stream"
    run = source("read", config=config, catalog=catalog, state=state)
    assert run.returncode == 1
    assert [e["failure_type"] for e in run.errors] == ["config_error"]
    assert expected in run.errors[0]["message"]
    assert not sandbox.requests


def test_streams_of_an_unconfigured_family_are_reported_not_silently_skipped(
    source: Source, sandbox: Sandbox
) -> None:
    config = config_for(sandbox)
    catalog = configured_catalog(source.discover(config))
    del config["crm_instance_ids"]
    run = source("read", config=config, catalog=catalog)
    assert run.returncode == 1
    for stream in STREAMS:
        assert run.statuses(stream) == ["STARTED", "INCOMPLETE"]
    (error,) = run.errors
    assert error["failure_type"] == "config_error"
    assert RECORDS in error["message"]
    assert "crm_instance_ids" in run.stderr
    assert not sandbox.requests
