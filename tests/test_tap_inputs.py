"""What the tap is given, through the real process: settings (file and environment), state, stream
maps, logging. Bad input ends with one clear line and exit 1, never a traceback, never a secret's
value, and before any export job is created (the sandbox's request log shows it)."""

from __future__ import annotations

import datetime as dt
import json
import socket
import typing as t

import pytest
from faultkit import EXPORTS, RECORDS, bookmark, in_flight, partitions
from process_runs import ENV_PREFIX, as_environment, run_process

from tap_linkedin_crm.sandbox import (
    DYNAMICS_INSTANCE,
    SFDC_INSTANCE,
    InstanceSpec,
    Sandbox,
    Scenario,
)

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from process_runs import ProcessRun

    from tests.conftest import TapRun

A = DYNAMICS_INSTANCE
B = SFDC_INSTANCE
RunTap = t.Callable[..., "TapRun"]
START_DATE = (dt.datetime.now(tz=dt.UTC) - dt.timedelta(days=5)).isoformat()


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    scenario = Scenario(
        instances={
            A: InstanceSpec(rows=40, files=4, header_drift=True),
            B: InstanceSpec(rows=20, files=1),
        },
        job_processing_polls=1,
    )
    with Sandbox(scenario) as sb:
        yield sb


def assert_refused_cleanly(run: TapRun | ProcessRun, sb: Sandbox, words: str) -> None:
    """Exit 1, the error in one log line, no traceback, and not one request to LinkedIn."""
    assert run.returncode == 1, run.stderr[-2000:]
    errors = [line for line in run.stderr.splitlines() if "| ERROR" in line]
    assert len(errors) == 1, errors
    assert words in errors[0], errors[0]
    assert "Traceback" not in run.stderr
    assert sb.requests == []


def synced_instances(run: TapRun | ProcessRun) -> set[str]:
    return {r["crmInstanceId"] for r in run.records(EXPORTS)}


# Item 4: secret settings of the wrong JSON type -------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "value", "secret"),
    [
        ("client_secret", 98765432123456789, "98765432123456789"),
        ("client_secret", {"value": "sec-in-an-object-Zq84"}, "sec-in-an-object-Zq84"),
        ("access_token", ["tok-in-a-list-Zq81"], "tok-in-a-list-Zq81"),
        ("access_token", {"token": "tok-in-an-object-Zq82"}, "tok-in-an-object-Zq82"),
        ("refresh_token", 4455667788990011, "4455667788990011"),
        ("analytics_access_token", ["tok-analytics-Zq83"], "tok-analytics-Zq83"),
    ],
    ids=[
        "client_secret-number",
        "client_secret-object",
        "access_token-list",
        "access_token-object",
        "refresh_token-number",
        "analytics_access_token-list",
    ],
)
def test_given_secret_of_the_wrong_type_then_named_but_never_shown(
    sandbox: Sandbox, run_tap: RunTap, setting: str, value: object, secret: str
) -> None:
    run = run_tap(sandbox.tap_config(**{setting: value}))
    assert_refused_cleanly(
        run, sandbox, f"{setting}: invalid value (the value of this secret setting is not shown)"
    )
    assert secret not in run.stdout + run.stderr


# Item 5: every setting type from the environment ------------------------------------------------


def test_given_every_setting_type_in_the_environment_then_each_takes_effect(
    sandbox: Sandbox,
) -> None:
    """Numbers, integers, a boolean, objects and an array, all from `TAP_LINKEDIN_CRM_*`."""
    config = sandbox.tap_config(
        # numbers, with and without a fraction
        poll_interval="0.05",
        poll_max_interval="0.2",
        request_timeout="10",
        request_retry_delay="0.05",
        analytics_lag_hours="12.5",
        # integers
        job_max_attempts="2",
        max_jobs_in_flight="5",
        request_max_retries="3",
        flattening_max_depth="1",
        # a boolean
        flattening_enabled="true",
        # objects
        column_types={"flaggedAt": "integer"},
        stream_maps={RECORDS: {"mailAddress": "email"}},
        # an array
        crm_instance_ids=[A, B],
    )
    run = run_process(["--config", "ENV"], as_environment(config))
    assert run.returncode == 0, run.stderr[-2000:]
    assert synced_instances(run) == {A, B}
    records = run.records(RECORDS)
    assert records
    assert all(isinstance(r["flaggedAt"], int) for r in records if r["flaggedAt"] is not None)
    assert all(r["mailAddress"] == r["email"] for r in records)  # the stream map
    # Flattening makes the object columns JSON strings.
    assert run.schema(RECORDS)["properties"]["extraColumns"]["type"] == ["string", "null"]
    drifted = [r["extraColumns"] for r in records if r["extraColumns"]]
    assert drifted
    assert all(isinstance(value, str) and json.loads(value) for value in drifted)


