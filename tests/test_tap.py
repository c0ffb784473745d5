"""The tap process end to end against the sandbox: records, schema, state, config errors."""

from __future__ import annotations

import json
import typing as t

import pytest

from tap_linkedin_crm.sandbox import (
    DYNAMICS_INSTANCE,
    SFDC_INSTANCE,
    InstanceSpec,
    Sandbox,
    Scenario,
)

if t.TYPE_CHECKING:
    from tests.conftest import TapRun

RECORDS = "crm_data_validation_records"
EXPORTS = "crm_data_validation_exports"
RunTap = t.Callable[..., "TapRun"]


def partitions(state: dict[str, t.Any], stream: str = RECORDS) -> dict[str, dict[str, t.Any]]:
    return {
        p["context"]["crmInstanceId"]: p
        for p in state.get("bookmarks", {}).get(stream, {}).get("partitions", [])
    }


@pytest.fixture
def sandbox() -> t.Iterator[Sandbox]:
    scenario = Scenario(
        instances={
            DYNAMICS_INSTANCE: InstanceSpec(rows=250, files=3),
            SFDC_INSTANCE: InstanceSpec(rows=120, files=2, gzip=True),
        }
    )
    with Sandbox(scenario) as sb:
        yield sb


def test_given_two_instances_when_synced_then_every_row_typed_and_bookmarked(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    result = run_tap(sandbox.tap_config())
    assert result.returncode == 0, result.stderr
    rows = result.records(RECORDS)
    exports = result.records(EXPORTS)
    assert len(exports) == 2
    for export in exports:
        job_rows = [r for r in rows if r["jobId"] == export["jobId"]]
        expected = sandbox.expected_rows(export["jobId"])
        assert [r["crmRecordId"] for r in job_rows] == [e["crmRecordId"] for e in expected]
        assert [r["email"] for r in job_rows] == [e["email"] for e in expected]
        assert export["rowCount"] == len(expected)
        assert export["fileCount"] == len(sandbox.jobs[export["jobId"]]["downloadUrls"])
        assert all("x-li-ambry-ep" not in url for url in export["downloadUrls"])
    sample = rows[0]
    assert isinstance(sample["notAtCompany"], bool)
    assert sample["flaggedAt"].endswith("Z")
    assert "T" in sample["lastSyncedAt"]
    assert sample["fileIndex"] == 0
    assert sample["rowNumber"] == 1
    keys = {(r["crmInstanceId"], r["jobId"], r["fileIndex"], r["rowNumber"]) for r in rows}
    assert len(keys) == len(rows) == 370
    state = partitions(result.final_state)
    for export in exports:
        entry = state[export["crmInstanceId"]]
        assert entry["nextExportStartAt"] == export["nextExportStartAt"]
        assert "inFlightJob" not in entry
    assert "sandbox-secret" not in result.stdout + result.stderr


def test_given_first_run_state_when_synced_again_then_jobs_start_at_bookmarks(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    first = run_tap(sandbox.tap_config())
    assert first.returncode == 0, first.stderr
    bookmarks = {urn: p["nextExportStartAt"] for urn, p in partitions(first.final_state).items()}
    first_jobs = set(sandbox.jobs)
    second = run_tap(sandbox.tap_config(), first.final_state)
    assert second.returncode == 0, second.stderr
    new_jobs = {i: j for i, j in sandbox.jobs.items() if i not in first_jobs}
    assert len(new_jobs) == 2
    for job in new_jobs.values():
        assert job["exportStartAt"] == bookmarks[job["instance"]]
    assert {r["jobId"] for r in second.records(RECORDS)} == set(new_jobs)


def test_given_doc_sample_quirk_when_next_start_equals_start_then_bookmark_passes_the_window(
    run_tap: RunTap,
) -> None:
    """LinkedIn's documentation sample has nextExportStartAt == exportStartAt: following it would
    re-export the same window on every run. The bookmark moves to exportEndAt, with a warning."""
    scenario = Scenario(
        instances={DYNAMICS_INSTANCE: InstanceSpec(rows=3, files=1)}, next_export_start="start"
    )
    with Sandbox(scenario) as sb:
        result = run_tap(sb.tap_config())
        job = next(iter(sb.jobs.values()))
        second = run_tap(sb.tap_config(), result.final_state)
        jobs = sorted(sb.jobs.values(), key=lambda j: j["jobId"])
    assert result.returncode == 0, result.stderr
    entry = partitions(result.final_state)[DYNAMICS_INSTANCE]
    assert entry["nextExportStartAt"] == job["exportEndAt"] > job["exportStartAt"]
    assert "exportEndAt (nextExportStartAt was" in result.stderr
    assert second.returncode == 0, second.stderr
    assert jobs[1]["exportStartAt"] == job["exportEndAt"]  # the next run moved on


def test_given_empty_export_when_synced_then_bookmark_still_advances(run_tap: RunTap) -> None:
    scenario = Scenario(instances={SFDC_INSTANCE: InstanceSpec(rows=0, files=1)})
    with Sandbox(scenario) as sb:
        result = run_tap(sb.tap_config())
        job = next(iter(sb.jobs.values()))
    assert result.returncode == 0, result.stderr
    assert result.records(RECORDS) == []
    assert result.records(EXPORTS)[0]["rowCount"] == 0
    assert (
        partitions(result.final_state)[SFDC_INSTANCE]["nextExportStartAt"]
        == (job["nextExportStartAt"])
    )


def test_given_start_date_when_first_synced_then_export_starts_there(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    start = "2026-11-20T00:00:00Z"
    result = run_tap(sandbox.tap_config(start_date=start, crm_instance_ids=[SFDC_INSTANCE]))
    assert result.returncode == 0, result.stderr
    job = next(iter(sandbox.jobs.values()))
    assert job["exportStartAt"] == 1795132800000


def test_given_header_drift_and_column_types_when_synced_then_nothing_dropped(
    run_tap: RunTap,
) -> None:
    scenario = Scenario(
        instances={DYNAMICS_INSTANCE: InstanceSpec(rows=40, files=4, header_drift=True)}
    )
    with Sandbox(scenario) as sb:
        config = sb.tap_config(column_types={"flaggedAt": "integer"})
        result = run_tap(config)
        job_id = next(iter(sb.jobs))
        expected = sb.expected_rows(job_id)
    assert result.returncode == 0, result.stderr
    rows = result.records(RECORDS)
    assert len(rows) == len(expected)
    for row, raw in zip(rows, expected, strict=True):
        assert row["flaggedAt"] == int(raw["flaggedAt"])
        for column, value in raw.items():
            if column not in row or row[column] is None:
                assert (row.get("extraColumns") or {}).get(column) == value or value == ""
    assert any((r.get("extraColumns") or {}).get("territory") for r in rows)
    assert "territory" in result.stderr


def test_given_only_exports_selected_when_synced_then_summaries_and_bookmark_without_rows(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    discovered = run_tap(sandbox.tap_config(), args=["--discover"])
    catalog = json.loads(discovered.stdout)
    for entry in catalog["streams"]:
        for metadata in entry["metadata"]:
            if metadata["breadcrumb"] == []:
                metadata["metadata"]["selected"] = entry["tap_stream_id"] == EXPORTS
    result = run_tap(sandbox.tap_config(), catalog=catalog)
    assert result.returncode == 0, result.stderr
    assert result.records(RECORDS) == []
    exports = result.records(EXPORTS)
    assert len(exports) == 2
    assert all(e["rowCount"] is None for e in exports)
    assert not [r for r in sandbox.requests if r.endpoint == "download"]
    state = partitions(result.final_state, EXPORTS)
    assert {e["crmInstanceId"]: e["nextExportStartAt"] for e in exports} == {
        urn: p["nextExportStartAt"] for urn, p in state.items()
    }


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"crm_instance_ids": ["urn:li:crmInstance:(ORACLE,1)"]}, "Unknown CRM key 'ORACLE'"),
        ({"crm_instance_ids": ["not-a-urn"]}, "Invalid CRM instance URN 'not-a-urn'"),
        ({"client_secret": None}, "Set both client_id and client_secret"),
        ({"poll_interval": -1}, "poll_interval"),
        ({"job_max_attempts": "three"}, "job_max_attempts"),
        ({"column_types": {"flaggedAt": "datetime"}}, "column_types"),
    ],
)
def test_given_bad_config_when_run_then_exit_1_with_clear_error_and_no_http(
    sandbox: Sandbox, run_tap: RunTap, overrides: dict[str, t.Any], expected: str
) -> None:
    config = {k: v for k, v in {**sandbox.tap_config(), **overrides}.items() if v is not None}
    result = run_tap(config)
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert sandbox.requests == []


