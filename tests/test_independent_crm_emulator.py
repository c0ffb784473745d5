"""The real tap process against an independent CRM emulator, not our sandbox.

That emulator was written from the API notes alone: other CSV headers, a separate file host with
its own signature, other statuses and other ways to misbehave. Each test is a case where the tap
once depended on how our own sandbox happens to behave.
"""

from __future__ import annotations

import email.utils
import json
import time
import typing as t

import pytest
from independent_crm_emulator import CLIENT_SECRET, SIGNATURE_MARK, TOKEN, CrmEmulator, Fault
from process_runs import ProcessRun, run_process

if t.TYPE_CHECKING:
    from pathlib import Path

URN = "urn:li:crmInstance:(DYNAMICS,362a3584-0d9b-44a1-a547-25de5cd95d08)"
RECORDS = "crm_data_validation_records"
RATE_LIMITED = b'{"message": "Too many requests", "status": 429}'


def rows_file(job_id: int, rows: int = 5) -> list[bytes]:
    body = "Record Id,Record Type,Flagged\n" + "".join(
        f"{job_id}-{i},LEAD,yes\n" for i in range(rows)
    )
    return [body.encode()]


def run_tap(tmp_path: Path, config: dict[str, t.Any], *args: str) -> ProcessRun:
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    run = run_process(["--config", str(config_path), *args])
    for secret in (CLIENT_SECRET, TOKEN, SIGNATURE_MARK):
        assert secret not in run.stdout
        assert secret not in run.stderr
    assert "Traceback" not in run.stderr
    return run


def test_retry_after_as_an_http_date_is_honoured(tmp_path: Path) -> None:
    # RFC 9110 allows Retry-After as an HTTP-date. Read as "no Retry-After", the tap backed off
    # for 0.05 s, 0.1 s and gave up long before the date: the instance failed.
    until = float(int(time.time()) + 3)  # an HTTP-date has whole seconds
    later = email.utils.formatdate(until, usegmt=True)
    limited = Fault(429, RATE_LIMITED, {"Retry-After": later}, until=until)
    with CrmEmulator(rows_file, faults={"create": [limited]}) as emu:
        run = run_tap(tmp_path, emu.config([URN], request_max_retries=2))
        assert run.returncode == 0, run.stderr
        assert len(run.records(RECORDS)) == 5
        assert emu.count("create") <= 3


@pytest.mark.parametrize("form", ["string", "urn", "location-only"])
def test_job_id_in_another_form_on_create(tmp_path: Path, form: str) -> None:
    # `"7001"`, `urn:li:crmDataValidationExportJob:7001`, or no X-RestLi-Id and a Location
    # with a query string: the instance failed on every run ("no usable job id").
    with CrmEmulator(rows_file, restli_id=form) as emu:
        run = run_tap(tmp_path, emu.config([URN]))
        assert run.returncode == 0, run.stderr
        assert {r["jobId"] for r in run.records(RECORDS)} == {7001}
        assert len(run.records(RECORDS)) == 5


def test_a_header_naming_a_column_twice(tmp_path: Path) -> None:
    # A human-readable export with two "Company" columns (CRM's and LinkedIn's), and a header
    # ending in two commas: the instance failed on every run ("names column ... more than once").
    data = b"Record Id,Company,Company,,\r\n1,Acme,Foo,,\r\n2,Bar,Baz,,\r\n"
    with CrmEmulator(lambda _job: [data]) as emu:
        run = run_tap(tmp_path, emu.config([URN]))
        assert run.returncode == 0, run.stderr
        extras = [r["extraColumns"] for r in run.records(RECORDS)]
        assert extras == [
            {"Record Id": "1", "Company": "Acme", "Company_2": "Foo", "": "", "_2": ""},
            {"Record Id": "2", "Company": "Bar", "Company_2": "Baz", "": "", "_2": ""},
        ]
        assert "'Company_2' (another 'Company')" in run.stderr


@pytest.mark.parametrize("field", ["downloadURL", "downloadUrl"])
def test_files_under_the_field_name_the_tutorial_uses(tmp_path: Path, field: str) -> None:
    # LinkedIn's tutorial: "a short lived download URL in the downloadURL field". Read as "no
    # URLs", the window was taken as empty after a second job and the bookmark moved: exit 0,
    # and the rows were never exported.
    with CrmEmulator(rows_file, urls_field=field) as emu:
        run = run_tap(tmp_path, emu.config([URN]))
        assert run.returncode == 0, run.stderr
        assert len(run.records(RECORDS)) == 5
        assert emu.count("create") == 1


@pytest.mark.parametrize("style", ["s", "iso"])
def test_job_times_in_seconds_or_iso_text(tmp_path: Path, style: str) -> None:
    # Seconds were kept as milliseconds: the bookmark landed in 1970 and the next run asked for
    # everything again. ISO text failed the instance on every run.
    with CrmEmulator(rows_file, time_style=style) as emu:
        config = emu.config([URN])
        first = run_tap(tmp_path, config)
        assert first.returncode == 0, first.stderr
        created = emu.jobs[7001].created_at
        mark = first.final_state["bookmarks"][RECORDS]["partitions"][0]["nextExportStartAt"]
        assert created - 1000 < mark <= created
        (tmp_path / "state.json").write_text(json.dumps(first.final_state))
        second = run_tap(tmp_path, config, "--state", str(tmp_path / "state.json"))
        assert second.returncode == 0, second.stderr
        assert emu.create_bodies[1]["exportStartAt"] == mark


@pytest.mark.parametrize("status", ["CANCELLED", "ERROR"])
def test_a_job_that_ends_in_an_undocumented_failure(tmp_path: Path, status: str) -> None:
    # Counted as "still running", the job held its instance for job_timeout (3 h by default),
    # on every run, until LinkedIn forgot the job a week later.
    with CrmEmulator(rows_file, final_status={7001: status}) as emu:
        run = run_tap(tmp_path, emu.config([URN], job_timeout=20))
        assert run.returncode == 0, run.stderr
        assert {r["jobId"] for r in run.records(RECORDS)} == {7002}
        assert emu.count("create") == 2