@pytest.mark.parametrize(
    ("text", "instances"),
    [
        (A, {A}),
        (f"{A} {B}", {A, B}),
        (f"{A};{B}", {A, B}),
        (f" {A} ;\n {B} ", {A, B}),
        (json.dumps([A, B]), {A, B}),
    ],
    ids=["one-urn", "space", "semicolon", "mixed-whitespace", "json-array"],
)
def test_given_crm_instance_ids_in_the_environment_then_urns_kept_whole(
    sandbox: Sandbox, text: str, instances: set[str]
) -> None:
    """A URN's own comma never splits it."""
    env = as_environment(sandbox.tap_config())
    env[ENV_PREFIX + "CRM_INSTANCE_IDS"] = text
    run = run_process(["--config", "ENV"], env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert synced_instances(run) == instances


def test_given_comma_separated_urns_in_the_environment_then_the_error_says_how_to_list_them(
    sandbox: Sandbox,
) -> None:
    env = as_environment(sandbox.tap_config())
    env[ENV_PREFIX + "CRM_INSTANCE_IDS"] = f"{A},{B}"
    run = run_process(["--config", "ENV"], env)
    assert_refused_cleanly(
        run,
        sandbox,
        "(in an environment variable, list several as a JSON array, or separated by spaces or ';')",
    )


@pytest.mark.parametrize(
    ("setting", "text", "words"),
    [
        ("POLL_INTERVAL", "fast", "TAP_LINKEDIN_CRM_POLL_INTERVAL='fast': expected a number"),
        ("JOB_MAX_ATTEMPTS", "2.5", "TAP_LINKEDIN_CRM_JOB_MAX_ATTEMPTS='2.5': expected a whole"),
        ("FLATTENING_ENABLED", "maybe", "FLATTENING_ENABLED='maybe': expected true or false"),
        ("COLUMN_TYPES", "{flaggedAt}", "COLUMN_TYPES='{flaggedAt}': expected a JSON object"),
        ("CLIENT_SECRET", '{"a": 1', "the value of this secret setting is not shown"),
    ],
    ids=["number", "integer", "boolean", "object", "secret"],
)
def test_given_unreadable_environment_value_then_the_variable_is_named(
    sandbox: Sandbox, setting: str, text: str, words: str
) -> None:
    env = as_environment(sandbox.tap_config())
    env[ENV_PREFIX + setting] = text
    run = run_process(["--config", "ENV"], env)
    if setting == "CLIENT_SECRET":
        # Any string is a valid secret; make it fail for another reason and check it is hidden.
        env[ENV_PREFIX + "ACCESS_TOKEN"] = text
        env.pop(ENV_PREFIX + "CLIENT_ID")
        run = run_process(["--config", "ENV"], env)
        assert run.returncode == 1
        assert text not in run.stdout + run.stderr
        return
    assert_refused_cleanly(run, sandbox, words)


# Item 13: start_date ------------------------------------------------------------------------------


def test_given_start_date_in_the_future_then_startup_error(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    future = (dt.datetime.now(tz=dt.UTC) + dt.timedelta(days=3)).date().isoformat()
    run = run_tap(sandbox.tap_config(start_date=future))
    assert_refused_cleanly(run, sandbox, f"start_date '{future}' is in the future")


def test_given_start_date_older_than_30_days_then_warned_and_synced(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    old = (dt.datetime.now(tz=dt.UTC) - dt.timedelta(days=45)).date().isoformat()
    run = run_tap(sandbox.tap_config(start_date=old))
    assert run.returncode == 0, run.stderr[-2000:]
    warnings = [line for line in run.stderr.splitlines() if "| WARNING" in line]
    assert any("is more than 30 days back" in line and old in line for line in warnings)
    assert synced_instances(run) == {A, B}


# Item 14: stream maps checked before any job; network errors name the host -----------------------


def test_given_typo_in_a_stream_map_then_whole_error_before_any_request(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    config = sandbox.tap_config(stream_maps={RECORDS: {"email_hash": "md5(emial)"}})
    run = run_tap(config)
    assert_refused_cleanly(run, sandbox, "Invalid stream_maps:")
    error = next(line for line in run.stderr.splitlines() if "| ERROR" in line)
    for words in ("'md5(emial)'", "uses the name 'emial'", "Available properties:", "email"):
        assert words in error
    assert "MapExpressionError" not in run.stderr
    assert not [r for r in sandbox.requests if r.endpoint == "create"]


def test_given_stream_map_failing_on_one_row_then_named_and_that_row_resumed_not_lost(
    run_tap: RunTap,
) -> None:
    """A map that raises on row 5 only (here in a clone): the instance fails naming the map's
    error and the row; the state resumes at row 5, so once the map is fixed every row of every
    output stream arrives exactly once (row 5 is neither lost nor sent twice)."""
    clone = "records_clone"
    with Sandbox(Scenario(instances={B: InstanceSpec(rows=20, files=1)})) as sb:
        broken = {
            RECORDS: {"x": "rowNumber"},
            clone: {"__source__": RECORDS, "y": "1 // (rowNumber - 5)"},
        }
        first = run_tap(sb.tap_config(crm_instance_ids=[B], stream_maps=broken))
        assert first.returncode == 1, first.stderr[-2000:]
        assert "Traceback" not in first.stderr
        errors = [line for line in first.stderr.splitlines() if "| ERROR" in line]
        assert any(
            "stream_maps" in line and "row 5" in line and "ZeroDivisionError" in line
            for line in errors
        ), errors
        assert in_flight(first.final_state, B)["rowsDone"] == 4
        fixed = {RECORDS: {"x": "rowNumber"}, clone: {"__source__": RECORDS, "y": "rowNumber"}}
        second = run_tap(sb.tap_config(crm_instance_ids=[B], stream_maps=fixed), first.final_state)
        assert second.returncode == 0, second.stderr[-2000:]
    for stream in (RECORDS, clone):
        rows = [r["rowNumber"] for run in (first, second) for r in run.records(stream)]
        assert sorted(rows) == list(range(1, 21)), stream


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("setting", "path", "words"),
    [
        ("api_url", "/v2", "Could not create an export job for CRM instance"),
        ("token_url", "/oauth/v2/accessToken", "Could not reach the LinkedIn token endpoint"),
    ],
)
def test_given_refused_connection_then_the_error_names_the_host(
    sandbox: Sandbox, run_tap: RunTap, setting: str, path: str, words: str
) -> None:
    port = closed_port()
    config = sandbox.tap_config(
        request_max_retries=1,
        request_retry_delay=0.05,
        **{setting: f"http://127.0.0.1:{port}{path}"},
    )
    run = run_tap(config)
    assert run.returncode == 1
    assert f"{words}" in run.stderr
    assert f"connection to 127.0.0.1:{port} refused" in run.stderr
    assert "Traceback" not in run.stderr


# Item 15: structured logging ---------------------------------------------------------------------


STRUCTURED_LOG_CONFIG = """\
version: 1
disable_existing_loggers: false
formatters:
  structured:
    (): singer_sdk.logging.StructuredFormatter
handlers:
  console:
    class: logging.StreamHandler
    formatter: structured
    stream: ext://sys.stderr
root:
  level: INFO
  handlers: [console]
"""


def test_given_structured_logging_then_failures_are_error_lines(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Meltano shows a tap's failures as errors when the tap logs structured JSON (the
    `structured-logging` capability, listed by --about)."""
    log_config = tmp_path / "logging.yml"
    log_config.write_text(STRUCTURED_LOG_CONFIG)
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(sandbox.tap_config(crm_instance_ids=["not-a-urn"])))
    run = run_process(["--config", str(config_path)], {"SINGER_SDK_LOG_CONFIG": str(log_config)})
    assert run.returncode == 1
    lines = [json.loads(line) for line in run.stderr.splitlines()]
    errors = [line for line in lines if line["level"] == "error"]
    assert len(errors) == 1
    assert "Invalid CRM instance URN 'not-a-urn'" in errors[0]["message"]
    assert {line["level"] for line in lines} == {"info", "error"}
    about = run_process(["--about", "--format=json"])
    assert "structured-logging" in json.loads(about.stdout)["capabilities"]


# Item 11: state given to the tap -----------------------------------------------------------------


def first_run_state(sandbox: Sandbox, run_tap: RunTap) -> tuple[TapRun, dict[str, t.Any]]:
    first = run_tap(sandbox.tap_config(start_date=START_DATE))
    assert first.returncode == 0, first.stderr[-2000:]
    return first, first.final_state


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"bookmarks": {', "The --state file is not valid JSON (Expecting property name"),
        ("[]", "The state must be a JSON object, not a list."),
        ('[{"bookmarks": {}}]', "The state must be a JSON object, not a list."),
        ('"bookmarks"', "The state must be a JSON object, not a string."),
        ('{"bookmarks": []}', 'The state\'s "bookmarks" must be an object of streams, not a list.'),
        (
            json.dumps({"bookmarks": {RECORDS: {"partitions": [{"nextExportStartAt": 1}]}}}),
            f'Partition 0 of stream "{RECORDS}" has no "context" object',
        ),
        (
            json.dumps({"bookmarks": {RECORDS: []}}),
            f'State of stream "{RECORDS}" must be an object',
        ),
        ('{"singer_state": []}', 'The state\'s "singer_state" must be a JSON object.'),
    ],
    ids=[
        "corrupt-json",
        "empty-list",
        "a-list",
        "a-string",
        "bookmarks-a-list",
        "no-context",
        "stream-a-list",
        "bad-wrapper",
    ],
)
def test_given_malformed_state_then_one_clear_line_and_exit_1(
    sandbox: Sandbox, run_tap: RunTap, tmp_path: Path, text: str, words: str
) -> None:
    state_path = tmp_path / "state.json"
    state_path.write_text(text)
    run = run_tap(sandbox.tap_config(), args=["--state", str(state_path)])
    assert_refused_cleanly(run, sandbox, words)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (None, "Cannot read the --config file"),
        ('{"client_secret": "s3cr3t-Zq97", ', "is not valid JSON (Expecting property name"),
        ("[]", "must hold a JSON object of settings, not a list"),
        ('"client_id"', "must hold a JSON object of settings, not a string"),
    ],
    ids=["missing", "corrupt-json", "a-list", "a-string"],
)
def test_given_unusable_config_file_then_one_clear_line_and_exit_1(
    sandbox: Sandbox, tmp_path: Path, text: str | None, words: str
) -> None:
    """Whatever the mode (sync, --discover, --test), and never quoting the file's content."""
    path = tmp_path / "config.json"
    if text is not None:
        path.write_text(text)
    for mode in ([], ["--discover"], ["--test"]):
        run = run_process(["--config", str(path), *mode])
        assert_refused_cleanly(run, sandbox, words)
        assert str(path) in run.stderr
        assert "s3cr3t-Zq97" not in run.stdout + run.stderr


def test_given_catalog_older_than_column_types_then_records_follow_the_catalog(
    run_tap: RunTap, tmp_path: Path
) -> None:
    """A catalog discovered before `column_types` changed, and edited like Meltano's `schema`
    extra: every record has exactly the catalog schema's fields, typed as it says; the columns
    it does not declare are kept in extraColumns, and a warning says to discover again."""
    with Sandbox(Scenario(instances={B: InstanceSpec(rows=20, files=1)})) as sb:
        config = sb.tap_config(crm_instance_ids=[B])
        catalog = json.loads(run_tap(config, args=["--discover"]).stdout)
        [entry] = [s for s in catalog["streams"] if s["tap_stream_id"] == RECORDS]
        properties = entry["schema"]["properties"]
        properties["notAtCompany"] = {"type": ["string", "null"]}  # edited: raw text wanted
        del properties["crmCompanyName"]  # dropped from the schema: goes to extraColumns
        changed = {**config, "column_types": {"title": "integer", "newColumn": "number"}}
        run = run_tap(changed, catalog=catalog)
        assert run.returncode == 0, run.stderr[-2000:]
    [schema] = [
        m["schema"] for m in run.messages if m["type"] == "SCHEMA" and m["stream"] == RECORDS
    ]
    assert schema["properties"] == properties
    records = run.records(RECORDS)
    assert len(records) == 20
    for record in records:
        assert set(record) == set(properties)
        assert isinstance(record["title"], str)
        assert record["notAtCompany"] in {"true", "false"}
        assert set(record["extraColumns"]) == {"crmCompanyName"}
        assert record["invalidValues"] is None
    warnings = [line for line in run.stderr.splitlines() if "| WARNING" in line]
    assert any(
        "does not match the settings" in w and "crmCompanyName" in w and "title" in w
        for w in warnings
    ), warnings


def test_given_catalog_typing_columns_with_any_of_then_records_keep_those_types(
    run_tap: RunTap,
) -> None:
    """`anyOf` is JSON schema's other spelling of a nullable type (some tools write it): the
    column keeps its type, and it is not taken for a change of column_types. A column the
    catalog types as an object no CSV text can be: a warning names it."""
    with Sandbox(Scenario(instances={B: InstanceSpec(rows=5, files=1)})) as sb:
        config = sb.tap_config(crm_instance_ids=[B])
        catalog = json.loads(run_tap(config, args=["--discover"]).stdout)
        [entry] = [s for s in catalog["streams"] if s["tap_stream_id"] == RECORDS]
        properties = entry["schema"]["properties"]
        properties["notAtCompany"] = {"anyOf": [{"type": "boolean"}, {"type": "null"}]}
        properties["flaggedAt"] = {
            "oneOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]
        }
        properties["title"] = {"type": ["object", "null"], "properties": {}}
        run = run_tap(config, catalog=catalog)
        assert run.returncode == 0, run.stderr[-2000:]
    records = run.records(RECORDS)
    assert len(records) == 5
    for record in records:
        assert isinstance(record["notAtCompany"], bool), record
        assert record["flaggedAt"].endswith("Z"), record
        assert record["invalidValues"] is None
    warnings = [line for line in run.stderr.splitlines() if "| WARNING" in line]
    assert not any("does not match the settings" in w for w in warnings), warnings
    assert any("no CSV column can have" in w and "title" in w for w in warnings), warnings


def test_given_no_export_family_configured_then_one_clear_line_and_exit_1(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    """Credentials but neither crm_instance_ids nor a member token: not a quiet empty success."""
    config = {k: v for k, v in sandbox.tap_config().items() if k != "crm_instance_ids"}
    run = run_tap(config)
    assert_refused_cleanly(run, sandbox, "Nothing to export")
    assert "crm_instance_ids" in run.stderr
    assert run.records(EXPORTS) == []


def test_given_only_the_other_family_selected_then_the_error_names_what_is_missing(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    """CRM configured, only analytics streams selected: the error names the member token the
    selected streams need, and does not claim that crm_instance_ids is unset."""
    config = sandbox.tap_config()
    catalog = json.loads(run_tap(config, args=["--discover"]).stdout)
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = entry["tap_stream_id"].startswith("sales_")
    run = run_tap(config, catalog=catalog)
    assert_refused_cleanly(run, sandbox, "Nothing to export")
    [error] = [line for line in run.stderr.splitlines() if "| ERROR" in line]
    assert "analytics_access_token" in error
    assert "crm_instance_ids" not in error


@pytest.mark.parametrize(
    "text", ['{"streams": 5}', "[]", '{"streams": [7]}'], ids=["streams-a-number", "a-list", "x"]
)
def test_given_catalog_that_is_not_a_catalog_then_one_clear_line_and_exit_1(
    sandbox: Sandbox, run_tap: RunTap, tmp_path: Path, text: str
) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(text)
    run = run_tap(sandbox.tap_config(), args=["--catalog", str(path)])
    assert_refused_cleanly(run, sandbox, "The --catalog file is not a Singer catalog")


def test_given_text_bookmark_in_one_partition_then_only_that_instance_fails(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    _, state = first_run_state(sandbox, run_tap)
    partitions(state)[A]["nextExportStartAt"] = "yesterday"
    b_mark = bookmark(state, B)
    since = len(sandbox.requests)
    run = run_tap(sandbox.tap_config(start_date=START_DATE), state)
    assert run.returncode == 1
    assert "1 of 2 CRM instance(s) failed" in run.stderr
    assert f"CRM instance {A}: bookmark in the state is 'yesterday', not a number" in run.stderr
    assert "Traceback" not in run.stderr
    assert synced_instances(run) == {B}
    assert bookmark(run.final_state, B) > b_mark  # type: ignore[operator]
    assert partitions(run.final_state)[A]["nextExportStartAt"] == "yesterday"  # left as it was
    assert not [r for r in sandbox.requests[since:] if r.endpoint == "create" and r.instance == A]


def test_given_meltano_wrapped_state_then_unwrapped_with_a_note(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    """`meltano state get` prints {"singer_state": {...}}: the run goes on from its bookmarks."""
    _, state = first_run_state(sandbox, run_tap)
    jobs_before = set(sandbox.jobs)
    run = run_tap(sandbox.tap_config(start_date=START_DATE), {"singer_state": state})
    assert run.returncode == 0, run.stderr[-2000:]
    assert 'The state was wrapped as {"singer_state": ...}' in run.stderr
    new_jobs = [job for job_id, job in sandbox.jobs.items() if job_id not in jobs_before]
    assert {job["instance"]: job["exportStartAt"] for job in new_jobs} == {
        A: bookmark(state, A),
        B: bookmark(state, B),
    }


def test_given_in_flight_file_index_past_the_jobs_files_then_error_not_a_moved_bookmark(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    first, _ = first_run_state(sandbox, run_tap)
    job_id = next(r["jobId"] for r in first.records(EXPORTS) if r["crmInstanceId"] == A)
    job = sandbox.jobs[job_id]
    state = {
        "bookmarks": {
            RECORDS: {
                "partitions": [
                    {
                        "context": {"crmInstanceId": A},
                        "nextExportStartAt": job["exportStartAt"],
                        "inFlightJob": {
                            "jobId": job_id,
                            "exportStartAt": job["exportStartAt"],
                            "fileIndex": 6,
                            "rowsDone": 0,
                        },
                    }
                ]
            }
        }
    }
    run = run_tap(sandbox.tap_config(crm_instance_ids=[A]), state)
    assert run.returncode == 1
    assert (
        f"the state says file 7, row 0 of export job {job_id} was reached, but the job has 4"
        in (run.stderr)
    )
    assert "Traceback" not in run.stderr
    assert run.records(RECORDS) == []
    assert bookmark(run.final_state, A) == job["exportStartAt"]  # not moved
    assert in_flight(run.final_state, A)["jobId"] == job_id  # type: ignore[index]


def test_given_bookmark_later_than_the_resumed_jobs_end_then_it_never_moves_back(
    sandbox: Sandbox, run_tap: RunTap
) -> None:
    """Issue item 2: the bookmark never moves backwards (a hand-edited state, a clock step)."""
    first, _ = first_run_state(sandbox, run_tap)
    job_id = next(r["jobId"] for r in first.records(EXPORTS) if r["crmInstanceId"] == A)
    job = sandbox.jobs[job_id]
    later = job["nextExportStartAt"] + 3_600_000
    state = {
        "bookmarks": {
            RECORDS: {
                "partitions": [
                    {
                        "context": {"crmInstanceId": A},
                        "nextExportStartAt": later,
                        "inFlightJob": {"jobId": job_id, "exportStartAt": job["exportStartAt"]},
                    }
                ]
            }
        }
    }
    run = run_tap(sandbox.tap_config(crm_instance_ids=[A]), state)
    assert run.returncode == 0, run.stderr[-2000:]
    assert {r["jobId"] for r in run.records(RECORDS)} == {job_id}  # the job was emitted again
    assert bookmark(run.final_state, A) == later
