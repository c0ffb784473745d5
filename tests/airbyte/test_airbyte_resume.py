"""Crash safety in Airbyte terms: kill -9 mid-file, resume with the last STATE the reader saw.

An Airbyte destination commits a stream's records with that stream's STATE messages, and the next
read gets each stream's last STATE. So after a crash, the rows kept are, per stream, those before
the stream's last STATE, plus every row of the resumed read: that must be every row exactly once.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import threading
import typing as t

import pytest
from conftest import EXPORTS, RECORDS, STREAMS, SourceRun, configured_catalog, validated
from faultkit import assert_no_secrets, check_rows

from tap_linkedin_crm.sandbox import (
    DYNAMICS_INSTANCE,
    SFDC_INSTANCE,
    InstanceSpec,
    Sandbox,
    Scenario,
)

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import Source

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BIG = DYNAMICS_INSTANCE  # 30,000 rows in 4 files of 7,500: STATEs land inside files
SMALL = SFDC_INSTANCE
BIG_ROWS, BIG_FILES = 30_000, 4
#: Kill after this many rows of the big export: inside its second file, after a STATE at 10,000.
KILL_AFTER_ROWS = 12_500
START_DATE = (dt.datetime.now(tz=dt.UTC) - dt.timedelta(days=5)).isoformat()


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    scenario = Scenario(
        instances={
            SMALL: InstanceSpec(rows=120, files=2, gzip=True),
            BIG: InstanceSpec(rows=BIG_ROWS, files=BIG_FILES),
        },
        job_processing_polls=3,
    )
    with Sandbox(scenario) as sb:
        yield sb


def committed(messages: list[dict[str, t.Any]]) -> dict[str, list[dict[str, t.Any]]]:
    """Per stream, the records before that stream's last STATE (what a destination keeps)."""
    kept: dict[str, list[dict[str, t.Any]]] = {}
    pending: dict[str, list[dict[str, t.Any]]] = {stream: [] for stream in STREAMS}
    for message in messages:
        if message["type"] == "RECORD":
            pending[message["record"]["stream"]].append(message["record"]["data"])
        elif message["type"] == "STATE":
            stream = message["state"]["stream"]["stream_descriptor"]["name"]
            kept.setdefault(stream, []).extend(pending[stream])
            pending[stream] = []
    return kept


def read_until_killed(
    source: Source, config: dict[str, t.Any], catalog: dict[str, t.Any]
) -> SourceRun:
    """Run a read and SIGKILL it once it has written `KILL_AFTER_ROWS` rows of the big export."""
    proc = source.start("read", config=config, catalog=catalog)
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    messages: list[dict[str, t.Any]] = []
    lines: list[str] = []
    big_rows = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if not line.endswith("\n"):  # torn by the kill
                break
            message = validated(line)
            messages.append(message)
            record = message.get("record") or {}
            if record.get("stream") == RECORDS and record["data"]["crmInstanceId"] == BIG:
                big_rows += 1
                if big_rows == KILL_AFTER_ROWS:
                    proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        watchdog.cancel()
        proc.kill()
    assert big_rows >= KILL_AFTER_ROWS, "the read ended before the kill point"
    assert proc.returncode == -signal.SIGKILL
    return SourceRun(proc.returncode, "".join(lines), "", messages)


def test_a_read_killed_mid_file_resumes_from_the_last_state_seen_every_row_once(
    source: Source, sandbox: Sandbox
) -> None:
    config = sandbox.tap_config(request_retry_delay=0.05, start_date=START_DATE)
    catalog = configured_catalog(source.discover(config))
    killed = read_until_killed(source, config, catalog)
    kept = committed(killed.messages)
    last = killed.last_states()
    big_state = next(
        p
        for p in killed.stream_state(RECORDS)["partitions"]
        if p["context"]["crmInstanceId"] == BIG
    )
    # The last STATE came after 10,000 rows: file 1 (0-based) of 7,500-row files, 2,500 rows in.
    in_flight = big_state["inFlightJob"]
    assert (in_flight["fileIndex"], in_flight["rowsDone"]) == (1, 2_500), "not mid-file"
    since = len(sandbox.requests)

    resumed = source("read", config=config, catalog=catalog, state=json.loads(json.dumps(last)))
    assert resumed.returncode == 0, resumed.stderr
    # The big export's job is polled again, not created again; the small one was done.
    created = [r.instance for r in sandbox.requests[since:] if r.endpoint == "create"]
    assert created == [SMALL]

    rows = kept.get(RECORDS, []) + resumed.records(RECORDS)
    jobs = {r["jobId"] for r in rows}
    assert any(sandbox.jobs[j]["instance"] == BIG for j in jobs)
    for job_id in jobs:
        small = sandbox.jobs[job_id]["instance"] == SMALL
        result = check_rows(sandbox, job_id, rows, values=small)
        assert result.exact, f"job {job_id}: {result}"
    exports = [r["jobId"] for r in kept.get(EXPORTS, []) + resumed.records(EXPORTS)]
    assert sorted(exports) == sorted(jobs), "each job's exports record exactly once"
    assert_no_secrets(sandbox, killed.stdout, resumed.stdout, resumed.stderr)


def stopped_states(messages: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    return [m for m in messages if m["type"] == "STATE"]


def test_sigterm_while_jobs_run_ends_incomplete_and_the_next_read_polls_the_same_jobs(
    source: Source,
) -> None:
    with Sandbox(Scenario(processing_seconds=3)) as sb:
        config = sb.tap_config(request_retry_delay=0.05, start_date=START_DATE)
        catalog = configured_catalog(source.discover(config))
        proc = source.start("read", config=config, catalog=catalog)
        assert proc.stdout is not None
        messages: list[dict[str, t.Any]] = []
        for line in proc.stdout:
            messages.append(validated(line))
            if messages[-1]["type"] == "STATE" and len(stopped_states(messages)) == len(STREAMS):
                proc.send_signal(signal.SIGTERM)  # once: jobs created, none completed
        assert proc.wait(timeout=30) == 1, [m["type"] for m in messages]
        stopped = SourceRun(proc.returncode, "", "", messages)
        (error,) = stopped.errors
        assert error["failure_type"] == "transient_error"
        assert "interrupted" in error["message"]
        for stream in STREAMS:
            assert stopped.statuses(stream) == ["STARTED", "INCOMPLETE"]
        created = sorted(sb.jobs)
        assert all("inFlightJob" in p for p in stopped.stream_state(RECORDS)["partitions"])

        resumed = source("read", config=config, catalog=catalog, state=stopped.last_states())
        assert resumed.returncode == 0, resumed.stderr
        assert sorted(sb.jobs) == created, "the jobs in flight were polled, not created again"
        for job_id in created:
            assert check_rows(sb, job_id, resumed.records(RECORDS)).exact