def test_given_refused_client_when_run_then_exit_1_without_secret(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    result = run_tap(sandbox.tap_config(client_secret="definitely-wrong-secret"))
    assert result.returncode == 1
    assert "refused the client credentials" in result.stderr
    assert "definitely-wrong-secret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_given_about_when_asked_then_capabilities_listed(run_tap: RunTap) -> None:
    result = run_tap({}, args=["--about", "--format=json"])
    about = json.loads(result.stdout)
    assert sorted(about["capabilities"]) == sorted(
        [
            "catalog",
            "discover",
            "state",
            "about",
            "stream-maps",
            "schema-flattening",
            "structured-logging",
            "batch",
        ]
    )
    assert "crm_instance_ids" in about["settings"]["properties"]


def test_given_state_claiming_more_rows_than_the_file_has_when_resumed_then_instance_fails(
    run_tap: RunTap,
) -> None:
    scenario = Scenario(instances={DYNAMICS_INSTANCE: InstanceSpec(rows=30, files=2)})
    with Sandbox(scenario) as sb:
        first = run_tap(sb.tap_config())
        job_id = first.records(EXPORTS)[0]["jobId"]
        state = {
            "bookmarks": {
                RECORDS: {
                    "partitions": [
                        {
                            "context": {"crmInstanceId": DYNAMICS_INSTANCE},
                            "nextExportStartAt": 1,
                            "inFlightJob": {
                                "jobId": job_id,
                                "exportStartAt": 1,
                                "fileIndex": 0,
                                "rowsDone": 999,
                            },
                        }
                    ]
                }
            }
        }
        second = run_tap(sb.tap_config(), state)
    assert second.returncode == 1
    assert "were already emitted from it" in second.stderr
    assert second.records(RECORDS) == []
    entry = partitions(second.final_state)[DYNAMICS_INSTANCE]
    assert entry["nextExportStartAt"] == 1
    assert entry["inFlightJob"]["jobId"] == job_id


def test_given_test_flag_when_run_then_stops_after_first_record_without_bookmark(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    result = run_tap(sandbox.tap_config(), args=["--test"])
    assert result.returncode == 0, result.stderr
    # One record per configured stream (the SDK's dry run), and no bookmark moved.
    assert result.stdout.count('"type":"RECORD","stream":"crm_data_validation_records"') == 1
    assert result.stdout.count('"type":"RECORD","stream":"crm_data_validation_exports"') == 1
    assert result.stdout.count('"type":"RECORD"') == 2
    messages = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    states = [m["value"] for m in messages if m["type"] == "STATE"]
    assert all("nextExportStartAt" not in json.dumps(state) for state in states)
    assert "An unhandled error occurred" not in result.stderr
    assert "Traceback" not in result.stderr
    # One job at a time: each stream's run creates the job of the first instance only (it has
    # rows), not one per configured instance, and the second instance's is never created.
    creates = [r for r in sandbox.requests if r.method == "POST" and r.endpoint == "create"]
    assert len(creates) == 2, [r.endpoint for r in sandbox.requests]
    assert len(sandbox.tap_config()["crm_instance_ids"]) > 1


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"client_secret": "wrong-secret-Zq55"}, "client credentials"),
        ({"client_id": None, "client_secret": None}, "No credentials for the CRM exports"),
    ],
    ids=["refused", "no-credentials"],
)
def test_given_test_flag_when_the_connection_fails_then_one_clear_error_and_exit_1(
    sandbox: Sandbox, run_tap: RunTap, overrides: dict[str, t.Any], words: str
) -> None:
    """`--test` is the connection test: its failure is the message, not a traceback."""
    config = {k: v for k, v in (sandbox.tap_config() | overrides).items() if v is not None}
    result = run_tap(config, args=["--test"])
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "| ERROR" in line]
    assert any(words in line for line in errors), errors
    assert "wrong-secret-Zq55" not in result.stdout + result.stderr


def test_given_test_flag_and_no_export_family_configured_then_it_fails_not_passes(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    """A connection test with neither crm_instance_ids nor a member token tests nothing: it
    fails with the sync's "Nothing to export" line (it passed, exit 0, with only warnings);
    `--test=schema` still needs no settings."""
    config = {k: v for k, v in sandbox.tap_config().items() if k != "crm_instance_ids"}
    result = run_tap(config, args=["--test"])
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "| ERROR" in line]
    assert len(errors) == 1, errors
    assert "Nothing to export" in errors[0]
    assert sandbox.requests == []
    schema_only = run_tap({}, args=["--test=schema"])
    assert schema_only.returncode == 0, schema_only.stderr[-2000:]
    assert '"type":"SCHEMA"' in schema_only.stdout
